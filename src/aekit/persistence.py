"""Model files: one safetensors file with the weights and JSON metadata; no pickle anywhere.

The metadata (under the key ``"aekit"``) holds the registry name of the class, its
``get_params()``, the fitted attributes that are not tensors (input shape, history, ...),
the aekit version and a SHA-256 over the tensors. :func:`load` rebuilds only registered
classes, so a file can never name code to import, and refuses a file whose tensors do
not match their recorded hash.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file
from sklearn.utils.validation import check_is_fitted

from aekit._registry import MODELS
from aekit._version import __version__
from aekit.exceptions import InputError
from aekit.runtime import atomic_write, jsonable, resolve_device

FORMAT = "aekit-model"
FORMAT_VERSION = 1
#: fitted attributes stored in the metadata (tensors live in ``module_``'s state dict).
FITTED_ATTRIBUTES = ("input_shape_", "n_features_in_", "n_iter_", "history_", "best_loss_",
                     "feature_names_in_")


def tensors_sha256(tensors: dict[str, torch.Tensor]) -> str:
    """SHA-256 over names, dtypes, shapes and bytes of ``tensors``, in name order."""
    h = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name].detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


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
        "params": jsonable(est.get_params()),
        "fitted": {a: jsonable(vars(est)[a]) for a in _fitted_attributes(type(est))
                   if a in vars(est)},
        "tensors_sha256": tensors_sha256(tensors),
    }
    atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata={"aekit": json.dumps(meta)}))


def _fitted_attributes(cls: type) -> tuple[str, ...]:
    """The shared fitted attributes plus those a model lists in ``_saved_attributes``."""
    return FITTED_ATTRIBUTES + tuple(cls._saved_attributes)


def _restore_types(cls: type, params: dict[str, Any]) -> dict[str, Any]:
    """JSON turns tuples into lists; give tuple-valued defaults their tuples back."""
    defaults = cls().get_params()
    return {k: tuple(v) if isinstance(defaults.get(k), tuple) and isinstance(v, list) else v
            for k, v in params.items()}


def read_metadata(path: str | os.PathLike) -> dict[str, Any]:
    """The aekit metadata of a model file, after checking it is one."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"model file {str(path)!r} does not exist")
    try:
        with safe_open(str(path), framework="pt") as f:
            raw = (f.metadata() or {}).get("aekit")
    except (SafetensorError, OSError, ValueError) as exc:
        raise InputError(f"{str(path)!r} is not a safetensors model file ({exc}); aekit model "
                         "files are written by model.save() / 'aekit fit -o'") from None
    try:
        meta = json.loads(raw) if raw is not None else None
    except json.JSONDecodeError:
        meta = None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise InputError(f"{str(path)!r} is a safetensors file but not an aekit model "
                         "(its metadata has no valid 'aekit' entry)")
    return meta


def load(path: str | os.PathLike, device: str | None = None) -> Any:
    """Rebuild a fitted model from a file written by ``save``.

    Only registered aekit classes can be built and no pickle is ever read, so loading a
    stranger's file cannot run code. A file whose tensors were altered is refused.

    Parameters
    ----------
    path : str or path-like
    device : str, optional
        Where to put the weights ("cpu", "cuda", "auto"); defaults to the saved ``device``
        parameter resolved on this machine.

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
    cls = MODELS.lookup(meta.get("class"))
    try:
        params = _restore_types(cls, dict(meta.get("params") or {}))
        est = cls(**params)
        est._validate_params()
        fitted = dict(meta["fitted"])
        shape = tuple(int(s) for s in fitted["input_shape_"])
    except (TypeError, KeyError, ValueError) as exc:
        raise InputError(f"{str(path)!r} has metadata aekit cannot use: {exc}") from None
    tensors = load_file(str(path))
    if tensors_sha256(tensors) != meta.get("tensors_sha256"):
        raise InputError(f"{str(path)!r}: the tensors do not match the SHA-256 recorded when "
                         "the file was saved; the file is corrupt or was altered")
    for attr in _fitted_attributes(cls)[len(FITTED_ATTRIBUTES):]:   # they may size networks
        if attr in fitted:
            value = fitted[attr]
            setattr(est, attr, np.asarray(value) if isinstance(value, list) else value)
    with torch.random.fork_rng(devices=[]):
        module = est._build(shape)
    try:
        module.load_state_dict(tensors, strict=True)
    except RuntimeError as exc:
        first = str(exc).splitlines()[0] if str(exc) else "state dict mismatch"
        raise InputError(f"{str(path)!r}: the weights do not fit a {cls.__name__} with these "
                         f"parameters ({first})") from None
    est.module_ = module.to(resolve_device(device or est.device)).eval()
    for attr in FITTED_ATTRIBUTES:
        if attr in fitted:
            setattr(est, attr, fitted[attr])
    est.input_shape_ = shape
    if "best_loss_" in fitted:
        est.best_loss_ = float(fitted["best_loss_"])
    if "feature_names_in_" in fitted:
        est.feature_names_in_ = np.asarray(fitted["feature_names_in_"], dtype=object)
    return est
