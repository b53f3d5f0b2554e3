"""torch.distributed glue for the training loop (DistributedDataParallel under ``torchrun``).

Launch ``torchrun --nproc_per_node=N -m aekit fit ...`` or call ``fit`` inside your own
``torchrun`` script: when ``WORLD_SIZE`` > 1 and no process group exists yet, aekit
creates one: gloo on CPU; with CUDA both, ``"cpu:gloo,cuda:nccl"`` (each collective goes to
the backend of its tensors' device: NCCL for the gradients, gloo for the few host numbers
and generator states), after :func:`torch.cuda.set_device` has given each process the GPU
of its ``LOCAL_RANK`` (:func:`local_device`). Every rank holds the whole array (or streams
it) and draws the same permutation each epoch from a generator all ranks share, while the
model's noise comes from a generator of each rank's own; rank r trains on rows
``batch[r::world]`` of every global minibatch, so ``batch_size`` stays the global batch
size, and DDP averages the gradients (each rank's loss is weighted by its share of the
batch, so uneven last batches match a single process too). Epoch metrics are averaged
over ranks, so early stopping and the handling of non-finite losses are decided
identically everywhere. Only rank 0 writes files and shows progress.
"""

from __future__ import annotations

import atexit
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import Tensor, nn

from aekit.data.sources import RowRange, Source
from aekit.runtime import local_device, resolve_device

#: the process group aekit creates when training on CUDA: NCCL for CUDA tensors, gloo for
#: CPU tensors (generator states, epoch sums), chosen per collective by the tensors' device
CUDA_BACKEND = "cpu:gloo,cuda:nccl"


@dataclass(frozen=True)
class World:
    rank: int = 0
    size: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def setup(device: torch.device) -> World:
    """The current process group (created from torchrun's environment when needed)."""
    if not dist.is_available():
        return World()
    if not dist.is_initialized():
        if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
            return World()
        if device.type == "cuda":
            # device_id binds NCCL to this process's GPU (set by local_device) at once
            dist.init_process_group(backend=CUDA_BACKEND,
                                    device_id=device if device.index is not None else None)
        else:
            dist.init_process_group(backend="gloo")
        atexit.register(_destroy)       # ours to close: a live gloo group aborts at exit
    return World(dist.get_rank(), dist.get_world_size())


def _destroy() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def finish() -> bool:
    """Wait for every rank (e.g. until rank 0 has written its files), then close the group.
    Returns whether this process was part of a group."""
    if not (dist.is_available() and dist.is_initialized()):
        return False
    dist.barrier()
    dist.destroy_process_group()
    return True


def is_main_process() -> bool:
    """True outside torch.distributed and on rank 0 inside it: the process that writes files."""
    return not (dist.is_available() and dist.is_initialized()) or dist.get_rank() == 0


def all_finite(value: Tensor, world: World) -> bool:
    """Whether ``value`` is finite on every rank (one collective under DDP)."""
    flag = torch.isfinite(value.detach()).all().to(torch.int32)
    if world.size > 1:
        dist.all_reduce(flag, op=dist.ReduceOp.MIN)
    return bool(flag)


def collective_device() -> torch.device:
    """Where this process group's collectives take their tensors: the CPU where it has
    gloo (alone, or next to NCCL as aekit creates it on CUDA), else this process's GPU
    (a group of NCCL alone, e.g. made by the caller's own script)."""
    backend = str(dist.get_backend())
    if backend == "gloo" or "cpu:" in backend or "nccl" not in backend:
        return torch.device("cpu")
    return torch.device("cuda", torch.cuda.current_device())


def all_reduce_sums(sums: dict[str, float | Tensor], world: World) -> dict[str, float]:
    """Sum each value over ranks (keys are the same on every rank); returns floats.

    Values may be Python numbers or scalar tensors (e.g. the loop's per-epoch sums, still
    on the device): the tensors are read back to the host together, in one transfer."""
    keys = sorted(sums)
    host = {k: float(v) for k, v in sums.items() if not torch.is_tensor(v)}
    on_device = [k for k in keys if k not in host]
    if on_device:
        first = sums[on_device[0]].device
        stacked = torch.stack([sums[k].detach().reshape(()).to(first, torch.float64)
                               for k in on_device])
        host.update(zip(on_device, stacked.cpu().tolist()))
    if world.size == 1:
        return {k: host[k] for k in keys}
    t = torch.tensor([host[k] for k in keys], dtype=torch.float64, device=collective_device())
    dist.all_reduce(t)
    return dict(zip(keys, t.tolist()))


@torch.compiler.disable
def all_reduce_(t: Tensor, world: World) -> Tensor:
    """Sum ``t`` over ranks in place (nothing in one process); every rank must call it.
    Runs eagerly even inside a compiled loss (e.g. VQ-VAE's codebook statistics)."""
    if world.size > 1:
        dist.all_reduce(t)
    return t


def all_gather_bytes(t: Tensor, world: World) -> list[Tensor]:
    """Gather one uint8 tensor of equal size from every rank (e.g. RNG states, which are
    CPU tensors even for a CUDA generator); returned on ``t``'s device."""
    if world.size == 1:
        return [t]
    device = collective_device()
    mine = t.to(device)
    out = [torch.empty_like(mine) for _ in range(world.size)]
    dist.all_gather(out, mine)
    return [o.to(t.device) for o in out]


def all_gather_rows(rows: np.ndarray, world: World) -> np.ndarray:
    """Every rank's rows (any number each, the same trailing shape), concatenated in rank
    order, on every rank."""
    if world.size == 1:
        return rows
    device = collective_device()
    t = torch.as_tensor(np.ascontiguousarray(rows, dtype=np.float32), device=device)
    counts = [torch.zeros(1, dtype=torch.int64, device=device) for _ in range(world.size)]
    dist.all_gather(counts, torch.tensor([len(t)], device=device))
    counts = [int(c) for c in counts]
    padded = torch.zeros(max(counts), *t.shape[1:], device=device)
    padded[:len(t)] = t
    parts = [torch.empty_like(padded) for _ in range(world.size)]
    dist.all_gather(parts, padded)
    return np.concatenate([p[:c].cpu().numpy() for p, c in zip(parts, counts)])


def map_sharded(fn: Callable[[Any], np.ndarray], X: Any, device: str = "auto") -> np.ndarray:
    """``fn(X)`` computed in shards across the processes of ``torchrun`` and gathered in
    row order on every rank; outside torch.distributed simply ``fn(X)``.

    ``X`` is an array or a :class:`~aekit.data.sources.Source`; rank r takes the r-th of
    ``world size`` contiguous runs of rows. ``fn`` must treat rows independently (as
    ``transform`` and ``score_samples`` do). Every rank must call this (a collective).

    Example (in a script run with ``torchrun --nproc_per_node=2``)::

        codes = aekit.training.distributed.map_sharded(model.transform, X)
    """
    here = local_device(resolve_device(device))
    world = setup(here)
    if world.size == 1:
        return fn(X)
    _onto(here, fn)
    n = X.n_rows if isinstance(X, Source) else len(X)
    cuts = np.linspace(0, n, world.size + 1).astype(np.int64)
    a, b = int(cuts[world.rank]), int(cuts[world.rank + 1])
    shard = RowRange(X, a, b) if isinstance(X, Source) else X[a:b]
    mine = fn(shard) if b > a else None
    if mine is None:        # an empty shard: learn the output's row shape from one row
        probe = RowRange(X, 0, 1) if isinstance(X, Source) else X[:1]
        mine = fn(probe)[:0]
    return all_gather_rows(mine, world)


def _onto(device: torch.device, fn: Any) -> None:
    """Move the weights of the model ``fn`` is a method of (``model.transform``) to this
    process's GPU when they are on another one: a model loaded before the process group
    existed (``aekit.load`` with ``"cuda"``) sits on every rank's GPU 0."""
    module = getattr(getattr(fn, "__self__", None), "module_", None)
    if device.type != "cuda" or not isinstance(module, nn.Module):
        return
    where = next(module.parameters(), None)
    if where is not None and where.device.type == "cuda" and where.device != device:
        module.to(device)


class LossModule(nn.Module):
    """The model's loss as one ``nn.Module`` forward, which DDP needs to wrap; ``weight``
    scales this rank's loss by its share of the global minibatch."""

    def __init__(self, net: nn.Module, ctx: Any) -> None:
        super().__init__()
        self.net = net
        self.__dict__["ctx"] = ctx      # the fit context is not a submodule
        self.weight = 1.0

    def forward(self, x: Tensor, y: Tensor | None):
        out = self.ctx.loss(x, y)
        return out.total * self.weight, out.total, out.terms
