"""The deterministic autoencoder.

Its loss is the negative log-likelihood of the chosen decoder distribution at the code,
so ``likelihood="gaussian"`` trains with MSE (up to a constant and a factor 1/2) and
``likelihood="bernoulli"`` with binary cross-entropy (Hinton & Salakhutdinov, "Reducing
the Dimensionality of Data with Neural Networks", Science 2006). With
``activation="identity"``, ``likelihood="gaussian"`` and ``scale="none"`` it is the linear
autoencoder of the lecture, which spans the PCA subspace of the data as given.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from aekit._registry import register
from aekit.estimator import BaseAutoencoder
from aekit.training import DivergenceError, FitContext, LossTerms


@register("ae")
class AE(BaseAutoencoder):
    """Deterministic autoencoder for all four uses.

    ``transform`` gives the code, ``inverse_transform`` decodes it, ``sample`` decodes
    draws from a Gaussian fitted to the training codes (an AE has no prior of its own),
    and ``score_samples`` is the decoder log-likelihood at the code, log p(x | z = f(x)).
    That last one is **not** a density of x (it ignores how codes spread) and is larger
    than any proper log-likelihood; use a VAE for density estimation. ``elbo`` returns
    the same quantity.

    Parameters
    ----------
    n_components : int, default=2
    **kwargs
        The parameters shared by every model; see :class:`aekit.estimator.BaseAutoencoder`.

    Attributes
    ----------
    module_ : torch.nn.ModuleDict
        ``encoder``, ``decoder``, ``likelihood`` and the buffers ``code_loc`` and
        ``code_scale_tril`` of the Gaussian fitted to the training codes.
    history_ : dict of str to list of float
        Per-epoch ``loss``, ``recon``, ``time`` (and ``val_*`` with early stopping).
    n_iter_ : int
        Epochs run.
    input_shape_ : tuple of int
        Shape of one input row.

    Examples
    --------
    >>> import aekit
    >>> X, _ = aekit.datasets.load("digits")
    >>> ae = aekit.AE(n_components=2, max_iter=2, random_state=0).fit(X)
    >>> ae.transform(X[:5]).shape
    (5, 2)
    """

    capabilities = BaseAutoencoder.capabilities.but(score_is_density=False)

    def __init__(self, n_components=2, **kwargs):
        super().__init__(n_components, **kwargs)

    def _build(self, input_shape: tuple[int, ...]) -> nn.Module:
        module = super()._build(input_shape)
        module.register_buffer("code_loc", torch.zeros(self.n_components))
        module.register_buffer("code_scale_tril", torch.eye(self.n_components))
        return module

    def _encode(self, x: Tensor) -> Tensor:
        return self.module_.encoder(self._standardize(x))   # (B, k)

    def _loss(self, x: Tensor, y: Tensor | None, ctx: FitContext) -> LossTerms:
        recon = -self._decode(self._encode(x)).log_prob(x)   # (B,)
        return LossTerms(recon.mean(), {"recon": recon.mean()})

    def _log_likelihood(self, x: Tensor, eps: Tensor) -> Tensor:
        return self._decode(self._encode(x)).log_prob(x)     # (B,)

    _elbo = _log_likelihood

    def _after_fit(self, x: Tensor) -> None:
        # mean and covariance of the codes, combined over chunks (Chan et al.'s pairwise
        # update, float64): memory O(k^2), not O(n k), so streamed data stay streamed
        k = self.n_components
        n, mean = 0, torch.zeros(k, dtype=torch.float64, device=x.device)    # (k,)
        scatter = torch.zeros(k, k, dtype=torch.float64, device=x.device)    # (k, k)
        for i in range(0, len(x), 4096):
            codes = self._encode(x[i:i + 4096]).double()                     # (B, k)
            m, centred = len(codes), codes - codes.mean(0)
            delta = codes.mean(0) - mean
            mean += delta * m / (n + m)
            scatter += centred.T @ centred + torch.outer(delta, delta) * n * m / (n + m)
            n += m
        if not (torch.isfinite(mean).all() and torch.isfinite(scatter).all()):
            raise DivergenceError(
                f"{type(self).__name__}: the codes of the training rows are not finite, so "
                "no code distribution (for sample) can be fitted; the data's scale "
                "overflows the network in float32: standardise the features (scale='auto' "
                "does it for real-line likelihoods) or scale them to [0, 1]")
        cov = scatter / max(n - 1, 1)                                         # (k, k)
        jitter = 1e-6 * cov.diagonal().mean().clamp_min(1e-12)
        eye = torch.eye(k, device=cov.device, dtype=cov.dtype)
        tril, info = torch.linalg.cholesky_ex(cov + jitter * eye)
        if info:        # rank-deficient codes: floor the eigenvalues at the jitter
            values, vectors = torch.linalg.eigh(cov)
            cov = vectors @ torch.diag(values.clamp_min(jitter)) @ vectors.T
            tril = torch.linalg.cholesky(cov + jitter * eye)
        self.module_.code_loc.copy_(mean.float())
        self.module_.code_scale_tril.copy_(tril.float())

    def _sample_latent(self, n_samples: int, generator: torch.Generator) -> Tensor:
        eps = torch.randn(n_samples, self.n_components, generator=generator)   # (n, k)
        loc, tril = self.module_.code_loc.cpu(), self.module_.code_scale_tril.cpu()
        return loc + eps @ tril.T
