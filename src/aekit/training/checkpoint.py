"""Training checkpoints: everything needed to continue a run bit for bit, in safetensors + JSON.

One file, ``<checkpoint_dir>/checkpoint.safetensors``, holds the weights, the optimizer
state, the noise generator's state, the early-stopping state (including the best weights)
and, in its metadata, the epoch, ``history_`` and what the run was fitted on (class,
parameters, data shape and a SHA-256 of the data). It is replaced atomically (temporary
file, fsync, rename), so a kill at any moment leaves the previous checkpoint intact.
Nothing is pickled.

A SHA-256 over every tensor and all the metadata (``"sha256"``) is checked before
anything of a checkpoint is used, so a flipped bit or an edited epoch is refused, not
resumed; like a model file's digest it is an integrity check, not a signature, and every
field is validated as well. :func:`claim` takes the folder for one run: an advisory lock
(a second concurrent writer is refused), no fresh run over another run's checkpoint
unless asked to overwrite it, and the temporary files of a killed run removed.
"""

from __future__ import annotations

import hashlib
import json
import math
import numbers
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError, safe_open

from aekit.exceptions import InputError
from aekit.runtime import (
    Precision,
    hash_tensors,
    jsonable,
    remove_stale_temporaries,
    write_safetensors,
)

try:
    import fcntl
except ImportError:     # Windows: no advisory locks; the other checks still hold
    fcntl = None

CHECKPOINT_NAME = "checkpoint.safetensors"
#: the lock file a run holds in its checkpoint folder (removed when the run ends)
LOCK_NAME = ".checkpoint.lock"
FORMAT = "aekit-checkpoint"
#: parameters that may change between a run and its resumption (a resumed run takes every
#: weight from the checkpoint, so whether it started warm does not matter).
RESUMABLE_CHANGES = frozenset({"max_iter", "verbose", "device", "warm_start"})


@dataclass
class LoopState:
    """What the training loop carries from epoch to epoch."""

    epoch: int = 0
    history: dict[str, list[float]] = field(default_factory=dict)
    best: float = math.inf
    stall: int = 0
    #: how often ``learning_rate_schedule="plateau"`` has lowered the step size
    lr_decays: int = 0
    best_state: dict[str, torch.Tensor] | None = None
    #: training ended by early stopping or divergence (reaching max_iter is not "stopped":
    #: a resumed run with a larger max_iter goes on).
    stopped: bool = False


#: the row order of in-memory data and of streams with random access
PERMUTATION = "permutation"

#: where an early-stopping run's validation rows are drawn (a checkpoint's ``run.split``)
SPLIT_ON_HOST = "on the host"


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
            "order": getattr(x, "order", PERMUTATION),
            "split": SPLIT_ON_HOST if est.early_stopping else None}


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
        "stall": state.stall, "lr_decays": state.lr_decays, "stopped": state.stopped,
        "optimizers": opt_meta, "rng_device": precision.device.type,
        "scaler": jsonable(precision.state_dict()),
    }
    meta["sha256"] = checkpoint_sha256(tensors, meta)
    path = Path(directory) / CHECKPOINT_NAME
    write_safetensors(path, tensors, {"aekit": json.dumps(meta)}, what="checkpoint")


def checkpoint_sha256(tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> str:
    """SHA-256 over the names, dtypes, shapes and bytes of ``tensors`` (in name order) and
    ``meta`` without its ``"sha256"`` entry, as canonical JSON."""
    h = hashlib.sha256()
    hash_tensors(h, tensors)
    rest = {k: v for k, v in meta.items() if k != "sha256"}
    h.update(json.dumps(rest, sort_keys=True, separators=(",", ":")).encode())
    return h.hexdigest()


def load_checkpoint(directory: str | os.PathLike, est: Any, x: Any,
                    y: torch.Tensor | None, optimizers: list[torch.optim.Optimizer],
                    generators: dict[str, torch.Generator], precision: Precision,
                    rank: int = 0, world_size: int = 1) -> LoopState | None:
    """Restore a run from ``directory`` into ``est``, ``optimizers`` and ``generators``
    (this rank's, by name as :func:`save_checkpoint` writes them).

    Returns None when there is no checkpoint yet. The checkpoint's SHA-256 and the type and
    shape of everything in it are checked before any of it is used: a corrupt checkpoint,
    or one of another model class, other parameters or other data, is refused with a
    message saying what differs.
    """
    path = Path(directory) / CHECKPOINT_NAME
    if not path.exists() and not path.is_symlink():
        return None
    meta, tensors = _read(path)
    # a checkpoint from before the validation split was drawn on the host: a CPU run drew
    # the same rows, a GPU run other ones
    drawn = (SPLIT_ON_HOST if meta.get("rng_device", "cpu") == "cpu" else "on the GPU"
             ) if meta["run"].get("params", {}).get("early_stopping") else None
    mine, theirs = _run_identity(est, x, y), {"order": PERMUTATION, "split": drawn,
                                              **meta["run"]}
    # a parameter added after the checkpoint was written: that run had its default
    defaults = jsonable({k: v for k, v in est._default_params().items()
                         if k in mine["params"] and k not in theirs["params"]})
    theirs["params"] = {**defaults, **theirs["params"]}
    for key in ("class", "input_shape", "n_samples", "data_sha256", "labels_sha256", "params",
                "order", "split"):
        if mine[key] != theirs.get(key):
            if key == "split":
                what = (f"its validation rows were drawn {theirs[key]}, which this version "
                        f"no longer does: they are drawn {mine[key]} on every device")
            elif key == "params":
                diff = sorted(k for k in set(mine[key]) | set(theirs[key])
                              if mine[key].get(k) != theirs[key].get(k))
                what = f"parameters {', '.join(diff)} differ"
            else:
                what = f"{key} is {theirs.get(key)!r:.80} there but {mine[key]!r} here"
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
    for name, generator in generators.items():
        if name not in tensors:
            raise InputError(f"checkpoint {str(path)!r} has no {name} state (an older aekit "
                             "wrote it); start the run again in a new checkpoint_dir")
        want = generator.get_state()
        if tensors[name].dtype != want.dtype or tensors[name].shape != want.shape:
            _corrupt(path, f"the {name} state has {tensors[name].numel()} values of "
                     f"{tensors[name].dtype}, a {want.device.type} generator "
                     f"{want.numel()} of {want.dtype}")
    module_state = est.module_.state_dict()
    _check_tensors(path, "model.", tensors, module_state, required=True)
    _check_tensors(path, "best.", tensors, module_state, required=False)
    _check_optimizer_tensors(path, optimizers, tensors)
    device = next(est.module_.parameters()).device
    try:
        _restore_optimizers(optimizers, meta["optimizers"], tensors)
        precision.load_state_dict(meta["scaler"])
    except (KeyError, TypeError, ValueError, IndexError, AttributeError, RuntimeError) as exc:
        if isinstance(exc, InputError):
            raise
        _corrupt(path, f"its optimizer or gradient-scaler state cannot be restored ({exc!r:.200})")
    est.module_.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
    for name, generator in generators.items():
        generator.set_state(tensors[name])
    best_state = {k[5:]: v.to(device) for k, v in tensors.items() if k.startswith("best.")}
    return LoopState(epoch=meta["epoch"], history=meta["history"],
                     best=math.inf if meta["best"] is None else float(meta["best"]),
                     stall=meta["stall"], lr_decays=meta.get("lr_decays", 0),
                     best_state=best_state or None,
                     stopped=meta["stopped"])


def _corrupt(path: Path, problem: str) -> None:
    raise InputError(f"checkpoint {str(path)!r} is corrupt: {problem}; delete it (or start "
                     "afresh with overwrite) or choose another checkpoint_dir")


def _read(path: Path) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """The metadata and tensors of the checkpoint at ``path``, after checking its SHA-256
    and the type of every metadata field."""
    if not path.is_file():
        raise InputError(f"checkpoint {str(path)!r} is not a regular file; remove it or "
                         "choose another checkpoint_dir")
    try:
        with safe_open(str(path), framework="pt") as f:
            raw = (f.metadata() or {})["aekit"]
            tensors = {k: f.get_tensor(k) for k in f.keys()}
        meta = json.loads(raw)
        if not isinstance(meta, dict) or meta.get("format") != FORMAT:
            raise KeyError("format")
    except (SafetensorError, OSError, KeyError, ValueError, TypeError, RecursionError) as exc:
        why = "JSON nested too deeply" if isinstance(exc, RecursionError) else exc
        raise InputError(f"{str(path)!r} is not a readable aekit checkpoint ({why}); delete it "
                         "or choose another checkpoint_dir") from None
    if "sha256" not in meta:
        raise InputError(f"checkpoint {str(path)!r} has no SHA-256 (an older aekit wrote it); "
                         "start the run again in a new checkpoint_dir")
    try:
        intact = checkpoint_sha256(tensors, meta) == meta["sha256"]
    except (RecursionError, ValueError, TypeError):
        intact = False
    if not intact:
        raise InputError(f"checkpoint {str(path)!r} does not match the SHA-256 recorded when "
                         "it was written: it is corrupt or was altered; delete it (or start "
                         "afresh with overwrite) or choose another checkpoint_dir")
    _check_meta(path, meta)
    return meta, tensors


def _check_meta(path: Path, meta: dict[str, Any]) -> None:
    """Every field :func:`load_checkpoint` uses has the type :func:`save_checkpoint` gives it
    (the digest is no signature: a crafted file can carry a matching one)."""
    def count(v: Any) -> bool:
        return type(v) is int and v >= 0

    def number(v: Any) -> bool:
        return isinstance(v, numbers.Real) and not isinstance(v, bool)

    def entry(v: Any) -> bool:          # a number, or one per unit (e.g. kl_per_dim)
        return number(v) or isinstance(v, list) and all(number(e) for e in v)

    run, history = meta.get("run"), meta.get("history")
    checks = [
        ("run", isinstance(run, dict) and isinstance(run.get("params"), dict),
         "a JSON object with the run's class, parameters and data"),
        ("epoch", count(meta.get("epoch")), "a non-negative integer"),
        ("history", isinstance(history, dict) and all(
            isinstance(k, str) and isinstance(v, list) and all(entry(e) for e in v)
            for k, v in history.items()), "an object of lists of numbers"),
        ("best", meta.get("best") is None or number(meta.get("best")), "a number or null"),
        ("stall", count(meta.get("stall")), "a non-negative integer"),
        ("lr_decays", count(meta.get("lr_decays", 0)), "a non-negative integer"),
        ("stopped", isinstance(meta.get("stopped"), bool), "true or false"),
        ("optimizers", isinstance(meta.get("optimizers"), list) and all(
            isinstance(o, dict) and isinstance(o.get("param_groups"), list)
            and isinstance(o.get("scalars"), dict) for o in meta["optimizers"]),
         "a list of optimizer states"),
        ("rng_device", isinstance(meta.get("rng_device", "cpu"), str), "a device type"),
        ("scaler", isinstance(meta.get("scaler"), dict), "an object"),
    ]
    for key, ok, what in checks:
        if not ok:
            where = "has no" if key not in meta else "has a bad"
            _corrupt(path, f"its metadata {where} {key!r} entry (expected {what})")


def _check_tensors(path: Path, prefix: str, tensors: dict[str, torch.Tensor],
                   state: dict[str, torch.Tensor], required: bool) -> None:
    """The checkpoint's ``prefix`` tensors are exactly the model's, by name, shape and dtype
    (``required=False``: or there are none)."""
    stored = {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
    if not stored and not required:
        return
    problems = [f"{prefix}{k} is missing" for k in sorted(set(state) - set(stored))]
    problems += [f"{prefix}{k} is not the model's" for k in sorted(set(stored) - set(state))]
    problems += [f"{prefix}{k} is {list(stored[k].shape)} of {stored[k].dtype}, the model's "
                 f"{list(state[k].shape)} of {state[k].dtype}"
                 for k in sorted(set(stored) & set(state))
                 if stored[k].shape != state[k].shape or stored[k].dtype != state[k].dtype]
    if problems:
        more = f" and {len(problems) - 2} more" if len(problems) > 2 else ""
        _corrupt(path, f"{'; '.join(problems[:2])}{more}")


def _check_optimizer_tensors(path: Path, optimizers: list[torch.optim.Optimizer],
                             tensors: dict[str, torch.Tensor]) -> None:
    """Optimizer state tensors name a parameter of their optimizer and have its shape (a
    moment estimate) or one value (a step count)."""
    for name, value in tensors.items():
        if not name.startswith("optim"):
            continue
        parts = name.split(".", 2)
        index, pid = parts[0][len("optim"):], parts[1] if len(parts) == 3 else ""
        params = ([p for g in optimizers[int(index)].param_groups for p in g["params"]]
                  if index.isdigit() and int(index) < len(optimizers) else [])
        if not pid.isdigit() or int(pid) >= len(params):
            _corrupt(path, f"the tensor {name!r} belongs to no parameter of the optimizers")
        shape = params[int(pid)].shape
        if value.shape != shape and value.numel() != 1:
            _corrupt(path, f"the optimizer state {name!r} is {list(value.shape)}, its "
                     f"parameter {list(shape)}")


def checkpoint_weights(directory: str | os.PathLike, best: bool = False
                       ) -> dict[str, np.ndarray]:
    """The model weights stored in a checkpoint, as numpy arrays (for inspection and tests):
    the last epoch's, or with ``best`` those of the best validation epoch where the run kept
    them (``early_stopping``; the weights its fit returns), else the last epoch's."""
    with safe_open(str(Path(directory) / CHECKPOINT_NAME), framework="np") as f:
        prefix = "best." if best and any(k.startswith("best.") for k in f.keys()) else "model."
        return {k[len(prefix):]: f.get_tensor(k) for k in f.keys() if k.startswith(prefix)}


@contextmanager
def claim(directory: str | os.PathLike | None, *, resume: bool = False,
          overwrite: bool = False, main: bool = True) -> Iterator[None]:
    """Hold the checkpoint folder ``directory`` for one run (a no-op for None).

    Creates the folder, then, on the process that writes checkpoints (``main``), takes an
    advisory lock on ``.checkpoint.lock`` in it for as long as the block runs: a second
    run writing into the same folder at the same time is refused. A fresh run
    (``resume=False``) over an existing checkpoint is refused unless ``overwrite``, which
    deletes it; the temporary files a killed run left (aekit's own naming only) are
    removed. Every process of a distributed run calls it, with ``main`` on rank 0 only (the
    others only create the folder). A claim nested in a claim of the same folder by the
    same thread (the command line holds the folder from before it reads the data, and
    ``fit`` claims it again) neither locks again nor releases the outer lock.

    Raises
    ------
    InputError
        ``directory`` is a file, another process holds the folder, or a fresh run would
        replace another run's checkpoint.
    OSError
        The folder cannot be created; the message names it.
    """
    if directory is None:
        yield
        return
    folder = Path(directory)
    if folder.exists() and not folder.is_dir():
        raise InputError(f"checkpoint_dir {str(folder)!r} is a file, not a folder; give a "
                         "folder (it is created when missing)")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise _named(exc, f"cannot create checkpoint_dir {str(folder)!r}") from None
    if not main:
        yield
        return
    key, me = os.path.realpath(folder), threading.get_ident()
    nested = _HELD.get(key) == me
    lock = None if nested else _lock(folder)
    if not nested:
        _HELD[key] = me
    try:
        path = folder / CHECKPOINT_NAME
        if not resume and (path.exists() or path.is_symlink()):
            if not overwrite:
                raise InputError(
                    f"{str(path)!r} holds the checkpoint of an earlier run and this run does "
                    "not resume it; resume it (resume=True, --resume), replace it "
                    "(overwrite=True, --overwrite), or choose another checkpoint_dir")
            path.unlink()
        if not nested:
            # under the lock no other run writes here: every temporary is a killed run's
            remove_stale_temporaries(folder, CHECKPOINT_NAME, min_age=0 if lock else 60)
        yield
    finally:
        if not nested:
            del _HELD[key]
            if lock is not None:
                _unlock(folder, lock)


#: the checkpoint folders this process holds (real path -> the holding thread)
_HELD: dict[str, int] = {}


def _lock(folder: Path) -> int | None:
    """Take the folder's lock (an open descriptor holding ``flock``); None without fcntl."""
    if fcntl is None:
        return None
    path = folder / LOCK_NAME
    for _ in range(100):
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        except OSError as exc:
            raise _named(exc, f"cannot create the lock file {str(path)!r}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise InputError(f"another run is writing checkpoints into {str(folder)!r} (it "
                             f"holds {LOCK_NAME}); wait for it to end or choose another "
                             "checkpoint_dir") from None
        # the holder before us removes the file when it ends: a lock on a removed file
        # guards nothing, so take the lock again on the file now at that path
        try:
            if os.stat(path).st_ino == os.fstat(fd).st_ino:
                os.ftruncate(fd, 0)
                os.write(fd, f"{os.getpid()}\n".encode())     # for a curious user
                return fd
        except FileNotFoundError:
            pass
        os.close(fd)
    raise InputError(f"cannot lock {str(path)!r}: other processes keep replacing it")


def _unlock(folder: Path, fd: int) -> None:
    """Remove the lock file while still holding it, then release it."""
    try:
        os.unlink(folder / LOCK_NAME)
    except FileNotFoundError:
        pass
    finally:
        os.close(fd)


def _named(exc: OSError, what: str) -> OSError:
    """``exc`` (same type and errno) with the message ``what: reason``."""
    named = type(exc)(f"{what}: {exc.strerror or exc}")
    named.errno = exc.errno
    return named
