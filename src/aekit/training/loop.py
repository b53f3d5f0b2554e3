"""The one training loop.

Every model trains here. A model supplies hooks (``_build``, ``_loss(x, y, ctx)``, and for
models with several optimizers ``_configure_optimizers`` / ``_train_step``); the loop owns
the device, the seeded minibatch order, mixed precision, non-finite-loss handling, early
stopping, checkpoints, progress display and ``history_``. What exists only during a fit
lives in one :class:`~aekit.training.context.FitContext`, passed to the hooks.

Data stays where it is: the whole array is one tensor on the device and a minibatch is
an index slice of it (``x[perm[i:i + B]]``), with the permutation drawn from the
run's own ``torch.Generator`` so the global RNG is never used.
"""

from __future__ import annotations

import dataclasses
import math
import time
import warnings
from contextlib import nullcontext
from typing import Any, NamedTuple

import numpy as np
import torch
from sklearn.exceptions import ConvergenceWarning
from torch import Tensor

from aekit.data.sources import Source
from aekit.data.streaming import RowView, StreamedRows, iter_batches
from aekit.exceptions import InputError
from aekit.runtime import Precision, compiled, deterministic_algorithms, flush_denormal
from aekit.training import distributed
from aekit.training.checkpoint import (
    LoopState,
    claim,
    data_fingerprint,
    load_checkpoint,
    save_checkpoint,
)
from aekit.training.context import DivergenceError, FitContext
from aekit.training.step import step_is_finite

ON_NAN = ("restore", "raise", "skip_batch")
#: ``learning_rate_schedule`` values (see :func:`learning_rate_scale`)
SCHEDULES = ("constant", "cosine", "plateau")
#: "plateau": each decay multiplies the step size by this, at most this many times
PLATEAU_FACTOR, PLATEAU_DECAYS = 0.2, 3


def fit_model(est: Any, data: Any, targets: Any, *, device: torch.device,
              world: distributed.World, seed: int, budget: int,
              fingerprint: str | None = None, checkpoint_dir: str | None = None,
              checkpoint_every: int = 1, resume: bool = False, overwrite: bool = False,
              warm_state: dict[str, Tensor] | None = None) -> None:
    """Build ``est``'s networks and train them on ``data`` (validated rows, or a
    :class:`~aekit.data.sources.Source` to stream), then run its post-fit hook.

    ``targets`` are what the model's ``_fit_targets`` returned for ``y`` (None for
    unsupervised models). Sets ``module_``, ``history_``, ``n_iter_`` and ``best_loss_``.
    ``checkpoint_dir`` is held for the run (:func:`~aekit.training.checkpoint.claim`): a
    fresh run over an existing checkpoint is refused unless ``overwrite``. ``warm_state``
    (``warm_start``): the weights and buffers a previous fit left, which the new networks
    take after ``_pretrain`` (a checkpoint being resumed replaces them in turn).
    """
    with claim(checkpoint_dir, resume=resume, overwrite=overwrite, main=world.is_main):
        _fit_model(est, data, targets, device=device, world=world, seed=seed, budget=budget,
                   fingerprint=fingerprint, checkpoint_dir=checkpoint_dir,
                   checkpoint_every=checkpoint_every, resume=resume, warm_state=warm_state)


def _fit_model(est: Any, data: Any, targets: Any, *, device: torch.device,
               world: distributed.World, seed: int, budget: int, fingerprint: str | None,
               checkpoint_dir: str | None, checkpoint_every: int, resume: bool,
               warm_state: dict[str, Tensor] | None = None) -> None:
    seeds = np.random.SeedSequence(seed).generate_state(4)
    # networks are built on the CPU from torch's global CPU generator, seeded inside
    # fork_rng so the caller's state comes back; not torch.manual_seed, which would also
    # reseed every CUDA generator behind the caller's back
    with torch.random.fork_rng(devices=[]):
        torch.default_generator.manual_seed(int(seeds[0]))
        module = est._build(est.input_shape_)
    if warm_state is not None:          # refused before any data work when the shapes differ
        check_warm_state(est, module, warm_state)
    est.module_ = module.to(device)
    # minibatch order and the validation split: the same on every rank; the model's
    # noise: each rank its own stream. The split is drawn on the host, so one random_state
    # holds out the same rows on the CPU and on a GPU
    noise_seed = np.random.SeedSequence([int(seeds[3]), world.rank]).generate_state(1)[0]
    ctx = FitContext(
        device=device, precision=Precision(est.precision, device),
        generator=torch.Generator(device=device).manual_seed(int(noise_seed)),
        order=torch.Generator(device=device).manual_seed(int(seeds[1])),
        split=torch.Generator().manual_seed(int(seeds[2])), world=world,
        warm_start=warm_state is not None)

    def loss(x: Tensor, y: Tensor | None):
        return est._loss(x, y, ctx)

    ctx.loss = compiled(loss, "the training loss") if est.compile else loss
    if isinstance(data, Source):
        # the loop holds at most about two shuffle buffers of rows
        x = StreamedRows(data, device, budget // (3 * data.row_bytes))
        x.sha256 = fingerprint
    else:
        rows = np.ascontiguousarray(data)
        x = torch.as_tensor(rows, device=device)
        if checkpoint_dir is not None:      # once per fit, from the host rows
            data_fingerprint(x, host=rows)
    if world.size > 1:
        from torch.nn.parallel import DistributedDataParallel

        device_ids = [device] if device.type == "cuda" else None
        # no broadcast of buffers from rank 0 before every forward: it would overwrite
        # what a model's step keeps in buffers (VQ-VAE's EMA codebook, which all-reduces
        # its statistics so every rank holds the same one) with rank 0's alone
        ctx.ddp = DistributedDataParallel(distributed.LossModule(est.module_, ctx),
                                          device_ids=device_ids, broadcast_buffers=False)
    y = est._labels_tensor(targets, x.shape[0], device)
    split = _split(est, x, y, ctx.split)
    ctx.train_index = split.train_index
    with flush_denormal(est.flush_denormal and device.type == "cpu"), \
            deterministic_algorithms(est.deterministic and device.type == "cuda"):
        # what _pretrain draws must be the same on every rank: the shared order stream
        est._pretrain(x, y, dataclasses.replace(ctx, generator=ctx.order))
        if warm_state is not None:
            with torch.no_grad():
                est.module_.load_state_dict(warm_state, strict=False)
        fit_loop(est, x, y, ctx, split, checkpoint_dir=checkpoint_dir,
                 checkpoint_every=checkpoint_every, resume=resume)
        for key, values in ctx.extra_history.items():
            est.history_[key] = values
        with torch.inference_mode():
            est._after_fit(statistics_rows(est, x, ctx))


def check_warm_state(est: Any, module: torch.nn.Module, warm: dict[str, Tensor]) -> None:
    """Refuse (:class:`~aekit.exceptions.InputError`) a ``warm_start`` whose fitted networks
    do not have the new ones' shapes: the first difference, and what to do."""
    own = est._warm_state(module)
    problems = [f"{k} is new" for k in own
                if k not in warm and k.rsplit(".", 1)[-1] not in est._warm_new_parts]
    problems += [f"{k} is gone" for k in warm if k not in own]
    problems += [f"{k} has shape {tuple(own[k].shape)}, was {tuple(warm[k].shape)}"
                 for k in own if k in warm and own[k].shape != warm[k].shape]
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise InputError(
            f"warm_start=True: the fitted networks do not fit this data and these parameters: "
            f"{problems[0]}{more}; keep the data's width and the parameters that shape the "
            f"networks, or set warm_start=False to train new ones")


def statistics_rows(est: Any, x: Any, ctx: FitContext) -> Any:
    """The rows post-fit and per-epoch statistics are computed on: the training rows, or
    with ``binarize="dynamic"`` one fixed binarization of them (what the encoder saw in
    training, never grey levels)."""
    if est.binarize != "dynamic":
        return x
    seed = int(torch.randint(2**31 - 1, (1,), generator=ctx.split, device=ctx.split.device))
    if isinstance(x, StreamedRows):
        view = x.subset(np.arange(len(x)))
        view.binarize_seed = seed
        return view
    g = torch.Generator(device=x.device).manual_seed(seed)
    return torch.bernoulli(x, generator=g)


class Split(NamedTuple):
    """The training and validation parts of one fit's rows (``x_val`` None without early
    stopping); ``train_index`` holds the training rows' positions in the whole data (None:
    every row trains)."""

    x_train: Any
    y_train: Tensor | None
    x_val: Any
    y_val: Tensor | None
    train_index: Tensor | None


def _split(est: Any, x: Any, y: Tensor | None, generator: torch.Generator) -> Split:
    """Hold out ``validation_fraction`` of the rows when early stopping is on: views of
    ``x`` (:class:`~aekit.data.streaming.RowView`, or a stream's subsets), so the data are
    held once; only dynamically binarized validation rows are a copy (binarized once)."""
    if not est.early_stopping:
        return Split(x, y, None, None, None)
    n = x.shape[0]
    n_val = int(round(est.validation_fraction * n))
    if n_val < 1 or n - n_val < 1:
        raise InputError(
            f"early_stopping with validation_fraction={est.validation_fraction} leaves "
            f"{n_val} validation and {n - n_val} training rows out of {n}; "
            "use more data, another validation_fraction, or early_stopping=False")
    device = x.device
    # drawn by the host generator, whatever the device: the same rows on any device
    perm = torch.randperm(n, generator=generator).to(device)
    tr, va = perm[n_val:], perm[:n_val]
    y_tr, y_va = (None, None) if y is None else (y[tr], y[va])
    if isinstance(x, StreamedRows):             # views; rows are read when used
        x_tr, x_val = x.subset(tr), x.subset(va)
        if est.binarize == "dynamic":           # a fixed binarization of each chunk
            x_val.binarize_seed = int(torch.randint(2**31 - 1, (1,), generator=generator))
        return Split(x_tr, y_tr, x_val, y_va, tr)
    # views of the rows, gathered a minibatch or chunk at a time: the device holds the
    # data once, not once more as training and validation copies
    x_val = RowView(x, va)
    if est.binarize == "dynamic":               # validation rows: binarized once, on the host
        x_val = torch.bernoulli(x_val.rows().cpu(), generator=generator).to(device)
    return Split(RowView(x, tr), y_tr, x_val, y_va, tr)


def _steps(est: Any, perm: Tensor, world: distributed.World
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


def _train_epoch(est: Any, x: Any, y: Tensor | None, optimizer: Any, ctx: FitContext
                 ) -> tuple[dict[str, float], tuple[int, float] | None]:
    """One pass over ``x`` in an order drawn from ``ctx.order`` (the same on every rank);
    ``ctx.generator`` (each rank its own) binarizes. Returns the mean terms, and
    ``(step, loss)`` of a non-finite loss that must stop training (None when the epoch
    went through)."""
    world, ddp, order = ctx.world, ctx.ddp, ctx.order
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
                xb = torch.bernoulli(xb, generator=ctx.generator)
            terms = est._train_step(xb, None if y is None else y[idx.to(y.device)], optimizer, ctx)
            # the step's one flag (one host-device sync per step); the sums below stay on
            # the device until the epoch ends
            if not step_is_finite(terms, world):
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
    # read back once per epoch: every term's sum in one transfer (and one all-reduce)
    totals = distributed.all_reduce_sums({"_seen": seen, **sums}, world)
    seen = int(totals.pop("_seen"))
    if seen == 0:
        return {}, bad
    row = {name: total / seen for name, total in totals.items()}
    if est.on_nan == "skip_batch":
        row["skipped_batches"] = float(skipped)
    return row, None


@torch.no_grad()
def _evaluate(est: Any, x: Tensor, y: Tensor | None, ctx: FitContext) -> dict[str, float]:
    n, chunk = x.shape[0], max(est.batch_size, 1024)
    sums: dict[str, Tensor] = {}
    for start in range(0, n, chunk):
        xb = x[start:start + chunk]
        with ctx.precision.autocast():
            out = ctx.loss(xb, None if y is None else y[start:start + len(xb)])
        for name, value in {"loss": out.total, **out.terms}.items():
            value = value.detach().double() * len(xb)      # summed on the device
            sums[name] = sums[name] + value if name in sums else value
    totals = torch.stack(list(sums.values())).cpu().tolist()      # one read-back
    return {name: total / n for name, total in zip(sums, totals)}


def _unusable_epoch(est: Any, row: dict[str, float], n_rows: int) -> tuple[str, float] | None:
    """``(what went wrong, the loss)`` for an epoch that went through but must not count
    as good: one that skipped most of its minibatches (``on_nan="skip_batch"``), or that
    left non-finite weights; None for a good epoch."""
    n_steps = math.ceil(n_rows / min(est.batch_size, n_rows))
    skipped = row.get("skipped_batches", 0.0)
    if skipped > n_steps / 2:
        return (f"{int(skipped)} of {n_steps} minibatches skipped for non-finite losses",
                row.get("loss", math.nan))
    finite = torch.stack([torch.isfinite(p).all() for p in est.module_.parameters()])
    if not bool(finite.all()):                                        # one read-back
        return "the weights became non-finite", row.get("loss", math.nan)
    return None


def _progress(est: Any, world: distributed.World):
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


def _divergence_message(est: Any, epoch: int, where: str, value: float) -> str:
    return (f"{type(est).__name__} training diverged at epoch {epoch}, {where}: the loss is "
            f"{value}. Likely causes: learning_rate too high (now {est.learning_rate:g}; try "
            "10x lower), unscaled input (scale features to [0, 1] or standardise them), or a "
            f"likelihood that does not fit the data (now {est.likelihood_!r}).")


def learning_rate_scale(schedule: str, epoch: int, max_iter: int, decays: int) -> float:
    """What multiplies every optimizer's step size in ``epoch`` (1-based).

    "constant": 1. "cosine": half a cosine from 1 at the first epoch towards 0 after
    ``max_iter`` (Loshchilov & Hutter 2017, SGDR without restarts). "plateau":
    ``PLATEAU_FACTOR ** decays``, ``decays`` being how often the watched loss has stalled.
    """
    if schedule == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * (epoch - 1) / max_iter))
    if schedule == "plateau":
        return PLATEAU_FACTOR ** decays
    return 1.0


def _set_step_sizes(optimizers: list[Any], rates: list[list[float]], scale: float) -> None:
    for optimizer, group_rates in zip(optimizers, rates):
        for group, rate in zip(optimizer.param_groups, group_rates):
            group["lr"] = rate * scale


def _snapshot(module: torch.nn.Module) -> dict[str, Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def fit_loop(est: Any, x: Tensor | StreamedRows, y: Tensor | None, ctx: FitContext,
             split: Split, *, checkpoint_dir: str | None = None, checkpoint_every: int = 1,
             resume: bool = False) -> None:
    """Train ``est.module_`` on the device-resident rows ``x`` (and labels ``y``), split
    into training and validation parts by ``split`` (:func:`_split`).

    Sets ``history_`` (a dict of per-epoch lists: ``loss`` and each logged term, their
    ``val_`` versions when early stopping, and ``time`` in seconds), ``n_iter_`` and
    ``best_loss_``. With ``early_stopping`` the weights of the best validation epoch are kept.

    ``ctx.order`` draws each epoch's minibatch order and is the same on every rank;
    ``ctx.generator`` is the model's noise (and dynamic binarization), each rank its own;
    ``ctx.split`` only draws the validation split, so a resumed run draws the same one.
    With ``checkpoint_dir`` the state is saved every ``checkpoint_every`` epochs and at
    the end; ``resume`` continues from the checkpoint there (and starts afresh when there
    is none).
    """
    world, order, noise = ctx.world, ctx.order, ctx.generator
    x_train, y_train, x_val, y_val, _ = split
    configured = est._configure_optimizers()
    optimizers = list(configured) if isinstance(configured, (list, tuple)) else [configured]
    # the step sizes the model asked for, which the schedule scales (read before a
    # checkpoint's optimizer state, which holds the scaled ones, is restored)
    rates = [[group["lr"] for group in optimizer.param_groups] for optimizer in optimizers]
    schedule = est.learning_rate_schedule
    state = LoopState()
    if resume and checkpoint_dir is not None:
        generators = {"rng.order": order, f"rng.noise.{world.rank}": noise}
        state = load_checkpoint(checkpoint_dir, est, x, y, optimizers, generators,
                                ctx.precision, world.rank, world.size) or state
    monitor = "val_loss" if x_val is not None else "loss"
    stats_rows = statistics_rows(est, x_train, ctx)
    last_good = _snapshot(est.module_)
    name = type(est).__name__

    def checkpoint() -> None:
        if checkpoint_dir is not None:
            noise_states = distributed.all_gather_bytes(noise.get_state(), world)
            rng_states = {"rng.order": order.get_state(),
                          **{f"rng.noise.{r}": g for r, g in enumerate(noise_states)}}
            if world.is_main:
                save_checkpoint(checkpoint_dir, est, x, y, optimizers, rng_states, state,
                                ctx.precision)

    with _progress(est, world) as bar:
        task = None
        if bar is not None:
            task = bar.add_task(name, total=est.max_iter, completed=state.epoch, status="")
        while not state.stopped and state.epoch < est.max_iter:
            epoch, start = state.epoch + 1, time.perf_counter()
            ctx.epoch = epoch
            scale = learning_rate_scale(schedule, epoch, est.max_iter, state.lr_decays)
            if schedule != "constant":          # a constant rate is left as the model set it
                _set_step_sizes(optimizers, rates, scale)
            est.module_.train()
            row, failed_step = _train_epoch(est, x_train, y_train, configured, ctx)
            bad = None if failed_step is None else (f"step {failed_step[0]}", failed_step[1])
            if bad is None:
                bad = _unusable_epoch(est, row, len(x_train))
            if bad is None and x_val is not None:
                est.module_.eval()
                val = distributed.all_reduce_sums(_evaluate(est, x_val, y_val, ctx), world)
                row.update({f"val_{k}": v / world.size for k, v in val.items()})
                if not math.isfinite(row["val_loss"]):
                    bad = ("on the validation rows", row["val_loss"])
            if bad is not None:
                message = _divergence_message(est, epoch, *bad)
                if est.on_nan == "raise":
                    raise DivergenceError(message)
                est.module_.load_state_dict(last_good)
                warnings.warn(message + f" Stopped and restored the weights of epoch "
                              f"{state.epoch}.", ConvergenceWarning, stacklevel=3)
                state.stopped = True
                break
            row["time"] = time.perf_counter() - start
            if schedule != "constant":
                row["learning_rate"] = est.learning_rate * scale
            est.module_.eval()
            with torch.no_grad():
                row.update(est._on_epoch_end(epoch, stats_rows))
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
            if state.stopped and schedule == "plateau" and state.lr_decays < PLATEAU_DECAYS:
                state.lr_decays, state.stall, state.stopped = state.lr_decays + 1, 0, False
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
