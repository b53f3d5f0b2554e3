"""The Wasserstein autoencoder with an MMD penalty (WAE-MMD).

Tolstikhin, Bousquet, Gelly & Schoelkopf, "Wasserstein Auto-Encoders", 2017,
arXiv:1711.01558 (ICLR 2018). A deterministic encoder is trained to reconstruct while the
distribution of its codes over the data, q(z), is pulled to the prior p(z) = N(0, I) by
the maximum mean discrepancy between a minibatch of codes and as many prior draws
(Algorithm 2 of the paper): the penalty is on the aggregate of the codes, not on each
row's posterior, so codes of different rows need not overlap as in a VAE.
"""

from __future__ import annotations

from numbers import Real

import torch
from sklearn.utils._param_validation import Interval
from torch import Tensor

from aekit._registry import register
from aekit.exceptions import InputError
from aekit.models.ae import AE
from aekit.training import FitContext, LossTerms


def mmd_imq(z: Tensor, z_prior: Tensor, scale: float = 1.0) -> Tensor:
    """Unbiased estimate of MMD^2 between the rows of ``z`` and ``z_prior`` (both ``(n, k)``)
    with the inverse multiquadratic kernel ``C / (C + |a - b|^2)``, ``C = 2 k scale^2``.

    This is the U-statistic of Tolstikhin et al. (Algorithm 2): pairs of a row with itself
    are left out of the within-sample sums, so the estimate is 0 on average when both
    samples come from one distribution (and can then be slightly negative).

    Examples
    --------
    >>> import torch
    >>> g = torch.Generator().manual_seed(0)
    >>> a, b = torch.randn(500, 2, generator=g), torch.randn(500, 2, generator=g)
    >>> abs(float(mmd_imq(a, b))) < 0.01, float(mmd_imq(a + 2.0, b)) > 0.1
    (True, True)
    """
    n, k = z.shape
    if n < 2:
        raise InputError(f"the unbiased MMD needs at least 2 rows per sample; got {n}")
    c = 2.0 * k * scale**2

    def kernel(a: Tensor, b: Tensor) -> Tensor:
        return c / (c + torch.cdist(a, b).pow(2))                              # (n, n)

    off_diagonal = 1.0 - torch.eye(n, device=z.device, dtype=z.dtype)           # (n, n)
    within = ((kernel(z, z) + kernel(z_prior, z_prior)) * off_diagonal).sum() / (n * (n - 1))
    return within - 2.0 * kernel(z, z_prior).mean()


@register("wae_mmd")
class WAE(AE):
    """Wasserstein autoencoder (WAE-MMD): a deterministic autoencoder whose codes are
    matched to an N(0, I) prior by an MMD penalty.

    The loss is ``-log p(x | z = f(x)) + mmd_weight * MMD^2(codes, prior draws)``, per
    minibatch (a minibatch of one row has no MMD estimate and adds no penalty).
    ``transform`` gives the code, ``sample`` decodes draws from the N(0, I) prior (the
    distribution the codes were matched to), and ``score_samples`` is the decoder
    log-likelihood at the code, log p(x | z = f(x)). That last one is **not** a density
    of x: it ignores how codes spread and is larger than any proper log-likelihood; use a
    VAE for density estimation. ``elbo`` returns the same quantity.

    Parameters
    ----------
    n_components : int, default=2
    mmd_weight : float, default=100.0
        lambda, the weight of MMD^2. The paper uses 10 against a squared-error cost that
        its code scales by 0.05, i.e. 200 per unit of squared error; with the nats-sum
        losses here (Gaussian: half the squared error) 100 keeps codes close to N(0, I) on
        small images while the reconstruction still dominates.
    **kwargs
        The parameters shared by every model; see :class:`aekit.estimator.BaseAutoencoder`.

    Attributes
    ----------
    module_ : torch.nn.ModuleDict
        ``encoder``, ``decoder``, ``likelihood``, and ``code_loc`` / ``code_scale_tril``:
        the mean and Cholesky factor of the training codes, a record of how closely they
        match the prior (``sample`` does not use them).
    history_ : dict of str to list of float
        Per epoch: ``loss``, ``recon`` (minus the decoder log-likelihood), ``mmd`` (the
        unweighted MMD^2 estimate), ``time``, and ``val_*`` versions with early stopping.
    n_iter_ : int
    input_shape_ : tuple of int

    Examples
    --------
    >>> import aekit
    >>> from aekit.models.wae import WAE
    >>> X, _ = aekit.datasets.load("digits")
    >>> wae = WAE(n_components=2, likelihood="bernoulli", max_iter=2, random_state=0).fit(X)
    >>> wae.sample(4, random_state=0).shape
    (4, 64)
    """

    _parameter_constraints = {
        **AE._parameter_constraints,
        "mmd_weight": [Interval(Real, 0, None, closed="left")],
    }

    def __init__(self, n_components=2, *, mmd_weight=100.0, **kwargs):
        super().__init__(n_components, **kwargs)
        self.mmd_weight = mmd_weight

    def _loss(self, x: Tensor, y: Tensor | None, ctx: FitContext) -> LossTerms:
        z = self._encode(x).float()                                            # (B, k)
        recon = -self._decode(z).log_prob(x)                                   # (B,)
        mmd = mmd_imq(z, ctx.randn(*z.shape)) if len(x) > 1 else z.new_zeros(())
        total = recon.mean() + self.mmd_weight * mmd
        return LossTerms(total, {"recon": recon.mean(), "mmd": mmd})

    def _sample_latent(self, n_samples: int, generator: torch.Generator) -> Tensor:
        return torch.randn(n_samples, self.n_components, generator=generator)   # (n, k)
