"""The estimator every aekit model is: its declared capabilities and hooks, input checks,
and the public methods of a fitted model."""

from aekit.estimator.base import BaseAutoencoder
from aekit.estimator.capabilities import Capabilities

__all__ = ["BaseAutoencoder", "Capabilities"]
