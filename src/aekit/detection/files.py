"""Detector files: the wrapped model's safetensors file plus the detector in its metadata.

A detector file is a model file (:mod:`aekit.persistence`: the weights and the model's
``"aekit"`` metadata, untouched) with one more metadata entry, ``"aekit_detector"``: JSON
with the detector's parameters, its score, threshold and threshold rule, the SHA-256 of the
model's metadata text (binding the two) and a SHA-256 over itself. No pickle anywhere;
:func:`aekit.load` on a detector file gives the wrapped model, :func:`load_detector` the
detector. Training-row attributes (``decision_scores_``, ``labels_``) are not stored.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file
from sklearn.base import clone

from aekit import persistence
from aekit._version import __version__
from aekit.detection.detector import SCORES, AnomalyDetector
from aekit.exceptions import InputError
from aekit.runtime import atomic_write, jsonable

#: the safetensors metadata key holding the detector
DETECTOR_KEY = "aekit_detector"
FORMAT = "aekit-detector"
FORMAT_VERSION = 1


def save_detector(detector: AnomalyDetector, path: str | os.PathLike) -> None:
    """Write fitted ``detector`` to ``path`` (see :meth:`AnomalyDetector.save`)."""
    detector._check_fitted("save")
    with tempfile.TemporaryDirectory() as tmp:
        model_path = os.path.join(tmp, "model.safetensors")
        persistence.save_model(detector.model_, model_path)
        with safe_open(model_path, framework="pt") as f:
            model_text = f.metadata()["aekit"]
        tensors = load_file(model_path)
    fitted = {"score_type_": detector.score_type_, "threshold_": detector.threshold_,
              "threshold_rule_": detector.threshold_rule_,
              "n_features_in_": int(detector.n_features_in_)}
    if "feature_names_in_" in vars(detector):
        fitted["feature_names_in_"] = [str(n) for n in detector.feature_names_in_]
    random_state = detector.random_state
    meta = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "aekit_version": __version__,
        "params": {"score_type": detector.score_type,
                   "contamination": jsonable(detector.contamination),
                   "random_state": random_state if isinstance(random_state, int) else None},
        "fitted": fitted,
        "model_sha256": hashlib.sha256(model_text.encode()).hexdigest(),
    }
    meta["sha256"] = persistence.metadata_sha256(meta)
    text = json.dumps(meta)

    def write(tmp: str) -> None:
        try:
            save_file(tensors, tmp, metadata={"aekit": model_text, DETECTOR_KEY: text})
        except SafetensorError as exc:
            raise OSError(f"cannot write {str(path)!r}: {exc}") from None

    atomic_write(path, write)


def load_detector(path: str | os.PathLike, device: str | None = None) -> AnomalyDetector:
    """Rebuild a fitted :class:`AnomalyDetector` from a file written by its ``save``.

    The model part is loaded and checked by :func:`aekit.load` (registered classes only,
    digests, tensor shapes); the detector part must carry its own valid digest and the
    digest of that model's metadata, and every value is checked before use.

    Examples
    --------
    >>> import os, tempfile, numpy as np, aekit
    >>> X = np.random.default_rng(0).random((100, 3)).astype("float32")
    >>> det = aekit.AnomalyDetector(aekit.AE(max_iter=1), contamination=0.1).fit(X)
    >>> path = os.path.join(tempfile.mkdtemp(), "det.safetensors")
    >>> det.save(path)
    >>> load_detector(path).threshold_ == det.threshold_
    True
    """
    return detector_from(persistence.load(path, device=device), path)


def load_any(path: str | os.PathLike, device: str | None = None) -> Any:
    """:func:`load_detector` for a detector file, :func:`aekit.load` for a model file."""
    model = persistence.load(path, device=device)
    return detector_from(model, path) if is_detector_file(path) else model


def detector_from(model: Any, path: str | os.PathLike) -> AnomalyDetector:
    """The detector stored in ``path`` around ``model``, the model :func:`aekit.load` read
    from the same file (a hook for loaders that have the model already)."""
    with safe_open(str(path), framework="pt") as f:
        raw = f.metadata() or {}
    text, model_text = raw.get(DETECTOR_KEY), raw.get("aekit", "")
    if text is None:
        raise InputError(f"{str(path)!r} is an aekit model file, not a detector file; "
                         "aekit.load(path) reads it (wrap the model with "
                         "AnomalyDetector(model) and fit to get a detector)")
    try:
        meta = json.loads(text)
    except (json.JSONDecodeError, RecursionError):
        meta = None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise InputError(f"{str(path)!r} has an {DETECTOR_KEY!r} entry that is not a "
                         "detector's metadata")
    if meta.get("format_version") != FORMAT_VERSION:
        raise InputError(f"{str(path)!r} has detector format_version "
                         f"{meta.get('format_version')!r:.40}; this aekit ({__version__}) "
                         f"reads version {FORMAT_VERSION}")
    if (persistence.metadata_sha256(meta) != meta.get("sha256")
            or hashlib.sha256(model_text.encode()).hexdigest() != meta.get("model_sha256")):
        raise InputError(f"{str(path)!r}: the detector's metadata do not match the SHA-256 "
                         "recorded when the file was saved (or belong to another model); the "
                         "file is corrupt or was altered")
    try:
        params, fitted = meta["params"], meta["fitted"]
        detector = AnomalyDetector(model=clone(model), score_type=params["score_type"],
                                   contamination=params["contamination"],
                                   random_state=params["random_state"])
        detector._check_params()
        score, threshold = fitted["score_type_"], fitted["threshold_"]
        if score not in SCORES[1:]:
            raise ValueError(f"score_type_ must be one of {SCORES[1:]}; got {score!r:.40}")
        if type(threshold) not in (int, float) or not math.isfinite(threshold):
            raise ValueError(f"threshold_ must be a finite number; got {threshold!r:.40}")
        n = fitted["n_features_in_"]
        if type(n) is not int or n != model.n_features_in_:
            raise ValueError(f"n_features_in_ must be the model's {model.n_features_in_}")
        rule = fitted["threshold_rule_"]
        if not isinstance(rule, str):
            raise ValueError("threshold_rule_ must be a string")
        names = fitted.get("feature_names_in_")
        if names is not None and (not isinstance(names, list) or len(names) != n
                                  or not all(isinstance(s, str) for s in names)):
            raise ValueError(f"feature_names_in_ must be {n} strings")
    except (KeyError, TypeError, ValueError) as exc:
        raise InputError(f"{str(path)!r} has detector metadata aekit cannot use: "
                         f"{str(exc)[:300]}; save the detector again") from None
    detector.model_, detector.score_type_ = model, score
    detector.n_features_in_ = n
    if names is not None:
        detector.feature_names_in_ = np.asarray(names, dtype=object)
    detector._set_threshold(float(threshold), rule)
    return detector


def is_detector_file(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a safetensors file with detector metadata (reads the header)."""
    try:
        with safe_open(str(Path(path)), framework="pt") as f:
            return DETECTOR_KEY in (f.metadata() or {})
    except (SafetensorError, OSError, ValueError):
        return False
