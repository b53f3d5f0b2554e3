"""Pure metric functions shared by the estimators, the CLI and the benchmarks."""

from __future__ import annotations

import math

import numpy as np
import torch
from sklearn.neighbors import KNeighborsClassifier
from torch import Tensor


def log_mean_exp(log_w: Tensor, dim: int = 0) -> Tensor:
    """``log(mean(exp(log_w)))`` along ``dim``, computed stably in float32 or wider.

    This turns K importance log-weights per row into the importance-sampled estimate of
    log p(x) (Burda et al., "Importance Weighted Autoencoders", 2015, arXiv:1509.00519).

    Examples
    --------
    >>> import torch
    >>> float(log_mean_exp(torch.log(torch.tensor([1.0, 3.0]))))  # log(2)
    0.6931471824645996
    """
    log_w = log_w.float() if log_w.dtype in (torch.float16, torch.bfloat16) else log_w
    return torch.logsumexp(log_w, dim=dim) - math.log(log_w.shape[dim])


def bits_per_dim(log_likelihood: np.ndarray | float, n_features: int) -> np.ndarray | float:
    """Convert log p(x) in nats to bits per dimension: ``-ll / (D ln 2)``."""
    return -np.asarray(log_likelihood) / (n_features * math.log(2.0))


def reconstruction_mse(X: np.ndarray, X_hat: np.ndarray) -> float:
    """Mean squared error per feature between rows and their reconstructions."""
    X = np.asarray(X, dtype=np.float64).reshape(len(X), -1)
    X_hat = np.asarray(X_hat, dtype=np.float64).reshape(len(X_hat), -1)
    return float(np.mean((X - X_hat) ** 2))


def knn_accuracy(Z_train: np.ndarray, y_train: np.ndarray, Z_test: np.ndarray,
                 y_test: np.ndarray, n_neighbors: int = 1) -> float:
    """Accuracy of a k-NN classifier fitted on training codes and scored on test codes.

    Examples
    --------
    >>> import numpy as np
    >>> Z = np.array([[0.0], [1.0], [10.0], [11.0]]); y = np.array([0, 0, 1, 1])
    >>> knn_accuracy(Z, y, np.array([[0.5], [10.5]]), np.array([0, 1]))
    1.0
    """
    clf = KNeighborsClassifier(n_neighbors=n_neighbors).fit(Z_train, y_train)
    return float(clf.score(Z_test, y_test))
