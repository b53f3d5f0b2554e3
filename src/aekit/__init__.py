"""aekit: everything about autoencoders.

An autoencoder's loss is a negative log-likelihood, so one fitted model serves four uses:
unsupervised learning (``fit``), manifold learning (``transform``), generation
(``sample``, ``inverse_transform``) and density estimation (``score_samples``, in nats).
"""

from aekit import distributions, evaluation
from aekit._registry import get_model, list_models, register
from aekit._version import __version__
from aekit.data import datasets
from aekit.detection import AnomalyDetector
from aekit.estimator import BaseAutoencoder, Capabilities
from aekit.imputation import Imputer
from aekit.models import (
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
    HierarchicalVAE,
    SparseAE,
    StackedAE,
    VampPriorVAE,
)
from aekit.nn import register_network
from aekit.persistence import load
from aekit.training import DivergenceError, FitContext, LossTerms

__all__ = [
    "AAE",
    "AE",
    "AnomalyDetector",
    "CVAE",
    "IWAE",
    "Imputer",
    "M2",
    "VAE",
    "VQVAE",
    "WAE",
    "BetaVAE",
    "ContractiveAE",
    "DenoisingAE",
    "HierarchicalVAE",
    "SparseAE",
    "StackedAE",
    "VampPriorVAE",
    "BaseAutoencoder",
    "Capabilities",
    "DivergenceError",
    "FitContext",
    "LossTerms",
    "__version__",
    "datasets",
    "distributions",
    "evaluation",
    "get_model",
    "list_models",
    "load",
    "register",
    "register_network",
]
