"""How good a fitted model is, as a density, a manifold and a generator.

- :mod:`~aekit.evaluation.array_metrics`: pure functions of arrays (k-NN accuracy,
  trustworthiness, Fréchet distance, ...), no model involved;
- :mod:`~aekit.evaluation.model_measures`: measurements of one model on data (importance-
  sampled log-likelihood, KL per latent dimension, active units, reconstruction error);
- :mod:`~aekit.evaluation.evaluate`: :func:`evaluate`, every measurement at once;
- :mod:`~aekit.evaluation.quick_bench`: the ``aekit bench`` table over every model.
"""

from aekit.evaluation.array_metrics import (
    bits_per_dim,
    continuity,
    frechet_distance,
    knn_accuracy,
    linear_probe_accuracy,
    log_mean_exp,
    mean_and_stderr,
    precision_recall,
    reconstruction_mse,
    trustworthiness,
)
from aekit.evaluation.evaluate import FeatureExtractor, evaluate, format_table
from aekit.evaluation.model_measures import (
    ACTIVE_UNIT_THRESHOLD,
    active_units,
    bits_per_dim_of,
    importance_sampled_log_likelihood,
    kl_per_dimension,
    reconstruction_error,
)

__all__ = [
    "ACTIVE_UNIT_THRESHOLD", "FeatureExtractor", "active_units", "bits_per_dim",
    "bits_per_dim_of", "continuity",
    "evaluate", "format_table", "frechet_distance", "importance_sampled_log_likelihood",
    "kl_per_dimension", "knn_accuracy", "linear_probe_accuracy", "log_mean_exp",
    "mean_and_stderr", "precision_recall", "reconstruction_error", "reconstruction_mse",
    "trustworthiness",
]
