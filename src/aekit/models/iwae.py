"""The importance weighted autoencoder.

Burda, Grosse & Salakhutdinov, "Importance Weighted Autoencoders", 2015, arXiv:1509.00519.
The network is a VAE's; the training objective is the K-sample importance weighted bound

    L_K(x) = E[log (1/K) sum_k p(x, z_k) / q(z_k | x)],   z_1..z_K ~ q(z | x),

which is the ELBO for K = 1 and tightens towards log p(x) as K grows. Its gradient weights
each draw by its normalised importance weight, so the encoder is no longer pushed to cover
only the posterior mode and more latent units stay active.
"""

from __future__ import annotations

from numbers import Integral

from sklearn.utils._param_validation import Interval
from torch import Tensor

from aekit._registry import register
from aekit.distributions import log_mean_exp
from aekit.estimator import BaseAutoencoder
from aekit.models.vae import VAE
from aekit.training import FitContext, LossTerms


def importance_weighted_loss(log_w: Tensor) -> LossTerms:
    """Minus the K-sample importance weighted bound of the log-weights ``(K, B)``, averaged
    over the batch, with minus the ELBO of the same draws as ``neg_elbo``."""
    return LossTerms(-log_mean_exp(log_w, dim=0).mean(), {"neg_elbo": -log_w.mean()})


@register("iwae")
class IWAE(VAE):
    """VAE trained on the K-sample importance weighted bound of Burda et al.

    ``transform``, ``sample``, ``score_samples`` (importance-sampled log-likelihood with
    ``n_importance_samples`` common draws) and ``elbo`` are those of :class:`aekit.VAE`;
    only the training objective differs. The IWAE bound has no KL term to reweight, so
    there is no ``beta``.

    Parameters
    ----------
    n_components : int, default=2
    n_train_samples : int, default=5
        K during training: posterior draws per row in the bound (Burda et al. used 5 and
        50). K = 1 is the VAE with a sampled KL; cost grows linearly in K.
    n_importance_samples : int, default=100
        K for ``score_samples`` and ``elbo``, as in :class:`aekit.VAE`.
    **kwargs
        The parameters shared by every model; see :class:`aekit.estimator.BaseAutoencoder`.

    Attributes
    ----------
    module_ : torch.nn.ModuleDict
        ``encoder`` (to 2k outputs), ``decoder``, ``likelihood``, prior buffers.
    history_ : dict of str to list of float
        Per epoch: ``loss`` (minus the K-sample bound, nats per example), ``neg_elbo``
        (minus the ELBO estimated from the same K draws; ``neg_elbo - loss`` >= 0 is how much
        the bound gained over the ELBO), ``time``, and ``val_*`` versions with early stopping.
    n_iter_ : int
    input_shape_ : tuple of int

    Examples
    --------
    >>> import aekit
    >>> from aekit.models.iwae import IWAE
    >>> X, _ = aekit.datasets.load("digits")
    >>> iwae = IWAE(n_train_samples=5, likelihood="bernoulli", max_iter=2,
    ...             random_state=0).fit(X)
    >>> bool(iwae.history_["loss"][-1] <= iwae.history_["neg_elbo"][-1])
    True
    """

    _parameter_constraints = {
        **{k: v for k, v in VAE._parameter_constraints.items() if k != "beta"},
        "n_train_samples": [Interval(Integral, 1, None, closed="left")],
    }

    _excluded_params = ("beta",)

    def __init__(self, n_components=2, *, n_train_samples=5, n_importance_samples=100,
                 **kwargs):
        # not VAE.__init__: it would set ``beta``, which is no parameter of this model
        BaseAutoencoder.__init__(self, n_components, **kwargs)
        self.n_train_samples = n_train_samples
        self.n_importance_samples = n_importance_samples

    def _loss(self, x: Tensor, y: Tensor | None, ctx: FitContext) -> LossTerms:
        eps = ctx.randn(self.n_train_samples, len(x), self.n_components)   # (K, B, k)
        return importance_weighted_loss(self._log_weights(x, eps))
