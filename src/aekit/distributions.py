"""The likelihood layer: every reconstruction loss in aekit is a ``torch.distributions`` log-prob.

A decoder outputs the parameters of p(x|z); a :class:`Likelihood` turns them into a
distribution over the D features (``Independent`` over the last axis), so ``log_prob`` is
summed over features and the loss is ``-log_prob``. The classic losses fall out:

============================  ==================================  ===========================
name                          distribution                        classic loss it equals
============================  ==================================  ===========================
``bernoulli``                 Bernoulli(logits)                   binary cross-entropy
``gaussian``                  Normal(mu, sigma fixed)             MSE / (2 sigma^2) + const
``gaussian_learned``          Normal(mu, sigma learned, clamped)  sigma-VAE
``laplace``                   Laplace(mu, b fixed)                L1 / b + const
``continuous_bernoulli``      ContinuousBernoulli(logits)         BCE + log normaliser
``categorical``               Categorical over 256 grey levels    per-pixel cross-entropy
============================  ==================================  ===========================

References: Loaiza-Ganem & Cunningham, "The continuous Bernoulli", 2019, arXiv:1907.06845;
Rybkin et al., "Simple and Effective VAE Training with Calibrated Decoders", 2020,
arXiv:2006.13202 (the learned-sigma Gaussian).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor, nn
from torch.distributions import (
    Bernoulli,
    Categorical,
    ContinuousBernoulli,
    Distribution,
    Independent,
    Laplace,
    Normal,
)

from ._registry import Registry

LIKELIHOODS: Registry[type] = Registry("likelihood")


class Likelihood(nn.Module):
    """Base class: maps decoder outputs to p(x|z), checks that data lies in its support.

    Subclasses set ``n_params`` (decoder outputs per feature) and implement
    :meth:`base_distribution`. ``forward(params)`` takes decoder outputs of shape
    ``(..., D * n_params)`` and returns a distribution with event shape ``(D,)``.
    """

    n_params: int = 1
    #: (low, high) of the values the distribution can score; None means unbounded.
    support: tuple[float, float] | None = None
    #: what to suggest when data falls outside the support.
    alternative = "likelihood='gaussian'"

    def __init__(self, n_features: int, scale: float = 1.0) -> None:
        super().__init__()
        self.n_features = n_features
        self.scale = float(scale)

    def base_distribution(self, params: Tensor) -> Distribution:
        """Per-feature distribution from params of shape ``(..., D)`` or ``(..., D, P)``."""
        raise NotImplementedError

    def forward(self, params: Tensor) -> Distribution:
        params = params.float()   # likelihoods stay float32 under mixed precision
        if self.n_params > 1:
            params = params.unflatten(-1, (self.n_features, self.n_params))  # (..., D, P)
        return Independent(self.base_distribution(params), 1)

    def mean(self, p_x: Distribution) -> Tensor:
        """Mean of p(x|z) in data units, shape ``(..., D)``."""
        return p_x.mean

    def check_support(self, X: np.ndarray) -> None:
        """Raise ``ValueError`` if ``X`` has values this likelihood cannot score."""
        if self.support is None or X.size == 0:
            return
        low, high = self.support
        x_min, x_max = float(np.min(X)), float(np.max(X))
        if x_min < low or x_max > high:
            name = getattr(type(self), "_registry_name", type(self).__name__)
            raise ValueError(
                f"likelihood={name!r} models values in [{low:g}, {high:g}], but the data "
                f"ranges over [{x_min:g}, {x_max:g}]; rescale the data to [{low:g}, {high:g}] "
                f"(e.g. MinMaxScaler) or use {self.alternative}"
            )


@LIKELIHOODS.register("bernoulli")
class BernoulliLikelihood(Likelihood):
    """Bernoulli(logits): the binary cross-entropy loss. Grey levels in [0, 1] are accepted
    (the usual practice) but only binary data gives a normalised likelihood; use
    ``continuous_bernoulli`` or ``categorical`` for a proper density of grey levels."""

    support = (0.0, 1.0)

    def base_distribution(self, params: Tensor) -> Distribution:
        return Bernoulli(logits=params, validate_args=False)


@LIKELIHOODS.register("continuous_bernoulli")
class ContinuousBernoulliLikelihood(Likelihood):
    """ContinuousBernoulli(logits): a normalised density on [0, 1]."""

    support = (0.0, 1.0)

    def base_distribution(self, params: Tensor) -> Distribution:
        return ContinuousBernoulli(logits=params, validate_args=False)


@LIKELIHOODS.register("gaussian")
class GaussianLikelihood(Likelihood):
    """Normal(mu, sigma), sigma fixed to ``scale``: MSE / (2 sigma^2) + D log(sigma sqrt(2 pi))."""

    def base_distribution(self, params: Tensor) -> Distribution:
        return Normal(params, self.scale, validate_args=False)


@LIKELIHOODS.register("gaussian_learned")
class LearnedGaussianLikelihood(Likelihood):
    """Normal(mu, sigma) with one learned log-sigma per feature, clamped to
    [log 1e-3, log 10] so a constant feature cannot drive the likelihood to infinity."""

    min_log_scale = math.log(1e-3)
    max_log_scale = math.log(10.0)

    def __init__(self, n_features: int, scale: float = 1.0) -> None:
        super().__init__(n_features, scale)
        self.log_scale = nn.Parameter(torch.full((n_features,), math.log(scale)))

    def base_distribution(self, params: Tensor) -> Distribution:
        log_scale = self.log_scale.clamp(self.min_log_scale, self.max_log_scale)  # (D,)
        return Normal(params, log_scale.exp(), validate_args=False)


@LIKELIHOODS.register("laplace")
class LaplaceLikelihood(Likelihood):
    """Laplace(mu, b) with b fixed to ``scale``: L1 / b + D log(2 b)."""

    def base_distribution(self, params: Tensor) -> Distribution:
        return Laplace(params, self.scale, validate_args=False)


@LIKELIHOODS.register("categorical")
class CategoricalLikelihood(Likelihood):
    """Categorical over 256 grey levels per feature (values in [0, 1] are quantised to
    ``round(255 x)``), as in PixelCNN-style discrete likelihoods."""

    n_params = 256
    support = (0.0, 1.0)
    alternative = "likelihood='gaussian' (or rescale to [0, 1])"

    def base_distribution(self, params: Tensor) -> Distribution:
        return _QuantisedCategorical(logits=params, validate_args=False)

    def mean(self, p_x: Distribution) -> Tensor:
        probs = p_x.base_dist.probs  # (..., D, 256)
        levels = torch.arange(256, device=probs.device, dtype=probs.dtype) / 255.0
        return probs @ levels  # (..., D)


class _QuantisedCategorical(Categorical):
    """A Categorical whose ``log_prob`` takes values in [0, 1] and scores ``round(255 x)``."""

    def log_prob(self, value: Tensor) -> Tensor:
        return super().log_prob((value * 255.0).round().long())


def get_likelihood(name: str, n_features: int, scale: float = 1.0) -> Likelihood:
    """Build the likelihood ``name`` for ``n_features`` features.

    Examples
    --------
    >>> import torch
    >>> lik = get_likelihood("bernoulli", n_features=3)
    >>> p_x = lik(torch.zeros(2, 3))          # decoder logits for 2 rows
    >>> p_x.log_prob(torch.ones(2, 3)).shape  # summed over the 3 features
    torch.Size([2])
    """
    return LIKELIHOODS.get(name, n_features=n_features, scale=scale)


def list_likelihoods() -> list[str]:
    """Names of the registered likelihoods."""
    return LIKELIHOODS.names()


def standard_normal(n_components: int, device: torch.device | str = "cpu") -> Distribution:
    """The N(0, I) prior over ``n_components`` latent dimensions (event shape ``(k,)``)."""
    zeros = torch.zeros(n_components, device=device)
    return Independent(Normal(zeros, torch.ones_like(zeros), validate_args=False), 1)


def diagonal_normal(loc: Tensor, log_var: Tensor) -> Distribution:
    """The Gaussian posterior q(z|x) = N(loc, diag(exp(log_var))), event shape ``(k,)``."""
    return Independent(Normal(loc, (0.5 * log_var).exp(), validate_args=False), 1)
