"""The adversarial autoencoder.

Makhzani, Shlens, Jaitly, Goodfellow & Frey, "Adversarial Autoencoders", 2015,
arXiv:1511.05644. A deterministic autoencoder whose codes are pushed towards a chosen
prior p(z) by a discriminator on codes, as in a GAN: the encoder is the generator of
"fake" codes, draws from the prior are the "real" ones. Each minibatch makes one update
of the autoencoder on ``-log p(x|z) + adversarial_weight * generator`` and one update of
the discriminator; both discriminator and generator terms are Bernoulli negative
log-likelihoods of the "real" label (the generator uses the non-saturating form).
"""

from __future__ import annotations

import math
import numbers
from numbers import Real
from typing import Any

import torch
from sklearn.utils._param_validation import Interval, StrOptions
from torch import Tensor, nn
from torch.distributions import Bernoulli

from aekit._registry import register
from aekit.exceptions import InputError
from aekit.models.ae import AE
from aekit.nn import mlp
from aekit.training import FitContext, LossTerms, default_optimizer
from aekit.training.distributed import all_finite
from aekit.training.step import StepTerms

PRIORS = ("normal", "mixture", "swiss_roll")
#: the "mixture" prior: 10 Gaussians with means on a circle of this radius, stretched
#: along the radius like the petals of the paper's Figure 2 (the numbers are ours).
MIXTURE_COMPONENTS = 10
MIXTURE_RADIUS = 2.0
MIXTURE_RADIAL_STD = 0.5
MIXTURE_TANGENTIAL_STD = 0.1
#: the "swiss_roll" prior: u ~ U(0, 1) lies at radius 3 sqrt(u) and angle 4 pi sqrt(u).
SWISS_ROLL_RADIUS = 3.0
SWISS_ROLL_TURNS = 2.0


def prior_draws(prior: str, n_samples: int, n_components: int,
                generator: torch.Generator) -> Tensor:
    """``n_samples`` draws from an AAE prior, on ``generator``'s device: ``(n, k)``.

    "normal" is N(0, I). "mixture" and "swiss_roll" are 2-D shapes placed in the first
    two dimensions; any further dimensions are independent N(0, 1).
    """
    device = generator.device
    z = torch.randn(n_samples, n_components, generator=generator, device=device)   # (n, k)
    if prior == "normal":
        return z
    if prior == "mixture":
        c = torch.randint(MIXTURE_COMPONENTS, (n_samples,), generator=generator,
                          device=device)                                           # (n,)
        angle = 2 * math.pi * c / MIXTURE_COMPONENTS                                # (n,)
        radial = MIXTURE_RADIUS + MIXTURE_RADIAL_STD * z[:, 0]                     # (n,)
        across = MIXTURE_TANGENTIAL_STD * z[:, 1]                                  # (n,)
        xy = torch.stack([radial * angle.cos() - across * angle.sin(),
                          radial * angle.sin() + across * angle.cos()], dim=1)    # (n, 2)
    else:
        s = torch.rand(n_samples, generator=generator, device=device).sqrt()       # (n,)
        angle = 2 * math.pi * SWISS_ROLL_TURNS * s                                  # (n,)
        xy = SWISS_ROLL_RADIUS * s[:, None] * torch.stack([angle.cos(), angle.sin()], 1)
    return torch.cat([xy, z[:, 2:]], dim=1)                                        # (n, k)


def _label_nll(logits: Tensor, label: float) -> Tensor:
    """Mean Bernoulli negative log-likelihood of ``label`` under discriminator logits."""
    logits = logits.float().squeeze(-1)                                             # (B,)
    p = Bernoulli(logits=logits, validate_args=False)
    return -p.log_prob(torch.full_like(logits, label)).mean()


@register("aae")
class AAE(AE):
    """Adversarial autoencoder: a deterministic autoencoder whose codes match a prior.

    The encoder, decoder and likelihood are those of :class:`aekit.AE`; a discriminator
    MLP on codes (ReLU, whatever ``activation`` is, so a linear autoencoder still gets a
    nonlinear critic) learns to tell encoder codes from prior draws, and the encoder
    learns to fool it. ``transform`` gives the code, ``sample`` decodes draws from the
    prior, and ``score_samples`` is, as for :class:`aekit.AE`, the decoder
    log-likelihood at the code, log p(x | z = f(x)): it is **not** a density of x (it
    ignores how codes spread) and is larger than any proper log-likelihood. ``elbo``
    returns the same quantity.

    Parameters
    ----------
    n_components : int, default=2
    prior : {"normal", "mixture", "swiss_roll"}, default="normal"
        p(z). "normal" is N(0, I). "mixture" is 10 Gaussians with means on a circle of
        radius 2, std 0.5 along the radius and 0.1 across it; "swiss_roll" is the 2-D
        curve at radius ``3 s`` and angle ``4 pi s`` for ``s = sqrt(u)``, u ~ U(0, 1).
        Those two are 2-D shapes: they fill the first two code dimensions and need
        ``n_components >= 2``; further dimensions are independent N(0, 1).
    discriminator_hidden : tuple of int, default=(128, 128)
        Hidden widths of the discriminator.
    adversarial_weight : float, default=1.0
        Weight of the generator term in the autoencoder's loss (0 trains a plain AE
        next to a discriminator that has no effect on it).
    discriminator_learning_rate : float, default=1e-3
        Adam step size of the discriminator (``learning_rate`` is the autoencoder's).
    **kwargs
        The parameters shared by every model; see :class:`aekit.estimator.BaseAutoencoder`.

    Attributes
    ----------
    module_ : torch.nn.ModuleDict
        ``encoder``, ``decoder``, ``likelihood``, ``discriminator`` (codes to one logit)
        and AE's ``code_loc`` / ``code_scale_tril`` (a Gaussian fitted to the training
        codes, kept as a diagnostic; ``sample`` uses the prior).
    history_ : dict of str to list of float
        Per-epoch ``loss`` (``recon + adversarial_weight * generator``), ``recon``
        (nats per example), ``generator`` and ``discriminator`` (Bernoulli negative
        log-likelihoods in nats; ``log 2 = 0.69`` and ``2 log 2`` at equilibrium),
        ``time``, and ``val_*`` versions with early stopping.
    n_iter_ : int
        Epochs run.
    input_shape_ : tuple of int
        Shape of one input row.

    Examples
    --------
    >>> import aekit
    >>> from aekit.models.aae import AAE
    >>> X, _ = aekit.datasets.load("digits")
    >>> aae = AAE(prior="mixture", likelihood="bernoulli", max_iter=2, random_state=0).fit(X)
    >>> aae.transform(X[:5]).shape
    (5, 2)
    >>> sorted(k for k in aae.history_ if k not in ("loss", "time"))
    ['discriminator', 'generator', 'recon']
    """

    _parameter_constraints = {
        **AE._parameter_constraints,
        "prior": [StrOptions(set(PRIORS))],
        "discriminator_hidden": ["array-like"],
        "adversarial_weight": [Interval(Real, 0, None, closed="left")],
        "discriminator_learning_rate": [Interval(Real, 0, None, closed="neither")],
    }

    def __init__(self, n_components=2, *, prior="normal", discriminator_hidden=(128, 128),
                 adversarial_weight=1.0, discriminator_learning_rate=1e-3, **kwargs):
        super().__init__(n_components, **kwargs)
        self.prior = prior
        self.discriminator_hidden = discriminator_hidden
        self.adversarial_weight = adversarial_weight
        self.discriminator_learning_rate = discriminator_learning_rate

    def _check_hyperparameters(self) -> None:
        super()._check_hyperparameters()
        sizes = self.discriminator_hidden
        sizes = [sizes] if isinstance(sizes, numbers.Integral) else list(sizes)
        if not all(isinstance(s, numbers.Integral) and s > 0 for s in sizes):
            raise InputError(f"discriminator_hidden must be a sequence of positive integers; "
                             f"got {self.discriminator_hidden!r}")
        if self.prior != "normal" and self.n_components < 2:
            raise InputError(f"prior={self.prior!r} is a 2-D shape and needs n_components "
                             f">= 2; got n_components={self.n_components}; use "
                             "prior='normal' or more components")

    def _build(self, input_shape: tuple[int, ...]) -> nn.Module:
        module = super()._build(input_shape)
        hidden = self.discriminator_hidden
        hidden = [hidden] if isinstance(hidden, numbers.Integral) else list(hidden)
        module["discriminator"] = mlp([self.n_components, *hidden, 1], "relu")
        return module

    def _configure_optimizers(self) -> list[torch.optim.Optimizer]:
        autoencoder = [p for name, p in self.module_.named_parameters()
                       if not name.startswith("discriminator.")]
        return [default_optimizer(autoencoder, self.learning_rate),
                default_optimizer(self.module_.discriminator.parameters(),
                                  self.discriminator_learning_rate)]

    def _objectives(self, x: Tensor, ctx: FitContext) -> tuple[Tensor, Tensor, dict[str, Tensor]]:
        """The autoencoder's loss, the discriminator's loss and the terms to log."""
        z = self._encode(x)                                              # (B, k)
        recon = -self._decode(z).log_prob(x).mean()
        real = prior_draws(self.prior, len(x), self.n_components, ctx.generator)
        critic = self.module_.discriminator
        # label 1 = "drawn from the prior"; the encoder is trained to earn that label
        generator = _label_nll(critic(z), 1.0)
        discriminator = _label_nll(critic(real), 1.0) + _label_nll(critic(z.detach()), 0.0)
        loss = recon + self.adversarial_weight * generator
        return loss, discriminator, {"recon": recon, "generator": generator,
                                     "discriminator": discriminator}

    def _loss(self, x: Tensor, y: Tensor | None, ctx: FitContext) -> LossTerms:
        loss, _, terms = self._objectives(x, ctx)
        return LossTerms(loss, terms)

    def _train_step(self, x: Tensor, y: Tensor | None, optimizers: Any,
                    ctx: FitContext) -> dict[str, Tensor]:
        autoencoder_opt, discriminator_opt = optimizers
        with ctx.precision.autocast():
            loss, d_loss, terms = self._objectives(x, ctx)
        out = {"loss": loss.detach(), **{k: v.detach() for k, v in terms.items()}}
        # one flag for the step, read once (the loop uses it too)
        if not all_finite(loss.detach() + d_loss.detach(), ctx.world):
            # no update at all; the sum reports whichever of the two is non-finite
            out["loss"] = (loss + d_loss).detach()
            return StepTerms(out, finite=False)
        for objective, opt in ((loss, autoencoder_opt), (d_loss, discriminator_opt)):
            # also drops the generator term's gradient on the discriminator's weights
            opt.zero_grad(set_to_none=True)
            ctx.precision.backward_step(objective, opt)
        ctx.precision.update()
        return StepTerms(out, finite=True)

    def _sample_latent(self, n_samples: int, generator: torch.Generator) -> Tensor:
        return prior_draws(self.prior, n_samples, self.n_components, generator)
