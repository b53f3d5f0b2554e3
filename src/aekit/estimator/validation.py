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

from aekit.data import streaming, tables
from aekit.data.sources import Source
from aekit.distributions import LIKELIHOODS
from aekit.exceptions import InputError, input_checks
from aekit.nn import network_spec_problem


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
    check_frame_columns(X)
    with input_checks():
        X = validate_data(est, X, reset=reset, dtype=np.float32, allow_nd=True,
                          ensure_min_samples=2 if reset else 1, ensure_all_finite=False)
    check_finite_columns(est, X)
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


def _numeric(dtype: Any) -> bool:
    if hasattr(dtype, "is_numeric"):                         # polars
        return bool(dtype.is_numeric()) or str(dtype) == "Boolean"
    return getattr(dtype, "kind", "O") in "biuf"             # numpy, pandas


def check_frame_columns(X: Any) -> None:
    """Refuse a DataFrame (pandas, polars) with non-numeric columns, naming them."""
    columns, dtypes = getattr(X, "columns", None), getattr(X, "dtypes", None)
    if columns is None or dtypes is None or isinstance(X, np.ndarray):
        return
    bad = [f"{name!r} ({dtype})" for name, dtype in zip(list(columns), list(dtypes))
           if not _numeric(dtype)]
    if bad:
        raise InputError(f"the DataFrame has non-numeric column(s) {', '.join(bad[:10])}; "
                         "use likelihood='mixed' (or 'auto'), which models categorical, binary and "
                         "numeric columns (and missing cells), or encode them as numbers")


def check_finite_columns(est: Any, X: np.ndarray) -> None:
    """Refuse missing (NaN) or infinite values, naming the columns that hold them."""
    finite = np.isfinite(X)
    if finite.all():
        return
    flat = finite.reshape(len(X), -1).all(0)
    names = getattr(est, "feature_names_in_", None)
    if names is None or len(names) != flat.size:
        names = [str(i) for i in range(flat.size)]
    bad = [str(names[j]) for j in np.flatnonzero(~flat)]
    rows = np.flatnonzero(~finite.reshape(len(X), -1).all(1))
    kind = ("missing (NaN)" if np.isnan(X).any()
            else "infinite (or beyond float32's range of 3.4e38)")
    raise InputError(f"X has {kind} values in {len(bad)} column(s): {', '.join(bad[:10])}"
                     f"{' ...' if len(bad) > 10 else ''} (rows "
                     f"{', '.join(map(str, rows[:10]))}{' ...' if len(rows) > 10 else ''}); "
                     + ("likelihood='mixed' models rows with missing cells (and 'auto' "
                        "chooses it for a DataFrame), or impute them (e.g. sklearn's "
                        "SimpleImputer) or drop those rows" if np.isnan(X).any() else
                        "aekit's models need finite values: drop or clip those rows"))


def validate_table(est: Any, X: Any, *, reset: bool) -> np.ndarray:
    """A mixed table (``likelihood="mixed"``) as float32 rows ``(n, D)``: numbers, 0 / 1,
    level codes, NaN for missing cells (:func:`aekit.data.tables.encode`). On reset the
    column kinds and levels are inferred (``est.columns`` overrides) into ``columns_``."""
    if isinstance(streaming.resolve(X) if isinstance(X, (str, os.PathLike)) else X, Source):
        raise InputError("likelihood='mixed' reads its table into memory; pass an array or "
                         "a DataFrame (or a .csv through aekit.datasets / the command line)")
    if reset:
        names = [str(c) for c in X.columns] if tables.is_frame(X) else None
        columns = tables.infer_columns(X, est.columns)
        rows = tables.encode(X, columns)
        if len(rows) < 2:
            raise InputError(f"n_samples={len(rows)} while a minimum of 2 is required by "
                             f"{type(est).__name__}")
        est.columns_ = [c.to_json() for c in columns]
        est.n_features_in_ = rows.shape[1]
        est.input_shape_ = (rows.shape[1],)
        if names is not None:
            est.feature_names_in_ = np.asarray(names, dtype=object)
        return rows
    # an array for a model fitted on a DataFrame is read by position
    return tables.encode(X, [tables.Column.from_json(c) for c in est.columns_])


#: what ``likelihood="auto"`` chooses for data that need no likelihood per column
AUTO_LIKELIHOOD = "gaussian_learned"


def resolve_likelihood(est: Any, X: Any) -> str:
    """The likelihood a fit of ``est`` on ``X`` uses: ``est.likelihood``, or for
    ``"auto"`` ``"mixed"`` where ``columns=`` declares kinds or ``X`` is a DataFrame with a
    non-numeric column or a missing cell (:func:`aekit.data.tables.needs_columns`), and
    :data:`AUTO_LIKELIHOOD` otherwise (arrays, images, data to stream: unchanged)."""
    if est.likelihood != "auto":
        return est.likelihood
    if est.columns is not None or (tables.is_frame(X) and tables.needs_columns(X)):
        return "mixed"
    return AUTO_LIKELIHOOD


def check_likelihood(est: Any, likelihood: str) -> None:
    """Checks of ``likelihood`` (chosen, or resolved from "auto") with the other
    parameters: ``scale`` and what ``"mixed"`` needs."""
    check_scale(likelihood, est.scale)
    check_mixed(est, likelihood)


def check_mixed(est: Any, likelihood: str) -> None:
    if likelihood != "mixed":
        if est.columns is not None:
            raise InputError(f"columns= declares the kinds of a mixed table's columns; it "
                             f"needs likelihood='mixed' (got {likelihood!r})")
        return
    if est._mixed_unsupported:
        raise InputError(f"{type(est).__name__} cannot model mixed tables: "
                         f"{est._mixed_unsupported}; use VAE (or AE, IWAE, ...)")
    if est.architecture == "conv":
        raise InputError("likelihood='mixed' models tables; architecture='conv' is for images")
    if est.binarize != "none":
        raise InputError("binarize='dynamic' draws binary pixels; it does not apply to "
                         "likelihood='mixed'")


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


SCALES = ("auto", "standard", "none")


def standardizes(likelihood: str, scale: str) -> bool:
    """Whether a model with these parameters standardises its features: ``scale="auto"``
    does for the location-scale likelihoods (``gaussian``, ``gaussian_learned``,
    ``laplace``) and not for those of a fixed range (``bernoulli``, ``categorical``, ...)."""
    if scale == "auto":
        return LIKELIHOODS.lookup(likelihood).location_scale
    return scale == "standard"


def check_scale(likelihood: str, scale: str) -> None:
    if scale == "standard" and not LIKELIHOODS.lookup(likelihood).location_scale:
        raise InputError(f"scale='standard' needs a likelihood over the real line "
                         f"('gaussian', 'gaussian_learned', 'laplace'); likelihood="
                         f"{likelihood!r} models values in a fixed range: use scale='none' "
                         f"or 'auto'")


class FeatureMoments:
    """Per-feature mean and standard deviation accumulated over blocks of rows, in float64
    (Chan et al.'s pairwise update, so one pass over streamed data is enough)."""

    def __init__(self) -> None:
        self.n: np.ndarray | None = None          # per feature: missing (NaN) cells skipped
        self.mean: np.ndarray | None = None
        self.m2: np.ndarray | None = None

    def update(self, rows: np.ndarray) -> None:
        rows = np.asarray(rows, dtype=np.float64).reshape(len(rows), -1)
        if len(rows) == 0:
            return
        seen = ~np.isnan(rows)
        m = seen.sum(0)
        filled = np.where(seen, rows, 0.0)
        mean = filled.sum(0) / np.maximum(m, 1)
        m2 = (np.where(seen, rows - mean, 0.0) ** 2).sum(0)
        if self.mean is None:
            self.n, self.mean, self.m2 = m, mean, m2
            return
        n = self.n + m
        delta = mean - self.mean
        self.mean = self.mean + delta * (m / np.maximum(n, 1))
        self.m2 = self.m2 + m2 + delta ** 2 * (self.n * m / np.maximum(n, 1))
        self.n = n

    def standardization(self) -> tuple[np.ndarray, np.ndarray]:
        """``(mean, std)``; a constant feature (std 0, below float32's resolution of its
        mean, or so small that its square, the variance a Gaussian likelihood divides by in
        the data's units, is below float32's smallest normal number, which is 0 once
        subnormals are flushed) gets std 1, so it is centred and never divided by zero."""
        std = np.sqrt(self.m2 / np.maximum(self.n, 1))
        constant = ((std == 0) | (std <= 1e-6 * np.abs(self.mean))
                    | (std < np.sqrt(np.finfo(np.float32).tiny)))
        return self.mean, np.where(constant, 1.0, std)


def feature_standardization(X: np.ndarray, chunk: int = 4096) -> tuple[np.ndarray, np.ndarray]:
    """Per-feature mean and standard deviation of rows ``X`` ``(n, D)`` (see
    :class:`FeatureMoments`), read in chunks so no float64 copy of ``X`` is made."""
    moments = FeatureMoments()
    for start in range(0, len(X), chunk):
        moments.update(X[start:start + chunk])
    return moments.standardization()


def check_networks(est: Any) -> None:
    """``encoder`` / ``decoder`` are values a model can build from (see
    :func:`aekit.nn.build_user_network`), and the model takes users' networks."""
    for role in ("encoder", "decoder"):
        spec = getattr(est, role)
        if spec is None:
            continue
        if est._own_networks_unsupported:
            raise InputError(f"{type(est).__name__} cannot take your own {role}: "
                             f"{est._own_networks_unsupported}")
        problem = network_spec_problem(spec)
        if problem is not None:
            raise InputError(f"{role}: {problem}")


def check_binarize(binarize: str, X: np.ndarray) -> None:
    if binarize == "dynamic" and X.size and (X.min() < 0 or X.max() > 1):
        raise InputError(f"binarize='dynamic' draws Bernoulli pixels from grey levels "
                         f"in [0, 1]; the data range over [{X.min():g}, {X.max():g}]")


def validate_source(est: Any, source: Source, fingerprint: bool,
                    moments: FeatureMoments | None = None) -> str | None:
    """Check data to stream in one pass (finite, in the likelihood's support) and set
    ``input_shape_`` / ``n_features_in_``; ``moments`` accumulate the features' mean and
    standard deviation in the same pass. Returns the data's SHA-256 when asked."""
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
    in_support = LIKELIHOODS.lookup(est.likelihood_)(n_features).check_support

    def check(rows: np.ndarray) -> None:
        in_support(rows)
        check_binarize(est.binarize, rows)
        if moments is not None:
            moments.update(rows)

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
