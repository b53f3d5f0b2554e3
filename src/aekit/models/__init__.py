"""Model families; importing this package registers every model."""

from .ae import AE
from .vae import VAE

__all__ = ["AE", "VAE"]
