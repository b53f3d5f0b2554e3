"""Anomaly detection with aekit models (issue #16).

- :class:`~aekit.detection.detector.AnomalyDetector`: any unconditional aekit model as a
  scikit-learn outlier detector, with PyOD's fitted attributes too;
- :mod:`~aekit.detection.thresholds`: the threshold rules (a contamination fraction, a
  robust median + MAD cut, a conformal false-positive-rate calibration);
- :mod:`~aekit.detection.files`: detector files (the model's safetensors file plus the
  detector's metadata) and :func:`load_detector`.
"""

from aekit.detection.detector import AnomalyDetector
from aekit.detection.files import (
    detector_from,
    is_detector_file,
    load_any,
    load_detector,
    save_detector,
)

__all__ = ["AnomalyDetector", "detector_from", "is_detector_file", "load_any", "load_detector",
           "save_detector"]
