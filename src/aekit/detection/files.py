"""Detector files: the wrapped model's safetensors file plus the detector in its metadata.

A detector file is a model file (:mod:`aekit.persistence`: the weights and the model's
``"aekit"`` metadata, untouched) with one more metadata entry, ``"aekit_detector"``: JSON
with the detector's parameters, its score, threshold and threshold rule, the SHA-256 of the
model's metadata text (binding the two) and a SHA-256 over itself. No pickle anywhere;
:func:`aekit.load` on a detector file gives the detector back (see
:mod:`aekit.detection.loading`). Training-row attributes (``decision_scores_``,
``labels_``) are not stored.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file

from aekit import persistence
from aekit._version import __version__
from aekit.runtime import jsonable, write_safetensors

#: the safetensors metadata key holding the detector
DETECTOR_KEY = "aekit_detector"
FORMAT = "aekit-detector"
FORMAT_VERSION = 1


def save_detector(detector: Any, path: str | os.PathLike) -> None:
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

    write_safetensors(path, tensors, {"aekit": model_text, DETECTOR_KEY: text})


def is_detector_file(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a safetensors file with detector metadata (reads the header)."""
    try:
        with safe_open(str(Path(path)), framework="pt") as f:
            return DETECTOR_KEY in (f.metadata() or {})
    except (SafetensorError, OSError, ValueError):
        return False
