"""The sparse autoencoder.

Ng, "Sparse autoencoder", CS294A lecture notes, Stanford 2011 (the KL penalty on the mean
activation of sigmoid code units); the L1 penalty on the code as in Goodfellow, Bengio &
Courville, "Deep Learning", MIT Press 2016, section 14.2.1. Neither is on arXiv.

The loss is the decoder's negative log-likelihood plus ``sparsity_weight`` times the
penalty; the penalty is a regulariser, not a log-probability, so the total is no longer a
negative log-likelihood (the ``recon`` term in ``history_`` still is).
"""

from __future__ import annotations

import math
from numbers import Real

import torch
from sklearn.utils._param_validation import Interval, StrOptions
from torch import Tensor

from aekit._registry import register
from aekit.models.ae import AE
from aekit.training import FitContext, LossTerms

#: rho_hat is kept this far from 0 and 1 so KL(rho || rho_hat) stays finite when every
#: code unit of a batch saturates in float32.
RHO_HAT_EPS = 1e-6


@register("sparse_ae")
class SparseAE(AE):
    """Autoencoder whose code units are pushed to be mostly inactive.

    With ``sparsity="kl"`` the code is ``sigmoid(encoder(x))``, in (0, 1), and the penalty
    is ``sum_j KL(Bernoulli(rho) || Bernoulli(rho_hat_j))`` with ``rho_hat_j`` the mean
    activation of unit j over the minibatch (Ng 2011). With ``sparsity="l1"`` the code is
    the encoder output and the penalty is ``sum_j |z_j|`` averaged over the batch; note that
    an L1 penalty on a linear code can be lowered by shrinking the code and growing the
    decoder's first weights, so it sparsifies relative, not absolute, sizes.

    ``transform`` returns the code the decoder reads (the sigmoid code for "kl");
    ``score_samples`` is, as for :class:`~aekit.AE`, the decoder log-likelihood at the
    code, log p(x | z = f(x)), not a density of x. ``sample`` decodes draws of a Gaussian
    fitted to the training codes, which may leave (0, 1) for "kl".

    Parameters
    ----------
    n_components : int, default=2
    sparsity : {"kl", "l1"}, default="kl"
        The sparsity penalty (see above).
    sparsity_target : float, default=0.05
        rho, the target mean activation of each code unit for "kl" (ignored for "l1").
    sparsity_weight : float, default=0.1
        Weight of the penalty against the reconstruction term (nats per example).
    **kwargs
        The parameters shared by every model; see :class:`aekit.estimator.BaseAutoencoder`.

    Attributes
    ----------
    module_ : torch.nn.ModuleDict
        ``encoder``, ``decoder``, ``likelihood`` and the buffers ``code_loc`` and
        ``code_scale_tril`` of the Gaussian fitted to the training codes.
    history_ : dict of str to list of float
        Per-epoch ``loss`` (reconstruction + weighted penalty), ``recon``, ``sparsity``
        (the unweighted penalty), ``mean_activation`` (mean code for "kl", mean absolute
        code for "l1"), ``time`` (and ``val_*`` with early stopping).
    n_iter_ : int
    input_shape_ : tuple of int

    Examples
    --------
    >>> import aekit
    >>> from aekit.models.sparse import SparseAE
    >>> X, _ = aekit.datasets.load("digits")
    >>> sae = SparseAE(n_components=8, max_iter=2, random_state=0).fit(X)
    >>> Z = sae.transform(X[:5])
    >>> Z.shape, bool(((Z > 0) & (Z < 1)).all())
    ((5, 8), True)
    """

    _parameter_constraints = {
        **AE._parameter_constraints,
        "sparsity": [StrOptions({"kl", "l1"})],
        "sparsity_target": [Interval(Real, 0, 1, closed="neither")],
        "sparsity_weight": [Interval(Real, 0, None, closed="left")],
    }

    def __init__(self, n_components=2, *, sparsity="kl", sparsity_target=0.05,
                 sparsity_weight=0.1, **kwargs):
        super().__init__(n_components, **kwargs)
        self.sparsity = sparsity
        self.sparsity_target = sparsity_target
        self.sparsity_weight = sparsity_weight

    def _encode(self, x: Tensor) -> Tensor:
        z = self.module_.encoder(self._standardize(x))                    # (B, k)
        return torch.sigmoid(z) if self.sparsity == "kl" else z

    def _penalty(self, z: Tensor) -> Tensor:
        """The sparsity penalty of a minibatch of codes ``z`` ``(B, k)``: a scalar."""
        if self.sparsity == "l1":
            return z.abs().sum(-1).mean()
        rho_hat = z.float().mean(0).clamp(RHO_HAT_EPS, 1 - RHO_HAT_EPS)  # (k,)
        # KL(Bernoulli(rho) || Bernoulli(rho_hat)) written out: torch's distributions would
        # validate their arguments, a read-back from the device in every step
        rho = self.sparsity_target
        kl = (rho * (math.log(rho) - rho_hat.log())
              + (1 - rho) * (math.log1p(-rho) - torch.log1p(-rho_hat)))    # (k,)
        return kl.sum()

    def _loss(self, x: Tensor, y: Tensor | None, ctx: FitContext) -> LossTerms:
        z = self._encode(x)                                               # (B, k)
        recon = -self._decode(z).log_prob(x)                              # (B,)
        penalty = self._penalty(z)                                        # ()
        activation = z.mean() if self.sparsity == "kl" else z.abs().mean()
        return LossTerms(recon.mean() + self.sparsity_weight * penalty,
                         {"recon": recon.mean(), "sparsity": penalty,
                          "mean_activation": activation})
