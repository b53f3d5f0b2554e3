"""aekit: everything about autoencoders.

An autoencoder's loss is a negative log-likelihood, so one fitted model serves four uses:
unsupervised learning (``fit``), manifold learning (``transform``), generation
(``sample``, ``inverse_transform``) and density estimation (``score_samples``, in nats).
"""

__version__ = "0.1.0"

from . import datasets, distributions, metrics
from ._registry import get_model, list_models, register
from .base import BaseAutoencoder
from .io import load
from .models import (
    AAE,
    AE,
    CVAE,
    IWAE,
    M2,
    VAE,
    VQVAE,
    WAE,
    BetaVAE,
    ContractiveAE,
    DenoisingAE,
    SparseAE,
    StackedAE,
    VampPriorVAE,
)
from .training import LossTerms

__all__ = [
    "AAE",
    "AE",
    "CVAE",
    "IWAE",
    "M2",
    "VAE",
    "VQVAE",
    "WAE",
    "BetaVAE",
    "ContractiveAE",
    "DenoisingAE",
    "SparseAE",
    "StackedAE",
    "VampPriorVAE",
    "BaseAutoencoder",
    "LossTerms",
    "datasets",
    "distributions",
    "get_model",
    "list_models",
    "load",
    "metrics",
    "register",
]
