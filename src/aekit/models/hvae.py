"""The two-level (hierarchical) VAE.

Two stochastic layers, as in the two-level models of Burda et al., "Importance Weighted
Autoencoders", 2015, arXiv:1509.00519, and the HVAE of Tomczak & Welling, "VAE with a
VampPrior", 2017, arXiv:1705.07120 (the architecture of the Exemplar VAE likelihood tables,
Norouzi et al. 2020, arXiv:2004.04795). The generative model is

    p(x, z1, z2) = p(z2) p(z1 | z2) p(x | z1, z2),    p(z2) = N(0, I),

with a Gaussian p(z1 | z2) whose mean and variance a network computes from z2, so the
prior of the lower code is learned rather than fixed. With ``n_pseudo_inputs`` the upper
prior is a VampPrior instead, p(z2) = (1/M) sum_m q(z2 | u_m) over learned pseudo-inputs
u_m: the "HVAE + VampPrior" of Tomczak & Welling. Inference runs the other way:
q(z2 | x) q(z1 | x, z2). The code of a row is ``[z1, z2]``: ``n_components`` values of
which the last ``n_top_components`` are z2.

The loss is the negative ELBO with both KL terms in closed form (the lower one given the
drawn z2; under a VampPrior the upper one is the single-draw estimate
log q(z2|x) - log p(z2)); ``score_samples`` is the importance-sampled log-likelihood with
the whole posterior q(z2|x) q(z1|x,z2) as proposal (Burda et al.).
"""

from __future__ import annotations

import math
from numbers import Integral
from typing import Any

import torch
from sklearn.utils._param_validation import Interval
from torch import Tensor, nn
from torch.distributions import Distribution, kl_divergence

from aekit._registry import register
from aekit.distributions import log_mean_exp, normal_mixture_log_prob, standard_normal_kl
from aekit.estimator import BaseAutoencoder, latent
from aekit.exceptions import InputError
from aekit.models.beta_vae import BetaVAE
from aekit.models.iwae import importance_weighted_loss
from aekit.models.vamp import pseudo_inputs_in_data_space, seed_pseudo_inputs
from aekit.nn import ACTIVATIONS, mlp
from aekit.training import FitContext, LossTerms

_LOG_2PI = math.log(2 * math.pi)


class JointInput(nn.Module):
    """An MLP over the concatenation ``[x, z]`` whose first layer is split in two:
    ``W [x, z] = W_x x + W_z z``, so ``x`` of shape ``(B, D)`` is multiplied once and
    broadcast against ``z`` of shape ``(..., B, k)`` (K importance draws cost K products
    of the small ``W_z``, not of ``W_x``). With ``gated`` the first layer is gated like
    :class:`aekit.nn.GatedLinear`, and so are the rest."""

    def __init__(self, n_x: int, n_z: int, hidden: tuple[int, ...], n_out: int,
                 activation: str, gated: bool) -> None:
        super().__init__()
        width = hidden[0] * (2 if gated else 1)
        self.from_x = nn.Linear(n_x, width)
        self.from_z = nn.Linear(n_z, width, bias=False)
        self.gated = gated
        self.act = None if gated else ACTIVATIONS[activation]()
        self.head = mlp([hidden[0], *hidden[1:], n_out], activation, gated=gated)

    def forward(self, x: Tensor, z: Tensor) -> Tensor:
        pre = self.from_x(x) + self.from_z(z)
        if self.gated:
            h, gate = pre.chunk(2, dim=-1)
            return self.head(h * gate.sigmoid())
        return self.head(self.act(pre))


def _standard_normal_log_prob(z: Tensor) -> Tensor:
    """log N(z; 0, I) summed over the last axis."""
    return -0.5 * (z.square() + _LOG_2PI).sum(-1)


@register("hvae")
class HierarchicalVAE(BetaVAE):
    """VAE with two stochastic layers: p(z2) p(z1|z2) p(x|z1,z2), q(z2|x) q(z1|x,z2).

    The upper code z2 has an N(0, I) prior, or with ``n_pseudo_inputs`` a VampPrior; the
    lower code z1 has a learned Gaussian prior p(z1 | z2). The decoder sees both codes.
    ``transform`` gives ``[z1, z2]``: the mean of q(z2|x), then the mean of q(z1|x, z2) at
    that z2. ``inverse_transform`` decodes such codes; ``sample`` draws z2 from its prior
    and z1 from p(z1|z2); ``score_samples`` is the importance-sampled log p(x) with
    ``n_importance_samples`` common draws of both codes.
    The KL weight can follow the warm-up schedules of :class:`aekit.models.beta_vae.BetaVAE`
    (a warm-up keeps the lower layer from collapsing early; Sønderby et al. 2016,
    arXiv:1602.02282), and ``free_bits`` applies per dimension of both codes.

    Parameters
    ----------
    n_components : int, default=2
        Width of the whole code ``[z1, z2]``, at least 2.
    n_top_components : int or None, default=None
        Width of z2, the upper code; None gives half of ``n_components`` (rounded down,
        at least 1). z1 has the rest.
    beta : float, default=1.0
        The full weight of the two KL terms (1 is the ELBO).
    kl_schedule : {"constant", "linear", "cyclical"}, default="constant"
    warmup_epochs : int, default=10
    free_bits : float, default=0.0
        As in :class:`aekit.models.beta_vae.BetaVAE` (not with ``n_pseudo_inputs``: the
        VampPrior's KL has no terms per dimension).
    n_pseudo_inputs : int or None, default=None
        None gives z2 the N(0, I) prior. M gives it the VampPrior of M learned
        pseudo-inputs (Tomczak & Welling 2017, whose best MLP models are this two-level
        VAE with 500 of them), which start as training rows as in
        :class:`aekit.models.vamp.VampPriorVAE`. Each step then also encodes the M
        pseudo-inputs. A model fitted with the N(0, I) prior trains on with one through
        ``warm_start``: the pseudo-inputs start as in a new fit, every network carries.
    n_train_samples : int, default=1
        1 trains on the ELBO. K > 1 trains on the K-sample importance weighted bound over
        both codes, as :class:`aekit.models.iwae.IWAE` does for one (Burda et al. 2015,
        whose best models have two stochastic layers); that bound has no KL term to weight,
        so it needs ``beta=1``, ``kl_schedule="constant"`` and ``free_bits=0``. A model
        fitted on the ELBO with a warm-up trains on with it through ``warm_start``.
    n_importance_samples : int, default=100
        K for ``score_samples`` and ``elbo``.
    **kwargs
        The parameters shared by every model; see :class:`aekit.estimator.BaseAutoencoder`.
        ``hidden_layer_sizes`` shapes every network: q(z2|x) and p(x|z1,z2) as in the
        VAE, q(z1|x,z2) with the encoder's widths and p(z1|z2) with the decoder's.

    Attributes
    ----------
    module_ : torch.nn.ModuleDict
        ``encoder`` (x to the mean and log-variance of q(z2|x)), ``decoder`` (the code
        ``[z1, z2]`` to p(x|z1,z2)), ``likelihood``, ``bottom_encoder`` (x and z2 to
        q(z1|x,z2)), ``bottom_prior`` (z2 to p(z1|z2)) and, with ``n_pseudo_inputs``,
        ``pseudo_inputs`` ``(M, D)``, unconstrained as in
        :class:`aekit.models.vamp.VampPriorVAE`.
    history_ : dict of str to list
        As :class:`aekit.models.beta_vae.BetaVAE`'s, with ``kl`` the sum of the two KL
        terms and ``kl_top`` (KL(q(z2|x) || p(z2)); a single-draw estimate under a
        VampPrior) and ``kl_bottom`` (KL(q(z1|x,z2) || p(z1|z2)) at the drawn z2) apart,
        and ``active_units`` over the code ``[z1, z2]``
        (``transform``'s posterior means; z1's at z2's mean). ``fit`` warns when none is
        active.
    n_iter_ : int
    input_shape_ : tuple of int

    Examples
    --------
    >>> import aekit
    >>> from aekit.models.hvae import HierarchicalVAE
    >>> X, _ = aekit.datasets.load("digits")
    >>> model = HierarchicalVAE(n_components=4, likelihood="bernoulli", max_iter=2,
    ...                         n_importance_samples=10, random_state=0).fit(X)
    >>> model.transform(X[:3]).shape
    (3, 4)
    >>> model.score_samples(X[:3]).shape
    (3,)
    """

    # one diagonal Gaussian over the whole code exists neither as posterior nor as prior
    capabilities = BetaVAE.capabilities.but(posterior=False, importance_weights=True)

    _parameter_constraints = {
        **BetaVAE._parameter_constraints,
        "n_top_components": [Interval(Integral, 1, None, closed="left"), None],
        "n_train_samples": [Interval(Integral, 1, None, closed="left")],
        "n_pseudo_inputs": [Interval(Integral, 1, None, closed="left"), None],
    }

    #: with a VampPrior: a part of the networks that a warm start from a model without
    #: one adds, started as a new fit starts it
    _warm_new_parts = ("pseudo_inputs",)

    def __init__(self, n_components=2, *, n_top_components=None, beta=1.0, n_train_samples=1,
                 n_pseudo_inputs=None, **kwargs):
        super().__init__(n_components, beta=beta, **kwargs)
        self.n_top_components = n_top_components
        self.n_train_samples = n_train_samples
        self.n_pseudo_inputs = n_pseudo_inputs

    @property
    def _mixed_unsupported(self) -> str:
        return ("with n_pseudo_inputs its pseudo-inputs are learned continuous rows, which a "
                "table's categorical columns do not have" if self.n_pseudo_inputs else "")

    def _check_hyperparameters(self) -> None:
        super()._check_hyperparameters()
        if self.n_components < 2:
            raise InputError(f"HierarchicalVAE needs n_components >= 2 (one value for each "
                             f"of its two codes); got n_components={self.n_components}")
        if self.n_top_components is not None and self.n_top_components >= self.n_components:
            raise InputError(f"n_top_components={self.n_top_components} leaves no room for "
                             f"the lower code: it must be below n_components="
                             f"{self.n_components}")
        weighted = {"beta": (self.beta, 1), "kl_schedule": (self.kl_schedule, "constant"),
                    "free_bits": (self.free_bits, 0)}
        changed = [f"{k}={v!r}" for k, (v, bound) in weighted.items() if v != bound]
        if self.n_train_samples > 1 and changed:
            raise InputError(f"n_train_samples={self.n_train_samples} trains on the importance "
                             f"weighted bound, which has no KL term to weight: "
                             f"{', '.join(changed)} cannot apply; set beta=1, "
                             f"kl_schedule='constant' and free_bits=0 (to warm up on the ELBO "
                             f"first, fit with n_train_samples=1, then train on with "
                             f"warm_start=True)")
        if self.n_pseudo_inputs and self.free_bits > 0:
            raise InputError(f"free_bits={self.free_bits} needs a KL term per dimension, which "
                             f"the VampPrior of n_pseudo_inputs={self.n_pseudo_inputs} does "
                             f"not have; set free_bits=0 (or n_pseudo_inputs=None)")

    @property
    def _n_top(self) -> int:
        if self.n_top_components is not None:
            return int(self.n_top_components)
        return max(1, self.n_components // 2)

    @property
    def _n_bottom(self) -> int:
        return self.n_components - self._n_top

    @property
    def _encoder_outputs(self) -> int:
        return 2 * self._n_top

    _encoder_outputs_meaning = ("the mean and log-variance of the upper code's q(z2|x), "
                                "2 x n_top_components values")

    def _build(self, input_shape: tuple[int, ...]) -> nn.Module:
        module = super()._build(input_shape)
        hidden = tuple(self.hidden_layer_sizes)
        gated = self.architecture == "gated"
        top, bottom = self._n_top, self._n_bottom
        module.bottom_encoder = JointInput(module.likelihood.n_inputs, top, hidden,
                                           2 * bottom, self.activation, gated)
        module.bottom_prior = mlp([top, *reversed(hidden), 2 * bottom], self.activation,
                                  gated=gated)
        if self.n_pseudo_inputs:    # filled from training rows in _pretrain
            module.pseudo_inputs = nn.Parameter(
                torch.zeros(self.n_pseudo_inputs, module.likelihood.n_features))
        return module

    def _pretrain(self, x: Tensor, y: Tensor | None, ctx: FitContext) -> None:
        super()._pretrain(x, y, ctx)
        if self.n_pseudo_inputs:
            seed_pseudo_inputs(self.module_, x, ctx.generator)

    # ------------------------------------------------------------ the two layers
    # no one Gaussian over the whole code, as capabilities say: the base's hooks, which
    # refuse (the VAE's would give q(z2|x) alone as if it were the code's posterior)
    _posterior = BaseAutoencoder._posterior
    _prior = BaseAutoencoder._prior

    def _top_posterior(self, xs: Tensor) -> Distribution:
        """q(z2 | x) for standardised rows ``xs``: batch ``(B,)``, event ``(top,)``."""
        return self._gaussian(self.module_.encoder(xs))

    def _bottom_posterior(self, xs: Tensor, z2: Tensor) -> Distribution:
        """q(z1 | x, z2) for standardised rows ``xs`` ``(B, D)`` and z2 ``(..., B, top)``."""
        return self._gaussian(self.module_.bottom_encoder(xs, z2))

    def _top_prior_components(self) -> Distribution:
        """q(z2 | u_m) at the pseudo-inputs: batch ``(M,)``, event ``(top,)``."""
        u = pseudo_inputs_in_data_space(self.module_)
        return self._top_posterior(self._standardize(u))

    def _top_log_prior(self, z2: Tensor) -> Tensor:
        """log p(z2) for z2 ``(..., top)``: shape ``z2.shape[:-1]``."""
        if not self.n_pseudo_inputs:
            return _standard_normal_log_prob(z2)
        p2 = self._top_prior_components().base_dist
        return normal_mixture_log_prob(z2, p2.loc, p2.scale)

    def _bottom_prior(self, z2: Tensor) -> Distribution:
        """p(z1 | z2) for z2 ``(..., top)``."""
        return self._gaussian(self.module_.bottom_prior(z2))

    def _split(self, eps: Tensor) -> tuple[Tensor, Tensor]:
        """Noise for the code ``[z1, z2]`` into its z1 and z2 parts."""
        return eps[..., :self._n_bottom], eps[..., self._n_bottom:]

    # ------------------------------------------------------------ training
    def _recon_and_kl_dims(self, x: Tensor, ctx: FitContext
                           ) -> tuple[Tensor, Tensor, dict[str, Tensor]]:
        xs = self._standardize(x)
        q2 = self._top_posterior(xs)                                          # (B, top)
        eps1, eps2 = self._split(ctx.randn(len(x), self.n_components))
        z2 = q2.base_dist.loc + q2.base_dist.scale * eps2                     # (B, top)
        q1 = self._bottom_posterior(xs, z2)                                   # (B, bottom)
        z1 = q1.base_dist.loc + q1.base_dist.scale * eps1                     # (B, bottom)
        recon = -self._decode(torch.cat([z1, z2], dim=-1)).log_prob(x)        # (B,)
        kl_bottom = kl_divergence(q1.base_dist, self._bottom_prior(z2).base_dist)
        if self.n_pseudo_inputs:    # no closed form: log q(z2|x) - log p(z2) at the draw
            kl_top = (q2.log_prob(z2) - self._top_log_prior(z2))[:, None]     # (B, 1)
        else:
            kl_top = standard_normal_kl(q2.base_dist)                         # (B, top)
        return recon, torch.cat([kl_bottom, kl_top], dim=-1), {
            "kl_top": kl_top.sum(-1).mean(), "kl_bottom": kl_bottom.sum(-1).mean()}

    def _loss(self, x: Tensor, y: Tensor | None, ctx: FitContext) -> LossTerms:
        if self.n_train_samples == 1:
            return super()._loss(x, y, ctx)
        eps = ctx.randn(self.n_train_samples, len(x), self.n_components)   # (K, B, k)
        return importance_weighted_loss(self._log_weights(x, eps))

    def _on_epoch_end(self, epoch: int, x: Tensor) -> dict[str, Any]:
        # active units (Burda et al.) over the code transform gives: no single Gaussian
        # posterior covers both layers, so latent.summary does not apply
        rows = latent.spread_rows(x)
        codes = torch.cat([self._encode(rows[i:i + 4096]).float()
                           for i in range(0, len(rows), 4096)])                 # (n, k)
        active = (codes.var(0, correction=0) > latent.ACTIVE_UNIT_THRESHOLD).sum()
        return {"beta": self.kl_weight(epoch), "active_units": float(active)}

    # ------------------------------------------------------------ the four uses
    def _encode(self, x: Tensor) -> Tensor:
        xs = self._standardize(x)
        z2 = self._top_posterior(xs).mean                                     # (B, top)
        z1 = self._bottom_posterior(xs, z2).mean                              # (B, bottom)
        return torch.cat([z1, z2], dim=-1)

    def _log_weights(self, x: Tensor, eps: Tensor) -> Tensor:
        """log p(x, z1, z2) - log q(z1, z2 | x) for the draws of ``eps`` ``(K, k)``
        (common to all rows) or ``(K, B, k)``: shape ``(K, B)``."""
        eps1, eps2 = self._split(eps)
        if eps.dim() == 2:
            eps1 = eps1[:, None, :]
        xs = self._standardize(x)
        q2 = self._top_posterior(xs)                                          # (B, top)
        z2 = self._reparameterize(q2, eps2)                                   # (K, B, top)
        q1 = self._bottom_posterior(xs, z2)                                   # (K, B)
        z1 = q1.base_dist.loc + q1.base_dist.scale * eps1                     # (K, B, bottom)
        log_px = self._decode(torch.cat([z1, z2], dim=-1)).log_prob(x)        # (K, B)
        log_prior = self._top_log_prior(z2) + self._bottom_prior(z2).log_prob(z1)
        return log_px + log_prior - q2.log_prob(z2) - q1.log_prob(z1)

    def _log_likelihood(self, x: Tensor, eps: Tensor) -> Tensor:
        return log_mean_exp(self._log_weights(x, eps), dim=0)                 # (B,)

    def _elbo(self, x: Tensor, eps: Tensor) -> Tensor:
        return self._log_weights(x, eps).mean(0)                              # (B,)

    def _sample_latent(self, n_samples: int, generator: torch.Generator) -> Tensor:
        z2 = torch.randn(n_samples, self._n_top, generator=generator)         # (n, top)
        eps1 = torch.randn(n_samples, self._n_bottom, generator=generator)    # (n, bottom)
        device = self._device()
        if self.n_pseudo_inputs:    # a pseudo-input's posterior, then a draw from it
            p2 = self._top_prior_components().base_dist
            m = torch.randint(self.n_pseudo_inputs, (n_samples,), generator=generator)
            z2 = p2.loc.float().cpu()[m] + p2.scale.float().cpu()[m] * z2
        p1 = self._bottom_prior(z2.to(device)).base_dist
        z1 = p1.loc + p1.scale * eps1.to(device)
        return torch.cat([z1.float(), z2.to(device)], dim=-1)

    # ----------------------------------------------------- scikit-learn glue

    #: these checks set n_components=1, which cannot hold two codes (the model refuses it);
    #: tests/test_hvae.py checks sample-order and subset invariance at n_components=2.
    _expected_failed_checks = dict.fromkeys(
        ("check_dont_overwrite_parameters", "check_methods_sample_order_invariance",
         "check_methods_subset_invariance", "check_fit2d_1sample", "check_fit2d_1feature",
         "check_fit2d_predict1d"),
        "sets n_components=1, but a two-level code needs at least 2")
