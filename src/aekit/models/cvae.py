"""The conditional variational autoencoder.

Sohn, Lee & Yan, "Learning Structured Output Representation using Deep Conditional
Generative Models", NeurIPS 2015. Every distribution is conditioned on a vector ``c`` (a
one-hot class label or given continuous values): the encoder is q(z|x, c), the decoder
p(x|z, c), the prior N(0, I). The loss is the negative conditional ELBO
``-log p(x|z, c) + beta * KL(q(z|x, c) || N(0, I))``; ``score_samples`` is the
importance-sampled conditional log-likelihood log p(x|c).

:class:`ConditionalVAE` holds what CVAE and M2 (:mod:`aekit.models.m2`) share: networks
that take ``c`` next to ``x`` and ``z``, and the fitted label encoding that has to exist
before ``_build`` sizes those networks.
"""

from __future__ import annotations

import math
import numbers
from typing import Any

import numpy as np
import torch
from sklearn.preprocessing import LabelEncoder
from sklearn.utils import assert_all_finite
from sklearn.utils._param_validation import StrOptions
from sklearn.utils.multiclass import type_of_target
from sklearn.utils.validation import check_array, check_is_fitted, column_or_1d
from torch import Tensor, nn
from torch.distributions import Distribution, kl_divergence

from aekit._registry import register
from aekit.distributions import diagonal_normal, log_mean_exp
from aekit.exceptions import InputError
from aekit.models.vae import LOG_VAR_RANGE, VAE
from aekit.nn import mlp
from aekit.runtime import seed
from aekit.training import FitContext, LossTerms

CONDITIONS = ("auto", "classes", "continuous")


def joined_mlp(net: nn.Sequential, a: Tensor, b: Tensor) -> Tensor:
    """``net([a, b])`` with the leading axes of ``a`` and ``b`` broadcast, so a condition
    ``(C, 1, c)`` pairs with every row ``(B, D)`` without a Python loop: ``(C, B, n_out)``.

    The first Linear is applied to each part on its own (its weight split by columns),
    which equals applying it to the concatenation but never builds the ``(C, B, D + c)``
    copy nor repeats the ``D``-wide product for every condition.
    """
    first = net[0]
    w_a, w_b = first.weight.split([a.shape[-1], b.shape[-1]], dim=1)
    h = nn.functional.linear(a, w_a, first.bias) + nn.functional.linear(b, w_b)  # (*L, h)
    return net[1:](h)


def class_indices(y: Any, classes: np.ndarray, where: str) -> np.ndarray:
    """Positions of the labels ``y`` in the fitted ``classes``; unknown labels are refused."""
    y = column_or_1d(y, warn=True)
    known = set(classes.tolist())
    unknown = [label for label in dict.fromkeys(y.tolist()) if label not in known]
    if unknown:
        raise InputError(f"{where}: y has labels {unknown[:10]} that fit never saw; the model "
                         f"knows the classes {classes.tolist()}")
    return LabelEncoder().fit(classes).transform(y)


class ConditionalVAE(VAE):
    """A VAE whose encoder and decoder also read a condition vector ``c`` (MLPs only).

    Subclasses implement ``_targets_of(y)`` (check ``y``, return the fitted attributes
    and the per-row targets for the loop) and ``_condition_width()``.
    """

    def _fit_targets(self, y: Any) -> tuple[dict[str, Any], np.ndarray]:
        if y is None:
            raise InputError(f"{type(self).__name__} requires y to be passed, but the target y "
                             f"is None; pass the labels or conditions of the rows of X")
        return self._targets_of(y)

    def _targets_of(self, y: Any) -> tuple[dict[str, Any], np.ndarray]:
        """Check ``y``; return the fitted attributes it gives and the per-row targets."""
        raise NotImplementedError

    def _condition_width(self) -> int:
        raise NotImplementedError

    _mixed_unsupported = "its networks join the condition to the row's own features"
    _own_networks_unsupported = ("its networks take the condition joined to their input "
                                 "(their first layer is split between the row and the "
                                 "condition); use VAE with your own networks")

    def _check_hyperparameters(self) -> None:
        super()._check_hyperparameters()
        if self.architecture in ("conv", "gated"):
            raise InputError(f"{type(self).__name__} builds plain MLP networks (the "
                             f"condition is joined to the flat row in the first layer); got "
                             f"architecture={self.architecture!r}; use 'auto' or 'mlp'")

    def _labels_tensor(self, targets: Any, n: int, device: torch.device) -> Tensor:
        if len(targets) != n:
            raise InputError(f"X has {n} rows but y has {len(targets)}; give one per row")
        return torch.as_tensor(targets, device=device)

    def _build(self, input_shape: tuple[int, ...]) -> nn.Module:
        n_features, c, k = math.prod(input_shape), self._condition_width(), self.n_components
        likelihood = self._make_likelihood(n_features)
        hidden = list(self.hidden_layer_sizes)
        module = nn.ModuleDict({
            "encoder": mlp([n_features + c, *hidden, 2 * k], self.activation),
            "decoder": mlp([k + c, *reversed(hidden), n_features * likelihood.n_params],
                           self.activation),
            "likelihood": likelihood,
        })
        module.register_buffer("prior_loc", torch.zeros(k))
        module.register_buffer("prior_scale", torch.ones(k))
        return module

    def _posterior(self, x: Tensor, c: Tensor) -> Distribution:
        out = joined_mlp(self.module_.encoder, self._standardize(x), c).float()  # (*L, 2k)
        loc, log_var = out.chunk(2, dim=-1)                                 # (*L, k) each
        return diagonal_normal(loc, log_var.clamp(*LOG_VAR_RANGE))

    def _decode(self, z: Tensor, c: Tensor) -> Distribution:
        params = joined_mlp(self.module_.decoder, z, c)                     # (*L, D * P)
        return self.module_.likelihood(params)                              # event (D,)

    @staticmethod
    def _reparameterize(q: Distribution, eps: Tensor) -> Tensor:
        """z = mu + sigma * eps for q of any batch shape L: eps (K, k) is shared by all rows
        (common random numbers), eps (K, *L, k) is per row; returns (K, *L, k)."""
        loc = q.base_dist.loc                                               # (*L, k)
        if eps.dim() == 2:
            eps = eps.reshape(len(eps), *[1] * (loc.dim() - 1), -1)         # (K, 1.., k)
        return loc + q.base_dist.scale * eps

    def _recon_kl(self, x: Tensor, c: Tensor, eps: Tensor | None = None,
                  ctx: FitContext | None = None) -> tuple[Tensor, Tensor]:
        """E_q log p(x|z, c) averaged over the draws, and KL(q(z|x, c) || p(z)); both of the
        batch shape L of x and c broadcast. ``eps=None`` draws one training sample per row
        from ``ctx``."""
        q = self._posterior(x, c)                                           # (*L, k)
        if eps is None:
            eps = ctx.randn(1, *q.batch_shape, self.n_components)           # (1, *L, k)
        z = self._reparameterize(q, eps)                                    # (K, *L, k)
        recon = self._decode(z, c).log_prob(x).mean(0)                      # (*L,)
        return recon, kl_divergence(q, self._prior())                       # (*L,) each

    def _log_weights(self, x: Tensor, c: Tensor, eps: Tensor) -> Tensor:
        """log p(x|z_k, c) + log p(z_k) - log q(z_k|x, c): shape (K, *L)."""
        q = self._posterior(x, c)                                           # (*L, k)
        z = self._reparameterize(q, eps)                                    # (K, *L, k)
        return self._decode(z, c).log_prob(x) + self._prior().log_prob(z) - q.log_prob(z)

    def _decoded_means(self, z: Tensor, c: Tensor) -> np.ndarray:
        """Decoder means for codes ``(n, k)`` and conditions ``(n, c)``, in row shape."""
        self.module_.eval()
        with torch.inference_mode():
            x = self.module_.likelihood.mean(self._decode(z, c)).float().cpu().numpy()
        return x.reshape(len(z), *self.input_shape_)

    @staticmethod
    def _check_n_samples(n_samples: Any) -> int:
        if not isinstance(n_samples, numbers.Integral) or n_samples < 1:
            raise InputError(f"n_samples must be a positive integer; got {n_samples!r}")
        return int(n_samples)

    def _check_codes(self, Z: Any) -> np.ndarray:
        Z = check_array(Z, dtype=np.float32)
        if Z.shape[1] != self.n_components:
            raise InputError(f"codes have {Z.shape[1]} columns, but {type(self).__name__} "
                             f"has n_components={self.n_components}")
        return Z

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.required = True    # so scikit-learn's checks pass y to fit
        return tags

    #: fitted attributes that size the networks; model files keep them.
    _saved_attributes = ("classes_", "n_conditions_")


@register("cvae")
class CVAE(ConditionalVAE):
    """Conditional VAE: q(z|x, c), p(x|z, c), p(z) = N(0, I), for labels or given values.

    ``fit(X, y)`` needs ``y``: class labels (one per row, ints or strings, one-hot encoded
    over the fitted ``classes_``) or continuous condition vectors ``(n, n_conditions)``
    used as they are (scale them as any network input, e.g. with ``StandardScaler``:
    values that vary little are learned slowly). Every method that touches x or z takes
    the conditions too: ``transform(X, y)`` is the posterior mean of q(z|x, c),
    ``inverse_transform(Z, y)`` and ``sample(n, y=...)`` decode with the given conditions
    (change ``y`` for the same ``z`` to move one style to another class), and
    ``score_samples(X, y)`` is the importance-sampled **conditional** log-likelihood
    log p(x|c) in nats, not log p(x). A missing ``y`` or a class not seen in ``fit`` is
    refused.

    The networks are MLPs on flat rows (image input is flattened; ``architecture="conv"``
    is refused), the condition joined to the input of the encoder and of the decoder.

    Parameters
    ----------
    n_components : int, default=2
    condition : {"auto", "classes", "continuous"}, default="auto"
        How ``y`` is read. "auto": integer, string or integer-valued 1-D labels are
        classes; anything else (non-integer values, 2-D arrays) is continuous.
    beta : float, default=1.0
        Weight of the KL term (1 is the ELBO).
    n_importance_samples : int, default=100
        Posterior draws per row for ``score_samples`` and ``elbo`` (common random numbers).
    **kwargs
        The parameters shared by every model; see :class:`aekit.estimator.BaseAutoencoder`.

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
        The class labels, sorted (only when the conditions are classes).
    n_conditions_ : int
        Width of the condition vector c (the number of classes for class labels).
    module_ : torch.nn.ModuleDict
        ``encoder`` ([x, c] to mean and log-variance), ``decoder`` ([z, c] to the
        likelihood's parameters), ``likelihood``.
    history_ : dict of str to list of float
        Per-epoch ``loss`` (negative conditional ELBO), ``recon``, ``kl``, ``time``.
    n_iter_ : int
    input_shape_ : tuple of int

    Examples
    --------
    >>> import aekit
    >>> from aekit.models.cvae import CVAE
    >>> X, y = aekit.datasets.load("digits")
    >>> cvae = CVAE(likelihood="bernoulli", max_iter=2, random_state=0).fit(X, y)
    >>> cvae.sample(4, y=7, random_state=0).shape
    (4, 64)
    >>> cvae.score_samples(X[:3], y[:3]).shape
    (3,)
    """

    capabilities = VAE.capabilities.but(conditional=True)

    _parameter_constraints = {
        **VAE._parameter_constraints,
        "condition": [StrOptions(set(CONDITIONS))],
    }

    def __init__(self, n_components=2, *, condition="auto", **kwargs):
        super().__init__(n_components, **kwargs)
        self.condition = condition

    # ------------------------------------------------------------ conditions

    def _targets_of(self, y: Any) -> tuple[dict[str, Any], np.ndarray]:
        kind = self.condition
        if kind == "auto":
            classes_like = type_of_target(y, input_name="y") in ("binary", "multiclass")
            kind = "classes" if classes_like else "continuous"
        if kind == "classes":
            y = column_or_1d(y, warn=True)
            if y.dtype.kind == "f":
                assert_all_finite(y, input_name="y")
            classes, idx = np.unique(y, return_inverse=True)
            if len(classes) == 0:
                raise InputError("CVAE needs at least one row with a label; y is empty")
            fitted = {"classes_": classes, "n_conditions_": len(classes)}
            return fitted, np.eye(len(classes), dtype=np.float32)[idx]
        c = check_array(y, ensure_2d=False, dtype=np.float32, input_name="y")
        c = c.reshape(len(c), -1)                                           # (n, c)
        return {"n_conditions_": c.shape[1]}, c

    def _condition_width(self) -> int:
        return self.n_conditions_

    def _conditions(self, y: Any, n: int, method: str) -> np.ndarray:
        """The condition vectors ``(n, c)`` for ``y``, checked against what ``fit`` saw."""
        where = f"CVAE.{method}"
        if y is None:
            raise InputError(f"{where} needs the conditions y (one class label or condition "
                             f"vector per row, as in fit); got y=None")
        if hasattr(self, "classes_"):
            c = np.eye(len(self.classes_), dtype=np.float32)[
                class_indices(y, self.classes_, where)]
        else:
            c = check_array(y, ensure_2d=False, dtype=np.float32, input_name="y")
            if c.ndim == 1 and self.n_conditions_ == 1:
                c = c[:, None]
            if c.ndim != 2 or c.shape[1] != self.n_conditions_:
                raise InputError(f"{where}: y has shape {c.shape}, but the model was fitted "
                                 f"on conditions of width {self.n_conditions_}")
        if len(c) != n:
            raise InputError(f"{where}: got {n} rows but {len(c)} conditions; give one per row")
        return c

    def _sample_conditions(self, y: Any, n: int) -> np.ndarray:
        """One condition for all ``n`` samples (a label, or one vector), or ``n`` of them."""
        if y is not None:
            y = np.asarray(y)
            single = y.ndim == 0 if hasattr(self, "classes_") else (
                y.ndim == 0 or (y.ndim == 1 and self.n_conditions_ > 1))
            if single:
                y = np.repeat(y.reshape(1, -1) if y.ndim else y.reshape(1), n, axis=0)
        return self._conditions(y, n, "sample")

    # -------------------------------------------------------------- training

    def _loss(self, x: Tensor, y: Tensor | None, ctx: FitContext) -> LossTerms:
        recon, kl = self._recon_kl(x, y, ctx=ctx)                           # (B,) each
        total = (self.beta * kl - recon).mean()
        return LossTerms(total, {"recon": -recon.mean(), "kl": kl.mean()})

    # ------------------------------------------------------------- inference

    def _rows(self, X: Any, y: Any, method: str) -> tuple[np.ndarray, np.ndarray]:
        check_is_fitted(self)
        X = self._validate_X(X, reset=False)
        return X, self._conditions(y, len(X), method)

    def fit_transform(self, X: Any, y: Any = None, **fit_params: Any) -> np.ndarray:
        """``fit(X, y).transform(X, y)``."""
        return self.fit(X, y, **fit_params).transform(X, y)

    def transform(self, X: Any, y: Any = None) -> np.ndarray:
        """Posterior means of q(z|x, c) for rows ``X`` with conditions ``y``, ``(n, k)``."""
        X, C = self._rows(X, y, "transform")
        return self._map_rows(X, lambda x, c: self._posterior(x, c).mean, others=(C,))

    def inverse_transform(self, X: Any, y: Any = None) -> np.ndarray:
        """Decoder means for codes ``X`` of shape ``(n, k)`` under conditions ``y``."""
        check_is_fitted(self)
        Z = self._check_codes(X)
        C = self._conditions(y, len(Z), "inverse_transform")
        lik = self.module_.likelihood
        X_hat = self._map_rows(Z, lambda z, c: lik.mean(self._decode(z, c)), others=(C,))
        return X_hat.reshape(len(Z), *self.input_shape_)

    def reconstruct(self, X: Any, y: Any = None) -> np.ndarray:
        """``inverse_transform(transform(X, y), y)``."""
        return self.inverse_transform(self.transform(X, y), y)

    def sample(self, n_samples: int = 1, y: Any = None, random_state: Any = None) -> np.ndarray:
        """Decoder means of prior draws z ~ N(0, I) decoded with the conditions ``y``.

        ``y`` is one class label (or one condition vector) for all samples, or one per
        sample; ``random_state`` seeds the draws (a fresh seed when None).
        """
        check_is_fitted(self)
        n = self._check_n_samples(n_samples)
        c = torch.as_tensor(self._sample_conditions(y, n), device=self._device())   # (n, c)
        g = torch.Generator().manual_seed(seed(random_state))
        z = self._sample_latent(n, g).to(self._device())                    # (n, k)
        return self._decoded_means(z, c)

    def score_samples(self, X: Any, y: Any = None) -> np.ndarray:
        """Importance-sampled conditional log-likelihood log p(x|c) per row, in nats."""
        X, C = self._rows(X, y, "score_samples")
        self._check_support(X)
        eps = self._eval_noise()                                            # (K, k)
        return self._map_rows(X, lambda x, c: log_mean_exp(self._log_weights(x, c, eps), 0),
                              draws=len(eps), others=(C,))

    def score(self, X: Any, y: Any = None) -> float:
        """Mean conditional log-likelihood log p(x|c) of the rows, in nats."""
        return float(np.mean(self.score_samples(X, y)))

    def elbo(self, X: Any, y: Any = None) -> np.ndarray:
        """The conditional ELBO, a lower bound on log p(x|c), per row in nats."""
        X, C = self._rows(X, y, "elbo")
        self._check_support(X)
        eps = self._eval_noise()                                            # (K, k)

        def bound(x: Tensor, c: Tensor) -> Tensor:
            recon, kl = self._recon_kl(x, c, eps)                           # (B,) each
            return recon - kl

        return self._map_rows(X, bound, draws=len(eps), others=(C,))

    # ----------------------------------------------------- scikit-learn glue

    #: these checks call transform / score_samples with X alone, which a conditional model
    #: refuses (it needs y); tests/test_conditional.py checks the same properties with y.
    _expected_failed_checks = dict.fromkeys(
        ("check_estimators_dtypes", "check_dtype_object", "check_estimators_pickle",
         "check_f_contiguous_array_estimator", "check_transformer_data_not_an_array",
         "check_transformer_general", "check_transformer_preserve_dtypes",
         "check_methods_sample_order_invariance", "check_methods_subset_invariance",
         "check_dict_unchanged", "check_fit_idempotent"),
        "calls transform or score_samples with X alone, but CVAE needs the conditions y")
