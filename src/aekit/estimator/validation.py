"""Checks of what a user passes in: the data (arrays, images, data to stream), its fit to
the model's likelihood, and hyperparameters that scikit-learn's parameter constraints cannot
express.

Each check is a function of what it checks; the estimator calls them. A check either
passes or raises a one-line ``ValueError`` that names what is wrong, before anything is
trained or written.
"""

from __future__ import annotations

import math
import numbers
import os
from typing import Any

import numpy as np
import torch
from sklearn.utils.validation import validate_data

from aekit.data import streaming
from aekit.data.sources import Source
from aekit.distributions import LIKELIHOODS
from aekit.exceptions import InputError, input_checks


def validate_rows(est: Any, X: Any, *, reset: bool) -> Any:
    """float32 rows ``(n, D)``; sets ``input_shape_`` and ``n_features_in_`` on reset.

    After fitting, data to stream (a source, a path, a memory map larger than the
    memory budget) come back as a :class:`~aekit.data.streaming.CheckedSource`, read and
    checked a chunk at a time."""
    if not reset:
        X = streaming.resolve(X)
        if isinstance(X, Source):
            return streaming.CheckedSource(X, est.input_shape_, type(est).__name__)
    shape = getattr(X, "shape", None)
    if (not reset and shape is not None and len(shape) >= 2 and "input_shape_" in vars(est)
            and (len(shape) > 2 or len(est.input_shape_) > 1)
            and tuple(shape[1:]) != tuple(est.input_shape_)):
        raise InputError(f"X has rows of shape {tuple(shape[1:])}, but "
                         f"{type(est).__name__} was fitted on rows of shape "
                         f"{tuple(est.input_shape_)}")
    with input_checks():
        X = validate_data(est, X, reset=reset, dtype=np.float32, allow_nd=True,
                          ensure_min_samples=2 if reset else 1)
    if X.ndim > 4:
        raise InputError(f"expected rows (n, D) or images (n, H, W) / (n, C, H, W); "
                         f"got an array of shape {X.shape}")
    if reset:
        est.input_shape_ = tuple(int(s) for s in X.shape[1:])
    elif tuple(X.shape[1:]) != tuple(est.input_shape_):
        raise InputError(f"X has rows of shape {tuple(X.shape[1:])}, but "
                         f"{type(est).__name__} was fitted on rows of shape "
                         f"{tuple(est.input_shape_)}")
    return X.reshape(len(X), -1)


def check_support(likelihood: str, X: Any) -> None:
    """Refuse rows outside the support of ``likelihood`` (checked chunk by chunk for streams)."""
    check = LIKELIHOODS.lookup(likelihood)(X.shape[1]).check_support
    if isinstance(X, streaming.CheckedSource):
        X.checks.append(check)      # checked chunk by chunk as the rows are read
    else:
        check(X)


def check_hidden_layer_sizes(hidden_layer_sizes: Any) -> None:
    """Positive integer widths; ``()`` gives the single-layer (linear when
    ``activation="identity"``) encoder and decoder of the lecture's linear autoencoder."""
    sizes = hidden_layer_sizes
    if isinstance(sizes, numbers.Integral):
        sizes = (sizes,)
    if isinstance(sizes, (str, bytes)) or not all(
            isinstance(s, numbers.Integral) and not isinstance(s, bool) and s > 0
            for s in sizes):
        raise InputError(f"hidden_layer_sizes must be a sequence of positive integers (() "
                         f"for a single layer); got {hidden_layer_sizes!r}")


def check_binarize(binarize: str, X: np.ndarray) -> None:
    if binarize == "dynamic" and X.size and (X.min() < 0 or X.max() > 1):
        raise InputError(f"binarize='dynamic' draws Bernoulli pixels from grey levels "
                         f"in [0, 1]; the data range over [{X.min():g}, {X.max():g}]")


def validate_source(est: Any, source: Source, fingerprint: bool) -> str | None:
    """Check data to stream in one pass (finite, in the likelihood's support) and set
    ``input_shape_`` / ``n_features_in_``. Returns the data's SHA-256 when asked."""
    name = type(est).__name__
    if not est.capabilities.streaming:
        raise InputError(f"{name} cannot train on streamed data: "
                         f"{est._streaming_unsupported}. Load the data into memory "
                         "(a larger memory_budget) or use another model")
    if len(source.row_shape) > 3:
        raise InputError(f"expected rows (n, D) or images (n, H, W) / (n, C, H, W); got "
                         f"rows of shape {source.row_shape}")
    if est.early_stopping and not source.random_access:
        raise InputError(f"early_stopping holds out random rows, which {type(source).__name__}"
                         " cannot read apart from the others (it is read in blocks); use a "
                         ".npy file, or early_stopping=False")
    n_features = math.prod(source.row_shape)
    in_support = LIKELIHOODS.lookup(est.likelihood)(n_features).check_support

    def check(rows: np.ndarray) -> None:
        in_support(rows)
        check_binarize(est.binarize, rows)

    digest = streaming.scan(source, check, fingerprint)
    if source.n_rows < 2:
        raise InputError(f"n_samples={source.n_rows} while a minimum of 2 is required "
                         f"by {name}")
    est.input_shape_ = tuple(int(s) for s in source.row_shape)
    est.n_features_in_ = est.input_shape_[0]      # as validate_data sets it for images
    return digest


#: bytes one parameter takes while training: the weight, its gradient, Adam's two moments,
#: and room for a snapshot of the last good weights and of the best ones
TRAINING_BYTES_PER_PARAMETER = 6 * 4


def check_network_size(est: Any, input_shape: tuple[int, ...]) -> None:
    """Refuse parameters whose network would not fit in this machine's memory before any
    of it is allocated (e.g. ``n_components=10**9``): the network is built on the ``meta``
    device, where tensors have shapes but no storage, and its parameters counted."""
    with torch.device("meta"):
        module = est._build(input_shape)
    n = sum(t.numel() for t in module.parameters())
    need = n * TRAINING_BYTES_PER_PARAMETER
    have = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    if need > have:
        raise InputError(f"these parameters give {type(est).__name__} a network of {n:.3g} "
                         f"parameters for rows of shape {input_shape}: training needs about "
                         f"{need / 2**30:.1f} GiB and this machine has {have / 2**30:.1f} GiB; "
                         "use a smaller n_components / hidden_layer_sizes")
