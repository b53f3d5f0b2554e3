"""The one training loop.

Every model trains here. A model supplies ``_loss(x, y)`` (and, for adversarial models,
``_configure_optimizers`` / ``_train_step``); the loop owns the device, the seeded
minibatch order, early stopping, progress display and ``history_``.

Data stays where it is: the whole array is one tensor on the device and a minibatch is
an index slice of it (``x[perm[i:i + B]]``), with the permutation drawn from the
estimator's own ``torch.Generator`` so the global RNG is never used.
"""

from __future__ import annotations

import math
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

if TYPE_CHECKING:
    from .base import BaseAutoencoder


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


def resolve_device(device: str) -> torch.device:
    """"auto" -> CUDA when available, else CPU; an unavailable CUDA request is refused."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if str(device).startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device={device!r} was requested but CUDA is not available; "
                         "use device='cpu' or device='auto'")
    return torch.device(device)


def default_optimizer(params: Any, learning_rate: float) -> torch.optim.Optimizer:
    """Adam, fused into one kernel per step where the build supports it (much faster on CPU)."""
    params = list(params)
    try:
        return torch.optim.Adam(params, lr=learning_rate, fused=True)
    except (RuntimeError, ValueError, TypeError):
        return torch.optim.Adam(params, lr=learning_rate)


def _split(est: BaseAutoencoder, x: Tensor, y: Tensor | None, generator: torch.Generator):
    """Hold out ``validation_fraction`` of the rows when early stopping is on."""
    if not est.early_stopping:
        return x, y, None, None
    n = x.shape[0]
    n_val = int(round(est.validation_fraction * n))
    if n_val < 1 or n - n_val < 1:
        raise ValueError(
            f"early_stopping with validation_fraction={est.validation_fraction} leaves "
            f"{n_val} validation and {n - n_val} training rows out of {n}; "
            "use more data, another validation_fraction, or early_stopping=False")
    perm = torch.randperm(n, generator=generator, device=generator.device)
    tr, va = perm[n_val:], perm[:n_val]
    return x[tr], None if y is None else y[tr], x[va], None if y is None else y[va]


def _train_epoch(est: BaseAutoencoder, x: Tensor, y: Tensor | None,
                 optimizer: Any, generator: torch.Generator) -> dict[str, float]:
    n = x.shape[0]
    batch_size = min(est.batch_size, n)
    perm = torch.randperm(n, generator=generator, device=generator.device)
    sums: dict[str, Tensor] = {}
    for start in range(0, n, batch_size):
        idx = perm[start:start + batch_size]
        terms = est._train_step(x[idx], None if y is None else y[idx], optimizer)
        for name, value in terms.items():
            sums[name] = sums[name] + value * len(idx) if name in sums else value * len(idx)
    return {name: float(total) / n for name, total in sums.items()}


@torch.no_grad()
def _evaluate(est: BaseAutoencoder, x: Tensor, y: Tensor | None) -> dict[str, float]:
    n = x.shape[0]
    sums: dict[str, float] = {}
    for start in range(0, n, max(est.batch_size, 1024)):
        xb = x[start:start + max(est.batch_size, 1024)]
        out = est._loss(xb, None if y is None else y[start:start + len(xb)])
        for name, value in {"loss": out.total, **out.terms}.items():
            sums[name] = sums.get(name, 0.0) + float(value) * len(xb)
    return {name: total / n for name, total in sums.items()}


def _progress(est: BaseAutoencoder):
    if not est.verbose:
        return nullcontext(None)
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
    )

    return Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TextColumn("{task.fields[status]}"), TimeRemainingColumn(), transient=False)


def fit_loop(est: BaseAutoencoder, x: Tensor, y: Tensor | None,
             generator: torch.Generator) -> None:
    """Train ``est.module_`` on the device-resident rows ``x`` (and labels ``y``).

    Sets ``history_`` (a dict of per-epoch lists: ``loss`` and each logged term, their
    ``val_`` versions when early stopping, and ``time`` in seconds), ``n_iter_`` and
    ``best_loss_``. With ``early_stopping`` the weights of the best validation epoch are kept.
    """
    x_train, y_train, x_val, y_val = _split(est, x, y, generator)
    optimizer = est._configure_optimizers()
    monitor = "val_loss" if x_val is not None else "loss"
    history: dict[str, list[float]] = {}
    best, stall, best_state = math.inf, 0, None
    name = type(est).__name__

    with _progress(est) as bar:
        task = bar.add_task(name, total=est.max_iter, status="") if bar is not None else None
        for epoch in range(1, est.max_iter + 1):
            start = time.perf_counter()
            est.module_.train()
            row = _train_epoch(est, x_train, y_train, optimizer, generator)
            if x_val is not None:
                est.module_.eval()
                row.update({f"val_{k}": v for k, v in _evaluate(est, x_val, y_val).items()})
            row["time"] = time.perf_counter() - start
            for key, value in row.items():
                history.setdefault(key, []).append(value)

            current = row[monitor]
            if not math.isfinite(current):
                raise FloatingPointError(
                    f"{name} training diverged at epoch {epoch}: {monitor} is {current}. "
                    "Likely causes: learning_rate too high (try 10x lower), unscaled input "
                    "(scale features to [0, 1] or standardise them), or a likelihood that does "
                    "not fit the data.")
            if current < best - est.tol:
                best, stall = current, 0
                if x_val is not None:
                    best_state = {k: v.detach().clone()
                                  for k, v in est.module_.state_dict().items()}
            else:
                stall += 1
            if bar is not None:
                bar.update(task, advance=1, status=f"{monitor} {current:.4g}")
            if est.verbose >= 2:
                print(f"{name} epoch {epoch}: " + ", ".join(f"{k} {v:.4g}" for k, v in row.items()))
            if stall >= est.n_iter_no_change:
                break

    if best_state is not None:
        est.module_.load_state_dict(best_state)
    est.module_.eval()
    est.history_ = history
    est.n_iter_ = epoch
    est.best_loss_ = best
