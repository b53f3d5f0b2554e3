"""Model families, one file each; importing this package registers every model."""

from .aae import AAE
from .ae import AE
from .beta_vae import BetaVAE
from .contractive import ContractiveAE
from .cvae import CVAE
from .denoising import DenoisingAE
from .iwae import IWAE
from .m2 import M2
from .sparse import SparseAE
from .stacked import StackedAE
from .vae import VAE
from .vamp import VampPriorVAE
from .vqvae import VQVAE
from .wae import WAE

__all__ = ["AAE", "AE", "CVAE", "IWAE", "M2", "VAE", "VQVAE", "WAE", "BetaVAE",
           "ContractiveAE", "DenoisingAE", "SparseAE", "StackedAE", "VampPriorVAE"]
