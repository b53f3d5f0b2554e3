"""What exists only while a model trains: one :class:`FitContext`, passed explicitly to the
hooks that need it, never stored on the estimator.

A model reaches its training noise (``ctx.randn``, ``ctx.generator``), the epoch, the
precision object and the process group through it; when ``fit`` returns, it is gone.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from aekit.runtime import Precision
from aekit.training.distributed import World


@dataclass
class LossTerms:
    """What ``_loss`` returns.

    Attributes
    ----------
    total : Tensor
        Scalar to minimise, averaged over the batch (nats per example for likelihood models).
    terms : dict of str to Tensor
        Scalars logged in ``history_`` next to the loss, e.g. ``{"recon": ..., "kl": ...}``.
    """

    total: Tensor
    terms: dict[str, Tensor] = field(default_factory=dict)


class DivergenceError(FloatingPointError):
    """Training produced a non-finite loss (raised with ``on_nan="raise"``)."""


@dataclass
class FitContext:
    """The state of one ``fit`` call.

    Attributes
    ----------
    device : torch.device
    precision : Precision
        Autocast, the fp16 gradient scaler and the backward step.
    generator : torch.Generator
        The model's noise: reparameterisation draws, corruption, dynamic binarization.
        Under DDP each rank has its own stream.
    order : torch.Generator
        Each epoch's minibatch order; the same on every rank.
    split : torch.Generator
        Draws the validation split only, so a resumed run draws the same one; a host (CPU)
        generator on every device, so one seed holds out the same rows on a CPU and a GPU.
    world : World
        This process's rank and the number of processes.
    epoch : int
        The epoch being trained (1-based; 0 before the first).
    loss : callable
        ``loss(x, y)``: the model's ``_loss`` with this context, compiled when
        ``compile=True``.
    ddp : torch.nn.Module or None
        The DistributedDataParallel wrapper of the loss under ``torchrun``.
    extra_history : dict
        Per-run lists a model adds to ``history_`` (e.g. greedy pretraining losses).
    train_index : Tensor or None
        Positions of the training rows among all rows when early stopping holds some out
        for validation (None: every row trains), so ``_pretrain`` can keep to them.
    shared : dict
        What a model's ``_pretrain`` prepares for its ``_loss`` during this fit (e.g.
        :class:`~aekit.models.neighbor_ae.NeighborAE`'s neighbour table).
    warm_start : bool
        The networks take a previous fit's weights after ``_pretrain`` (``warm_start``),
        so ``_pretrain`` need not initialise any.
    """

    device: torch.device
    precision: Precision
    generator: torch.Generator
    order: torch.Generator | None = None
    split: torch.Generator | None = None
    world: World = field(default_factory=World)
    epoch: int = 0
    loss: Callable[[Tensor, Tensor | None], LossTerms] | None = None
    ddp: Any = None
    extra_history: dict[str, list[float]] = field(default_factory=dict)
    train_index: Tensor | None = None
    shared: dict[str, Any] = field(default_factory=dict)
    warm_start: bool = False

    @classmethod
    def standalone(cls, generator: torch.Generator, precision: str = "32") -> FitContext:
        """A context for calling a model's training hooks outside ``fit`` (tests, notebooks
        that inspect a loss): the noise comes from ``generator``."""
        return cls(device=generator.device,
                   precision=Precision(precision, generator.device),
                   generator=generator)

    def randn(self, *shape: int) -> Tensor:
        """Standard normal noise of ``shape`` from the training generator."""
        return torch.randn(*shape, generator=self.generator, device=self.generator.device)
