"""The two-level VAE: its bound and likelihood by hand, its codes, its contract."""

import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch.distributions import Normal

import aekit
from aekit.exceptions import InputError
from aekit.models.hvae import HierarchicalVAE

from .conftest import SMALL

#: conftest's ``fitted_vae`` settings, so the two compare at equal epochs
LIKE_FITTED_VAE = dict(likelihood="bernoulli", n_importance_samples=16,
                       **{**SMALL, "max_iter": 20})


@pytest.fixture(scope="module")
def hvae(digits):
    """z1 and z2 one value each: the likelihood can be integrated on a grid."""
    return HierarchicalVAE(n_components=2, **LIKE_FITTED_VAE).fit(digits[0])


@pytest.fixture(scope="module")
def gated(digits):
    return HierarchicalVAE(n_components=5, architecture="gated",
                           **LIKE_FITTED_VAE).fit(digits[0][:400])


def _gaussian(out):
    mu, log_var = out.chunk(2, dim=-1)
    return Normal(mu, (0.5 * log_var).exp())


def _first_layer(layer, x, z, gated):
    """The joint network's first layer as one matrix product over ``[x, z]``."""
    weight = torch.cat([layer.from_x.weight, layer.from_z.weight], dim=1)     # (H, D + top)
    joint = torch.cat([x.expand(*z.shape[:-1], x.shape[-1]), z], dim=-1)      # (..., D + top)
    pre = joint @ weight.T + layer.from_x.bias
    if gated:
        h, gate = pre.chunk(2, dim=-1)
        return h * torch.sigmoid(gate)
    return torch.relu(pre)


def _hand_top_log_prior(model, z2):
    """log p(z2): N(0, I), or with pseudo-inputs the mixture of their q(z2|u_m), written
    with torch's MixtureSameFamily (broadcast over the components)."""
    if not model.n_pseudo_inputs:
        return (-0.5 * z2**2 - 0.5 * math.log(2 * math.pi)).sum(-1)
    from torch.distributions import Categorical, Independent, MixtureSameFamily

    u = torch.sigmoid(model.module_.pseudo_inputs)                            # (M, D)
    components = Independent(_gaussian(model.module_.encoder(u)), 1)
    uniform = Categorical(logits=torch.zeros(model.n_pseudo_inputs))
    return MixtureSameFamily(uniform, components).log_prob(z2)


def _hand_log_weights(model, x, eps, gated=False):
    """log p(x|z1,z2) + log p(z1|z2) + log p(z2) - log q(z2|x) - log q(z1|x,z2) for a
    bernoulli model, from its networks; ``eps`` is (K, k) for every row or (K, B, k), z1's
    noise first."""
    m = model.module_
    bottom = model.n_components - model._n_top
    eps = eps[:, None, :] if eps.dim() == 2 else eps                          # (K, B or 1, k)
    q2 = _gaussian(m.encoder(x))                                              # (B, top)
    z2 = q2.loc + q2.scale * eps[..., bottom:]                                # (K, B, top)
    q1 = _gaussian(m.bottom_encoder.head(_first_layer(m.bottom_encoder, x, z2, gated)))
    z1 = q1.loc + q1.scale * eps[..., :bottom]                                # (K, B, bottom)
    p1 = _gaussian(m.bottom_prior(z2))
    logits = m.decoder(torch.cat([z1, z2], dim=-1))                           # (K, B, D)
    log_px = -torch.nn.functional.binary_cross_entropy_with_logits(
        logits, x.expand_as(logits), reduction="none").sum(-1)
    log_pz2 = _hand_top_log_prior(model, z2)
    return (log_px + log_pz2 + p1.log_prob(z1).sum(-1) - q2.log_prob(z2).sum(-1)
            - q1.log_prob(z1).sum(-1))                                        # (K, B)


@pytest.fixture(scope="module")
def vamp(digits):
    """A VampPrior of 10 pseudo-inputs on z2."""
    return HierarchicalVAE(n_components=5, architecture="gated", n_pseudo_inputs=10,
                           **LIKE_FITTED_VAE).fit(digits[0][:400])


@pytest.mark.parametrize("which", ["relu", "gated", "vamp"])
def test_log_weights_are_the_hand_written_joint_over_the_posterior(hvae, gated, vamp, digits,
                                                                   which):
    model = {"relu": hvae, "gated": gated, "vamp": vamp}[which]
    x = torch.as_tensor(digits[0][:20])
    eps = torch.randn(7, model.n_components, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        np.testing.assert_allclose(model._log_weights(x, eps).numpy(),
                                   _hand_log_weights(model, x, eps, which != "relu").numpy(),
                                   rtol=1e-5, atol=1e-4)


def test_the_likelihood_matches_integration_over_both_codes_on_a_grid(hvae, digits_test):
    """p(x) = the integral of p(x|z1,z2) p(z1|z2) N(z2; 0, 1) over a fine (z1, z2) grid."""
    X = torch.as_tensor(digits_test[0][:8])
    with torch.no_grad():
        z = hvae._sample_latent(20000, torch.Generator().manual_seed(0))
        reach = float(z.abs().max()) + 1
        t = torch.linspace(-reach, reach, 300)
        grid = torch.cartesian_prod(t, t)                                     # (G, 2): z1, z2
        z1, z2 = grid[:, :1], grid[:, 1:]
        log_prior = (Normal(0.0, 1.0).log_prob(z2).sum(-1)
                     + hvae._bottom_prior(z2).log_prob(z1))                   # (G,)
        log_dz = 2 * math.log(float(t[1] - t[0]))
        assert math.exp(torch.logsumexp(log_prior, 0) + log_dz) == pytest.approx(1, abs=2e-3)
        log_joint = hvae._decode(grid[:, None]).log_prob(X)                   # (G, B)
        by_grid = torch.logsumexp(log_joint + log_prior[:, None], 0) + log_dz
    hvae.set_params(n_importance_samples=2000)
    try:
        np.testing.assert_allclose(hvae.score_samples(X.numpy()), by_grid.numpy(), atol=0.05)
    finally:
        hvae.set_params(n_importance_samples=16)


def test_one_importance_sample_is_the_elbo_and_more_tighten_the_bound(hvae, digits_test):
    X = digits_test[0][:200]
    hvae.set_params(n_importance_samples=1)
    try:
        np.testing.assert_allclose(hvae.score_samples(X), hvae.elbo(X), rtol=1e-5, atol=1e-4)
        lls = []
        for k in (1, 10, 200):
            hvae.set_params(n_importance_samples=k)
            lls.append(hvae.score(X))
    finally:
        hvae.set_params(n_importance_samples=16)
    assert lls[0] < lls[1] < lls[2]


def test_the_loss_terms_are_the_closed_form_kls_at_the_drawn_codes(gated, digits):
    model = gated
    x = torch.as_tensor(digits[0][:64])
    eps = torch.randn(64, model.n_components, generator=torch.Generator().manual_seed(2))
    ctx = SimpleNamespace(randn=lambda *shape: eps.reshape(shape))
    with torch.no_grad():
        recon, kl_dims, extra = model._recon_and_kl_dims(x, ctx)
        log_w = _hand_log_weights(model, x, eps[None], gated=True)[0]        # each row's draw
        m, bottom = model.module_, model.n_components - model._n_top
        q2 = _gaussian(m.encoder(x))
        z2 = q2.loc + q2.scale * eps[:, bottom:]
        q1 = _gaussian(m.bottom_encoder(x, z2))
        p1 = _gaussian(m.bottom_prior(z2))
        # a Monte Carlo check of the closed-form KL(q1 || p1) at each row's drawn z2
        draws = q1.sample((20000,))
        kl_mc = (q1.log_prob(draws) - p1.log_prob(draws)).mean(0)            # (B, bottom)
    assert kl_dims.shape == (64, model.n_components)
    np.testing.assert_allclose(kl_dims[:, :bottom].numpy(), kl_mc.numpy(), atol=0.05, rtol=0.05)
    kl_top = 0.5 * (q2.loc**2 + q2.scale**2 - 1) - q2.scale.log()
    np.testing.assert_allclose(kl_dims[:, bottom:].numpy(), kl_top.numpy(), rtol=1e-5, atol=1e-6)
    assert float(extra["kl_top"]) == pytest.approx(float(kl_top.sum(-1).mean()), rel=1e-5)
    # the reconstruction term is the one of the log-weight at the same draw: log w = -recon
    # - [log q(z2|x) - log N(z2; 0, I)] - [log q(z1|x,z2) - log p(z1|z2)]
    z1 = q1.loc + q1.scale * eps[:, :bottom]
    log_ratio = (q2.log_prob(z2) - Normal(0.0, 1.0).log_prob(z2)).sum(-1) + (
        q1.log_prob(z1) - p1.log_prob(z1)).sum(-1)
    np.testing.assert_allclose((-recon - log_ratio).numpy(), log_w.numpy(), rtol=1e-5,
                               atol=1e-3)


def test_under_a_vampprior_the_upper_kl_is_the_estimate_at_the_drawn_code(vamp, digits):
    """The loss's upper KL is log q(z2|x) - log p(z2) at the row's own z2 (one column: it
    has no terms per dimension), and with the reconstruction term it makes up the
    log-weight of that draw."""
    x = torch.as_tensor(digits[0][:64])
    eps = torch.randn(64, vamp.n_components, generator=torch.Generator().manual_seed(2))
    ctx = SimpleNamespace(randn=lambda *shape: eps.reshape(shape))
    with torch.no_grad():
        recon, kl_dims, extra = vamp._recon_and_kl_dims(x, ctx)
        log_w = _hand_log_weights(vamp, x, eps[None], gated=True)[0]
        bottom = vamp.n_components - vamp._n_top
        q2 = _gaussian(vamp.module_.encoder(x))
        z2 = q2.loc + q2.scale * eps[:, bottom:]
        kl_top = q2.log_prob(z2).sum(-1) - _hand_top_log_prior(vamp, z2)
        q1 = _gaussian(vamp.module_.bottom_encoder(x, z2))
        p1 = _gaussian(vamp.module_.bottom_prior(z2))
        z1 = q1.loc + q1.scale * eps[:, :bottom]
        bottom_ratio = (q1.log_prob(z1) - p1.log_prob(z1)).sum(-1)
    assert kl_dims.shape == (64, bottom + 1)
    np.testing.assert_allclose(kl_dims[:, -1].numpy(), kl_top.numpy(), rtol=1e-4, atol=1e-3)
    assert float(extra["kl_top"]) == pytest.approx(float(kl_top.mean()), rel=1e-4)
    # log w = -recon - [log q(z2|x) - log p(z2)] - [log q(z1|x,z2) - log p(z1|z2)]
    np.testing.assert_allclose((-recon - kl_dims[:, -1] - bottom_ratio).numpy(),
                               log_w.numpy(), rtol=1e-5, atol=1e-3)


def test_samples_under_a_vampprior_draw_z2_from_a_pseudo_inputs_posterior(vamp):
    with torch.no_grad():
        z = vamp._sample_latent(40000, torch.Generator().manual_seed(0))
        components = _gaussian(vamp.module_.encoder(torch.sigmoid(vamp.module_.pseudo_inputs)))
    z2 = z[:, vamp.n_components - vamp._n_top:]
    # the mixture's mean and variance: the components' average, and the law of total
    # variance
    mean = components.loc.mean(0)
    var = (components.scale**2).mean(0) + components.loc.var(0, correction=0)
    np.testing.assert_allclose(z2.mean(0).numpy(), mean.numpy(), atol=0.03)
    np.testing.assert_allclose(z2.var(0).numpy(), var.numpy(), rtol=0.05, atol=1e-3)
    S = vamp.sample(10, random_state=0)
    assert S.shape == (10, 64)
    np.testing.assert_array_equal(S, vamp.sample(10, random_state=0))


def test_a_vampprior_model_survives_save_and_load_and_scores_its_own_rows(vamp, digits,
                                                                         tmp_path):
    X = digits[0][:400]
    vamp.save(str(tmp_path / "vamp.aekit"))
    loaded = aekit.load(str(tmp_path / "vamp.aekit"))
    assert loaded.n_pseudo_inputs == 10
    np.testing.assert_allclose(loaded.score_samples(X[:10]), vamp.score_samples(X[:10]),
                               rtol=1e-6)
    assert loaded.score(X) > vamp.elbo(X).mean()        # the bound is below the estimate


def test_a_model_with_the_normal_prior_trains_on_with_a_vampprior(digits, monkeypatch):
    """warm_start adds the pseudo-inputs: every network carries, the pseudo-inputs start as
    training rows (as a new fit starts them), and the fit goes on from the fitted model."""
    X = digits[0][:400]
    params = dict(n_components=4, likelihood="bernoulli", **{**SMALL, "max_iter": 6})
    model = HierarchicalVAE(**params).fit(X)
    before = {k: v.clone() for k, v in model._warm_state().items()}
    seen = {}
    real = aekit.training.loop.fit_loop

    def loop_entry(est, *args, **kwargs):
        seen.update({k: v.clone() for k, v in est.module_.state_dict().items()})
        return real(est, *args, **kwargs)

    monkeypatch.setattr(aekit.training.loop, "fit_loop", loop_entry)
    model.set_params(warm_start=True, n_pseudo_inputs=8, max_iter=2).fit(X)
    for key, value in before.items():
        assert torch.equal(seen[key], value), key
    rows = torch.sigmoid(seen["pseudo_inputs"])                               # (8, 64)
    clipped = torch.as_tensor(X).clamp(0.01, 0.99)
    nearest = (clipped[:, None] - rows).abs().amax(-1).amin(0)               # (8,)
    assert float(nearest.max()) < 1e-5                                       # training rows
    cold = HierarchicalVAE(**{**params, "n_pseudo_inputs": 8, "max_iter": 2}).fit(X)
    assert model.history_["loss"][0] < cold.history_["loss"][0]


def test_codes_are_the_lower_then_the_upper_posterior_mean(gated, digits):
    X = digits[0][:30]
    codes = gated.transform(X)
    assert codes.shape == (30, 5)
    x = torch.as_tensor(X)
    with torch.no_grad():
        m = gated.module_
        z2 = _gaussian(m.encoder(x)).loc
        z1 = _gaussian(m.bottom_encoder(x, z2)).loc
    np.testing.assert_allclose(codes, torch.cat([z1, z2], -1).numpy(), rtol=1e-5, atol=1e-6)
    assert gated.inverse_transform(codes).shape == (30, 64)


def test_samples_draw_the_lower_code_from_its_learned_prior(gated):
    with torch.no_grad():
        z = gated._sample_latent(20000, torch.Generator().manual_seed(0))    # (n, 5): z1, z2
        assert torch.equal(z, gated._sample_latent(20000, torch.Generator().manual_seed(0)))
    bottom = gated.n_components - gated._n_top
    z1, z2 = z[:, :bottom], z[:, bottom:]
    np.testing.assert_allclose(z2.mean(0).numpy(), 0, atol=0.03)
    np.testing.assert_allclose(z2.std(0).numpy(), 1, atol=0.03)
    with torch.no_grad():
        p1 = gated._bottom_prior(z2)
        # standardised by p(z1|z2), the draws are N(0, 1)
        u = (z1 - p1.mean) / p1.stddev
    np.testing.assert_allclose(u.mean(0).numpy(), 0, atol=0.03)
    np.testing.assert_allclose(u.std(0).numpy(), 1, atol=0.03)
    S = gated.sample(10, random_state=0)
    assert S.shape == (10, 64) and np.all((S >= 0) & (S <= 1))
    np.testing.assert_array_equal(S, gated.sample(10, random_state=0))


def test_the_code_splits_as_asked():
    assert (HierarchicalVAE(n_components=5)._n_top, HierarchicalVAE(n_components=5)._n_bottom
            ) == (2, 3)
    assert HierarchicalVAE(n_components=5, n_top_components=4)._n_bottom == 1


def test_k_training_samples_give_the_importance_weighted_bound_of_both_codes(gated, digits):
    """The loss with n_train_samples=K is minus log (1/K) sum_k w_k of the hand-written
    log-weights at the drawn noise, averaged over rows."""
    model = HierarchicalVAE(**{**gated.get_params(), "n_train_samples": 7})
    model.__dict__.update({k: v for k, v in vars(gated).items() if k.endswith("_")})
    x = torch.as_tensor(digits[0][:32])
    eps = torch.randn(7, 32, model.n_components, generator=torch.Generator().manual_seed(3))
    ctx = SimpleNamespace(randn=lambda *shape: eps.reshape(shape), epoch=1)
    with torch.no_grad():
        terms = model._loss(x, None, ctx)
        log_w = _hand_log_weights(model, x, eps, gated=True)                 # (K, B)
    bound = torch.logsumexp(log_w, 0) - math.log(7)
    assert float(terms.total) == pytest.approx(float(-bound.mean()), rel=1e-5)
    assert float(terms.terms["neg_elbo"]) == pytest.approx(float(-log_w.mean()), rel=1e-5)
    assert float(terms.total) <= float(terms.terms["neg_elbo"])


def test_an_elbo_fit_trains_on_with_the_weighted_bound(digits):
    X = digits[0][:400]
    params = dict(n_components=4, likelihood="bernoulli", **SMALL)
    model = HierarchicalVAE(kl_schedule="linear", warmup_epochs=3, **params).fit(X)
    elbo = model.elbo(X[:100]).mean()
    model.set_params(warm_start=True, n_train_samples=5, kl_schedule="constant", max_iter=3)
    model.fit(X)
    assert model.n_iter_ == 3 and "neg_elbo" in model.history_
    assert all(a <= b for a, b in zip(model.history_["loss"], model.history_["neg_elbo"]))
    assert np.isfinite(model.score_samples(X[:20])).all()
    # trained on, not from scratch
    cold = HierarchicalVAE(n_train_samples=5, **{**params, "max_iter": 3}).fit(X)
    assert model.history_["loss"][0] < cold.history_["loss"][0]
    assert model.elbo(X[:100]).mean() > elbo - 1.0


@pytest.mark.parametrize("params, message", [
    (dict(n_components=1), "n_components >= 2"),
    (dict(n_components=4, n_top_components=4), "no room for the lower code"),
    (dict(n_components=4, n_train_samples=5, beta=0.5), r"beta=0.5 cannot apply"),
    (dict(n_components=4, n_train_samples=5, kl_schedule="linear", free_bits=0.1),
     r"kl_schedule='linear', free_bits=0.1 cannot apply.*warm_start=True"),
    (dict(n_components=4, n_pseudo_inputs=5, free_bits=0.1), r"free_bits=0.1 needs a KL term"),
])
def test_a_code_without_two_layers_is_refused(digits, params, message):
    with pytest.raises(InputError, match=message):
        HierarchicalVAE(**params, **SMALL).fit(digits[0][:100])


def test_fits_are_reproducible_and_survive_save_and_load(gated, digits, tmp_path):
    X = digits[0][:400]
    again = HierarchicalVAE(n_components=5, architecture="gated", **LIKE_FITTED_VAE).fit(X)
    for name, tensor in gated.module_.state_dict().items():
        assert torch.equal(tensor, again.module_.state_dict()[name]), name
    path = tmp_path / "hvae.safetensors"
    gated.save(str(path))
    loaded = aekit.load(str(path))
    np.testing.assert_allclose(loaded.score_samples(X[:10]), gated.score_samples(X[:10]),
                               rtol=1e-6)
    np.testing.assert_allclose(loaded.transform(X[:10]), gated.transform(X[:10]), rtol=1e-6)
    assert loaded.history_ == gated.history_


def test_history_logs_both_kl_terms_and_their_sum(gated):
    h = gated.history_
    np.testing.assert_allclose(np.add(h["kl_top"], h["kl_bottom"]), h["kl"], rtol=1e-5)
    assert min(h["kl_bottom"]) > 0 and min(h["kl_top"]) > 0
    np.testing.assert_allclose(h["loss"], np.add(h["recon"], h["kl"]), rtol=1e-5)


def test_history_counts_active_units_over_both_layers(gated, digits):
    codes = gated.transform(digits[0][:400])                                 # (400, 5)
    expected = int((codes.var(0) > aekit.evaluation.ACTIVE_UNIT_THRESHOLD).sum())
    assert len(gated.history_["active_units"]) == gated.n_iter_
    assert gated.history_["active_units"][-1] == expected


def test_a_collapsed_posterior_warns_as_the_vaes_does(digits):
    from sklearn.exceptions import ConvergenceWarning

    with pytest.warns(ConvergenceWarning, match="every latent unit is inactive"):
        model = HierarchicalVAE(n_components=4, beta=500.0, **{**LIKE_FITTED_VAE,
                                                                "max_iter": 8})
        model.fit(digits[0][:300])
    assert model.history_["active_units"][-1] == 0


def test_it_learns_more_than_independent_pixels_and_keeps_up_with_the_vae(digits,
                                                                          digits_test):
    """Held-out log p(x) beats the best model with independent pixels (each pixel its own
    Bernoulli at its training mean: what a collapsed code gives), and is not below the
    one-level VAE's at equal epochs (measured: -24.95 against -25.08 and -27.20)."""
    X, X_test = digits[0], digits_test[0]
    params = dict(LIKE_FITTED_VAE, n_components=4, max_iter=60)
    model = HierarchicalVAE(**params).fit(X)
    p = X.mean(0).clip(1e-3, 1 - 1e-3)
    independent = (X_test * np.log(p) + (1 - X_test) * np.log(1 - p)).sum(1).mean()
    score = model.score(X_test)
    assert score > independent + 1.5
    assert score > aekit.VAE(**params).fit(X).score(X_test) - 0.5


def test_rows_get_the_same_codes_and_scores_in_any_batch_and_order(gated, digits):
    """What scikit-learn's sample-order and subset checks ask (they run at n_components=1,
    which this model refuses)."""
    X = digits[0][:50]
    order = np.random.default_rng(0).permutation(50)
    for method in (gated.transform, gated.score_samples, gated.elbo):
        whole = method(X)
        np.testing.assert_allclose(method(X[order]), whole[order], rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(method(X[10:20]), whole[10:20], rtol=1e-5, atol=1e-5)


def test_a_users_encoder_gives_the_upper_posterior(digits):
    X = digits[0][:200]
    model = HierarchicalVAE(n_components=6, n_top_components=2,
                            encoder=torch.nn.Sequential(torch.nn.Linear(64, 24), torch.nn.Tanh(),
                                                        torch.nn.Linear(24, 4)),
                            **{**SMALL, "max_iter": 2}).fit(X)
    assert any(isinstance(m, torch.nn.Tanh) for m in model.module_.encoder.modules())
    assert model.transform(X[:5]).shape == (5, 6)
    with pytest.raises(InputError, match="q\\(z2\\|x\\), 2 x n_top_components values"):
        HierarchicalVAE(n_components=6, n_top_components=2,
                        encoder=torch.nn.Linear(64, 6), **SMALL).fit(X)


def test_a_table_with_categories_and_holes_trains_imputes_and_synthesises():
    from .test_mixed import people

    frame = people()
    model = HierarchicalVAE(n_components=4, likelihood="mixed",
                            **{**SMALL, "max_iter": 3}).fit(frame)
    assert np.isfinite(model.score_samples(frame)).all()
    filled = model.impute(frame)
    assert not filled.isna().any().any()
    observed = frame.notna()
    assert (filled[observed] == frame[observed]).sum().sum() == observed.sum().sum()
    synthetic = model.sample(20, random_state=0)
    assert list(synthetic.columns) == list(frame.columns) and len(synthetic) == 20


def test_a_table_with_categories_is_refused_a_vampprior():
    from .test_mixed import people

    with pytest.raises(InputError, match="pseudo-inputs are learned continuous rows"):
        HierarchicalVAE(n_components=4, likelihood="mixed", n_pseudo_inputs=5,
                        **SMALL).fit(people())
