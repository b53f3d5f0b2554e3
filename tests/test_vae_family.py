"""The VAE family: BetaVAE, IWAE, WAE-MMD and the VampPrior VAE."""

import math

import numpy as np
import pytest
import torch
from torch.distributions import Independent, Normal

import aekit
from aekit.models.beta_vae import BetaVAE
from aekit.models.iwae import IWAE
from aekit.models.vamp import PSEUDO_INPUT_MARGIN, VampPriorVAE
from aekit.models.wae import WAE, mmd_imq
from aekit.training import FitContext

from .conftest import SMALL

#: the settings of conftest's ``fitted_vae``, so models compare at equal epochs
LIKE_FITTED_VAE = dict(likelihood="bernoulli", n_components=2, n_importance_samples=16,
                       **{**SMALL, "max_iter": 20})


@pytest.fixture(scope="module")
def fitted_iwae(digits):
    return IWAE(n_train_samples=5, **LIKE_FITTED_VAE).fit(digits[0])


@pytest.fixture(scope="module")
def fitted_vamp(digits):
    return VampPriorVAE(n_pseudo_inputs=50, **LIKE_FITTED_VAE).fit(digits[0])


@pytest.fixture(scope="module")
def vae_and_beta_vae(digits):
    """A VAE and a BetaVAE(beta=1, constant, no free bits) with the same parameters."""
    X = digits[0][:300]
    params = dict(SMALL, likelihood="bernoulli", n_components=4)
    return aekit.VAE(**params).fit(X), BetaVAE(beta=1.0, **params).fit(X)


def _noise(seed):
    """A fit context whose training generator ``_loss`` draws from, as ``fit`` passes one."""
    return FitContext.standalone(torch.Generator().manual_seed(seed))


def _hand_log_weights(model, x, eps):
    """log p(x|z) + log p(z) - log q(z|x) for a bernoulli VAE with an N(0, I) prior, written
    out from the networks; eps is (K, B, k)."""
    mu, log_var = model.module_.encoder(x).chunk(2, dim=-1)                   # (B, k)
    sigma = (0.5 * log_var).exp()
    z = mu + sigma * eps                                                      # (K, B, k)
    logits = model.module_.decoder(z)                                         # (K, B, D)
    log_px = -torch.nn.functional.binary_cross_entropy_with_logits(
        logits, x.expand_as(logits), reduction="none").sum(-1)
    log_pz = (-0.5 * z**2 - 0.5 * math.log(2 * math.pi)).sum(-1)
    log_qz = Independent(Normal(mu, sigma), 1).log_prob(z)
    return log_px + log_pz - log_qz                                           # (K, B)


# ------------------------------------------------------------------- BetaVAE


def test_beta_vae_with_beta_one_and_no_schedule_trains_exactly_like_vae(vae_and_beta_vae):
    vae, beta_vae = vae_and_beta_vae
    for name, tensor in vae.module_.state_dict().items():
        torch.testing.assert_close(beta_vae.module_.state_dict()[name], tensor, rtol=0,
                                   atol=1e-6, msg=name)
    np.testing.assert_allclose(beta_vae.history_["loss"], vae.history_["loss"], rtol=1e-6)
    np.testing.assert_allclose(beta_vae.history_["kl"], vae.history_["kl"], rtol=1e-5)


def test_kl_schedules_follow_their_formulas():
    linear = BetaVAE(beta=2.0, kl_schedule="linear", warmup_epochs=4)
    assert [linear.kl_weight(t) for t in range(1, 8)] == [0.0, 0.5, 1.0, 1.5, 2.0, 2.0, 2.0]
    cyclical = BetaVAE(beta=3.0, kl_schedule="cyclical", warmup_epochs=3)
    assert [cyclical.kl_weight(t) for t in range(1, 8)] == [0.0, 2.0, 3.0, 0.0, 2.0, 3.0, 0.0]
    assert BetaVAE(beta=3.0, warmup_epochs=3).kl_weight(1) == 3.0


def test_cyclical_schedule_needs_two_epochs_per_cycle(digits):
    with pytest.raises(ValueError, match="warmup_epochs >= 2.*got warmup_epochs=1"):
        BetaVAE(kl_schedule="cyclical", warmup_epochs=1, **SMALL).fit(digits[0][:50])


def test_history_records_beta_kl_per_dimension_and_active_units(vae_and_beta_vae, digits):
    _, model = vae_and_beta_vae
    X = digits[0][:300]
    h = model.history_
    assert all(len(h[key]) == model.n_iter_ for key in ("beta", "active_units", "kl_per_dim"))
    assert h["beta"] == [1.0] * model.n_iter_
    # recomputed from the fitted encoder with the closed-form Gaussian KL
    with torch.no_grad():
        mu, log_var = model.module_.encoder(torch.as_tensor(X)).chunk(2, dim=-1)
    kl = 0.5 * (mu**2 + log_var.exp() - 1 - log_var)                          # (n, k)
    np.testing.assert_allclose(h["kl_per_dim"][-1], kl.mean(0).numpy(), rtol=1e-4, atol=1e-6)
    assert h["active_units"][-1] == float((model.transform(X).var(0) > 0.01).sum())


def test_free_bits_floor_the_batch_mean_kl_of_each_dimension(vae_and_beta_vae, digits):
    _, model = vae_and_beta_vae
    x = torch.as_tensor(digits[0][:200])
    kl_dims = np.array(model.history_["kl_per_dim"][-1])
    floor = float(np.median(kl_dims))
    model.set_params(free_bits=floor)
    try:
        with torch.no_grad():
            out = model._loss(x, None, _noise(0))
            mu, log_var = model.module_.encoder(x).chunk(2, dim=-1)
        batch_kl = (0.5 * (mu**2 + log_var.exp() - 1 - log_var)).mean(0)      # (k,)
        expected = batch_kl.clamp_min(floor).sum()
        torch.testing.assert_close(out.terms["kl_free_bits"], expected, rtol=1e-5, atol=1e-6)
        assert out.terms["kl_free_bits"] > out.terms["kl"]
        # with every dimension under its free bits, the KL term sends no gradient at all
        model.set_params(free_bits=1e3)
        model.module_.zero_grad()
        out = model._loss(x, None, _noise(0))
        out.total.backward()
        with_kl = [p.grad.clone() for p in model.module_.encoder.parameters()]
        model.module_.zero_grad()
        model._loss(x, None, _noise(0)).terms["recon"].backward()
        for g, g_recon in zip(with_kl, model.module_.encoder.parameters()):
            torch.testing.assert_close(g, g_recon.grad)
    finally:
        model.set_params(free_bits=0.0)
        model.module_.zero_grad()
        model.module_.eval()


@pytest.mark.parametrize("make", [
    lambda: BetaVAE(beta=2.0, kl_schedule="cyclical", warmup_epochs=3, **SMALL),
    lambda: VampPriorVAE(n_pseudo_inputs=10, likelihood="bernoulli", **SMALL),
], ids=["BetaVAE-cyclical", "VampPriorVAE"])
def test_resume_is_bit_identical(digits, tmp_path, make):
    X = digits[0][:300]
    full = make().set_params(max_iter=5).fit(X)
    make().set_params(max_iter=2).fit(X, checkpoint_dir=tmp_path)
    resumed = make().set_params(max_iter=5).fit(X, checkpoint_dir=tmp_path, resume=True)
    for name, tensor in full.module_.state_dict().items():
        assert torch.equal(tensor, resumed.module_.state_dict()[name]), name
    assert resumed.history_.get("beta") == full.history_.get("beta")
    assert resumed.history_["loss"] == full.history_["loss"]
    if isinstance(full, BetaVAE):
        h = full.history_
        assert h["beta"] == [full.kl_weight(t) for t in range(1, 6)]
        assert h["beta"] == pytest.approx([0, 4 / 3, 2, 0, 4 / 3])
        # the loss is reported at full beta whatever the schedule used in that epoch
        np.testing.assert_allclose(h["loss"], np.add(h["recon"], 2.0 * np.array(h["kl"])),
                                   rtol=1e-5)


# ---------------------------------------------------------------------- IWAE


def test_iwae_with_one_sample_is_the_elbo_on_the_same_noise(fitted_iwae, digits):
    x = torch.as_tensor(digits[0][:100])
    iwae = fitted_iwae.set_params(n_train_samples=1)
    try:
        with torch.no_grad():
            loss = iwae._loss(x, None, _noise(7)).total
            eps = torch.randn(1, len(x), 2, generator=torch.Generator().manual_seed(7))
            # the same log weights from a VAE that shares the IWAE's networks ...
            vae = aekit.VAE(n_components=2, likelihood="bernoulli")
            vae.module_ = iwae.module_
            q = vae._posterior(x)
            z = q.mean + q.stddev * eps                                       # (1, B, k)
            log_w = vae._decode(z).log_prob(x) + vae._prior().log_prob(z) - q.log_prob(z)
            # ... and written out by hand
            by_hand = _hand_log_weights(iwae, x, eps)
    finally:
        iwae.set_params(n_train_samples=5)
    torch.testing.assert_close(loss, -log_w.mean(), rtol=1e-5, atol=1e-4)
    torch.testing.assert_close(loss, -by_hand.mean(), rtol=1e-5, atol=1e-4)


def test_iwae_one_sample_loss_averages_to_the_analytic_kl_vae_loss(fitted_iwae, digits):
    x = torch.as_tensor(digits[0][:500])
    iwae, iwae_noise = fitted_iwae.set_params(n_train_samples=1), _noise(0)
    vae, vae_noise = aekit.VAE(n_components=2, likelihood="bernoulli"), _noise(1)
    vae.module_ = iwae.module_
    try:
        with torch.no_grad():   # both average 200 x 500 per-row draws: standard errors ~0.005
            iwae_loss = np.mean([float(iwae._loss(x, None, iwae_noise).total) for _ in range(200)])
            vae_loss = np.mean([float(vae._loss(x, None, vae_noise).total) for _ in range(200)])
    finally:
        iwae.set_params(n_train_samples=5)
    assert iwae_loss == pytest.approx(vae_loss, abs=0.05)


def test_iwae_bound_with_more_samples_is_tighter(fitted_iwae, digits_test):
    x = torch.as_tensor(digits_test[0])
    bounds = {}
    try:
        with torch.no_grad():
            for k in (1, 50):
                ctx = _noise(0)
                fitted_iwae.set_params(n_train_samples=k)
                bounds[k] = -np.mean([float(fitted_iwae._loss(x, None, ctx).total)
                                      for _ in range(10)])
    finally:
        fitted_iwae.set_params(n_train_samples=5)
    assert bounds[50] > bounds[1] + 0.1
    assert fitted_iwae.history_["loss"][-1] < fitted_iwae.history_["neg_elbo"][-1]


def test_iwae_likelihood_is_not_worse_than_vae_at_equal_epochs(fitted_iwae, fitted_vae,
                                                               digits_test):
    X = digits_test[0]
    assert fitted_iwae.score(X) > fitted_vae.score(X) - 0.5


def test_iwae_has_no_beta():
    assert "beta" not in IWAE().get_params()
    assert "n_train_samples" in IWAE().get_params()


# ----------------------------------------------------------------------- WAE


@pytest.mark.parametrize("k", [2, 8])
def test_mmd_is_zero_on_average_for_one_distribution_and_positive_for_two(k):
    g = torch.Generator().manual_seed(0)
    same = [float(mmd_imq(torch.randn(50, k, generator=g), torch.randn(50, k, generator=g)))
            for _ in range(200)]
    # unbiased: the mean is 0 up to its standard error (a V-statistic would sit ~0.02 above)
    assert abs(np.mean(same)) < 3 * np.std(same) / math.sqrt(len(same))
    assert min(same) < 0 < max(same)
    shifted = mmd_imq(torch.randn(50, k, generator=g) + 1.0, torch.randn(50, k, generator=g))
    assert float(shifted) > 10 * np.std(same)


def test_mmd_needs_two_rows():
    with pytest.raises(ValueError, match="at least 2 rows.*got 1"):
        mmd_imq(torch.zeros(1, 2), torch.zeros(1, 2))


def test_wae_codes_match_the_prior_and_samples_are_in_range(digits):
    X = digits[0]
    wae = WAE(likelihood="bernoulli", n_components=2, **{**SMALL, "max_iter": 20}).fit(X)
    Z = wae.transform(X)
    np.testing.assert_allclose(Z.mean(0), 0.0, atol=0.25)
    np.testing.assert_allclose(np.cov(Z.T), np.eye(2), atol=0.35)
    assert wae.history_["mmd"][-1] < wae.history_["mmd"][0]
    S = wae.sample(50, random_state=0)
    assert S.shape == (50, 64) and np.all((S >= 0) & (S <= 1))
    z = wae._sample_latent(5000, torch.Generator().manual_seed(0)).numpy()
    np.testing.assert_allclose(z.mean(0), 0.0, atol=0.05)   # N(0, I), not the code Gaussian
    # score_samples is the decoder log-likelihood at the code (as AE), not a density
    p = np.clip(wae.reconstruct(X[:20]).astype(np.float64), 1e-7, 1 - 1e-7)
    bce = -(X[:20] * np.log(p) + (1 - X[:20]) * np.log(1 - p)).sum(1)
    np.testing.assert_allclose(wae.score_samples(X[:20]), -bce, rtol=1e-3)


def test_wae_trains_through_a_last_minibatch_of_one_row(digits):
    wae = WAE(**{**SMALL, "max_iter": 2, "batch_size": 64}).fit(digits[0][:129])
    assert np.all(np.isfinite(wae.history_["loss"])) and np.all(np.isfinite(wae.history_["mmd"]))


# ----------------------------------------------------------------- VampPrior


def test_pseudo_inputs_start_as_training_rows_inside_the_support(digits):
    X = digits[0][:100]
    for likelihood, low, high in (("bernoulli", PSEUDO_INPUT_MARGIN, 1 - PSEUDO_INPUT_MARGIN),
                                  ("gaussian", -np.inf, np.inf)):
        model = VampPriorVAE(n_pseudo_inputs=7, likelihood=likelihood)
        model.module_ = model._build((64,))
        model._pretrain(torch.as_tensor(X), None, _noise(0))
        with torch.no_grad():
            u = model._pseudo_inputs().numpy()                                # (M, D)
        rows = np.clip(X, low, high)
        distance = np.abs(u[:, None, :] - rows[None]).max(-1).min(-1)        # (M,)
        np.testing.assert_allclose(distance, 0.0, atol=1e-5)


def test_vamp_scores_are_finite_and_above_the_elbo(fitted_vamp, digits_test):
    X = digits_test[0]
    ll, elbo = fitted_vamp.score_samples(X), fitted_vamp.elbo(X)
    assert np.all(np.isfinite(ll)) and np.all(np.isfinite(elbo))
    assert ll.mean() > elbo.mean()
    u = fitted_vamp.pseudo_inputs()
    assert u.shape == (50, 64) and np.all((u > 0) & (u < 1))


def test_vamp_importance_sampled_likelihood_matches_integration_on_a_grid(fitted_vamp,
                                                                         digits_test):
    """With k = 2, p(x) = integral of p(x|z) p(z) dz can be summed on a fine grid."""
    X = digits_test[0][:8]
    with torch.no_grad():
        prior = fitted_vamp._prior()
        reach = float(fitted_vamp._sample_latent(20000, torch.Generator()).abs().max()) + 1
        t = torch.linspace(-reach, reach, 300)
        z = torch.cartesian_prod(t, t)                                        # (G, 2)
        log_dz = 2 * math.log(float(t[1] - t[0]))
        assert math.exp(torch.logsumexp(prior.log_prob(z), 0) + log_dz) == pytest.approx(1, 1e-3)
        log_joint = fitted_vamp._decode(z[:, None]).log_prob(torch.as_tensor(X))  # (G, B)
        by_grid = torch.logsumexp(log_joint + prior.log_prob(z)[:, None], 0) + log_dz
    fitted_vamp.set_params(n_importance_samples=2000)
    try:
        np.testing.assert_allclose(fitted_vamp.score_samples(X), by_grid.numpy(), atol=0.05)
    finally:
        fitted_vamp.set_params(n_importance_samples=16)


def test_vamp_likelihood_is_not_worse_than_vae_at_equal_epochs(fitted_vamp, fitted_vae,
                                                               digits_test):
    X = digits_test[0]
    assert fitted_vamp.score(X) > fitted_vae.score(X) - 0.5


def test_vamp_samples_come_from_the_mixture_prior(fitted_vamp):
    z = fitted_vamp._sample_latent(20000, torch.Generator().manual_seed(0))  # (n, k)
    again = fitted_vamp._sample_latent(20000, torch.Generator().manual_seed(0))
    assert torch.equal(z, again)
    with torch.no_grad():
        prior = fitted_vamp._prior()
        np.testing.assert_allclose(z.mean(0).numpy(), prior.mean.numpy(), atol=0.05)
        # a draw is likelier under the mixture than under a wide Gaussian of its spread
        wide = Independent(Normal(z.mean(0), 3 * z.std(0)), 1)
        assert prior.log_prob(z).mean() > wide.log_prob(z).mean()
    S = fitted_vamp.sample(10, random_state=0)
    assert S.shape == (10, 64) and np.all((S >= 0) & (S <= 1))


@pytest.mark.parametrize("name", ["vamp", "beta"])
def test_save_and_load_round_trip(fitted_vamp, vae_and_beta_vae, digits, tmp_path, name):
    model = fitted_vamp if name == "vamp" else vae_and_beta_vae[1]
    path = tmp_path / "model.safetensors"
    model.save(str(path))
    again = aekit.load(str(path))
    np.testing.assert_allclose(again.score_samples(digits[0][:10]),
                               model.score_samples(digits[0][:10]), rtol=1e-6)
    assert again.history_ == model.history_


def test_the_closed_form_kl_is_torchs_kl_against_the_standard_normal(fitted_vae, digits):
    """VAE's KL against its N(0, I) prior in closed form (fewer kernels a step) is torch's
    general Normal-Normal KL, per dimension and per row; a model with its own prior keeps
    torch's."""
    from torch.distributions import kl_divergence

    x = torch.as_tensor(digits[0][:32])
    with torch.no_grad():
        q = fitted_vae._posterior(x)
        prior = fitted_vae._prior()
        torch.testing.assert_close(fitted_vae._kl_dims(q),
                                   kl_divergence(q.base_dist, prior.base_dist))
        torch.testing.assert_close(fitted_vae._kl(q), kl_divergence(q, prior))
    assert fitted_vae._standard_prior()
    assert not VampPriorVAE()._standard_prior()
