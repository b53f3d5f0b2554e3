"""The likelihood layer against the closed forms of the classic losses."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch.distributions import kl_divergence

from aekit.distributions import (
    diagonal_normal,
    get_likelihood,
    list_likelihoods,
    normal_mixture_log_prob,
    standard_normal,
)

D = 6


@pytest.fixture
def xy():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(4, D, generator=g)                 # (B, D) in [0, 1]
    params = torch.randn(4, D, generator=g)           # (B, D) decoder outputs
    return x, params


def test_all_documented_likelihoods_are_registered():
    assert set(list_likelihoods()) >= {"bernoulli", "gaussian", "gaussian_learned", "laplace",
                                       "continuous_bernoulli", "categorical"}


def test_gaussian_is_mse_plus_constant(xy):
    x, mu = xy
    sigma = 0.5
    ll = get_likelihood("gaussian", D, scale=sigma)(mu).log_prob(x)          # (B,)
    sq = ((x - mu) ** 2).sum(-1)
    expected = -sq / (2 * sigma**2) - D * math.log(sigma * math.sqrt(2 * math.pi))
    torch.testing.assert_close(ll, expected)


def test_bernoulli_is_binary_cross_entropy(xy):
    x, logits = xy
    ll = get_likelihood("bernoulli", D)(logits).log_prob(x)
    bce = F.binary_cross_entropy_with_logits(logits, x, reduction="none").sum(-1)
    torch.testing.assert_close(ll, -bce)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_bernoulli_log_prob_matches_torch_at_any_logit(dtype):
    """The two-pass form x l - softplus(l) against torch's binary cross-entropy, in value
    and gradient, over logits from -200 to 200, binary and grey targets, and with the
    target broadcast over a leading axis of importance samples (K, B, D) as scoring does."""
    g = torch.Generator().manual_seed(1)
    logits = torch.cat([torch.linspace(-200, 200, 401), torch.randn(399, generator=g) * 8])
    logits = logits.to(dtype).reshape(2, 4, 100).requires_grad_(True)        # (K, B, D)
    x = torch.cat([torch.randint(0, 2, (4, 50), generator=g).to(dtype),
                   torch.rand(4, 50, generator=g, dtype=dtype)], dim=1)      # (B, D)
    lik = get_likelihood("bernoulli", 100)
    ours = lik(logits).log_prob(x)                                         # (K, B)
    (grad_ours,) = torch.autograd.grad(ours.sum(), logits)
    with torch.inference_mode():                                           # as scoring runs
        scored = lik(logits.detach()).log_prob(x)
    reference = -F.binary_cross_entropy_with_logits(
        logits, x.expand_as(logits), reduction="none").sum(-1)
    (grad_ref,) = torch.autograd.grad(reference.sum(), logits)
    assert ours.shape == scored.shape == (2, 4)
    torch.testing.assert_close(ours, reference, rtol=0, atol=1e-4)
    torch.testing.assert_close(scored, reference.detach(), rtol=0, atol=1e-4)
    torch.testing.assert_close(grad_ours, grad_ref, rtol=0, atol=1e-6)


def test_laplace_is_l1_plus_constant(xy):
    x, mu = xy
    b = 2.0
    ll = get_likelihood("laplace", D, scale=b)(mu).log_prob(x)
    torch.testing.assert_close(ll, -(x - mu).abs().sum(-1) / b - D * math.log(2 * b))


def test_continuous_bernoulli_adds_its_normaliser(xy):
    x, logits = xy
    lam = torch.sigmoid(logits)
    log_c = torch.log(2 * torch.atanh(1 - 2 * lam) / (1 - 2 * lam))    # Loaiza-Ganem 2019, eq. 7
    bce = F.binary_cross_entropy_with_logits(logits, x, reduction="none")
    ll = get_likelihood("continuous_bernoulli", D)(logits).log_prob(x)
    torch.testing.assert_close(ll, (-bce + log_c).sum(-1), rtol=1e-4, atol=1e-4)


def test_categorical_scores_quantised_grey_levels():
    lik = get_likelihood("categorical", D)
    logits = torch.zeros(3, D * 256)                     # uniform over 256 levels
    p_x = lik(logits)
    x = torch.rand(3, D)
    torch.testing.assert_close(p_x.log_prob(x), torch.full((3,), -D * math.log(256)))
    assert torch.allclose(lik.mean(p_x), torch.full((3, D), 0.5))
    # a decoder that puts all mass on level 255 * x scores x at ~0 nats
    x = torch.tensor([[0.0, 1.0, 0.5, 0.2, 0.8, 1 / 255]])
    peaked = torch.full((1, D, 256), -1e4)
    peaked[0, torch.arange(D), (x[0] * 255).round().long()] = 0.0
    assert lik(peaked.flatten(1)).log_prob(x).abs().item() < 1e-3


def test_learned_gaussian_learns_scale_and_is_clamped():
    lik = get_likelihood("gaussian_learned", D)
    x, mu = torch.zeros(1, D), torch.zeros(1, D)
    (-lik(mu).log_prob(x).sum()).backward()
    assert lik.log_scale.grad is not None and torch.all(lik.log_scale.grad > 0)
    with torch.no_grad():
        lik.log_scale.fill_(-100.0)
    ll = lik(mu).log_prob(x)
    bound = D * (-math.log(1e-3) - 0.5 * math.log(2 * math.pi))
    torch.testing.assert_close(ll, torch.tensor([bound]))


def test_kl_matches_closed_form():
    g = torch.Generator().manual_seed(1)
    mu, log_var = torch.randn(5, 3, generator=g), torch.randn(5, 3, generator=g)
    kl = kl_divergence(diagonal_normal(mu, log_var), standard_normal(3))
    expected = 0.5 * (mu**2 + log_var.exp() - 1 - log_var).sum(-1)
    torch.testing.assert_close(kl, expected)


@pytest.mark.parametrize("name", ["bernoulli", "continuous_bernoulli", "categorical"])
def test_unit_interval_likelihoods_refuse_other_data(name):
    lik = get_likelihood(name, 2)
    lik.check_support(np.array([[0.0, 1.0]]))
    with pytest.raises(ValueError, match=r"ranges over \[-0.5, 1\].*gaussian"):
        lik.check_support(np.array([[-0.5, 1.0]]))


def test_real_valued_likelihoods_accept_any_finite_data():
    for name in ("gaussian", "gaussian_learned", "laplace"):
        get_likelihood(name, 2).check_support(np.array([[-1e6, 1e6]]))


def test_unknown_likelihood_lists_known_ones():
    with pytest.raises(ValueError, match="known likelihoods: .*bernoulli"):
        get_likelihood("poisson", 3)


def test_log_mean_exp_of_a_row_does_not_depend_on_the_rows_beside_it():
    """The importance-sampled log p(x) of a row is the same bits alone, in a batch or in
    another chunk (a reduction over a leading axis rounds rows by their position: before,
    5 of these 1001 rows differed alone by an ulp, and a sharded score differed from one
    process's)."""
    from aekit.distributions import log_mean_exp

    g = torch.Generator().manual_seed(0)
    log_w = torch.randn(200, 1001, generator=g) * 30                     # (K, B)
    whole = log_mean_exp(log_w, dim=0)
    alone = torch.stack([log_mean_exp(log_w[:, i:i + 1], dim=0)[0] for i in range(1001)])
    split = torch.cat([log_mean_exp(log_w[:, :501], dim=0), log_mean_exp(log_w[:, 501:], dim=0)])
    assert torch.equal(whole, alone) and torch.equal(whole, split)
    torch.testing.assert_close(whole, (log_w.double().exp().mean(0).log()).float(),
                               rtol=1e-6, atol=1e-4)


def test_the_expanded_mixture_density_is_the_broadcast_one_at_narrow_and_far_components():
    """normal_mixture_log_prob against torch's MixtureSameFamily, with components from
    0.02 to 5 wide and points inside and far outside them (float64 reference)."""
    from torch.distributions import Categorical, Independent, MixtureSameFamily, Normal

    g = torch.Generator().manual_seed(0)
    loc = 3 * torch.randn(40, 5, generator=g, dtype=torch.float64)
    scale = torch.exp(torch.empty(40, 5, dtype=torch.float64).uniform_(
        math.log(0.02), math.log(5), generator=g))
    near = loc[torch.randint(40, (50,), generator=g)] + 0.05 * torch.randn(
        50, 5, generator=g, dtype=torch.float64)
    z = torch.cat([near, 10 * torch.randn(50, 5, generator=g, dtype=torch.float64)])
    mixture = MixtureSameFamily(Categorical(logits=torch.zeros(40, dtype=torch.float64)),
                                Independent(Normal(loc, scale), 1))
    expected = mixture.log_prob(z)                                           # (100,)
    got = normal_mixture_log_prob(z.float().reshape(4, 25, 5), loc.float(), scale.float())
    assert got.shape == (4, 25)
    np.testing.assert_allclose(got.reshape(-1).double().numpy(), expected.numpy(),
                               rtol=1e-4, atol=1e-2)
