"""The contractive autoencoder.

Rifai, Vincent, Muller, Glorot & Bengio, "Contractive Auto-Encoders: Explicit Invariance
During Feature Extraction", ICML 2011 (not on arXiv). The loss adds to the decoder's
negative log-likelihood ``contractive_weight * ||J_f(x)||_F^2``, the squared Frobenius norm
of the encoder's Jacobian dz/dx at each row, so the code is locally insensitive to
directions of input space the data does not move along.
"""

from __future__ import annotations

import math
from numbers import Real
from typing import Any

import numpy as np
from sklearn.utils._param_validation import Interval
from sklearn.utils.validation import check_is_fitted
from torch import Tensor
from torch.func import jacfwd, jacrev, vmap

from aekit._registry import register
from aekit.models.ae import AE
from aekit.training import FitContext, LossTerms


@register("contractive_ae")
class ContractiveAE(AE):
    """Autoencoder with a penalty on the encoder's sensitivity to its input.

    The penalty is computed exactly for any encoder (MLP with any activation, or the conv
    encoder) as the vectorised Jacobian of one row mapped over the batch (``torch.func``:
    reverse mode when the code is smaller than the input, forward mode otherwise), so one
    step costs about ``min(k, D)`` extra encoder passes, batched, with no Python loop.

    ``score_samples`` is, as for :class:`~aekit.AE`, the decoder log-likelihood at the
    code, log p(x | z = f(x)), not a density of x. The training ``loss`` adds the weighted
    penalty, so it is not a negative log-likelihood; ``recon`` is.

    Parameters
    ----------
    n_components : int, default=2
    contractive_weight : float, default=0.1
        lambda, the weight of the mean squared Frobenius norm of the Jacobian.
    **kwargs
        The parameters shared by every model; see :class:`aekit.estimator.BaseAutoencoder`.

    Attributes
    ----------
    module_ : torch.nn.ModuleDict
        ``encoder``, ``decoder``, ``likelihood`` and the buffers ``code_loc`` and
        ``code_scale_tril`` of the Gaussian fitted to the training codes.
    history_ : dict of str to list of float
        Per-epoch ``loss``, ``recon``, ``contraction`` (mean ``||J_f(x)||_F^2``), ``time``
        (and ``val_*`` with early stopping).
    n_iter_ : int
    input_shape_ : tuple of int

    Examples
    --------
    >>> import aekit
    >>> from aekit.models.contractive import ContractiveAE
    >>> X, _ = aekit.datasets.load("digits")
    >>> cae = ContractiveAE(n_components=2, max_iter=2, random_state=0).fit(X)
    >>> cae.contraction(X[:3]).shape
    (3,)
    """

    _parameter_constraints = {
        **AE._parameter_constraints,
        "contractive_weight": [Interval(Real, 0, None, closed="left")],
    }

    def __init__(self, n_components=2, *, contractive_weight=0.1, **kwargs):
        super().__init__(n_components, **kwargs)
        self.contractive_weight = contractive_weight

    def _jacobian_norm(self, x: Tensor) -> Tensor:
        """``||dz/dx||_F^2`` for each row of ``x`` ``(B, D)``: shape ``(B,)``.

        The encoder treats rows independently, so the Jacobian of one row, vmapped over
        the batch, is each row's own ``(k, D)`` Jacobian; it stays differentiable with
        respect to the weights. It is taken with respect to what the encoder sees (the
        standardised features when the model standardises), so the penalty does not
        depend on the units of the data.
        """
        x = self._standardize(x)
        jacobian = jacrev if self.n_components <= x.shape[-1] else jacfwd
        J = vmap(jacobian(self.module_.encoder))(x)                        # (B, k, D)
        return J.float().pow(2).sum((-2, -1))                              # (B,)

    def _loss(self, x: Tensor, y: Tensor | None, ctx: FitContext) -> LossTerms:
        recon = -self._decode(self._encode(x)).log_prob(x)                 # (B,)
        contraction = self._jacobian_norm(x)                               # (B,)
        total = (recon + self.contractive_weight * contraction).mean()
        return LossTerms(total, {"recon": recon.mean(), "contraction": contraction.mean()})

    def contraction(self, X: Any) -> np.ndarray:
        """The squared Frobenius norm of the encoder Jacobian, ``||J_f(x)||_F^2``, per row.

        Smaller means codes that move less when the input moves; this is the quantity
        the penalty averages.
        """
        check_is_fitted(self)
        X = self._validate_X(X, reset=False)
        # the Jacobian of a row costs about min(k, D) passes: budget for that many draws
        return self._map_rows(X, self._jacobian_norm,
                              draws=min(self.n_components, math.prod(self.input_shape_)))
