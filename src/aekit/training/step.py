"""One optimisation step: the default a model gets, and the pieces a model with its own
step (several optimizers, e.g. the adversarial autoencoder) reuses."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from aekit.training.context import FitContext, LossTerms
from aekit.training.distributed import all_finite


def default_optimizer(params: Any, learning_rate: float) -> torch.optim.Optimizer:
    """Adam, fused into one kernel per step where the build supports it (much faster on CPU)."""
    params = list(params)
    try:
        return torch.optim.Adam(params, lr=learning_rate, fused=True)
    except (RuntimeError, ValueError, TypeError):
        return torch.optim.Adam(params, lr=learning_rate)


def forward_loss(x: Tensor, y: Tensor | None, ctx: FitContext) -> tuple[Tensor, LossTerms]:
    """(the scalar to backpropagate, the loss terms to log), through DDP and
    ``torch.compile`` when they are active."""
    if ctx.ddp is not None:
        to_minimise, total, terms = ctx.ddp(x, y)
        return to_minimise, LossTerms(total, terms)
    out = ctx.loss(x, y)
    return out.total, out


def train_step(x: Tensor, y: Tensor | None, optimizer: torch.optim.Optimizer,
               ctx: FitContext) -> dict[str, Tensor]:
    """One step of one optimizer on a minibatch; returns the detached terms to log.

    A non-finite loss (on any rank) comes back as a NaN ``"loss"`` with no update
    applied; the loop then acts on ``on_nan``.
    """
    optimizer.zero_grad(set_to_none=True)
    with ctx.precision.autocast():
        to_minimise, out = forward_loss(x, y, ctx)
    terms = {"loss": out.total.detach(), **{k: v.detach() for k, v in out.terms.items()}}
    if not all_finite(out.total, ctx.world):
        terms["loss"] = terms["loss"] * float("nan")   # non-finite on some rank: all skip
        return terms
    ctx.precision.backward_step(to_minimise, optimizer)
    ctx.precision.update()
    return terms
