"""The denoising autoencoder.

Vincent, Larochelle, Bengio & Manzagol, "Extracting and Composing Robust Features with
Denoising Autoencoders", ICML 2008; Vincent et al., "Stacked Denoising Autoencoders:
Learning Useful Representations in a Deep Network with a Local Denoising Criterion",
JMLR 2010 (both predate arXiv). The encoder sees a corrupted copy x~ of each row and the
loss is the negative log-likelihood of the CLEAN row, ``-log p(x | z = f(x~))``, so the
code has to capture structure that survives the corruption.
"""

from __future__ import annotations

from numbers import Real
from typing import Any

import numpy as np
import torch
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_array
from torch import Tensor

from aekit._registry import register
from aekit.exceptions import InputError
from aekit.models.ae import AE
from aekit.runtime import seed
from aekit.training import FitContext, LossTerms

#: corruption processes of Vincent et al. (2010), section 4.2.
NOISES = ("gaussian", "masking", "salt_pepper")


def corrupt(x: Tensor, noise: str, noise_level: float, generator: torch.Generator) -> Tensor:
    """A corrupted copy of ``x`` ``(B, D)`` drawn with ``generator``.

    "gaussian" adds N(0, noise_level^2); "masking" sets each feature to 0 with probability
    ``noise_level``; "salt_pepper" sets each feature with probability ``noise_level`` to 0
    or 1 (a fair coin), the minimum and maximum of data scaled to [0, 1].
    """
    device = generator.device
    if noise == "gaussian":
        return x + noise_level * torch.randn(x.shape, generator=generator, device=device)
    u = torch.rand(x.shape, generator=generator, device=device)            # (B, D)
    if noise == "masking":
        return torch.where(u < noise_level, torch.zeros_like(x), x)
    # one uniform draw decides both whether a feature is hit and which value it gets
    salt = (u < noise_level / 2).to(x.dtype)                              # (B, D)
    return torch.where(u < noise_level, salt, x)


@register("denoising_ae")
class DenoisingAE(AE):
    """Denoising autoencoder: encode a corrupted row, reconstruct the clean one.

    Corruption happens only during training. ``transform``, ``reconstruct`` and
    ``score_samples`` see the rows as given (corrupt them first with :meth:`corrupt` to
    measure denoising), so ``score_samples`` is, as for :class:`~aekit.AE`, the decoder
    log-likelihood at the code of the clean row, log p(x | z = f(x)), not a density of x.

    Parameters
    ----------
    n_components : int, default=2
    noise : {"gaussian", "masking", "salt_pepper"}, default="gaussian"
        Additive isotropic Gaussian noise, masking noise (a random fraction of the
        features set to 0) or salt-and-pepper noise (set to 0 or 1 at random).
    noise_level : float, default=0.3
        The standard deviation of the Gaussian noise, or the probability that a feature
        is masked / hit by salt-and-pepper (then at most 1).
    **kwargs
        The parameters shared by every model; see :class:`aekit.estimator.BaseAutoencoder`.

    Attributes
    ----------
    module_ : torch.nn.ModuleDict
        ``encoder``, ``decoder``, ``likelihood`` and the buffers ``code_loc`` and
        ``code_scale_tril`` of the Gaussian fitted to the training codes.
    history_ : dict of str to list of float
        Per-epoch ``loss`` and ``recon`` (both of the clean rows given corrupted input),
        ``time`` (and ``val_*`` with early stopping; the validation rows are corrupted too).
    n_iter_ : int
    input_shape_ : tuple of int

    Examples
    --------
    >>> import aekit
    >>> from aekit.models.denoising import DenoisingAE
    >>> X, _ = aekit.datasets.load("digits")
    >>> dae = DenoisingAE(noise="masking", max_iter=2, random_state=0).fit(X)
    >>> X_noisy = dae.corrupt(X[:5], random_state=0)
    >>> dae.reconstruct(X_noisy).shape
    (5, 64)
    """

    capabilities = AE.capabilities.but(denoising=True)

    _parameter_constraints = {
        **AE._parameter_constraints,
        "noise": [StrOptions(set(NOISES))],
        "noise_level": [Interval(Real, 0, None, closed="left")],
    }

    def __init__(self, n_components=2, *, noise="gaussian", noise_level=0.3, **kwargs):
        super().__init__(n_components, **kwargs)
        self.noise = noise
        self.noise_level = noise_level

    def _check_hyperparameters(self) -> None:
        super()._check_hyperparameters()
        if self.noise != "gaussian" and self.noise_level > 1:
            raise InputError(f"noise={self.noise!r} takes noise_level as the probability that "
                             f"a feature is corrupted, so it must be in [0, 1]; got "
                             f"noise_level={self.noise_level!r}")

    def _loss(self, x: Tensor, y: Tensor | None, ctx: FitContext) -> LossTerms:
        x_noisy = corrupt(x, self.noise, self.noise_level, ctx.generator)  # (B, D)
        recon = -self._decode(self._encode(x_noisy)).log_prob(x)          # (B,) clean target
        return LossTerms(recon.mean(), {"recon": recon.mean()})

    def corrupt(self, X: Any, random_state: Any = None) -> np.ndarray:
        """A corrupted copy of ``X`` with this model's ``noise`` and ``noise_level``.

        Needs no fitting. ``random_state`` seeds the draws (a fresh seed when None); the
        global RNGs are left untouched. Returns float32 in the shape of ``X``.
        """
        self._validate_params()
        self._check_hyperparameters()
        X = check_array(X, dtype=np.float32, allow_nd=True)
        g = torch.Generator().manual_seed(seed(random_state))
        x = torch.as_tensor(X.reshape(len(X), -1))                           # (n, D)
        return corrupt(x, self.noise, self.noise_level, g).numpy().reshape(X.shape)
