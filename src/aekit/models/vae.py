"""The variational autoencoder.

Kingma & Welling, "Auto-Encoding Variational Bayes", 2013, arXiv:1312.6114; ``beta``
as in Higgins et al., "beta-VAE", ICLR 2017. The loss is the negative ELBO,
``-log p(x|z) + beta * KL(q(z|x) || N(0, I))``, with one reparameterised draw per row;
``score_samples`` is the importance-sampled log-likelihood with the posterior as proposal
(Burda et al., 2015, arXiv:1509.00519).
"""

from __future__ import annotations

from numbers import Integral, Real

import torch
from sklearn.utils._param_validation import Interval
from torch import Tensor, nn
from torch.distributions import Distribution, Independent, Normal, kl_divergence

from aekit._registry import register
from aekit.distributions import diagonal_normal, log_mean_exp, standard_normal_kl
from aekit.estimator import BaseAutoencoder
from aekit.training import FitContext, LossTerms

#: log-variance of q(z|x) is clamped to this range so exp() stays finite.
LOG_VAR_RANGE = (-15.0, 15.0)


@register("vae")
class VAE(BaseAutoencoder):
    """Variational autoencoder with a Gaussian posterior and an N(0, I) prior.

    Parameters
    ----------
    n_components : int, default=2
    beta : float, default=1.0
        Weight of the KL term (1 is the ELBO; see BetaVAE for schedules).
    n_importance_samples : int, default=100
        K, the posterior draws per row used by ``score_samples`` (and by ``elbo`` to
        average the reconstruction term). The draws are common random numbers: the same
        for every row, so a row scores the same alone or in a batch.
    **kwargs
        The parameters shared by every model; see :class:`aekit.estimator.BaseAutoencoder`.

    Attributes
    ----------
    module_ : torch.nn.ModuleDict
        ``encoder`` (to 2k outputs: mean and log-variance), ``decoder``, ``likelihood``.
    history_ : dict of str to list of float
        Per-epoch ``loss`` (negative ELBO, nats per example), ``recon``, ``kl``, ``time``,
        and ``val_*`` versions with early stopping.
    n_iter_ : int
    input_shape_ : tuple of int

    Examples
    --------
    >>> import aekit
    >>> X, _ = aekit.datasets.load("digits")
    >>> vae = aekit.VAE(likelihood="bernoulli", max_iter=2, random_state=0).fit(X)
    >>> vae.score_samples(X[:3]).shape
    (3,)
    """

    capabilities = BaseAutoencoder.capabilities.but(posterior=True, importance_weights=True)

    _parameter_constraints = {
        **BaseAutoencoder._parameter_constraints,
        "beta": [Interval(Real, 0, None, closed="left")],
        "n_importance_samples": [Interval(Integral, 1, None, closed="left")],
    }

    def __init__(self, n_components=2, *, beta=1.0, n_importance_samples=100, **kwargs):
        super().__init__(n_components, **kwargs)
        self.beta = beta
        self.n_importance_samples = n_importance_samples

    @property
    def _encoder_outputs(self) -> int:
        return 2 * self.n_components

    _encoder_outputs_meaning = ("the mean and log-variance of q(z|x), 2 x n_components "
                                "values")

    def _build(self, input_shape: tuple[int, ...]) -> nn.Module:
        module = super()._build(input_shape)
        module.register_buffer("prior_loc", torch.zeros(self.n_components))
        module.register_buffer("prior_scale", torch.ones(self.n_components))
        return module

    @staticmethod
    def _gaussian(out: Tensor) -> Distribution:
        """The diagonal Gaussian of a network's outputs ``(..., 2k)``: means, then
        log-variances (clamped to ``LOG_VAR_RANGE``)."""
        loc, log_var = out.float().chunk(2, dim=-1)
        return diagonal_normal(loc, log_var.clamp(*LOG_VAR_RANGE))

    def _posterior(self, x: Tensor) -> Distribution:
        return self._gaussian(self.module_.encoder(self._standardize(x)))

    def _prior(self) -> Distribution:
        return Independent(Normal(self.module_.prior_loc, self.module_.prior_scale,
                                  validate_args=False), 1)

    def _encode(self, x: Tensor) -> Tensor:
        return self._posterior(x).mean                                      # (B, k)

    def _standard_prior(self) -> bool:
        """Whether the prior is this class's N(0, I) (a subclass may bring its own)."""
        return type(self)._prior is VAE._prior

    def _kl_dims(self, q: Distribution) -> Tensor:
        """KL(q(z|x) || p(z)) per latent dimension, ``(B, k)``, for a factorised prior: in
        closed form against N(0, I) (:func:`~aekit.distributions.standard_normal_kl`,
        about half the operations of torch's general KL: fewer kernels a step on a GPU)."""
        if self._standard_prior():
            return standard_normal_kl(q.base_dist)
        return kl_divergence(q.base_dist, self._prior().base_dist)

    def _kl(self, q: Distribution) -> Tensor:
        """KL(q(z|x) || p(z)) per row, ``(B,)``."""
        if self._standard_prior():
            return standard_normal_kl(q.base_dist).sum(-1)
        return kl_divergence(q, self._prior())

    def _loss(self, x: Tensor, y: Tensor | None, ctx: FitContext) -> LossTerms:
        q = self._posterior(x)                                              # (B, k)
        loc, scale = q.base_dist.loc, q.base_dist.scale
        z = loc + scale * ctx.randn(*loc.shape)                           # (B, k)
        recon = -self._decode(z).log_prob(x)                                # (B,)
        kl = self._kl(q)                                                    # (B,)
        total = (recon + self.beta * kl).mean()
        return LossTerms(total, {"recon": recon.mean(), "kl": kl.mean()})

    @staticmethod
    def _reparameterize(q: Distribution, eps: Tensor) -> Tensor:
        """z = mu + sigma * eps for q(z|x) of batch (B,): eps (K, k) is shared by all rows
        (common random numbers), eps (K, B, k) is per row; returns (K, B, k)."""
        if eps.dim() == 2:
            eps = eps[:, None, :]
        return q.base_dist.loc + q.base_dist.scale * eps

    def _log_weights(self, x: Tensor, eps: Tensor) -> Tensor:
        """log p(x, z_k) - log q(z_k | x) for z_k = mu + sigma * eps_k: shape (K, B)."""
        q = self._posterior(x)                                              # (B, k)
        z = self._reparameterize(q, eps)                                    # (K, B, k)
        return self._decode(z).log_prob(x) + self._prior().log_prob(z) - q.log_prob(z)

    def _log_likelihood(self, x: Tensor, eps: Tensor) -> Tensor:
        return log_mean_exp(self._log_weights(x, eps), dim=0)               # (B,)

    def _elbo(self, x: Tensor, eps: Tensor) -> Tensor:
        q = self._posterior(x)                                              # (B, k)
        z = self._reparameterize(q, eps)                                    # (K, B, k)
        recon = self._decode(z).log_prob(x).mean(0)                         # (B,)
        return recon - self._kl(q)                                          # (B,)

    def _sample_latent(self, n_samples: int, generator: torch.Generator) -> Tensor:
        return torch.randn(n_samples, self.n_components, generator=generator)

    def _n_eval_samples(self) -> int:
        return self.n_importance_samples
