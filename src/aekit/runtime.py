"""What every layer of aekit runs on: the device, the numeric precision, compilation,
seeds, the floating-point mode, and files written atomically with JSON-able metadata.

Nothing here knows about models or training; the estimator, the loop, evaluation and the
command line all build on these few objects.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import math
import numbers
import os
import re
import secrets
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import save_file
from sklearn.utils import check_random_state
from torch import Tensor

from aekit.exceptions import InputError

PRECISIONS = ("32", "bf16-mixed", "16-mixed")


# ------------------------------------------------------------------------------ device


def resolve_device(device: str) -> torch.device:
    """"auto" -> CUDA when available, else CPU; an unavailable CUDA request is refused.

    Examples
    --------
    >>> resolve_device("cpu")
    device(type='cpu')
    """
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if str(device).startswith("cuda") and not torch.cuda.is_available():
        raise InputError(f"device={device!r} was requested but CUDA is not available; "
                         "use device='cpu' or device='auto'")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError):
        raise InputError(f"unknown device {device!r}; use 'auto', 'cpu' or 'cuda'") from None
    if resolved.type not in ("cpu", "cuda"):
        raise InputError(f"device={device!r} is not supported; use 'auto', 'cpu' or 'cuda'")
    if resolved.type == "cuda" and resolved.index is not None \
            and resolved.index >= torch.cuda.device_count():
        raise InputError(f"device={device!r} does not exist: this machine has "
                         f"{torch.cuda.device_count()} CUDA device(s)")
    return resolved


def local_device(device: torch.device) -> torch.device:
    """The device of this process: under torchrun each process takes the GPU of its
    ``LOCAL_RANK``, and with several processes it is made the current CUDA device
    (:func:`torch.cuda.set_device`), so NCCL, ``"cuda"`` tensors and ``aekit.load``
    afterwards all use it rather than GPU 0.

    ``"cuda"`` (or ``"auto"`` on a GPU machine) becomes ``cuda:LOCAL_RANK``; where each
    process sees a single GPU (a launcher that sets ``CUDA_VISIBLE_DEVICES`` per process)
    it is ``cuda:0``. An explicit ``"cuda:N"`` with several processes must name the local
    rank's own GPU: anything else would put two processes on one GPU, and is refused.
    Outside torchrun ``device`` is returned as it is and the current device left alone.
    """
    if device.type != "cuda" or "LOCAL_RANK" not in os.environ:
        return device
    local_rank = int(os.environ["LOCAL_RANK"])
    several = int(os.environ.get("WORLD_SIZE", "1")) > 1
    count = torch.cuda.device_count()
    if device.index is None:
        if local_rank < count:
            device = torch.device("cuda", local_rank)
        elif count == 1:
            device = torch.device("cuda", 0)
        else:
            raise InputError(f"process {local_rank} on this machine has no GPU of its own: "
                             f"it has {count} CUDA device(s); start at most {count} "
                             "processes per machine (torchrun --nproc_per_node) or use "
                             "device='cpu'")
    elif several and device.index != local_rank:
        raise InputError(f"device={str(device)!r} under torchrun with several processes: "
                         f"each process trains on the GPU of its LOCAL_RANK (this one on "
                         f"cuda:{local_rank}); use device='cuda' or 'auto'")
    if several:
        torch.cuda.set_device(device)
    return device


# --------------------------------------------------------------------------- precision


class Precision:
    """One object owning what a precision setting changes: the autocast context, the fp16
    gradient scaler, and how an objective is backpropagated and stepped.

    ``"32"`` runs everything in float32; ``"bf16-mixed"`` / ``"16-mixed"`` run the networks'
    matrix work under autocast while weights, likelihoods and reductions stay float32;
    ``"16-mixed"`` also scales the loss (``torch.amp.GradScaler``).

    Examples
    --------
    >>> p = Precision("32", torch.device("cpu"))
    >>> p.scaler is None
    True
    """

    def __init__(self, precision: str, device: torch.device, *, training: bool = True) -> None:
        if precision not in PRECISIONS:
            raise InputError(f"precision must be one of {PRECISIONS}; got {precision!r}")
        # is_bf16_supported() counts emulation on pre-Ampere GPUs and asks the current
        # device: bf16 matrix units arrive with compute capability 8.0
        if (precision == "bf16-mixed" and device.type == "cuda"
                and torch.cuda.get_device_capability(device) < (8, 0)):
            raise InputError("precision='bf16-mixed' needs a GPU with bfloat16 support; "
                             "use '16-mixed' or '32' on this one")
        self.precision, self.device = precision, device
        self.scaler = (torch.amp.GradScaler(device.type)
                       if training and precision == "16-mixed" else None)

    def autocast(self) -> contextlib.AbstractContextManager:
        """The autocast context: matrix work in bf16/fp16, weights in fp32."""
        return autocast(self.precision, self.device)

    def backward_step(self, objective: Tensor, optimizer: torch.optim.Optimizer) -> None:
        """Backpropagate ``objective`` and step ``optimizer`` (through the scaler for fp16;
        call :meth:`update` once per training step)."""
        if self.scaler is None:
            objective.backward()
            optimizer.step()
        else:
            self.scaler.scale(objective).backward()
            self.scaler.step(optimizer)

    def update(self) -> None:
        if self.scaler is not None:
            self.scaler.update()

    def state_dict(self) -> dict[str, Any]:
        """The scaler's state (empty without one), for checkpoints."""
        return {} if self.scaler is None else dict(self.scaler.state_dict())

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if self.scaler is not None and state:
            self.scaler.load_state_dict(state)


def autocast(precision: str, device: torch.device) -> contextlib.AbstractContextManager:
    """The autocast context for ``precision`` on ``device`` (no-op for ``"32"``)."""
    if precision == "32":
        return nullcontext()
    dtype = torch.bfloat16 if precision == "bf16-mixed" else torch.float16
    return torch.autocast(device_type=device.type, dtype=dtype)


# ----------------------------------------------------------------------------- compile


def _is_compiler_error(exc: BaseException) -> bool:
    """Errors of the compiler itself (dynamo, inductor, a missing toolchain), not of the
    computation: only these fall back to eager."""
    module = type(exc).__module__ or ""
    return module.startswith(("torch._dynamo", "torch._inductor")) or isinstance(
        exc, (ImportError, NotImplementedError))


def compiled(fn: Any, what: str) -> Any:
    """``torch.compile(fn)``, falling back to ``fn`` with a warning where compiling fails
    (no compiler toolchain, unsupported platform or Python). A compiled call that fails
    in the compiler is run again eagerly, and the eager version is used from then on;
    any other error (out of memory, a device assert, bad input) is raised as it is."""
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
            if not _is_compiler_error(exc):
                raise
            state["fast"] = None
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            warnings.warn(f"compile=True: compiling {what} failed ({first}); running it "
                          "eagerly", RuntimeWarning, stacklevel=2)
            return fn(*args)

    return run


# ------------------------------------------------------------------------------ seeds


def seed(random_state: Any) -> int:
    """A 31-bit seed from ``random_state`` without touching any global RNG state.

    Examples
    --------
    >>> seed(7)
    7
    """
    if random_state is None:
        return int(np.random.SeedSequence().generate_state(1)[0] >> 1)
    if isinstance(random_state, numbers.Integral):
        return int(random_state)
    return int(check_random_state(random_state).randint(2**31 - 1))


# ------------------------------------------------------------------- floating-point mode


@contextlib.contextmanager
def flush_denormal(enabled: bool = True) -> Iterator[None]:
    """Flush subnormal floats to zero (FTZ/DAZ) on the CPU in every thread torch computes
    in while the block runs, then restore each thread's previous mode.

    x86 CPUs compute on subnormal numbers (magnitudes below about 1.2e-38 in float32)
    tens of times slower than on normal ones, and training produces more of them as it
    goes on. The mode is a per-thread register: ``torch.set_flush_denormal`` changes only
    the calling thread, and torch's OpenMP worker threads, created at its first parallel
    region, keep the mode they started with. So the switch runs once on every thread of
    the OpenMP team (:func:`on_every_thread`).

    Examples
    --------
    >>> import torch
    >>> with flush_denormal():
    ...     float(torch.tensor([1e-40]) * 1.0)
    0.0
    >>> float(torch.tensor([1e-40]) * 1.0) > 0      # the caller's mode again
    True
    """
    if not enabled:
        yield
        return
    before: dict[int, bool] = {}

    def switch_on() -> None:
        before[threading.get_ident()] = _denormals_flushed()
        torch.set_flush_denormal(True)

    def restore() -> None:
        torch.set_flush_denormal(before.get(threading.get_ident(), False))

    on_every_thread(switch_on)
    try:
        yield
    finally:
        on_every_thread(restore)


def _denormals_flushed() -> bool:
    """Whether this thread currently flushes subnormals (probed with a subnormal input)."""
    tiny = torch.tensor([1e-40], dtype=torch.float32)
    return bool((tiny * 1.0).item() == 0.0)


_TEAM_CALLBACK = ctypes.CFUNCTYPE(None, ctypes.c_void_p)


@functools.cache
def _openmp_parallel() -> Any:
    """libgomp's ``GOMP_parallel`` as torch has it loaded (Intel's libiomp5 exports the same
    entry point); None where torch runs on another threading library."""
    torch.ones(2).sum()     # make sure torch's OpenMP runtime is loaded
    try:
        with open("/proc/self/maps") as maps:
            paths = {line.split()[-1] for line in maps if "libgomp" in line or "libiomp" in line}
    except OSError:
        return None
    # other wheels (scikit-learn, numpy) may load their own copy: torch's team is torch's
    torch_lib = os.path.dirname(torch.__file__)
    paths = sorted(paths, key=lambda path: not path.startswith(torch_lib))
    if not paths or not paths[0].startswith(torch_lib) and len(paths) > 1:
        return None
    try:
        parallel = ctypes.CDLL(paths[0]).GOMP_parallel
    except (OSError, AttributeError):
        return None
    parallel.argtypes = [_TEAM_CALLBACK, ctypes.c_void_p, ctypes.c_uint, ctypes.c_uint]
    parallel.restype = None
    return parallel


def on_every_thread(fn: Callable[[], None]) -> None:
    """Run ``fn()`` once on every thread of torch's intra-op OpenMP team (the calling
    thread included), e.g. to set a per-thread CPU register; on the calling thread only
    where torch does not run on OpenMP."""
    parallel = _openmp_parallel()
    if parallel is None or torch.get_num_threads() == 1:
        fn()
        return
    errors: list[BaseException] = []

    def run(_: Any) -> None:
        try:
            fn()
        except BaseException as exc:    # raised after the team has joined
            errors.append(exc)

    callback = _TEAM_CALLBACK(run)
    parallel(callback, None, torch.get_num_threads(), 0)
    if errors:
        raise errors[0]


#: cuBLAS's workspace setting for reproducible matrix products (CUDA >= 10.2; see
#: https://docs.nvidia.com/cuda/cublas/#results-reproducibility)
CUBLAS_WORKSPACE_CONFIG = ":4096:8"


@contextlib.contextmanager
def deterministic_algorithms(enabled: bool = True) -> Iterator[None]:
    """Deterministic kernels while the block runs, then every previous setting back.

    With ``enabled``: ``torch.use_deterministic_algorithms(True)`` (an operation without a
    deterministic implementation raises instead of running), ``CUBLAS_WORKSPACE_CONFIG``
    (when not already set to a reproducible value), ``cudnn.deterministic = True`` and
    ``cudnn.benchmark = False`` (no autotuner choosing algorithms by timing). What this
    buys on a GPU: a run and its resumption give the same bits, as on the CPU. It costs
    speed, and TF32 stays as it is (deterministic, but not float32: see the README's
    "Scaling out"). With ``enabled=False`` nothing is changed.

    cuBLAS reads its workspace setting when it first runs in a process: for a guarantee,
    set ``CUBLAS_WORKSPACE_CONFIG=:4096:8`` in the environment before the process starts
    (this sets it only when missing, which satisfies torch's check).

    Examples
    --------
    >>> with deterministic_algorithms():
    ...     torch.are_deterministic_algorithms_enabled()
    True
    >>> torch.are_deterministic_algorithms_enabled()
    False
    """
    if not enabled:
        yield
        return
    cudnn = torch.backends.cudnn
    before = (torch.are_deterministic_algorithms_enabled(),
              torch.is_deterministic_algorithms_warn_only_enabled(),
              cudnn.deterministic, cudnn.benchmark, os.environ.get("CUBLAS_WORKSPACE_CONFIG"))
    if before[4] not in (":4096:8", ":16:8"):
        os.environ["CUBLAS_WORKSPACE_CONFIG"] = CUBLAS_WORKSPACE_CONFIG
    torch.use_deterministic_algorithms(True)
    cudnn.deterministic, cudnn.benchmark = True, False
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(before[0], warn_only=before[1])
        cudnn.deterministic, cudnn.benchmark = before[2], before[3]
        if before[4] is None:
            os.environ.pop("CUBLAS_WORKSPACE_CONFIG", None)
        else:
            os.environ["CUBLAS_WORKSPACE_CONFIG"] = before[4]


# ------------------------------------------------------------------------------- files


def atomic_write(path: str | os.PathLike, write: Callable[[str], None]) -> None:
    """Call ``write(tmp_path)`` then rename onto ``path``: readers never see half a file,
    and a failure leaves any previous file at ``path`` untouched."""
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"output path {str(path)!r} is a directory; give a file name")
    if not path.parent.exists():
        raise FileNotFoundError(f"output folder {str(path.parent)!r} does not exist")
    # not tempfile.mkstemp, whose files are private (0600): the output gets the mode that
    # the umask gives any new file, even where ``write`` recreates tmp (safetensors does)
    tmp = str(path.parent / TEMPORARY_NAME.format(name=path.name, token=secrets.token_hex(6)))
    try:
        os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
    except OSError as exc:
        raise _naming(exc, path) from None
    mode = os.stat(tmp).st_mode
    try:
        write(tmp)
        os.chmod(tmp, mode)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        if os.path.exists(tmp):
            os.unlink(tmp)
        if isinstance(exc, OSError) and str(path) not in str(exc):
            raise _naming(exc, path) from None
        raise


def _naming(exc: OSError, path: Path) -> OSError:
    """``exc`` again with a message naming ``path`` (not the hidden temporary file): a
    read-only file system, a full disk or a missing permission says which output failed."""
    named = type(exc)(f"cannot write {str(path)!r}: {exc.strerror or exc}")
    named.errno = exc.errno
    return named


#: the name :func:`atomic_write` gives its temporary file for ``path.name`` (12 hex digits)
TEMPORARY_NAME = ".{name}.{token}.tmp"


def remove_stale_temporaries(folder: str | os.PathLike, name: str,
                             min_age: float = 60.0) -> list[Path]:
    """Remove the temporary files :func:`atomic_write` left in ``folder`` for outputs named
    ``name`` (``.<name>.<12 hex digits>.tmp``, nothing else) when the writing process was
    killed; only those at least ``min_age`` seconds old, unless the caller knows no other
    process writes there (e.g. it holds the folder's lock: ``min_age=0``). Returns them."""
    pattern = re.compile(re.escape(f".{name}.") + r"[0-9a-f]{12}\.tmp")
    removed, now = [], time.time()
    with os.scandir(folder) as entries:
        for entry in entries:
            if not pattern.fullmatch(entry.name):
                continue
            try:
                if (entry.is_file(follow_symlinks=False)
                        and now - entry.stat(follow_symlinks=False).st_mtime >= min_age):
                    os.unlink(entry.path)
                    removed.append(Path(entry.path))
            except FileNotFoundError:       # its writer finished or removed it meanwhile
                pass
    return removed


def write_safetensors(path: str | os.PathLike, tensors: dict[str, Tensor],
                      metadata: dict[str, str], what: str = "") -> None:
    """Write ``tensors`` and string ``metadata`` to a safetensors file atomically; a write
    that fails (e.g. a full disk) is an ``OSError`` naming ``path``, never the temporary."""
    def write(tmp: str) -> None:
        try:
            save_file(tensors, tmp, metadata=metadata)
        except SafetensorError as exc:
            raise OSError(f"cannot write {what + ' ' if what else ''}{str(path)!r}: "
                          f"{exc}") from None

    atomic_write(path, write)


def hash_tensors(h: Any, tensors: dict[str, Tensor]) -> None:
    """Feed names, dtypes, shapes and bytes of ``tensors`` (in name order) into the
    ``hashlib`` object ``h``: the tensor part of every aekit file digest."""
    for name in sorted(tensors):
        t = tensors[name].detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        if t.numel():
            h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())


def jsonable(value: Any) -> Any:
    """``value`` as JSON-able data: tuples to lists, numpy scalars and arrays to Python,
    non-finite floats to strings, anything else (e.g. a RandomState) to None.

    Examples
    --------
    >>> jsonable({"a": (1, np.int64(2)), "b": float("inf")})
    {'a': [1, 2], 'b': 'inf'}
    """
    if isinstance(value, (tuple, list)):
        return [jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, np.ndarray):
        return jsonable(value.tolist())
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating, float)):
        return float(value) if math.isfinite(value) else str(value)
    if value is None or isinstance(value, (bool, int, str)):
        return value
    return None   # e.g. a RandomState instance: not reproducible from a file anyway
