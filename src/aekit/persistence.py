"""Model files: one safetensors file with the weights and JSON metadata; no pickle anywhere.

The metadata (under the key ``"aekit"``) holds the registry name of the class, its
``get_params()``, the fitted attributes that are not tensors (input shape, history, ...),
the aekit version, a SHA-256 over the tensors (``tensors_sha256``) and, from format
version 2 on, a SHA-256 over all of that metadata (``sha256``), so neither a weight nor a
parameter can change unnoticed. Files of format version 1 (aekit before the metadata
digest) are still read; their digest covers the tensors only.

The digests are an integrity check against corruption and careless edits, not a
signature: whoever can write the file can recompute them. What makes a stranger's file
safe to load is that :func:`load` rebuilds only registered classes (a file can never name
code to import), validates every parameter and fitted attribute, and compares the shape
of every tensor with the network those parameters describe before allocating any of it:
loading takes memory in proportion to the file's size, never to the sizes it declares.
"""

from __future__ import annotations

import hashlib
import json
import math
import numbers
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file
from sklearn.utils.validation import check_is_fitted

from aekit._registry import MODELS
from aekit._version import __version__
from aekit.data.sources.source import check_file
from aekit.distributions import LIKELIHOODS
from aekit.exceptions import InputError
from aekit.nn import network_spec_json
from aekit.runtime import (
    hash_tensors,
    jsonable,
    local_device,
    resolve_device,
    write_safetensors,
)

FORMAT = "aekit-model"
FORMAT_VERSION = 3
#: the format versions :func:`load` reads (1: ``tensors_sha256`` only; 2: also ``sha256``;
#: 3: the ``scale`` parameter, whose absence means the model did not standardise).
READABLE_VERSIONS = (1, 2, 3)
#: fitted attributes stored in the metadata (tensors live in ``module_``'s state dict).
FITTED_ATTRIBUTES = ("input_shape_", "n_features_in_", "n_iter_", "history_", "best_loss_",
                     "feature_names_in_", "likelihood_")


def tensors_sha256(tensors: dict[str, torch.Tensor]) -> str:
    """SHA-256 over names, dtypes, shapes and bytes of ``tensors``, in name order."""
    h = hashlib.sha256()
    hash_tensors(h, tensors)
    return h.hexdigest()


def metadata_sha256(meta: dict[str, Any]) -> str:
    """SHA-256 over ``meta`` without its ``"sha256"`` entry, as canonical JSON (sorted
    keys, no spaces): the same on every machine for the same metadata."""
    rest = {k: v for k, v in meta.items() if k != "sha256"}
    text = json.dumps(rest, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(text.encode()).hexdigest()


def save_model(est: Any, path: str | os.PathLike) -> None:
    """Write fitted ``est`` to ``path`` (see :meth:`aekit.estimator.BaseAutoencoder.save`)."""
    check_is_fitted(est)
    name = getattr(type(est), "_registry_name", None)
    if name is None or MODELS.lookup(name) is not type(est):
        raise InputError(f"{type(est).__name__} is not a registered aekit model; "
                         "register it with @aekit.register(name) before saving")
    tensors = {k: v.detach().cpu().contiguous() for k, v in est.module_.state_dict().items()}
    meta = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "aekit_version": __version__,
        "class": name,
        "params": jsonable({k: network_spec_json(v) if k in NETWORK_PARAMS else v
                            for k, v in est.get_params().items()}),
        "fitted": {a: jsonable(vars(est)[a]) for a in _fitted_attributes(type(est))
                   if a in vars(est)},
        "tensors_sha256": tensors_sha256(tensors),
    }
    meta["sha256"] = metadata_sha256(meta)
    write_safetensors(path, tensors, {"aekit": json.dumps(meta)})


def _fitted_attributes(cls: type) -> tuple[str, ...]:
    """The shared fitted attributes plus those a model lists in ``_saved_attributes``."""
    return FITTED_ATTRIBUTES + tuple(cls._saved_attributes)


def _restore_types(cls: type, params: dict[str, Any]) -> dict[str, Any]:
    """JSON turns tuples into lists; give tuple-valued defaults their tuples back."""
    defaults = cls().get_params()
    return {k: tuple(v) if isinstance(defaults.get(k), tuple) and isinstance(v, list) else v
            for k, v in params.items()}


#: metadata entries that mark a file as a wrapper around its model (e.g. an anomaly
#: detector): entry -> ``rebuild(model, path)``. The layers that define wrappers register
#: here, so :func:`load` returns them without this module knowing them.
WRAPPERS: dict[str, Callable[[Any, str | os.PathLike], Any]] = {}


def read_metadata(path: str | os.PathLike) -> dict[str, Any]:
    """The aekit metadata of a model file, after checking it is one: its format, a format
    version this aekit reads and, from version 2 on, the metadata's SHA-256."""
    path = Path(path)
    check_file(path, "model file")
    try:
        with safe_open(str(path), framework="pt") as f:
            raw = (f.metadata() or {}).get("aekit")
    except (SafetensorError, OSError, ValueError) as exc:
        raise InputError(f"{str(path)!r} is not a safetensors model file ({exc}); aekit model "
                         "files are written by model.save() / 'aekit fit -o'") from None
    why = "its metadata has no valid 'aekit' entry"
    try:
        meta = json.loads(raw) if raw is not None else None
    except json.JSONDecodeError:
        meta = None
    except RecursionError:
        meta, why = None, "its metadata are JSON nested too deeply to read"
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise InputError(f"{str(path)!r} is a safetensors file but not an aekit model ({why})")
    version = meta.get("format_version")
    if type(version) is not int or version not in READABLE_VERSIONS:
        raise InputError(f"{str(path)!r} has format_version {version!r:.40}; this aekit "
                         f"({__version__}) reads versions {READABLE_VERSIONS[0]} to "
                         f"{READABLE_VERSIONS[-1]}: a newer aekit wrote it (upgrade aekit) "
                         "or the file is corrupt")
    if version >= 2:
        try:
            intact = metadata_sha256(meta) == meta.get("sha256")
        except (RecursionError, ValueError, TypeError):
            intact = False
        if not intact:
            raise InputError(f"{str(path)!r}: the metadata (parameters, fitted attributes) do "
                             "not match the SHA-256 recorded when the file was saved; the file "
                             "is corrupt or was altered")
    return meta


#: parameters that hold a user's network
NETWORK_PARAMS = ("encoder", "decoder")


def load(path: str | os.PathLike, device: str | None = None, *, encoder: Any = None,
         decoder: Any = None) -> Any:
    """Rebuild a fitted model from a file written by ``save``.

    Only registered aekit classes can be built and no pickle is ever read, so loading a
    stranger's file cannot run code. A file whose tensors or metadata were altered is
    refused, and so is one whose parameters are invalid or describe another network than
    its tensors: the network is first built on the ``meta`` device (no memory) and every
    tensor's shape compared, so a file declaring huge sizes cannot take the memory.

    Parameters
    ----------
    path : str or path-like
    device : str, optional
        Where to put the weights ("cpu", "cuda", "auto"); defaults to the saved ``device``
        parameter resolved on this machine.
    encoder, decoder : nn.Module or callable, optional
        The networks of a model fitted with your own module or unregistered factory (a
        file holds their weights, never their code): the same architecture again. Networks
        registered with :func:`aekit.register_network` are rebuilt by name without them.

    Examples
    --------
    >>> import aekit, tempfile, os
    >>> X, _ = aekit.datasets.load("digits")
    >>> vae = aekit.VAE(max_iter=1, random_state=0).fit(X)
    >>> path = os.path.join(tempfile.mkdtemp(), "vae.safetensors")
    >>> vae.save(path)
    >>> aekit.load(path).transform(X[:2]).shape
    (2, 2)
    """
    meta = read_metadata(path)
    try:
        cls = MODELS.lookup(meta.get("class"))
    except InputError as exc:
        raise InputError(f"{str(path)!r} names an {exc}") from None
    est, fitted, shape = _estimator_from(cls, meta, path, {"encoder": encoder,
                                                            "decoder": decoder})
    try:
        # on the meta device: shapes without memory, whatever sizes the file declares
        with torch.random.fork_rng(devices=[]), torch.device("meta"):
            module = est._build(shape)
    except (RuntimeError, ValueError, TypeError, OverflowError, MemoryError) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise InputError(f"{str(path)!r} describes a {cls.__name__} aekit cannot build "
                         f"({first})") from None
    _check_shapes(module, path, cls.__name__)
    tensors = load_file(str(path))      # now known to be the network's own tensors
    if tensors_sha256(tensors) != meta.get("tensors_sha256"):
        raise InputError(f"{str(path)!r}: the tensors do not match the SHA-256 recorded when "
                         "the file was saved; the file is corrupt or was altered")
    # under torchrun each process takes its own GPU, not GPU 0 (CUDA only)
    module = module.to_empty(device=local_device(resolve_device(device or est.device)))
    module.load_state_dict(tensors, strict=True)
    est.module_ = module.eval()
    for attr in FITTED_ATTRIBUTES:
        if attr in fitted:
            setattr(est, attr, fitted[attr])
    est.input_shape_ = shape
    if "best_loss_" in fitted:
        est.best_loss_ = float(fitted["best_loss_"])
    if "feature_names_in_" in fitted:
        est.feature_names_in_ = np.asarray(fitted["feature_names_in_"], dtype=object)
    if WRAPPERS:
        with safe_open(str(path), framework="pt") as f:
            entries = set(f.metadata() or {})
        for entry, rebuild in WRAPPERS.items():
            if entry in entries:
                return rebuild(est, path)
    return est


def _estimator_from(cls: type, meta: dict[str, Any], path: str | os.PathLike,
                    networks: dict[str, Any]) -> tuple[Any, dict[str, Any], tuple[int, ...]]:
    """An unfitted ``cls`` with the file's parameters (and the user's ``networks`` where the
    file names one it cannot rebuild), checked as ``fit`` checks them, its fitted
    attributes and input shape; every problem is an :class:`InputError`."""
    params = meta.get("params")
    if isinstance(params, dict):
        _networks_into(params, networks, path)
    try:
        params, fitted = meta.get("params"), meta.get("fitted")
        if not isinstance(params, dict) or not isinstance(fitted, dict):
            raise TypeError("'params' and 'fitted' must be JSON objects")
        if meta["format_version"] <= 2:
            params.setdefault("scale", "none")   # written before aekit standardised features
        for name, value in cls._params_before.items():
            params.setdefault(name, value)
        est = cls(**_restore_types(cls, params))
        est._validate_params()
        est._check_hyperparameters()
        # the likelihood fit used; files written before likelihood="auto" name it in params
        est.likelihood_ = fitted.get("likelihood_", params["likelihood"])
        if est.likelihood_ not in LIKELIHOODS.names():
            raise ValueError(f"likelihood_ must be one of {sorted(LIKELIHOODS.names())}; got "
                             f"{est.likelihood_!r:.40}")
        shape = _input_shape(fitted["input_shape_"])
        _check_fitted(fitted, shape)
        for attr in _fitted_attributes(cls)[len(FITTED_ATTRIBUTES):]:   # they may size networks
            if attr in fitted:
                value = fitted[attr]
                as_array = isinstance(value, list) and not any(isinstance(v, dict)
                                                               for v in value)
                setattr(est, attr, np.asarray(value) if as_array else value)
    except (TypeError, KeyError, ValueError, OverflowError, RecursionError) as exc:
        # ValueError includes scikit-learn's InvalidParameterError and aekit's InputError
        message = str(exc) if isinstance(exc, (ValueError, TypeError)) else repr(exc)
        raise InputError(f"{str(path)!r} has metadata aekit cannot use: {message[:300]}; "
                         "save the model again with model.save()") from None
    return est, fitted, shape


def _networks_into(params: dict[str, Any], given: dict[str, Any],
                   path: str | os.PathLike) -> None:
    """Put the user's networks into the file's parameters: one given to ``load`` replaces
    what the file records; a recorded user network not given is refused by name."""
    for role in NETWORK_PARAMS:
        recorded = params.get(role)
        if given[role] is not None:
            params[role] = given[role]
        elif isinstance(recorded, dict) and "user_network" in recorded:
            raise InputError(
                f"{str(path)!r} was fitted with your own {role} "
                f"({str(recorded['user_network'])[:80]}), whose code a model file does not "
                f"hold: pass it again, aekit.load(path, {role}=...), or register its factory "
                f"with aekit.register_network(name) and fit with {role}=name")
        elif isinstance(recorded, list):
            params[role] = tuple(recorded)


#: the most values per row a model file may declare (far more than any network can take).
MAX_ROW_VALUES = 2**40


def _input_shape(value: Any) -> tuple[int, ...]:
    """``input_shape_`` as a tuple of 1 to 3 positive ints, refusing anything else."""
    if (not isinstance(value, list) or not 1 <= len(value) <= 3
            or not all(type(s) is int and s >= 1 for s in value)
            or math.prod(value) > MAX_ROW_VALUES):
        raise ValueError(f"input_shape_ must be 1 to 3 positive integers of at most "
                         f"{MAX_ROW_VALUES} values in all; got {value!r:.80}")
    return tuple(value)


def _check_fitted(fitted: dict[str, Any], shape: tuple[int, ...]) -> None:
    """The shared fitted attributes have the types ``fit`` gives them."""
    n = fitted.get("n_features_in_", shape[0])
    if type(n) is not int or not 1 <= n <= math.prod(shape):
        raise ValueError(f"n_features_in_ must be a positive integer of at most the "
                         f"{math.prod(shape)} values of input_shape_; got {n!r:.40}")
    n_iter = fitted.get("n_iter_", 0)
    if type(n_iter) is not int or n_iter < 0:
        raise ValueError(f"n_iter_ must be a non-negative integer; got {n_iter!r:.40}")
    history = fitted.get("history_", {})
    if not isinstance(history, dict) or not all(isinstance(v, list) for v in history.values()):
        raise ValueError("history_ must map names to lists of values")
    if "best_loss_" in fitted and not isinstance(fitted["best_loss_"], (numbers.Real, str)):
        raise ValueError(f"best_loss_ must be a number; got {fitted['best_loss_']!r:.40}")
    if "best_loss_" in fitted:
        float(fitted["best_loss_"])
    names = fitted.get("feature_names_in_", [])
    if not isinstance(names, list) or not all(isinstance(v, str) for v in names) \
            or "feature_names_in_" in fitted and len(names) != n:
        raise ValueError(f"feature_names_in_ must be {n} strings")


def _check_shapes(module: torch.nn.Module, path: str | os.PathLike, name: str) -> None:
    """Refuse a file whose tensors are not exactly those of ``module`` (built on the meta
    device), by name and shape, reading only the file's header."""
    expected = {k: tuple(v.shape) for k, v in module.state_dict().items()}
    with safe_open(str(path), framework="pt") as f:
        stored = {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}
    problems = [f"missing {k}" for k in sorted(set(expected) - set(stored))]
    problems += [f"unexpected {k}" for k in sorted(set(stored) - set(expected))]
    problems += [f"{k} is {list(stored[k])} in the file, {list(expected[k])} in the network"
                 for k in sorted(set(stored) & set(expected)) if stored[k] != expected[k]]
    if problems:
        more = f" and {len(problems) - 3} more" if len(problems) > 3 else ""
        raise InputError(f"{str(path)!r}: the weights do not fit a {name} with these "
                         f"parameters ({'; '.join(problems[:3])}{more})")
