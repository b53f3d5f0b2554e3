"""The one training loop.

Every model trains here. A model supplies ``_loss(x, y)`` (and, for adversarial models,
``_configure_optimizers`` / ``_train_step``); the loop owns the device, the seeded
minibatch order, mixed precision, non-finite-loss handling, early stopping, checkpoints,
progress display and ``history_``.

Data stays where it is: the whole array is one tensor on the device and a minibatch is
an index slice of it (``x[perm[i:i + B]]``), with the permutation drawn from the
estimator's own ``torch.Generator`` so the global RNG is never used.
"""

from __future__ import annotations

import math
import time
import warnings
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch
from sklearn.exceptions import ConvergenceWarning
from torch import Tensor

from . import distributed
from .checkpoint import LoopState, load_checkpoint, save_checkpoint
from .streaming import StreamedRows, iter_batches

if TYPE_CHECKING:
    from .base import BaseAutoencoder

PRECISIONS = ("32", "bf16-mixed", "16-mixed")
ON_NAN = ("restore", "raise", "skip_batch")


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


def resolve_device(device: str) -> torch.device:
    """"auto" -> CUDA when available, else CPU; an unavailable CUDA request is refused."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if str(device).startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device={device!r} was requested but CUDA is not available; "
                         "use device='cpu' or device='auto'")
    try:
        return torch.device(device)
    except RuntimeError:
        raise ValueError(f"unknown device {device!r}; use 'auto', 'cpu' or 'cuda'") from None


def autocast(precision: str, device: torch.device):
    """The autocast context for ``precision``: matrix work in bf16/fp16, weights in fp32."""
    if precision == "32":
        return nullcontext()
    dtype = torch.bfloat16 if precision == "bf16-mixed" else torch.float16
    return torch.autocast(device_type=device.type, dtype=dtype)


def compiled(fn: Any, what: str) -> Any:
    """``torch.compile(fn)``, falling back to ``fn`` with a warning where compiling fails
    (no compiler toolchain, unsupported platform or Python). A compiled call that fails is
    run again eagerly, and the eager version is used from then on."""
    try:
        fast = torch.compile(fn)
    except Exception as exc:    # torch raises several types for an unusable compiler
        warnings.warn(f"compile=True: torch.compile is unavailable here ({exc}); "
                      f"running {what} eagerly", RuntimeWarning, stacklevel=3)
        return fn
    state = {"fast": fast}

    def run(*args: Any) -> Any:
        if state["fast"] is None:
            return fn(*args)
        try:
            return state["fast"](*args)
        except Exception as exc:
            state["fast"] = None
            result = fn(*args)      # a genuine error raises here again, without the warning
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            warnings.warn(f"compile=True: compiling {what} failed ({first}); running it "
                          "eagerly", RuntimeWarning, stacklevel=2)
            return result

    return run


def default_optimizer(params: Any, learning_rate: float) -> torch.optim.Optimizer:
    """Adam, fused into one kernel per step where the build supports it (much faster on CPU)."""
    params = list(params)
    try:
        return torch.optim.Adam(params, lr=learning_rate, fused=True)
    except (RuntimeError, ValueError, TypeError):
        return torch.optim.Adam(params, lr=learning_rate)


class TrainingStepMixin:
    """One optimisation step, as the loop calls it on a model: the forward pass through
    DDP and ``torch.compile`` when active, autocast, backward through the fp16 gradient
    scaler, and the training noise. Models with several optimizers override
    ``_configure_optimizers`` / ``_train_step`` and reuse the rest."""

    def _configure_optimizers(self) -> torch.optim.Optimizer:
        return default_optimizer(self.module_.parameters(), self.learning_rate)

    def _forward_loss(self, x: Tensor, y: Tensor | None) -> tuple[Tensor, LossTerms]:
        """(the scalar to backpropagate, the loss terms to log), through DDP and
        ``torch.compile`` when they are active."""
        ddp = self.__dict__.get("_ddp")
        if ddp is not None:
            to_minimise, total, terms = ddp(x, y)
            return to_minimise, LossTerms(total, terms)
        out = self.__dict__.get("_compiled_loss", self._loss)(x, y)
        return out.total, out

    def _train_step(self, x: Tensor, y: Tensor | None, optimizer: Any) -> dict[str, Tensor]:
        """One optimisation step on a minibatch; returns the detached terms to log.

        Contract for overrides: a non-finite ``"loss"`` must come with no update applied;
        the loop then acts on ``on_nan``.
        """
        optimizer.zero_grad(set_to_none=True)
        with autocast(self.precision, x.device):
            to_minimise, out = self._forward_loss(x, y)
        terms = {"loss": out.total.detach(), **{k: v.detach() for k, v in out.terms.items()}}
        if not distributed.all_finite(out.total, self.__dict__.get("_world", distributed.World())):
            terms["loss"] = terms["loss"] * float("nan")   # non-finite on some rank: all skip
            return terms
        self._backward_step(to_minimise, optimizer)
        self._update_scaler()
        return terms

    def _backward_step(self, objective: Tensor, optimizer: Any) -> None:
        """Backpropagate ``objective`` and step ``optimizer``, through the fp16 gradient
        scaler when ``precision="16-mixed"`` (call ``_update_scaler`` once per step)."""
        scaler = self.__dict__.get("_scaler")
        if scaler is None:
            objective.backward()
            optimizer.step()
        else:
            scaler.scale(objective).backward()
            scaler.step(optimizer)

    def _update_scaler(self) -> None:
        scaler = self.__dict__.get("_scaler")
        if scaler is not None:
            scaler.update()

    def _randn(self, *shape: int) -> Tensor:
        """Standard normal noise from the training generator (only valid inside ``fit``)."""
        g = self._generator
        return torch.randn(*shape, generator=g, device=g.device)



def _split(est: BaseAutoencoder, x: Any, y: Tensor | None, generator: torch.Generator):
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
    y_tr, y_va = (None, None) if y is None else (y[tr], y[va])
    if isinstance(x, StreamedRows):             # views; rows are read when used
        x_tr, x_val = x.subset(tr), x.subset(va)
        if est.binarize == "dynamic":           # a fixed binarization of each chunk
            x_val.binarize_seed = int(torch.randint(2**31 - 1, (1,), generator=generator,
                                                    device=generator.device))
        return x_tr, y_tr, x_val, y_va
    x_val = x[va]
    if est.binarize == "dynamic":               # validation rows: binarized once
        x_val = torch.bernoulli(x_val, generator=generator)
    return x[tr], y_tr, x_val, y_va


def _steps(est: BaseAutoencoder, perm: Tensor, world: distributed.World
           ) -> list[tuple[Tensor, int, float]]:
    """``(rows of this rank, rows of the global minibatch it accounts for, loss weight)``
    for each minibatch of the epoch order ``perm``."""
    n = len(perm)
    batch_size = min(est.batch_size, n)
    steps = []
    for start in range(0, n, batch_size):
        idx = perm[start:start + batch_size]
        if world.size == 1:
            steps.append((idx, len(idx), 1.0))
            continue
        shard = idx[world.rank::world.size]     # this rank's share of the global minibatch
        weight = len(shard) * world.size / len(idx)
        if len(shard) == 0:                     # a last batch smaller than the world
            shard, weight = idx[:1], 0.0
        steps.append((shard, int(weight * len(idx) / world.size), weight))
    return steps


def _train_epoch(est: BaseAutoencoder, x: Any, y: Tensor | None, optimizer: Any,
                 order: torch.Generator, noise: torch.Generator
                 ) -> tuple[dict[str, float], tuple[int, float] | None]:
    """One pass over ``x`` in an order drawn from ``order`` (the same on every rank);
    ``noise`` (each rank its own) binarizes. Returns the mean terms, and ``(step, loss)``
    of a non-finite loss that must stop training (None when the epoch went through)."""
    world = est.__dict__.get("_world", distributed.World())
    ddp = est.__dict__.get("_ddp")
    if isinstance(x, StreamedRows):
        perm = x.epoch_order(order)
    else:
        perm = torch.randperm(x.shape[0], generator=order, device=order.device)
    steps = _steps(est, perm, world)
    sums: dict[str, Tensor] = {}
    seen, skipped, bad = 0, 0, None
    batches = iter_batches(x, [idx for idx, _, _ in steps])
    try:
        for step, ((idx, n_rows, weight), xb) in enumerate(zip(steps, batches), start=1):
            if ddp is not None:
                ddp.module.weight = weight
            if est.binarize == "dynamic":       # fresh binary pixels every epoch
                xb = torch.bernoulli(xb, generator=noise)
            terms = est._train_step(xb, None if y is None else y[idx.to(y.device)], optimizer)
            if not torch.isfinite(terms["loss"]):
                bad = (step, float(terms["loss"]))
                if est.on_nan != "skip_batch":
                    return {}, bad
                skipped += 1
                continue
            seen += n_rows
            for name, value in terms.items():
                sums[name] = sums[name] + value * n_rows if name in sums else value * n_rows
    finally:
        if hasattr(batches, "close"):
            batches.close()                     # stops the reading thread of a stream
    totals = distributed.all_reduce_sums({"_seen": seen, **{k: float(v) for k, v in sums.items()}},
                                         world)
    seen = int(totals.pop("_seen"))
    if seen == 0:
        return {}, bad
    row = {name: total / seen for name, total in totals.items()}
    if est.on_nan == "skip_batch":
        row["skipped_batches"] = float(skipped)
    return row, None


@torch.no_grad()
def _evaluate(est: BaseAutoencoder, x: Tensor, y: Tensor | None) -> dict[str, float]:
    n, chunk = x.shape[0], max(est.batch_size, 1024)
    sums: dict[str, float] = {}
    for start in range(0, n, chunk):
        xb = x[start:start + chunk]
        with autocast(est.precision, xb.device):
            loss_fn = est.__dict__.get("_compiled_loss", est._loss)
            out = loss_fn(xb, None if y is None else y[start:start + len(xb)])
        for name, value in {"loss": out.total, **out.terms}.items():
            sums[name] = sums.get(name, 0.0) + float(value) * len(xb)
    return {name: total / n for name, total in sums.items()}


def _progress(est: BaseAutoencoder, world: distributed.World):
    if not est.verbose or not world.is_main:
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


def _divergence_message(est: BaseAutoencoder, epoch: int, where: str, value: float) -> str:
    return (f"{type(est).__name__} training diverged at epoch {epoch}, {where}: the loss is "
            f"{value}. Likely causes: learning_rate too high (now {est.learning_rate:g}; try "
            "10x lower), unscaled input (scale features to [0, 1] or standardise them), or a "
            f"likelihood that does not fit the data (now {est.likelihood!r}).")


def _snapshot(module: torch.nn.Module) -> dict[str, Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def fit_loop(est: BaseAutoencoder, x: Tensor | StreamedRows, y: Tensor | None,
             order: torch.Generator, noise: torch.Generator, split: torch.Generator, *,
             checkpoint_dir: str | None = None, checkpoint_every: int = 1,
             resume: bool = False) -> None:
    """Train ``est.module_`` on the device-resident rows ``x`` (and labels ``y``).

    Sets ``history_`` (a dict of per-epoch lists: ``loss`` and each logged term, their
    ``val_`` versions when early stopping, and ``time`` in seconds), ``n_iter_`` and
    ``best_loss_``. With ``early_stopping`` the weights of the best validation epoch are kept.

    ``order`` draws each epoch's minibatch order and is the same on every rank; ``noise``
    is the model's noise (and dynamic binarization), each rank its own; ``split`` only
    draws the validation split, so a resumed run draws the same one. With ``checkpoint_dir`` the
    state is saved every ``checkpoint_every`` epochs and at the end; ``resume`` continues
    from the checkpoint there (and starts afresh when there is none).
    """
    world = est.__dict__.get("_world", distributed.World())
    x_train, y_train, x_val, y_val = _split(est, x, y, split)
    configured = est._configure_optimizers()
    optimizers = list(configured) if isinstance(configured, (list, tuple)) else [configured]
    state = LoopState()
    if resume and checkpoint_dir is not None:
        generators = {"rng.order": order, f"rng.noise.{world.rank}": noise}
        state = load_checkpoint(checkpoint_dir, est, x, y, optimizers, generators, world.rank,
                                world.size) or state
    monitor = "val_loss" if x_val is not None else "loss"
    last_good = _snapshot(est.module_)
    name = type(est).__name__

    def checkpoint() -> None:
        if checkpoint_dir is not None:
            noise_states = distributed.all_gather_bytes(noise.get_state(), world)
            rng_states = {"rng.order": order.get_state(),
                          **{f"rng.noise.{r}": g for r, g in enumerate(noise_states)}}
            if world.is_main:
                save_checkpoint(checkpoint_dir, est, x, y, optimizers, rng_states, state)

    with _progress(est, world) as bar:
        task = None
        if bar is not None:
            task = bar.add_task(name, total=est.max_iter, completed=state.epoch, status="")
        while not state.stopped and state.epoch < est.max_iter:
            epoch, start = state.epoch + 1, time.perf_counter()
            est._on_epoch_start(epoch)
            est.module_.train()
            row, bad = _train_epoch(est, x_train, y_train, configured, order, noise)
            if bad is None and x_val is not None:
                est.module_.eval()
                val = distributed.all_reduce_sums(_evaluate(est, x_val, y_val), world)
                row.update({f"val_{k}": v / world.size for k, v in val.items()})
                if not math.isfinite(row["val_loss"]):
                    bad = (0, row["val_loss"])
            if bad is not None:
                where = f"step {bad[0]}" if bad[0] else "on the validation rows"
                message = _divergence_message(est, epoch, where, bad[1])
                if est.on_nan == "raise":
                    raise DivergenceError(message)
                est.module_.load_state_dict(last_good)
                warnings.warn(message + f" Stopped and restored the weights of epoch "
                              f"{state.epoch}.", ConvergenceWarning, stacklevel=3)
                state.stopped = True
                break
            row["time"] = time.perf_counter() - start
            est.module_.eval()
            with torch.no_grad():
                row.update(est._on_epoch_end(epoch, x_train))
            for key, value in row.items():
                state.history.setdefault(key, []).append(value)

            current = row[monitor]
            if current < state.best - est.tol:
                state.best, state.stall = current, 0
                if x_val is not None:
                    state.best_state = _snapshot(est.module_)
            else:
                state.stall += 1
            state.epoch = epoch
            state.stopped = state.stall >= est.n_iter_no_change
            last_good = _snapshot(est.module_)
            if bar is not None:
                bar.update(task, advance=1, status=f"{monitor} {current:.4g}")
            if est.verbose >= 2 and world.is_main:
                print(f"{name} epoch {epoch}: " + ", ".join(
                    f"{k} {v:.4g}" for k, v in row.items() if isinstance(v, float)))
            if state.stopped or epoch % checkpoint_every == 0 or epoch == est.max_iter:
                checkpoint()
        if bar is not None:
            bar.update(task, total=max(state.epoch, 1), completed=state.epoch)

    if state.best_state is not None:
        est.module_.load_state_dict(state.best_state)
    est.module_.eval()
    est.history_ = state.history
    est.n_iter_ = state.epoch
    est.best_loss_ = state.best
