"""Training checkpoints: everything needed to continue a run bit for bit, in safetensors + JSON.

One file, ``<checkpoint_dir>/checkpoint.safetensors``, holds the weights, the optimizer
state, the noise generator's state, the early-stopping state (including the best weights)
and, in its metadata, the epoch, ``history_`` and what the run was fitted on (class,
parameters, data shape and a SHA-256 of the data). It is replaced atomically (temporary
file, fsync, rename), so a kill at any moment leaves the previous checkpoint intact.
Nothing is pickled.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from aekit.exceptions import InputError
from aekit.runtime import Precision, atomic_write, jsonable

CHECKPOINT_NAME = "checkpoint.safetensors"
FORMAT = "aekit-checkpoint"
#: parameters that may change between a run and its resumption.
RESUMABLE_CHANGES = frozenset({"max_iter", "verbose", "device"})


@dataclass
class LoopState:
    """What the training loop carries from epoch to epoch."""

    epoch: int = 0
    history: dict[str, list[float]] = field(default_factory=dict)
    best: float = math.inf
    stall: int = 0
    best_state: dict[str, torch.Tensor] | None = None
    #: training ended by early stopping or divergence (reaching max_iter is not "stopped":
    #: a resumed run with a larger max_iter goes on).
    stopped: bool = False


#: the row order of in-memory data and of streams with random access
PERMUTATION = "permutation"


#: the attribute a tensor keeps its digest in: ``(version counter, hex digest)``
_DIGEST = "_aekit_sha256"


def data_fingerprint(x: Any, host: np.ndarray | None = None) -> str:
    """SHA-256 of the training rows as float32 (a device tensor, or streamed rows): a
    resumed run must see exactly the same data.

    A tensor's digest is computed once and kept on it (until an in-place change bumps its
    version counter), so the checkpoints of one fit do not each copy the whole data set
    back from the GPU; ``host``, the same rows as a host array (what the tensor was made
    from), gives the digest without any copy from the device."""
    if hasattr(x, "fingerprint"):
        return x.fingerprint()
    try:
        version = x._version
    except (AttributeError, RuntimeError):      # an inference tensor keeps no version
        version = None
    cached = getattr(x, _DIGEST, None)
    if cached is not None and version is not None and cached[0] == version:
        return cached[1]
    rows = x.detach().cpu().contiguous().numpy() if host is None else host
    digest = hashlib.sha256(np.ascontiguousarray(rows).tobytes()).hexdigest()
    if version is not None:
        setattr(x, _DIGEST, (version, digest))
    return digest


def _run_identity(est: Any, x: Any, y: torch.Tensor | None) -> dict[str, Any]:
    params = {k: v for k, v in jsonable(est.get_params()).items() if k not in RESUMABLE_CHANGES}
    return {"class": type(est).__name__, "params": params, "input_shape": list(est.input_shape_),
            "n_samples": int(x.shape[0]), "data_sha256": data_fingerprint(x),
            "labels_sha256": None if y is None else data_fingerprint(y),
            "order": getattr(x, "order", PERMUTATION)}


def _optimizer_tensors(optimizers: list[torch.optim.Optimizer]) -> tuple[dict, list]:
    tensors, meta = {}, []
    for i, opt in enumerate(optimizers):
        sd = opt.state_dict()
        scalars: dict[str, dict[str, Any]] = {}
        for pid, st in sd["state"].items():
            for key, value in st.items():
                if torch.is_tensor(value):
                    tensors[f"optim{i}.{pid}.{key}"] = value.detach().cpu().contiguous()
                else:
                    scalars.setdefault(str(pid), {})[key] = value
        meta.append({"param_groups": jsonable(sd["param_groups"]), "scalars": scalars})
    return tensors, meta


def _restore_optimizers(optimizers: list[torch.optim.Optimizer], meta: list,
                        tensors: dict[str, torch.Tensor]) -> None:
    if len(meta) != len(optimizers):
        raise InputError(f"the checkpoint has {len(meta)} optimizer(s), "
                         f"the model {len(optimizers)}")
    for i, (opt, m) in enumerate(zip(optimizers, meta)):
        state: dict[int, dict[str, Any]] = {}
        prefix = f"optim{i}."
        for name, value in tensors.items():
            if name.startswith(prefix):
                pid, key = name[len(prefix):].split(".", 1)
                state.setdefault(int(pid), {})[key] = value
        for pid, scalars in m["scalars"].items():
            state.setdefault(int(pid), {}).update(scalars)
        groups = [{**g, "betas": tuple(g["betas"])} if "betas" in g else g
                  for g in m["param_groups"]]
        opt.load_state_dict({"state": state, "param_groups": groups})


def save_checkpoint(directory: str | os.PathLike, est: Any, x: Any,
                    y: torch.Tensor | None, optimizers: list[torch.optim.Optimizer],
                    rng_states: dict[str, torch.Tensor], state: LoopState,
                    precision: Precision) -> None:
    """Write the run's state atomically to ``directory/checkpoint.safetensors``.

    ``rng_states``: generator states by name, ``rng.order`` (shared by every rank) and
    ``rng.noise.{rank}`` for every rank (one without DDP); ``precision`` contributes the
    fp16 gradient scaler's state, so a resumed ``"16-mixed"`` run scales as the
    uninterrupted one would."""
    tensors = {f"model.{k}": v.detach().cpu().contiguous()
               for k, v in est.module_.state_dict().items()}
    if state.best_state is not None:
        tensors.update({f"best.{k}": v.detach().cpu().contiguous()
                        for k, v in state.best_state.items()})
    opt_tensors, opt_meta = _optimizer_tensors(optimizers)
    tensors.update(opt_tensors)
    tensors.update({name: rng.cpu() for name, rng in rng_states.items()})
    meta = {
        "format": FORMAT, "run": _run_identity(est, x, y), "epoch": state.epoch,
        "history": state.history, "best": state.best if math.isfinite(state.best) else None,
        "stall": state.stall, "stopped": state.stopped, "optimizers": opt_meta,
        "rng_device": precision.device.type, "scaler": jsonable(precision.state_dict()),
    }
    path = Path(directory) / CHECKPOINT_NAME
    atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata={"aekit": json.dumps(meta)}))


def load_checkpoint(directory: str | os.PathLike, est: Any, x: Any,
                    y: torch.Tensor | None, optimizers: list[torch.optim.Optimizer],
                    generators: dict[str, torch.Generator], precision: Precision,
                    rank: int = 0, world_size: int = 1) -> LoopState | None:
    """Restore a run from ``directory`` into ``est``, ``optimizers`` and ``generators``
    (this rank's, by name as :func:`save_checkpoint` writes them).

    Returns None when there is no checkpoint yet. A checkpoint of another model class,
    other parameters or other data is refused with a message saying what differs.
    """
    path = Path(directory) / CHECKPOINT_NAME
    if not path.is_file():
        return None
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = json.loads((f.metadata() or {})["aekit"])
            tensors = {k: f.get_tensor(k) for k in f.keys()}
        if meta.get("format") != FORMAT:
            raise KeyError("format")
    except (SafetensorError, OSError, KeyError, ValueError) as exc:
        raise InputError(f"{str(path)!r} is not a readable aekit checkpoint ({exc}); delete it "
                         "or choose another checkpoint_dir") from None
    mine, theirs = _run_identity(est, x, y), {"order": PERMUTATION, **meta["run"]}
    for key in ("class", "input_shape", "n_samples", "data_sha256", "labels_sha256", "params",
                "order"):
        if mine[key] != theirs.get(key):
            if key == "params":
                diff = sorted(k for k in set(mine[key]) | set(theirs[key])
                              if mine[key].get(k) != theirs[key].get(k))
                what = f"parameters {', '.join(diff)} differ"
            else:
                what = f"{key} is {theirs[key]!r} there but {mine[key]!r} here"
            raise InputError(f"checkpoint {str(path)!r} belongs to another run ({what}); "
                             "resume with the same model, parameters and data, or use a new "
                             "checkpoint_dir")
    saved_ranks = sum(1 for k in tensors if k.startswith("rng.noise."))
    if saved_ranks != world_size:
        raise InputError(f"checkpoint {str(path)!r} was written by {saved_ranks} process(es) "
                         f"and this run has {world_size}; resume with the same number")
    saved_device = meta.get("rng_device", "cpu")
    if saved_device != precision.device.type:
        raise InputError(f"checkpoint {str(path)!r} was written by a run on {saved_device} and "
                         f"this run is on {precision.device.type}; random-number states do "
                         f"not carry across device types: resume on {saved_device}, or start "
                         "afresh in a new checkpoint_dir")
    device = next(est.module_.parameters()).device
    est.module_.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
    _restore_optimizers(optimizers, meta["optimizers"], tensors)
    for name, generator in generators.items():
        if name not in tensors:
            raise InputError(f"checkpoint {str(path)!r} has no {name} state (an older aekit "
                             "wrote it); start the run again in a new checkpoint_dir")
        generator.set_state(tensors[name])
    precision.load_state_dict(meta.get("scaler") or {})
    best_state = {k[5:]: v.to(device) for k, v in tensors.items() if k.startswith("best.")}
    return LoopState(epoch=int(meta["epoch"]), history=meta["history"],
                     best=math.inf if meta["best"] is None else float(meta["best"]),
                     stall=int(meta["stall"]), best_state=best_state or None,
                     stopped=bool(meta["stopped"]))


def checkpoint_weights(directory: str | os.PathLike) -> dict[str, np.ndarray]:
    """The model weights stored in a checkpoint, as numpy arrays (for inspection and tests)."""
    with safe_open(str(Path(directory) / CHECKPOINT_NAME), framework="np") as f:
        return {k[6:]: f.get_tensor(k) for k in f.keys() if k.startswith("model.")}
