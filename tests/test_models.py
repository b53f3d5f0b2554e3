"""AE and VAE: the maths, the four uses, reproducibility and the training loop."""

import math
import pickle

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import aekit
from aekit.distributions import list_likelihoods
from aekit.evaluation.array_metrics import log_mean_exp

from .conftest import SMALL


def _manual_log_weights(vae, x, eps):
    """log p(x|z) + log p(z) - log q(z|x), written out by hand from the model's parts."""
    from torch.distributions import Independent, Normal

    out = vae.module_.encoder(x)
    mu, log_var = out.chunk(2, dim=-1)
    sigma = (0.5 * log_var).exp()
    z = mu + sigma * eps[:, None, :]                                   # (K, B, k)
    logits = vae.module_.decoder(z)                                    # (K, B, D)
    log_px = -torch.nn.functional.binary_cross_entropy_with_logits(
        logits, x.expand_as(logits), reduction="none").sum(-1)
    log_pz = Independent(Normal(0.0, torch.ones_like(z)), 1).log_prob(z)
    log_qz = Independent(Normal(mu, sigma), 1).log_prob(z)
    return log_px + log_pz - log_qz


def test_importance_sampling_with_one_sample_is_the_elbo_on_the_same_noise(fitted_vae, digits):
    X, _ = digits
    vae = fitted_vae
    vae.set_params(n_importance_samples=1)
    try:
        eps = vae._eval_noise()                                        # (1, k)
        with torch.no_grad():
            expected = _manual_log_weights(vae, torch.as_tensor(X[:50]), eps)[0]
        np.testing.assert_allclose(vae.score_samples(X[:50]), expected.numpy(), rtol=1e-5,
                                   atol=1e-4)
    finally:
        vae.set_params(n_importance_samples=16)


def test_importance_sampled_estimate_is_above_elbo_and_grows_with_k(fitted_vae, digits_test):
    X, _ = digits_test
    elbo = fitted_vae.elbo(X).mean()
    lls = []
    for k in (1, 10, 200):
        fitted_vae.set_params(n_importance_samples=k)
        lls.append(fitted_vae.score(X))
    fitted_vae.set_params(n_importance_samples=16)
    assert lls[0] < lls[1] < lls[2]
    assert lls[2] > elbo
    assert abs(lls[0] - elbo) < 1.0   # K=1 is an unbiased estimate of the ELBO


@settings(max_examples=10, deadline=None)
@given(st.lists(st.integers(0, 359), min_size=1, max_size=12, unique=True))
def test_score_samples_is_row_independent(fitted_vae, digits_test, rows):
    X, _ = digits_test
    full = fitted_vae.score_samples(X)
    np.testing.assert_allclose(fitted_vae.score_samples(X[rows]), full[rows], rtol=1e-5)
    np.testing.assert_allclose(fitted_vae.score_samples(X[rows[:1]]), full[rows[:1]], rtol=1e-5)


def test_gaussian_ae_scores_minus_half_squared_error_plus_constant(digits):
    X, _ = digits
    ae = aekit.AE(likelihood="gaussian", scale="none", **SMALL).fit(X)
    sq = ((X - ae.reconstruct(X)) ** 2).sum(1)
    expected = -0.5 * sq - X.shape[1] / 2 * math.log(2 * math.pi)
    np.testing.assert_allclose(ae.score_samples(X), expected, rtol=1e-4)


def test_bernoulli_ae_scores_minus_binary_cross_entropy(fitted_ae, digits):
    X, _ = digits
    p = np.clip(fitted_ae.reconstruct(X[:20]).astype(np.float64), 1e-7, 1 - 1e-7)
    bce = -(X[:20] * np.log(p) + (1 - X[:20]) * np.log(1 - p)).sum(1)
    np.testing.assert_allclose(fitted_ae.score_samples(X[:20]), -bce, rtol=1e-3)


def test_beta_zero_trains_on_reconstruction_only(digits):
    X, _ = digits
    vae = aekit.VAE(beta=0.0, **SMALL).fit(X)
    np.testing.assert_allclose(vae.history_["loss"], vae.history_["recon"], rtol=1e-5)
    assert all(kl > 0 for kl in vae.history_["kl"])


@pytest.mark.parametrize("likelihood", list_likelihoods())
def test_vae_trains_with_every_likelihood(digits, likelihood):
    X, _ = digits
    vae = aekit.VAE(likelihood=likelihood, n_importance_samples=4,
                    **{**SMALL, "max_iter": 4}).fit(X[:300])
    loss = vae.history_["loss"]
    assert np.all(np.isfinite(loss)) and loss[-1] < loss[0]
    assert np.all(np.isfinite(vae.score_samples(X[:10])))
    assert vae.sample(3, random_state=0).shape == (3, 64)


def test_the_four_uses_have_the_documented_shapes(fitted_vae, fitted_ae, digits):
    X, _ = digits
    for model in (fitted_vae, fitted_ae):
        Z = model.transform(X[:7])
        assert Z.shape == (7, 2) and Z.dtype == np.float32
        assert model.inverse_transform(Z).shape == (7, 64)
        np.testing.assert_allclose(model.reconstruct(X[:7]), model.inverse_transform(Z))
        S = model.sample(5, random_state=3)
        assert S.shape == (5, 64) and np.all((S >= 0) & (S <= 1))
        np.testing.assert_array_equal(S, model.sample(5, random_state=3))
        assert not np.array_equal(S, model.sample(5, random_state=4))
        assert model.score_samples(X[:7]).shape == (7,)
        assert model.score(X[:7]) == pytest.approx(model.score_samples(X[:7]).mean(), rel=1e-6)
        assert model.elbo(X[:7]).shape == (7,)


def test_ae_samples_follow_the_code_distribution(fitted_ae, digits):
    X, _ = digits
    Z = fitted_ae.transform(X)
    z = fitted_ae._sample_latent(4000, torch.Generator().manual_seed(0)).numpy()
    np.testing.assert_allclose(z.mean(0), Z.mean(0), atol=0.1 * Z.std(0).max())
    np.testing.assert_allclose(np.cov(z.T), np.cov(Z.T), rtol=0.15, atol=0.05 * Z.var(0).max())


def test_vae_beats_its_untrained_self(digits, digits_test):
    X, _ = digits
    X_test, _ = digits_test
    short = aekit.VAE(likelihood="bernoulli", **{**SMALL, "max_iter": 1}).fit(X)
    longer = aekit.VAE(likelihood="bernoulli", **{**SMALL, "max_iter": 30}).fit(X)
    assert longer.score(X_test) > short.score(X_test) + 1.0


def test_history_records_every_epoch(fitted_vae):
    h = fitted_vae.history_
    assert set(h) >= {"loss", "recon", "kl", "time"}
    assert all(len(v) == fitted_vae.n_iter_ for v in h.values())
    np.testing.assert_allclose(np.array(h["recon"]) + np.array(h["kl"]), h["loss"], rtol=1e-5)


def test_same_seed_same_weights_and_global_rng_untouched(digits):
    X, _ = digits
    torch_state, np_state = torch.get_rng_state(), np.random.get_state()
    a = aekit.VAE(**SMALL).fit(X[:200])
    b = aekit.VAE(**SMALL).fit(X[:200])
    c = aekit.VAE(**{**SMALL, "random_state": 1}).fit(X[:200])
    assert torch.equal(torch.get_rng_state(), torch_state)
    assert all(np.array_equal(u, v) if isinstance(u, np.ndarray) else u == v
               for u, v in zip(np.random.get_state(), np_state))
    for name, tensor in a.module_.state_dict().items():
        assert torch.equal(tensor, b.module_.state_dict()[name]), name
    assert a.history_["loss"] == b.history_["loss"]
    assert not torch.equal(a.module_.encoder[0].weight, c.module_.encoder[0].weight)


def test_early_stopping_uses_a_validation_split_and_keeps_the_best_weights(digits):
    X, _ = digits
    vae = aekit.VAE(early_stopping=True, n_iter_no_change=2, tol=1e9,
                    **{**SMALL, "max_iter": 50}).fit(X)
    # the first epoch improves on +inf, the next two do not improve by 1e9: stop after 3
    assert vae.n_iter_ == 3
    assert len(vae.history_["val_loss"]) == 3 and "val_kl" in vae.history_
    assert vae.best_loss_ == vae.history_["val_loss"][0]


def test_training_stops_when_the_loss_stalls_without_early_stopping(digits):
    X, _ = digits
    ae = aekit.AE(n_iter_no_change=3, tol=1e9, **{**SMALL, "max_iter": 50}).fit(X)
    assert ae.n_iter_ == 4


def test_divergence_is_reported_with_its_likely_causes():
    X = np.full((20, 64), 1e19, dtype=np.float32)
    with pytest.raises(FloatingPointError, match="diverged at epoch 1, step 1.*learning_rate"):
        aekit.AE(on_nan="raise", scale="none", **SMALL).fit(X)


@pytest.mark.parametrize("shape", [(8, 8), (1, 8, 8), (5, 7)])
def test_image_input_uses_conv_networks_and_keeps_its_shape(digits, shape):
    X, _ = digits
    n = 64
    images = X[:n, : math.prod(shape)].reshape(n, *shape)
    vae = aekit.VAE(likelihood="bernoulli", n_importance_samples=2, **SMALL).fit(images)
    assert any(isinstance(m, torch.nn.Conv2d) for m in vae.module_.modules())
    assert vae.transform(images).shape == (n, 2)
    assert vae.reconstruct(images).shape == (n, *shape)
    assert vae.sample(2, random_state=0).shape == (2, *shape)
    assert np.all(np.isfinite(vae.score_samples(images)))


def test_flat_input_with_architecture_conv_is_refused(digits):
    X, _ = digits
    with pytest.raises(ValueError, match="architecture='conv' needs image input"):
        aekit.AE(architecture="conv", **SMALL).fit(X)


def test_a_gated_layer_is_a_linear_part_times_a_sigmoid_gate():
    from aekit.nn import GatedLinear

    torch.manual_seed(0)
    layer = GatedLinear(3, 2)
    x = torch.randn(4, 3)
    W, b = layer.linear.weight, layer.linear.bias            # (4, 3), (4,): h rows, then gates
    expected = (x @ W[:2].T + b[:2]) * torch.sigmoid(x @ W[2:].T + b[2:])
    torch.testing.assert_close(layer(x), expected)


def test_architecture_gated_builds_gated_mlps_that_save_and_load(digits, tmp_path):
    from aekit.nn import GatedLinear

    X, _ = digits
    vae = aekit.VAE(architecture="gated", likelihood="bernoulli", n_importance_samples=4,
                    **{**SMALL, "hidden_layer_sizes": (16, 8)}).fit(X)
    for net in (vae.module_.encoder, vae.module_.decoder):
        kinds = [type(m) for m in net]
        assert kinds == [GatedLinear, GatedLinear, torch.nn.Linear]   # the gate is the
    assert vae.module_.encoder[0].linear.weight.shape == (32, 64)    # only nonlinearity
    assert np.isfinite(vae.history_["loss"]).all()
    vae.save(tmp_path / "gated.safetensors")
    loaded = aekit.load(tmp_path / "gated.safetensors")
    np.testing.assert_array_equal(loaded.transform(X[:20]), vae.transform(X[:20]))
    np.testing.assert_allclose(loaded.score_samples(X[:20]), vae.score_samples(X[:20]))


@pytest.mark.parametrize("name", ["stacked_ae", "cvae"])
def test_models_that_build_plain_dense_layers_refuse_architecture_gated(name, digits):
    X, y = digits
    model = aekit.get_model(name, architecture="gated", **SMALL)
    with pytest.raises(ValueError, match="architecture='gated'"):
        model.fit(X, y if name == "cvae" else None)


def test_pickle_round_trip(fitted_vae, digits):
    X, _ = digits
    again = pickle.loads(pickle.dumps(fitted_vae))
    np.testing.assert_array_equal(again.transform(X[:5]), fitted_vae.transform(X[:5]))


def test_unavailable_cuda_is_refused(digits):
    if torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    with pytest.raises(ValueError, match="CUDA is not available"):
        aekit.AE(device="cuda", **SMALL).fit(digits[0])


def test_registry():
    assert aekit.list_models() == sorted(aekit.list_models())
    assert {"ae", "vae"} <= set(aekit.list_models())
    assert isinstance(aekit.get_model("vae", beta=2.0), aekit.VAE)
    with pytest.raises(ValueError, match=r"unknown model 'nope'; known models: .*\bae\b"):
        aekit.get_model("nope")
    with pytest.raises(ValueError, match="already registered"):
        aekit.register("vae")(aekit.VAE)


def test_log_mean_exp_is_stable():
    big = torch.tensor([1000.0, 1000.0 + math.log(3.0)])
    assert log_mean_exp(big).item() == pytest.approx(1000.0 + math.log(2.0))


def test_a_refused_fit_leaves_the_model_unfitted(digits):
    from sklearn.exceptions import NotFittedError

    X, _ = digits
    model = aekit.VAE(likelihood="bernoulli", **SMALL)
    with pytest.raises(ValueError, match="bernoulli"):
        model.fit(X - 1.0)
    with pytest.raises(NotFittedError):
        model.transform(X)


def test_wrong_image_shape_names_both_shapes(digits):
    X, _ = digits
    model = aekit.AE(**SMALL).fit(X[:64].reshape(64, 8, 8))
    expected = r"rows of shape \(4, 16\).*fitted on rows of shape \(8, 8\)"
    with pytest.raises(ValueError, match=expected):
        model.transform(X[:4].reshape(4, 4, 16))
