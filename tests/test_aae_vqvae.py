"""AAE and VQ-VAE: prior matching, two-optimizer training, codebook use, exact likelihoods."""

import math

import numpy as np
import pytest
import torch

import aekit
from aekit.models.aae import AAE, prior_draws
from aekit.models.vqvae import VQVAE

from .conftest import SMALL, assert_same_weights, history_without_time, weights


def _mmd(a, b, bandwidth=1.0):
    """Squared maximum mean discrepancy with a Gaussian kernel (biased V-statistic)."""
    a, b = torch.as_tensor(a, dtype=torch.float64), torch.as_tensor(b, dtype=torch.float64)

    def k(u, v):
        return torch.exp(-torch.cdist(u, v) ** 2 / (2 * bandwidth ** 2)).mean()

    return float(k(a, a) + k(b, b) - 2 * k(a, b))


# ------------------------------------------------------------------------- AAE

def test_aae_codes_match_the_normal_prior_better_than_ae_codes(digits):
    X, _ = digits
    params = dict(SMALL, hidden_layer_sizes=(64,), likelihood="bernoulli", n_components=2,
                  max_iter=40)
    ae = aekit.AE(**params).fit(X)
    aae = AAE(prior="normal", discriminator_hidden=(64,), **params).fit(X)
    prior = np.random.default_rng(0).standard_normal((1000, 2))
    stats = {}
    for name, model in (("ae", ae), ("aae", aae)):
        Z = model.transform(X[:1000])
        stats[name] = (_mmd(Z, prior), np.linalg.norm(Z.mean(0)),
                       np.linalg.norm(np.cov(Z.T) - np.eye(2)))
    # measured (mmd, |mean|, |cov - I|_F): ae (0.37, ...), aae (0.024, 0.06, 0.23);
    # over random_state 0-3 the AAE's MMD was 0.009-0.024, the AE's 0.31-0.40
    assert stats["aae"][0] < stats["ae"][0] / 5
    assert stats["aae"][1] < stats["ae"][1] and stats["aae"][2] < stats["ae"][2]
    assert stats["aae"][0] < 0.1
    # and it still learns to reconstruct
    assert aae.history_["recon"][-1] < aae.history_["recon"][0] - 5


@pytest.mark.parametrize("prior", ["normal", "mixture", "swiss_roll"])
def test_every_prior_trains_with_finite_losses_and_samples_in_range(digits, prior):
    X, _ = digits
    model = AAE(prior=prior, adversarial_weight=0.5, discriminator_hidden=(32,),
                likelihood="bernoulli", **{**SMALL, "max_iter": 3}).fit(X[:500])
    h = model.history_
    assert set(h) >= {"loss", "recon", "generator", "discriminator"}
    assert all(np.all(np.isfinite(h[k])) for k in ("loss", "recon", "generator",
                                                    "discriminator"))
    np.testing.assert_allclose(h["loss"], np.add(h["recon"], 0.5 * np.array(h["generator"])),
                               rtol=1e-5)
    S = model.sample(6, random_state=1)
    assert S.shape == (6, 64) and np.all((S >= 0) & (S <= 1))
    np.testing.assert_array_equal(S, model.sample(6, random_state=1))
    assert np.all(np.isfinite(model.score_samples(X[:5])))


def test_prior_draws_have_the_documented_shapes():
    g = torch.Generator().manual_seed(0)
    normal = prior_draws("normal", 20000, 2, g).numpy()
    np.testing.assert_allclose(normal.mean(0), 0, atol=0.03)
    np.testing.assert_allclose(np.cov(normal.T), np.eye(2), atol=0.05)

    mixture = prior_draws("mixture", 20000, 3, g).numpy()
    radius = np.linalg.norm(mixture[:, :2], axis=1)
    angle = np.arctan2(mixture[:, 1], mixture[:, 0])
    centre = np.round(angle / (2 * np.pi / 10)) * (2 * np.pi / 10)
    across = radius * np.sin(angle - centre)          # distance from the component's axis
    assert radius.mean() == pytest.approx(2.0, abs=0.05)
    assert radius.std() == pytest.approx(0.5, abs=0.05)
    assert across.std() == pytest.approx(0.1, abs=0.01)
    assert len(np.unique(np.round(centre / (2 * np.pi / 10)) % 10)) == 10
    np.testing.assert_allclose([mixture[:, 2].mean(), mixture[:, 2].std()], [0, 1], atol=0.03)

    roll = prior_draws("swiss_roll", 5000, 2, g).numpy()
    r = np.linalg.norm(roll, axis=1)                  # r = 3 s, angle = 4 pi s
    assert r.max() <= 3.0 + 1e-5
    expected = np.stack([np.cos(4 * np.pi * r / 3), np.sin(4 * np.pi * r / 3)], 1) * r[:, None]
    np.testing.assert_allclose(roll, expected, atol=1e-4)


@pytest.mark.parametrize("prior", ["mixture", "swiss_roll"])
def test_two_dimensional_priors_refuse_one_component(digits, prior):
    with pytest.raises(ValueError, match="needs n_components >= 2.*got n_components=1"):
        AAE(prior=prior, n_components=1, **SMALL).fit(digits[0][:50])


def test_aae_resume_with_two_optimizers_is_bit_identical(digits, tmp_path):
    X, _ = digits
    params = dict(SMALL, prior="mixture", discriminator_hidden=(16,))
    full = AAE(**{**params, "max_iter": 6}).fit(X, checkpoint_dir=tmp_path / "full")
    half = AAE(**{**params, "max_iter": 3}).fit(X, checkpoint_dir=tmp_path / "run")
    resumed = AAE(**{**params, "max_iter": 6}).fit(X, checkpoint_dir=tmp_path / "run",
                                                   resume=True)
    assert any(k.startswith("discriminator.") for k in weights(full))
    assert_same_weights(weights(full), weights(resumed))
    assert history_without_time(full) == history_without_time(resumed)
    # not trivially: the discriminator still moves after epoch 3
    assert not torch.equal(half.module_.discriminator[0].weight,
                           full.module_.discriminator[0].weight)


@pytest.mark.parametrize("model, precision", [("aae", "16-mixed"), ("vq_vae", "bf16-mixed")])
def test_mixed_precision_trains_like_float32(digits, model, precision):
    X, _ = digits
    params = dict(SMALL, likelihood="bernoulli", max_iter=4)
    fp32 = aekit.get_model(model, **params).fit(X[:600])
    mixed = aekit.get_model(model, precision=precision, **params).fit(X[:600])
    assert mixed.module_.encoder[0].weight.dtype == torch.float32
    assert mixed.history_["recon"][-1] == pytest.approx(fp32.history_["recon"][-1], rel=0.03)


def test_aae_skips_non_finite_minibatches_without_any_update(digits):
    X, _ = digits
    X = X[:256].copy()
    X[0] = 1e19            # one poisoned row: only its minibatch has an infinite loss
    model = AAE(on_nan="skip_batch", scale="none",   # standardising would tame the row
                **{**SMALL, "max_iter": 3, "batch_size": 32}).fit(X)
    assert model.history_["skipped_batches"] == [1.0, 1.0, 1.0]
    assert all(torch.isfinite(v).all() for v in model.module_.state_dict().values())


def test_aae_saves_and_loads_with_its_discriminator(digits, tmp_path):
    X, _ = digits
    model = AAE(prior="swiss_roll", **{**SMALL, "max_iter": 2}).fit(X[:300])
    model.save(tmp_path / "aae.safetensors")
    same = aekit.load(tmp_path / "aae.safetensors")
    assert_same_weights(weights(model), weights(same))
    np.testing.assert_array_equal(model.sample(4, random_state=0), same.sample(4, random_state=0))


# ---------------------------------------------------------------------- VQ-VAE

@pytest.fixture(scope="module")
def fitted_vq(digits):
    X, _ = digits
    return VQVAE(codebook_size=32, likelihood="bernoulli",
                 **{**SMALL, "hidden_layer_sizes": (64,), "max_iter": 10}).fit(X)


def test_vqvae_uses_most_of_its_codebook_on_digits(fitted_vq, digits):
    X, _ = digits
    h = fitted_vq.history_
    assert all(len(h[k]) == fitted_vq.n_iter_ for k in ("perplexity", "codes_used",
                                                        "usage_perplexity", "commitment"))
    codes = fitted_vq.predict_codes(X)
    assert codes.dtype == np.int64 and codes.min() >= 0 and codes.max() < 32
    # measured: 32 of 32 codes used, usage perplexity 27, minibatch perplexity 20
    assert len(np.unique(codes)) == h["codes_used"][-1] > 16
    assert h["usage_perplexity"][-1] > 10 and h["perplexity"][-1] > 5
    assert h["recon"][-1] < h["recon"][0]


def test_transform_is_the_code_vector_and_the_prior_is_the_smoothed_code_frequency(
        fitted_vq, digits):
    X, _ = digits
    codebook = fitted_vq.module_.codebook.numpy()
    codes = fitted_vq.predict_codes(X)
    np.testing.assert_array_equal(fitted_vq.transform(X[:50]), codebook[codes[:50]])
    expected = (np.bincount(codes, minlength=32) + 1) / (len(X) + 32)
    np.testing.assert_allclose(fitted_vq.module_.log_prior.exp().numpy(), expected, rtol=1e-5)


def test_exact_likelihood_bounds_the_elbo_and_equals_a_loop_over_codes(fitted_vq, digits_test):
    X, _ = digits_test
    ll, elbo = fitted_vq.score_samples(X), fitted_vq.elbo(X)
    assert np.all(ll >= elbo) and np.all(np.isfinite(ll))
    assert np.mean(ll - elbo) > 0.01    # other codes do add probability
    m = fitted_vq.module_
    x = torch.as_tensor(X[:5])
    with torch.no_grad():
        joint = torch.stack([fitted_vq._decode(m.codebook[c].expand(5, -1)).log_prob(x)
                             + m.log_prior[c] for c in range(32)], dim=1)     # (5, C)
    np.testing.assert_allclose(ll[:5], torch.logsumexp(joint, 1).numpy(), rtol=1e-5)
    own = joint[torch.arange(5), torch.as_tensor(fitted_vq.predict_codes(X[:5]))]
    np.testing.assert_allclose(elbo[:5], own.numpy(), rtol=1e-5)
    # a row scores the same alone as in a batch
    np.testing.assert_allclose(fitted_vq.score_samples(X[3:4]), ll[3:4], rtol=1e-6)


def test_samples_are_decoded_codes_drawn_from_the_prior(fitted_vq):
    S = fitted_vq.sample(200, random_state=0)
    assert S.shape == (200, 64) and np.all((S >= 0) & (S <= 1))
    np.testing.assert_array_equal(S[:5], fitted_vq.sample(5, random_state=0))
    decoded = fitted_vq.inverse_transform(fitted_vq.module_.codebook.numpy())     # (C, D)
    nearest = np.abs(S[:, None, :] - decoded[None]).max(-1).min(1)
    assert nearest.max() < 1e-5


def test_codebook_changes_only_while_training(fitted_vq, digits):
    X, _ = digits
    before = weights(fitted_vq)
    fitted_vq.score_samples(X[:100])
    fitted_vq.transform(X[:100])
    with torch.no_grad():
        ctx = aekit.FitContext.standalone(torch.Generator().manual_seed(0))
        fitted_vq._loss(torch.as_tensor(X[:100]), None, ctx)    # eval mode: no EMA update
    assert_same_weights(before, weights(fitted_vq))


class _FarCodebook(VQVAE):
    """Starts every code far from the data, on a ray: code 0 is nearest to every row."""

    def _pretrain(self, x, y, ctx):
        super()._pretrain(x, y, ctx)
        m = self.module_
        far = 1000.0 * torch.arange(1, self.codebook_size + 1.0)[:, None]    # (C, 1)
        m.codebook.copy_(far.expand_as(m.codebook))
        m.ema_sum.copy_(m.codebook)


def test_dead_code_reset_revives_codes_that_start_far_from_the_data(digits):
    X, _ = digits
    params = dict(SMALL, codebook_size=16, likelihood="bernoulli", max_iter=3)
    dead = _FarCodebook(dead_code_threshold=0.0, **params).fit(X)
    revived = _FarCodebook(dead_code_threshold=1.0, **params).fit(X)
    assert dead.history_["codes_used"] == [1.0, 1.0, 1.0]
    # measured: 16 of 16 codes used after the first epoch
    assert revived.history_["codes_used"][0] > 8
    assert revived.module_.codebook.abs().max() < 100


def test_vqvae_resume_is_bit_identical(digits, tmp_path):
    X, _ = digits
    params = dict(SMALL, codebook_size=16)
    full = VQVAE(**{**params, "max_iter": 6}).fit(X, checkpoint_dir=tmp_path / "full")
    VQVAE(**{**params, "max_iter": 3}).fit(X, checkpoint_dir=tmp_path / "run")
    resumed = VQVAE(**{**params, "max_iter": 6}).fit(X, checkpoint_dir=tmp_path / "run",
                                                     resume=True)
    assert_same_weights(weights(full), weights(resumed))
    assert history_without_time(full) == history_without_time(resumed)


def test_vqvae_parameters_are_validated(digits):
    with pytest.raises(ValueError, match="ema_decay"):
        VQVAE(ema_decay=1.0, **SMALL).fit(digits[0][:50])
    with pytest.raises(ValueError, match="codebook_size"):
        VQVAE(codebook_size=0, **SMALL).fit(digits[0][:50])
    assert math.isfinite(VQVAE(codebook_size=300, **{**SMALL, "max_iter": 1})
                         .fit(digits[0][:100]).score(digits[0][:10]))
