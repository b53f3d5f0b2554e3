"""The beta-VAE, with KL annealing schedules and free bits.

Higgins et al., "beta-VAE: Learning Basic Visual Concepts with a Constrained Variational
Framework", ICLR 2017: the KL term of the ELBO is weighted by ``beta``. The weight can
follow a schedule over epochs: a linear warm-up, or the cyclical schedule of Fu et al.,
"Cyclical Annealing Schedule: A Simple Approach to Mitigating KL Vanishing", 2019,
arXiv:1903.10145. Free bits (Kingma et al., "Improved Variational Inference with Inverse
Autoregressive Flow", 2016, arXiv:1606.04934) stop penalising a latent dimension whose
batch-mean KL is below ``free_bits`` nats, which keeps units from collapsing. Active units
are counted as in Burda et al., "Importance Weighted Autoencoders", 2015, arXiv:1509.00519.
"""

from __future__ import annotations

from numbers import Integral, Real
from typing import Any

from sklearn.utils._param_validation import Interval, StrOptions
from torch import Tensor

from aekit._registry import register
from aekit.estimator import latent
from aekit.exceptions import InputError
from aekit.models.vae import VAE
from aekit.training import FitContext, LossTerms

KL_SCHEDULES = ("constant", "linear", "cyclical")


@register("beta_vae")
class BetaVAE(VAE):
    """VAE whose KL weight ``beta`` can be annealed over epochs, with optional free bits.

    The training objective is ``-log p(x|z) + beta_t * sum_j max(free_bits, KL_j)``, where
    ``KL_j`` is the batch-mean KL divergence of latent dimension j and ``beta_t`` the
    scheduled weight of epoch t. ``BetaVAE(beta=1, kl_schedule="constant", free_bits=0)``
    trains exactly like :class:`aekit.VAE`. ``score_samples`` is the importance-sampled
    log-likelihood of the VAE (a beta above 1 trades likelihood for a more factorised
    code, so expect lower scores).

    Parameters
    ----------
    n_components : int, default=2
    beta : float, default=4.0
        The full KL weight (4 is the value of Higgins et al. for their 2D shapes; 1 is
        the ELBO).
    kl_schedule : {"constant", "linear", "cyclical"}, default="constant"
        How the KL weight moves over epochs. "constant": ``beta`` throughout. "linear":
        ``beta * min(1, (t - 1) / warmup_epochs)``, i.e. 0 in epoch 1 and ``beta`` from
        epoch ``warmup_epochs + 1`` on. "cyclical" (Fu et al.): cycles of
        ``warmup_epochs`` epochs, each ramping from 0 to ``beta`` over its first half and
        holding ``beta`` in the second.
    warmup_epochs : int, default=10
        Ramp length of "linear", cycle length of "cyclical" (at least 2); unused by
        "constant".
    free_bits : float, default=0.0
        Nats per latent dimension that are free: the KL term of a dimension is
        ``max(free_bits, KL_j)`` with ``KL_j`` averaged over the minibatch (Kingma et
        al., 2016). 0 turns it off.
    n_importance_samples : int, default=100
        K for ``score_samples`` and ``elbo``, as in :class:`aekit.VAE`.
    **kwargs
        The parameters shared by every model; see :class:`aekit.estimator.BaseAutoencoder`.

    Attributes
    ----------
    module_ : torch.nn.ModuleDict
        ``encoder`` (to 2k outputs), ``decoder``, ``likelihood``, prior buffers.
    history_ : dict of str to list
        Per epoch: ``loss`` (the objective at the full ``beta``:
        ``recon + beta * kl_free_bits``, so the stall rule and early stopping compare
        epochs on one scale while the schedule moves; the objective minimised in epoch t
        is ``recon + beta[t] * kl_free_bits``), ``recon``, ``kl`` (the true KL),
        ``kl_free_bits`` (the KL term after free bits), ``beta`` (the weight used),
        ``active_units`` (latent dimensions whose posterior mean varies over the training
        rows with variance above 0.01, Burda et al.), ``kl_per_dim`` (a list: the mean KL
        of each latent dimension over the training rows), ``time``, and ``val_*``
        versions of the loss terms with early stopping.
    n_iter_ : int
    input_shape_ : tuple of int

    Examples
    --------
    >>> import aekit
    >>> from aekit.models.beta_vae import BetaVAE
    >>> X, _ = aekit.datasets.load("digits")
    >>> model = BetaVAE(beta=4.0, kl_schedule="linear", warmup_epochs=2,
    ...                 likelihood="bernoulli", max_iter=2, random_state=0).fit(X)
    >>> model.history_["beta"]
    [0.0, 2.0]
    >>> len(model.history_["kl_per_dim"][-1])
    2
    """

    _parameter_constraints = {
        **VAE._parameter_constraints,
        "kl_schedule": [StrOptions(set(KL_SCHEDULES))],
        "warmup_epochs": [Interval(Integral, 1, None, closed="left")],
        "free_bits": [Interval(Real, 0, None, closed="left")],
    }

    # beta is repeated for its own default (4, as in Higgins et al.)
    def __init__(self, n_components=2, *, beta=4.0, kl_schedule="constant", warmup_epochs=10,
                 free_bits=0.0, **kwargs):
        super().__init__(n_components, beta=beta, **kwargs)
        self.kl_schedule = kl_schedule
        self.warmup_epochs = warmup_epochs
        self.free_bits = free_bits

    def _check_hyperparameters(self) -> None:
        super()._check_hyperparameters()
        if self.kl_schedule == "cyclical" and self.warmup_epochs < 2:
            raise InputError(f"kl_schedule='cyclical' needs cycles of warmup_epochs >= 2 "
                             f"epochs (one to ramp, one to hold); got "
                             f"warmup_epochs={self.warmup_epochs}")

    def kl_weight(self, epoch: int) -> float:
        """The KL weight ``kl_schedule`` gives epoch ``epoch`` (1-based).

        Examples
        --------
        >>> from aekit.models.beta_vae import BetaVAE
        >>> model = BetaVAE(beta=2.0, kl_schedule="cyclical", warmup_epochs=4)
        >>> [model.kl_weight(t) for t in range(1, 7)]
        [0.0, 1.0, 2.0, 2.0, 0.0, 1.0]
        """
        if self.kl_schedule == "constant":
            return float(self.beta)
        if self.kl_schedule == "linear":
            progress = (epoch - 1) / self.warmup_epochs
        else:   # cyclical, Fu et al. with R = 0.5: ramp over the first half of each cycle
            progress = 2 * ((epoch - 1) % self.warmup_epochs) / self.warmup_epochs
        return float(self.beta) * min(1.0, progress)

    def _recon_and_kl_dims(self, x: Tensor, ctx: FitContext
                           ) -> tuple[Tensor, Tensor, dict[str, Tensor]]:
        """One reparameterised draw per row: ``-log p(x|z)`` ``(B,)``, the KL per latent
        dimension ``(B, k)``, and extra terms to log (a model with another latent
        structure overrides this and keeps the weighting of :meth:`_loss`)."""
        q = self._posterior(x)                                                # (B, k)
        loc, scale = q.base_dist.loc, q.base_dist.scale
        z = loc + scale * ctx.randn(*loc.shape)                             # (B, k)
        return -self._decode(z).log_prob(x), self._kl_dims(q), {}

    def _loss(self, x: Tensor, y: Tensor | None, ctx: FitContext) -> LossTerms:
        recon, kl_dims, extra = self._recon_and_kl_dims(x, ctx)            # (B,), (B, k)
        kl_kept = kl_dims.mean(0)                                             # (k,)
        if self.free_bits > 0:   # skipped at 0 so a float -1e-9 KL keeps its gradient
            kl_kept = kl_kept.clamp_min(self.free_bits)
        beta_now = self.kl_weight(ctx.epoch)     # a function of the epoch only: resume matches
        objective = recon.mean() + beta_now * kl_kept.sum()         # minimised this epoch
        at_full_beta = recon.mean() + self.beta * kl_kept.sum()
        # the value is the objective at full beta, so the stall rule and early stopping compare
        # epochs on one scale while beta_t rises; the gradient is this epoch's objective's
        total = objective + (at_full_beta - objective).detach()
        return LossTerms(total, {"recon": recon.mean(), "kl": kl_dims.sum(-1).mean(),
                                 "kl_free_bits": kl_kept.sum(), **extra})

    def _on_epoch_end(self, epoch: int, x: Tensor) -> dict[str, Any]:
        return {"beta": self.kl_weight(epoch), **latent.summary(self, x)}
