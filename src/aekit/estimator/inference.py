"""How a fitted model computes on data: rows in chunks under inference mode and the
model's precision, on arrays or on data streamed from disk, and the common evaluation
noise. :class:`~aekit.estimator.BaseAutoencoder`'s public methods are built on these."""

from __future__ import annotations

import contextlib
import math
import numbers
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from torch import Tensor

from aekit.data import streaming
from aekit.exceptions import InputError
from aekit.runtime import autocast, flush_denormal

#: rough bytes one evaluation chunk may use; sets how many rows are scored at once.
EVAL_MEMORY_BUDGET = 256 * 2**20
#: on a GPU, the most of its free memory one evaluation chunk may use (see
#: :func:`device_budget`).
EVAL_GPU_FRACTION = 0.25
#: the most rows one call of ``sample`` draws (a larger request is a mistake, not a job).
MAX_SAMPLES = 10**8


def bytes_per_row(est: Any, n_features: int, draws: int = 1, *,
                  n_params: int | None = None) -> int:
    """Rough bytes one row takes while evaluated with ``draws`` noise draws: the input, the
    likelihood's parameters per feature (256 for ``categorical``), their log-probabilities
    and the hidden activations, all float32.

    ``n_params`` overrides the decoder outputs per feature each (row, draw) pair holds:
    1 where the rows are scored against parameters decoded once for all of them (VQ-VAE's
    codebook), which then hold only log-probabilities and their temporaries.
    """
    if n_params is None:
        n_params = est.module_.likelihood.n_params if "module_" in vars(est) else 1
    activations = sum(getattr(est, "hidden_layer_sizes", ()) or ()) + est.n_components
    return 4 * draws * (n_features * (2 + 2 * n_params) + 2 * activations + 1)


def device_budget(device: torch.device | None, budget: int = EVAL_MEMORY_BUDGET) -> int:
    """``budget`` bytes, on a CUDA device at most :data:`EVAL_GPU_FRACTION` of the memory
    free there (what the driver reports free, plus what torch's allocator holds unused):
    a chunk sized for the host must not exhaust a smaller or busier GPU."""
    if device is None or torch.device(device).type != "cuda":
        return budget
    free, _ = torch.cuda.mem_get_info(device)
    free += torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)
    return max(1, min(budget, int(free * EVAL_GPU_FRACTION)))


def rows_per_chunk(est: Any, n_features: int, draws: int = 1,
                   budget: int = EVAL_MEMORY_BUDGET, *, n_params: int | None = None,
                   device: torch.device | None = None) -> int:
    """How many rows fit in one evaluation chunk of ``budget`` bytes (see
    :func:`bytes_per_row`), the budget capped by the free memory of ``device`` on a GPU
    (:func:`device_budget`; by default the device of a fitted ``est``'s weights)."""
    if device is None and "module_" in vars(est):
        device = next(est.module_.parameters()).device
    budget = device_budget(device, budget)
    return max(1, budget // bytes_per_row(est, n_features, draws, n_params=n_params))


@contextlib.contextmanager
def computing(est: Any, device: torch.device) -> Iterator[None]:
    """How a fitted model computes on data: inference mode, its precision's autocast, and
    subnormals flushed on the CPU when ``est.flush_denormal`` (the caller's mode restored)."""
    with (torch.inference_mode(), autocast(est.precision, device),
          flush_denormal(est.flush_denormal and device.type == "cpu")):
        yield


def map_rows(est: Any, X: Any, fn: Any, draws: int = 1,
             others: tuple[np.ndarray, ...] = (), *, same_shape: bool = False) -> np.ndarray:
    """Apply ``fn(x, *others)`` to chunks of the rows of ``X`` under inference mode and
    ``est``'s precision; concatenate as numpy. ``X`` is an array or a checked stream;
    ``others`` are arrays aligned with ``X`` (e.g. labels), chunked alongside.

    ``same_shape`` pads a short last chunk to the full chunk size (repeating its last row)
    and drops the padding's results, so that a compiled ``fn`` (whose rows are scored
    independently of each other) sees one shape and compiles once, not twice."""
    # rows of codes (inverse_transform) are narrow, but each is decoded to a full row of
    # the likelihood's parameters: size the chunks by the data's width, not the input's
    n_features = max(X.shape[1], math.prod(getattr(est, "input_shape_", ())))
    chunk = min(len(X), rows_per_chunk(est, n_features, draws)) or 1
    device = next(est.module_.parameters()).device
    est.module_.eval()
    out, start = [], 0
    with computing(est, device):
        for rows in streaming.row_chunks(X, chunk):
            x = torch.as_tensor(rows, device=device)
            n = len(x)
            rest = [torch.as_tensor(o[start:start + n], device=device) for o in others]
            if same_shape and n < chunk:
                x, *rest = (torch.cat([t, t[-1:].expand(chunk - n, *t.shape[1:])])
                            for t in (x, *rest))
            out.append(fn(x, *rest)[:n].float().cpu().numpy())
            start += n
    return np.concatenate(out)


def eval_noise(random_state: Any, n_draws: int, n_components: int,
               device: torch.device) -> Tensor:
    """Common random numbers ``(K, k)`` for evaluation, seeded by ``random_state`` (0 when
    it is not an integer), so scores are reproducible and row-independent."""
    seed = random_state if isinstance(random_state, numbers.Integral) else 0
    g = torch.Generator().manual_seed(int(seed))
    return torch.randn(n_draws, n_components, generator=g).to(device)


def check_n_samples(n_samples: Any) -> int:
    """``n_samples`` as a positive int, refused with a message otherwise."""
    if (not isinstance(n_samples, numbers.Integral) or isinstance(n_samples, bool)
            or n_samples < 1 or n_samples > MAX_SAMPLES):
        raise InputError(f"n_samples must be an integer from 1 to {MAX_SAMPLES:.0e}; "
                         f"got {n_samples!r}")
    return int(n_samples)
