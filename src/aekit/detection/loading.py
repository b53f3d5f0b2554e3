"""Reading detector files back: :func:`load_detector`, and the hook through which
:func:`aekit.load` returns a detector for a file that carries one."""

from __future__ import annotations

import hashlib
import json
import math
import os
from typing import Any

import numpy as np
from safetensors import safe_open
from sklearn.base import clone

from aekit import persistence
from aekit._version import __version__
from aekit.detection.detector import SCORES, AnomalyDetector
from aekit.detection.files import DETECTOR_KEY, FORMAT, FORMAT_VERSION
from aekit.exceptions import InputError


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
    loaded = persistence.load(path, device=device)     # a detector file comes back wrapped
    if not isinstance(loaded, AnomalyDetector):
        raise InputError(f"{str(path)!r} is an aekit model file, not a detector file; "
                         "aekit.load(path) reads it (wrap the model with "
                         "AnomalyDetector(model) and fit to get a detector)")
    return loaded


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


# aekit.load (persistence) returns the detector for a file that carries one
persistence.WRAPPERS[DETECTOR_KEY] = detector_from
