"""The VAE with a VampPrior.

Tomczak & Welling, "VAE with a VampPrior", 2017, arXiv:1705.07120 (AISTATS 2018). The
prior is the "variational mixture of posteriors"

    p(z) = (1/M) sum_j q(z | u_j),

the encoder's own posteriors at M learned pseudo-inputs u_j, which approximates the
aggregate posterior that maximises the ELBO. The KL term has no closed form under it, so
the loss uses the single-draw estimate log q(z|x) - log p(z).
"""

from __future__ import annotations

from numbers import Integral

import numpy as np
import torch
from sklearn.utils._param_validation import Interval
from sklearn.utils.validation import check_is_fitted
from torch import Tensor, nn
from torch.distributions import Categorical, Distribution, MixtureSameFamily

from aekit._registry import register
from aekit.models.vae import VAE
from aekit.training import FitContext, LossTerms

#: training rows that seed pseudo-inputs in [0, 1] are clipped to this margin before the
#: logit, so no pseudo-pixel starts where the sigmoid has no gradient.
PSEUDO_INPUT_MARGIN = 0.01


def _bounded(module: nn.Module) -> bool:
    """Whether the likelihood models values in [0, 1], where pseudo-inputs are kept."""
    return module.likelihood.support == (0.0, 1.0)


def seed_pseudo_inputs(module: nn.Module, x: Tensor, generator: torch.Generator) -> None:
    """Start ``module.pseudo_inputs`` ``(M, D)`` as M training rows of ``x`` drawn with
    ``generator`` (without replacement when there are enough rows); in [0, 1] they are
    stored as the logits of the rows clipped to :data:`PSEUDO_INPUT_MARGIN`."""
    n_pseudo = len(module.pseudo_inputs)
    weights = torch.ones(len(x), device=generator.device)
    rows = torch.multinomial(weights, n_pseudo, replacement=n_pseudo > len(x),
                             generator=generator)
    u = x[rows.to(x.device)]                                                  # (M, D)
    if _bounded(module):
        u = torch.logit(u.clamp(PSEUDO_INPUT_MARGIN, 1 - PSEUDO_INPUT_MARGIN))
    with torch.no_grad():
        module.pseudo_inputs.copy_(u)


def pseudo_inputs_in_data_space(module: nn.Module) -> Tensor:
    """The pseudo-inputs ``(M, D)`` as rows of data: through a sigmoid in [0, 1]."""
    u = module.pseudo_inputs
    return torch.sigmoid(u) if _bounded(module) else u


@register("vamp_vae")
class VampPriorVAE(VAE):
    """VAE whose prior is a uniform mixture of the posteriors of learned pseudo-inputs.

    The pseudo-inputs start as randomly chosen training rows (drawn with the estimator's
    own generator) and are trained with the networks. When the likelihood models values
    in [0, 1] (bernoulli, continuous_bernoulli, categorical) they are kept there by a
    sigmoid, as the paper keeps them with a hard tanh; otherwise they are unconstrained.
    ``score_samples`` is the importance-sampled log-likelihood with the posterior as
    proposal (``n_importance_samples`` common draws); ``elbo`` is the ELBO estimated with
    the same draws (no closed-form KL exists under a mixture prior); ``sample`` decodes
    draws from the mixture prior.

    Parameters
    ----------
    n_components : int, default=2
    n_pseudo_inputs : int, default=50
        M, the number of mixture components (the paper uses 500 for MNIST; 50 suits
        small data sets and keeps the prior cheap: each step encodes the M pseudo-inputs).
    beta : float, default=1.0
        Weight of the (estimated) KL term; 1 is the ELBO.
    n_importance_samples : int, default=100
        K for ``score_samples`` and ``elbo``, as in :class:`aekit.VAE`.
    **kwargs
        The parameters shared by every model; see :class:`aekit.estimator.BaseAutoencoder`.

    Attributes
    ----------
    module_ : torch.nn.ModuleDict
        ``encoder`` (to 2k outputs), ``decoder``, ``likelihood`` and ``pseudo_inputs``,
        the unconstrained pseudo-input parameter of shape ``(M, D)`` (see
        :meth:`pseudo_inputs` for them in data space).
    history_ : dict of str to list of float
        Per epoch ``loss`` (the single-draw negative ELBO), ``recon``, ``kl`` (its
        single-draw KL estimate), ``time``, and ``val_*`` versions with early stopping.
    n_iter_ : int
    input_shape_ : tuple of int

    Examples
    --------
    >>> import aekit
    >>> from aekit.models.vamp import VampPriorVAE
    >>> X, _ = aekit.datasets.load("digits")
    >>> vamp = VampPriorVAE(n_pseudo_inputs=20, likelihood="bernoulli", max_iter=2,
    ...                     n_importance_samples=10, random_state=0).fit(X)
    >>> vamp.pseudo_inputs().shape
    (20, 64)
    >>> vamp.score_samples(X[:3]).shape
    (3,)
    """

    _parameter_constraints = {
        **VAE._parameter_constraints,
        "n_pseudo_inputs": [Interval(Integral, 1, None, closed="left")],
    }

    def __init__(self, n_components=2, *, n_pseudo_inputs=50, **kwargs):
        super().__init__(n_components, **kwargs)
        self.n_pseudo_inputs = n_pseudo_inputs

    _mixed_unsupported = ("its pseudo-inputs are learned continuous rows, which a table's "
                          "categorical columns do not have")

    def _build(self, input_shape: tuple[int, ...]) -> nn.Module:
        module = super()._build(input_shape)
        n_features = module.likelihood.n_features
        # filled from training rows in _pretrain; _build only knows the row shape
        module.pseudo_inputs = nn.Parameter(torch.zeros(self.n_pseudo_inputs, n_features))
        return module

    def _pretrain(self, x: Tensor, y: Tensor | None, ctx: FitContext) -> None:
        seed_pseudo_inputs(self.module_, x, ctx.generator)

    def _pseudo_inputs(self) -> Tensor:
        return pseudo_inputs_in_data_space(self.module_)

    def pseudo_inputs(self) -> np.ndarray:
        """The learned pseudo-inputs u_j in data space, in the input's row shape."""
        check_is_fitted(self)
        with torch.no_grad():
            u = self._pseudo_inputs().float().cpu().numpy()
        return u.reshape(len(u), *self.input_shape_)

    def _prior(self) -> Distribution:
        components = self._posterior(self._pseudo_inputs())                   # (M,) of (k,)
        uniform = Categorical(logits=torch.zeros(self.n_pseudo_inputs,
                                                 device=components.mean.device),
                              validate_args=False)
        return MixtureSameFamily(uniform, components, validate_args=False)

    def _loss(self, x: Tensor, y: Tensor | None, ctx: FitContext) -> LossTerms:
        q = self._posterior(x)                                                # (B, k)
        loc, scale = q.base_dist.loc, q.base_dist.scale
        z = loc + scale * ctx.randn(*loc.shape)                             # (B, k)
        recon = -self._decode(z).log_prob(x)                                  # (B,)
        kl = q.log_prob(z) - self._prior().log_prob(z)                        # (B,)
        total = (recon + self.beta * kl).mean()
        return LossTerms(total, {"recon": recon.mean(), "kl": kl.mean()})

    def _elbo(self, x: Tensor, eps: Tensor) -> Tensor:
        return self._log_weights(x, eps).mean(0)                              # (B,)

    def _sample_latent(self, n_samples: int, generator: torch.Generator) -> Tensor:
        components = self._posterior(self._pseudo_inputs())                   # (M,) of (k,)
        loc, scale = components.base_dist.loc.cpu(), components.base_dist.scale.cpu()
        j = torch.randint(self.n_pseudo_inputs, (n_samples,), generator=generator)  # (n,)
        eps = torch.randn(n_samples, self.n_components, generator=generator)  # (n, k)
        return loc[j] + scale[j] * eps
