"""One optimisation step: the default a model gets, and the pieces a model with its own
step (several optimizers, e.g. the adversarial autoencoder) reuses.

A step decides once whether its loss is finite on every rank (:func:`all_finite`: the one
host-device synchronisation of a training step on a GPU) and returns that flag with its
terms (:class:`StepTerms`), so the loop does not read the loss back a second time.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from aekit.training.context import FitContext, LossTerms
from aekit.training.distributed import World, all_finite


class StepTerms(dict):
    """The detached terms one step logs (a dict of name to scalar tensor), and
    ``finite``: whether the step's loss was finite on every rank, decided once by the step.
    A step returning a plain dict gets the flag computed by the loop instead."""

    def __init__(self, terms: dict[str, Tensor], finite: bool) -> None:
        super().__init__(terms)
        self.finite = bool(finite)


def step_is_finite(terms: dict[str, Tensor], world: World) -> bool:
    """The flag of a step's terms: :attr:`StepTerms.finite`, or for a plain dict whether
    ``terms["loss"]`` is finite on every rank (one synchronisation)."""
    if isinstance(terms, StepTerms):
        return terms.finite
    return all_finite(terms["loss"], world)


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
               ctx: FitContext) -> StepTerms:
    """One step of one optimizer on a minibatch; returns the detached terms to log, with
    the finiteness flag.

    A non-finite loss (on any rank) comes back as a NaN ``"loss"`` and ``finite=False``,
    with no update applied; the loop then acts on ``on_nan``.
    """
    optimizer.zero_grad(set_to_none=True)
    with ctx.precision.autocast():
        to_minimise, out = forward_loss(x, y, ctx)
    terms = {"loss": out.total.detach(), **{k: v.detach() for k, v in out.terms.items()}}
    if not all_finite(out.total, ctx.world):
        terms["loss"] = terms["loss"] * float("nan")   # non-finite on some rank: all skip
        return StepTerms(terms, finite=False)
    ctx.precision.backward_step(to_minimise, optimizer)
    ctx.precision.update()
    return StepTerms(terms, finite=True)
