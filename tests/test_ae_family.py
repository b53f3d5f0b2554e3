"""The deterministic autoencoder family: linear, denoising, sparse, contractive, stacked."""

import numpy as np
import pytest
import torch
from scipy.linalg import subspace_angles
from sklearn.decomposition import PCA

import aekit
from aekit.models.contractive import ContractiveAE
from aekit.models.denoising import DenoisingAE
from aekit.models.sparse import SparseAE
from aekit.models.stacked import StackedAE

#: the family's shared setting for the quality tests: 8-dimensional codes, one hidden layer.
FAMILY = dict(n_components=8, hidden_layer_sizes=(128,), max_iter=40, learning_rate=3e-3,
              batch_size=64, n_iter_no_change=1000, random_state=0,
              likelihood="gaussian", scale="none")   # MSE on the grey levels as given
MODELS = {"AE": aekit.AE, "DenoisingAE": DenoisingAE, "SparseAE": SparseAE,
          "ContractiveAE": ContractiveAE, "StackedAE": StackedAE}


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """These networks are tiny: one thread is faster than two on shared cores."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def family(digits):
    X, _ = digits
    return {name: cls(**FAMILY).fit(X) for name, cls in MODELS.items()}


def _mse(model, X_in, X_clean):
    return float(np.mean((X_clean - model.reconstruct(X_in)) ** 2))


# ------------------------------------------------------------------ linear AE = PCA


@pytest.mark.parametrize("k", [2, 5])
def test_linear_ae_spans_the_pca_subspace(digits, k):
    X, _ = digits
    ae = aekit.AE(n_components=k, hidden_layer_sizes=(64,), activation="identity",
                  likelihood="gaussian", scale="none", max_iter=150, learning_rate=3e-3,
                  batch_size=256, n_iter_no_change=1000,
                  random_state=0).fit(X)
    # the decoder is affine: its linear part's columns are the images of the unit codes
    origin = ae.inverse_transform(np.zeros((1, k), dtype=np.float32))              # (1, D)
    basis = (ae.inverse_transform(np.eye(k, dtype=np.float32)) - origin).T         # (D, k)
    angles = np.degrees(subspace_angles(basis, PCA(k).fit(X).components_.T))
    assert angles.max() < 5.0, angles   # measured: k=2 [0.95 0.77], k=5 [1.13 ... 0.57]


def test_the_lectures_single_layer_linear_ae_spans_the_pca_subspace(digits):
    """``hidden_layer_sizes=()``: one linear layer each way, x -> W x + b -> V z + c."""
    X, _ = digits
    ae = aekit.AE(n_components=2, hidden_layer_sizes=(), activation="identity",
                  likelihood="gaussian", scale="none", max_iter=150, learning_rate=3e-2,
                  batch_size=256, n_iter_no_change=1000,
                  random_state=0).fit(X)
    assert [type(m).__name__ for m in ae.module_.encoder] == ["Linear"]
    assert [type(m).__name__ for m in ae.module_.decoder] == ["Linear"]
    basis = ae.module_.decoder[0].weight.detach().numpy()                         # (D, k)
    angles = np.degrees(subspace_angles(basis, PCA(2).fit(X).components_.T))
    # gradient descent without hidden layers converges slowly along close eigenvalues
    assert angles.max() < 10.0, angles   # measured: [5.33 0.82]


# ------------------------------------------------------------------- the family


def test_every_model_trains_and_beats_pca_on_held_out_digits(family, digits, digits_test):
    X, _ = digits
    X_test, _ = digits_test
    pca = PCA(8).fit(X)
    pca_mse = float(np.mean((X_test - pca.inverse_transform(pca.transform(X_test))) ** 2))
    for name, model in family.items():
        assert all(np.isfinite(v).all() for v in model.history_.values()), name
        assert model.history_["loss"][-1] < model.history_["loss"][0], name
        # measured: PCA 0.0246; AE 0.0144, DAE 0.0180, SAE 0.0187, CAE 0.0173, Stacked 0.0150
        assert _mse(model, X_test, X_test) < pca_mse, name


# ------------------------------------------------------------------- denoising


def test_denoising_ae_removes_noise_better_than_a_plain_ae(family, digits_test):
    X_test, _ = digits_test
    dae, ae = family["DenoisingAE"], family["AE"]
    X_noisy = dae.corrupt(X_test, random_state=0)
    # measured: DAE 0.025 vs AE 0.056 (Gaussian noise, sigma 0.3)
    assert _mse(dae, X_noisy, X_test) < 0.8 * _mse(ae, X_noisy, X_test)


@pytest.mark.parametrize("noise", ["gaussian", "masking", "salt_pepper"])
def test_every_noise_trains_on_a_clean_target(digits, noise):
    X, _ = digits
    dae = DenoisingAE(noise=noise, likelihood="bernoulli", hidden_layer_sizes=(32,),
                      max_iter=3, random_state=0).fit(X)
    assert np.isfinite(dae.history_["loss"]).all()
    # bernoulli scores only [0, 1]: the clean rows are scored, never the noisy ones
    assert np.isfinite(dae.score_samples(X[:10])).all()


def test_corrupt_draws_the_documented_noise_reproducibly(digits):
    X, _ = digits
    X = X[:500]
    state = torch.get_rng_state()
    gauss = DenoisingAE(noise="gaussian", noise_level=0.2).corrupt(X, random_state=1)
    assert np.std(gauss - X) == pytest.approx(0.2, rel=0.02)
    masked = DenoisingAE(noise="masking", noise_level=0.4).corrupt(X, random_state=1)
    changed = masked != X
    assert (masked[changed] == 0).all()
    assert np.mean(masked[X > 0] == 0) == pytest.approx(0.4, abs=0.02)
    salted = DenoisingAE(noise="salt_pepper", noise_level=0.4).corrupt(X, random_state=1)
    assert np.isin(salted[salted != X], (0.0, 1.0)).all()
    grey = (X > 0) & (X < 1)   # pixels where both salt and pepper show
    assert np.mean(salted[grey] == 1) == pytest.approx(0.2, abs=0.02)
    assert np.mean(salted[grey] == 0) == pytest.approx(0.2, abs=0.02)
    again = DenoisingAE(noise="salt_pepper", noise_level=0.4).corrupt(X, random_state=1)
    np.testing.assert_array_equal(salted, again)
    assert torch.equal(torch.get_rng_state(), state)


def test_a_probability_above_one_is_refused(digits):
    X, _ = digits
    with pytest.raises(ValueError, match="noise_level=1.5"):
        DenoisingAE(noise="masking", noise_level=1.5, max_iter=1).fit(X)


# ------------------------------------------------------------------- sparse


def test_kl_sparsity_moves_mean_activation_towards_the_target(family, digits, digits_test):
    X, _ = digits
    X_test, _ = digits_test
    sparse = family["SparseAE"]
    free = SparseAE(**{**FAMILY, "sparsity_weight": 0.0}).fit(X)   # sigmoid codes, no penalty
    rho = sparse.sparsity_target
    Z_sparse, Z_free = sparse.transform(X_test), free.transform(X_test)
    assert ((Z_sparse > 0) & (Z_sparse < 1)).all()
    # measured: mean activation 0.14 with the penalty, 0.50 without; target 0.05
    assert abs(Z_sparse.mean() - rho) < 0.5 * abs(Z_free.mean() - rho)
    assert sparse.history_["mean_activation"][-1] < sparse.history_["mean_activation"][0]
    assert sparse.history_["sparsity"][-1] < free.history_["sparsity"][-1]


def test_the_kl_penalty_is_the_bernoulli_kl_by_hand():
    """The written-out penalty (no torch distributions: no argument checks that read the
    device back) is sum_j KL(Bernoulli(rho) || Bernoulli(rho_hat_j)), saturated units
    included (rho_hat clamped to [1e-6, 1 - 1e-6])."""
    sparse = SparseAE(sparsity_target=0.05)
    z = torch.tensor([[0.1, 0.0, 1.0, 0.5], [0.3, 0.0, 1.0, 0.05]])
    rho = 0.05
    expected = 0.0
    for rho_hat in np.float32([0.2, 1e-6, 1 - 1e-6, 0.275]).astype(np.float64):
        expected += rho * np.log(rho / rho_hat) + (1 - rho) * np.log((1 - rho) / (1 - rho_hat))
    assert float(sparse._penalty(z)) == pytest.approx(expected, rel=1e-5)
    assert float(sparse._penalty(torch.full((3, 4), rho))) == pytest.approx(0.0, abs=1e-6)


def test_l1_sparsity_shrinks_the_codes(digits):
    X, _ = digits
    kw = dict(sparsity="l1", n_components=8, hidden_layer_sizes=(32,), max_iter=10,
              random_state=0)
    l1 = SparseAE(sparsity_weight=1.0, **kw).fit(X)
    free = SparseAE(sparsity_weight=0.0, **kw).fit(X)
    assert np.isfinite(l1.history_["sparsity"]).all()
    assert np.abs(l1.transform(X)).mean() < 0.5 * np.abs(free.transform(X)).mean()


# --------------------------------------------------------------- contractive


@pytest.mark.parametrize("activation", ["relu", "tanh", "sigmoid"])
def test_contraction_is_the_squared_frobenius_norm_of_the_jacobian(digits, activation):
    X, _ = digits
    cae = ContractiveAE(n_components=3, hidden_layer_sizes=(16, 8), activation=activation,
                        max_iter=1, random_state=0, scale="none").fit(X)
    x = torch.as_tensor(X[:4])
    brute = [torch.autograd.functional.jacobian(cae.module_.encoder, row).pow(2).sum()
             for row in x]                                               # each (k, D) summed
    np.testing.assert_allclose(cae.contraction(X[:4]), torch.stack(brute).numpy(), rtol=1e-5)


def test_a_larger_contractive_weight_gives_a_flatter_encoder(digits, digits_test):
    X, _ = digits
    X_test, _ = digits_test
    kw = dict(n_components=8, hidden_layer_sizes=(32,), max_iter=10, random_state=0)
    weak = ContractiveAE(contractive_weight=0.01, **kw).fit(X)
    strong = ContractiveAE(contractive_weight=1.0, **kw).fit(X)
    assert strong.contraction(X_test).mean() < 0.5 * weak.contraction(X_test).mean()
    assert strong.history_["contraction"][-1] < weak.history_["contraction"][-1]


# ------------------------------------------------------------------- stacked


class _SpyStackedAE(StackedAE):
    """Records the deep network's loss and weights just before and after pretraining."""

    def _pretrain(self, x, y, ctx):
        def snapshot():
            with torch.no_grad():
                return (float(self._loss(x, y, ctx).total),
                        {k: v.clone() for k, v in self.module_.state_dict().items()})

        self.spy_before_ = snapshot()
        super()._pretrain(x, y, ctx)
        self.spy_after_ = snapshot()


STACKED = dict(n_components=4, hidden_layer_sizes=(32, 16), pretrain_max_iter=3, max_iter=2,
               random_state=0)


def test_stacked_history_shows_both_phases(digits):
    X, _ = digits
    sae = StackedAE(**STACKED).fit(X)
    for layer in (1, 2, 3):   # two hidden layers and the code layer
        losses = sae.history_[f"pretrain_layer{layer}_loss"]
        assert len(losses) == 3 and np.isfinite(losses).all()
    assert "pretrain_layer4_loss" not in sae.history_
    assert len(sae.history_["loss"]) == len(sae.history_["recon"]) == 2
    plain = StackedAE(**{**STACKED, "pretrain_max_iter": 0}).fit(X)
    assert not any(k.startswith("pretrain") for k in plain.history_)


def test_stacked_training_is_reproducible_and_leaves_the_global_rng_alone(digits):
    X, _ = digits
    torch_state, np_state = torch.get_rng_state(), np.random.get_state()[1].copy()
    a = StackedAE(**STACKED).fit(X)
    b = StackedAE(**STACKED).fit(X)
    assert torch.equal(torch.get_rng_state(), torch_state)
    np.testing.assert_array_equal(np.random.get_state()[1], np_state)
    for key, value in a.module_.state_dict().items():
        assert torch.equal(value, b.module_.state_dict()[key]), key
    assert a.history_ == {**b.history_, "time": a.history_["time"]}


def test_pretraining_moves_the_initial_weights_and_lowers_the_loss(digits):
    X, _ = digits
    sae = _SpyStackedAE(**{**STACKED, "pretrain_max_iter": 10}).fit(X)
    (loss_before, before), (loss_after, after) = sae.spy_before_, sae.spy_after_
    linear = [k for k in before if k.endswith("weight") and "likelihood" not in k]
    assert len(linear) == 6   # three encoder and three decoder layers
    assert all(not torch.equal(before[k], after[k]) for k in linear)
    assert loss_after < loss_before
    untouched = _SpyStackedAE(**{**STACKED, "pretrain_max_iter": 0}).fit(X)
    for key, value in untouched.spy_before_[1].items():
        assert torch.equal(value, untouched.spy_after_[1][key])
        assert torch.equal(value, before[key])   # the same build before pretraining


def test_stacked_refuses_conv(digits):
    X, _ = digits
    with pytest.raises(ValueError, match="architecture='conv'"):
        StackedAE(architecture="conv", max_iter=1).fit(X.reshape(-1, 8, 8))


def test_code_distribution_over_several_chunks_and_identical_rows():
    """AE.sample draws from N(mean, cov) of the training codes, gathered chunk by chunk
    (4096 rows each); identical rows (zero covariance) still give a usable distribution."""
    X = np.random.default_rng(0).random((9000, 6)).astype(np.float32)
    ae = aekit.AE(n_components=3, hidden_layer_sizes=(8,), max_iter=1, random_state=0).fit(X)
    Z = ae.transform(X).astype(np.float64)
    tril = ae.module_.code_scale_tril.double().numpy()
    np.testing.assert_allclose(ae.module_.code_loc.numpy(), Z.mean(0), rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(tril @ tril.T, np.cov(Z.T), rtol=1e-3, atol=1e-7)
    same = np.full((7, 5), 238.5, np.float32)
    ae = aekit.AE(hidden_layer_sizes=(8,), max_iter=1, random_state=0).fit(same)
    assert np.isfinite(ae.sample(3, random_state=0)).all()
