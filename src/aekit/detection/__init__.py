"""Anomaly detection with aekit models (issue #16).

- :class:`~aekit.detection.detector.AnomalyDetector`: any unconditional aekit model as a
  scikit-learn outlier detector, with PyOD's fitted attributes too;
- :mod:`~aekit.detection.thresholds`: the threshold rules (a contamination fraction, a
  robust median + MAD cut, a conformal false-positive-rate calibration);
- :mod:`~aekit.detection.files` and :mod:`~aekit.detection.loading`: detector files (the
  model's safetensors file plus the detector's metadata), :func:`load_detector`.
"""

from aekit.detection.detector import AnomalyDetector, default_model, per_feature_scores
from aekit.detection.files import is_detector_file, save_detector
from aekit.detection.loading import detector_from, load_detector

__all__ = ["AnomalyDetector", "default_model", "detector_from", "is_detector_file",
           "load_detector", "per_feature_scores", "save_detector"]
