"""Model families, one file each; importing this package registers every model in it."""

import importlib
import pkgutil

from .ae import AE
from .vae import VAE

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")

__all__ = ["AE", "VAE"]
