"""M2: the semi-supervised generative model of Kingma et al.

Kingma, Rezende, Mohamed & Welling, "Semi-Supervised Learning with Deep Generative Models",
NeurIPS 2014, arXiv:1406.5298 (model M2). The class y is a latent variable next to z:
p(y) is uniform, p(z) = N(0, I), the decoder is p(x|y, z), the encoder q(z|x, y) and a
classifier q(y|x). A labelled row costs the negative ELBO -L(x, y) plus a weighted
cross-entropy of q(y|x); an unlabelled row costs
``-U(x) = sum_y q(y|x) (-L(x, y)) + KL(q(y|x) || p(y))``, evaluated for all classes at
once. ``score_samples`` is the honest marginal log p(x) = log sum_y p(y) p(x|y), each
p(x|y) importance-sampled with q(z|x, y).
"""

from __future__ import annotations

from numbers import Real
from typing import Any

import numpy as np
import torch
from sklearn.base import ClassifierMixin
from sklearn.utils import assert_all_finite
from sklearn.utils._param_validation import Interval
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, column_or_1d
from torch import Tensor, nn
from torch.distributions import Categorical, Distribution, kl_divergence

from aekit._registry import register
from aekit.distributions import log_mean_exp
from aekit.exceptions import InputError
from aekit.models.cvae import ConditionalVAE, class_indices
from aekit.nn import mlp
from aekit.runtime import seed
from aekit.training import FitContext, LossTerms


def unlabelled_rows(y: np.ndarray) -> np.ndarray:
    """Rows marked unlabelled: -1, as in :mod:`sklearn.semi_supervised` ("-1" for strings)."""
    return y == -1 if y.dtype.kind in "iuf" else y.astype(str) == "-1"


@register("m2")
class M2(ClassifierMixin, ConditionalVAE):
    """Semi-supervised VAE (M2): a classifier and a conditional generative model at once.

    ``fit(X, y)`` takes class labels with -1 marking unlabelled rows, as in
    :mod:`sklearn.semi_supervised` (for string labels the string "-1"); the classes are
    those that occur among the labelled rows, so give at least one label per class. A
    ``y`` with no labelled row is refused. The training loop is the shared one: each
    minibatch mixes labelled and unlabelled rows as they come.

    ``predict`` / ``predict_proba`` use the classifier q(y|x). ``transform(X)`` is the
    posterior mean of z under q(z|x) = sum_y q(y|x) q(z|x, y), that is
    ``sum_y q(y|x) mu(x, y)``. ``inverse_transform(Z, y)`` and ``sample(n, y=...)``
    decode with the given classes; without ``y``, ``sample`` draws y from p(y) and
    ``inverse_transform`` returns the mean of p(x|z) = sum_y p(y) p(x|y, z) (a blend of
    all classes). ``reconstruct(X)`` decodes with the predicted class.
    ``score_samples(X)`` is the importance-sampled marginal log p(x) in nats, and
    ``score(X, y=None)`` its mean, as for every aekit model, **not** the accuracy a
    scikit-learn classifier's ``score`` gives: use
    ``sklearn.metrics.accuracy_score(y, model.predict(X))`` (or ``scoring="accuracy"``).

    Parameters
    ----------
    n_components : int, default=2
        Size of z (the class is the other latent variable).
    classification_weight : float, default=1.0
        Weight of the mean cross-entropy -log q(y|x) of the labelled rows of a minibatch,
        added to the per-row mean negative ELBO. The paper's alpha = 0.1 N on sums over
        the N rows is 0.1 in these per-row units; the default 1.0 learns from few labels
        faster (on digits with 100 labels it also ended more accurate than 0.1 or 3).
    beta : float, default=1.0
        Weight of KL(q(z|x, y) || p(z)).
    n_importance_samples : int, default=100
        Draws of z per row and class for ``score_samples`` (common random numbers).
    **kwargs
        The parameters shared by every model; see :class:`aekit.base.BaseAutoencoder`.
        The networks are MLPs (image input is flattened; ``architecture="conv"`` is
        refused).

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
        The labels seen among the labelled rows, sorted.
    module_ : torch.nn.ModuleDict
        ``classifier`` (x to class logits), ``encoder`` ([x, one-hot y] to mean and
        log-variance of z), ``decoder`` ([z, one-hot y] to the likelihood's parameters),
        ``likelihood``.
    history_ : dict of str to list of float
        Per-epoch ``loss``, ``recon``, ``kl`` (of z), ``kl_y`` (log n_classes for a
        labelled row, KL(q(y|x) || p(y)) for an unlabelled one), ``ce`` (cross-entropy
        of the labelled rows), ``time``.
    n_iter_ : int
    input_shape_ : tuple of int

    Examples
    --------
    >>> import aekit
    >>> from aekit.models.m2 import M2
    >>> X, y = aekit.datasets.load("digits")
    >>> y_semi = y.copy(); y_semi[100:] = -1            # keep 100 labels
    >>> m2 = M2(likelihood="bernoulli", max_iter=2, random_state=0).fit(X, y_semi)
    >>> m2.predict_proba(X[:3]).shape, m2.predict(X[:3]).shape
    ((3, 10), (3,))
    """

    #: its posterior and importance weights need the class as well (marginalised inside)
    capabilities = ConditionalVAE.capabilities.but(semi_supervised=True, importance_weights=False)

    _parameter_constraints = {
        **ConditionalVAE._parameter_constraints,
        "classification_weight": [Interval(Real, 0, None, closed="left")],
    }

    def __init__(self, n_components=2, *, classification_weight=1.0, **kwargs):
        super().__init__(n_components, **kwargs)
        self.classification_weight = classification_weight

    # ---------------------------------------------------------------- labels

    def _targets_of(self, y: Any) -> tuple[dict[str, Any], np.ndarray]:
        y = column_or_1d(y, warn=True)
        if y.dtype.kind == "f":
            assert_all_finite(y, input_name="y")
        unlabelled = unlabelled_rows(y)
        if not (~unlabelled).any():
            raise InputError(f"M2 needs labelled rows: all {len(y)} labels are -1 "
                             "(unlabelled); label at least one row of every class")
        check_classification_targets(y[~unlabelled])
        classes, idx = np.unique(y[~unlabelled], return_inverse=True)
        targets = np.full(len(y), -1, dtype=np.int64)
        targets[~unlabelled] = idx
        return {"classes_": classes}, targets

    def _condition_width(self) -> int:
        return len(self.classes_)

    def _one_hot(self, device: torch.device) -> Tensor:
        """Every class as a condition, ready to pair with every row: ``(C, 1, C)``."""
        n = self._condition_width()
        return torch.eye(n, device=device)[:, None, :]

    def _class_prior(self, device: torch.device) -> Distribution:
        """p(y), uniform over the classes."""
        return Categorical(logits=torch.zeros(self._condition_width(), device=device),
                           validate_args=False)

    def _build(self, input_shape: tuple[int, ...]) -> nn.Module:
        module = super()._build(input_shape)
        n_features = int(np.prod(input_shape))
        module["classifier"] = mlp([n_features, *self.hidden_layer_sizes,
                                    self._condition_width()], self.activation)
        return module

    def _q_y(self, x: Tensor) -> Distribution:
        # no argument validation: its checks read the device back (a sync every step)
        return Categorical(logits=self.module_.classifier(self._standardize(x)).float(),
                           validate_args=False)

    # -------------------------------------------------------------- training

    def _loss(self, x: Tensor, y: Tensor | None, ctx: FitContext) -> LossTerms:
        q_y = self._q_y(x)                                                  # (B,) over C
        recon, kl = self._recon_kl(x, self._one_hot(x.device), ctx=ctx)     # (C, B) each
        labelled = y >= 0                                                   # (B,)
        y_l = y.clamp_min(0)                                                # (B,)
        # weight of each class's -L(x, y): the label for labelled rows, q(y|x) otherwise
        w = torch.where(labelled[:, None], nn.functional.one_hot(y_l, len(recon)),
                        q_y.probs).T                                        # (C, B)
        p_y = self._class_prior(x.device)
        kl_y = torch.where(labelled, -p_y.log_prob(y_l), kl_divergence(q_y, p_y))   # (B,)
        recon, kl = (w * recon).sum(0), (w * kl).sum(0)                     # (B,) each
        ce = -(q_y.log_prob(y_l) * labelled).sum() / labelled.sum().clamp_min(1)
        total = (self.beta * kl - recon + kl_y).mean() + self.classification_weight * ce
        return LossTerms(total, {"recon": -recon.mean(), "kl": kl.mean(),
                                 "kl_y": kl_y.mean(), "ce": ce})

    # ------------------------------------------------------------- inference

    def _map_rows(self, X: np.ndarray, fn: Any, draws: int = 1,
                  others: tuple[np.ndarray, ...] = (), *, same_shape: bool = False
                  ) -> np.ndarray:
        # every row is evaluated once per class: size the chunks for that
        return super()._map_rows(X, fn, draws * len(self.classes_), others,
                                 same_shape=same_shape)

    def _log_likelihood(self, x: Tensor, eps: Tensor) -> Tensor:
        log_w = self._log_weights(x, self._one_hot(x.device), eps)          # (K, C, B)
        # reduce along the last, contiguous axis: a reduction over a leading axis is
        # vectorised across the rows, and a row's rounding (1 ulp) then depends on its
        # position in the batch, so that reordering the rows changed its score
        log_w = log_w.permute(2, 1, 0).contiguous()                         # (B, C, K)
        log_p_x_y = log_mean_exp(log_w, dim=-1)                             # (B, C)
        log_p_y = self._class_prior(x.device).logits                        # (C,)
        return torch.logsumexp(log_p_y + log_p_x_y, dim=-1)                 # (B,)

    def _elbo(self, x: Tensor, eps: Tensor) -> Tensor:
        q_y = self._q_y(x)                                                  # (B,) over C
        recon, kl = self._recon_kl(x, self._one_hot(x.device), eps)         # (C, B) each
        bound = (q_y.probs.T * (recon - kl)).sum(0)                         # (B,)
        return bound - kl_divergence(q_y, self._class_prior(x.device))

    def _encode(self, x: Tensor) -> Tensor:
        loc = self._posterior(x, self._one_hot(x.device)).mean              # (C, B, k)
        return (self._q_y(x).probs.T[..., None] * loc).sum(0)               # (B, k)

    def predict_proba(self, X: Any) -> np.ndarray:
        """q(y|x) for each row, ``(n, n_classes)`` in the order of ``classes_``."""
        check_is_fitted(self)
        X = self._validate_X(X, reset=False)
        return self._map_rows(X, lambda x: self._q_y(x).probs)

    def predict(self, X: Any) -> np.ndarray:
        """The most probable class under q(y|x) for each row."""
        proba = self.predict_proba(X)                                       # (n, C)
        return self.classes_[np.argmax(proba, axis=1)]

    def _labels(self, y: Any, n: int, method: str) -> np.ndarray:
        """One-hot ``(n, C)`` for the labels ``y`` (one label for all, or one per row)."""
        y = np.asarray(y)
        if y.ndim == 0:
            y = np.repeat(y.reshape(1), n)
        idx = class_indices(y, self.classes_, f"M2.{method}")
        if len(idx) != n:
            raise InputError(f"M2.{method}: got {n} rows but {len(idx)} labels; give one "
                             "label for all or one per row")
        return np.eye(len(self.classes_), dtype=np.float32)[idx]

    def inverse_transform(self, X: Any, y: Any = None) -> np.ndarray:
        """Mean of p(x|z, y) for codes ``X`` and classes ``y``; without ``y`` the mean of
        p(x|z) = sum_y p(y) p(x|y, z) (a blend of all classes)."""
        check_is_fitted(self)
        Z = self._check_codes(X)
        n_classes = len(self.classes_)
        W = (np.full((len(Z), n_classes), 1 / n_classes, dtype=np.float32) if y is None
             else self._labels(y, len(Z), "inverse_transform"))             # (n, C)
        lik = self.module_.likelihood

        def fn(z: Tensor, w: Tensor) -> Tensor:
            means = lik.mean(self._decode(z, self._one_hot(z.device)))      # (C, B, D)
            return (w.T[..., None] * means).sum(0)                          # (B, D)

        return self._map_rows(Z, fn, others=(W,)).reshape(len(Z), *self.input_shape_)

    def reconstruct(self, X: Any, y: Any = None) -> np.ndarray:
        """Decoder means at the posterior mean of z under class ``y`` (the predicted class
        when ``y`` is None)."""
        check_is_fitted(self)
        X = self._validate_X(X, reset=False)
        others = () if y is None else (self._labels(y, len(X), "reconstruct"),)
        lik, eye = self.module_.likelihood, torch.eye(len(self.classes_), device=self._device())

        def fn(x: Tensor, c: Tensor | None = None) -> Tensor:
            if c is None:
                c = eye[self._q_y(x).probs.argmax(-1)]                      # (B, C)
            return lik.mean(self._decode(self._posterior(x, c).mean, c))    # (B, D)

        return self._map_rows(X, fn, others=others).reshape(len(X), *self.input_shape_)

    def sample(self, n_samples: int = 1, y: Any = None, random_state: Any = None) -> np.ndarray:
        """Decoder means of z ~ N(0, I) with the classes ``y`` (one for all, or one per
        sample); when ``y`` is None each sample's class is drawn from p(y)."""
        check_is_fitted(self)
        n = self._check_n_samples(n_samples)
        g = torch.Generator().manual_seed(seed(random_state))
        z = self._sample_latent(n, g)                                       # (n, k)
        if y is None:
            idx = torch.randint(len(self.classes_), (n,), generator=g)      # y ~ p(y)
            c = torch.eye(len(self.classes_))[idx]                          # (n, C)
        else:
            c = torch.as_tensor(self._labels(y, n, "sample"))               # (n, C)
        device = self._device()
        return self._decoded_means(z.to(device), c.to(device))

    def score(self, X: Any, y: Any = None) -> float:
        """Mean marginal log-likelihood log p(x) in nats; ``y`` is ignored. (Not the
        accuracy: use ``accuracy_score(y, predict(X))`` for that.)"""
        return float(np.mean(self.score_samples(X)))

    # ----------------------------------------------------- scikit-learn glue

    _expected_failed_checks = {
        "check_classifiers_classes": "it uses -1 as a class label, which M2 reads as "
                                     "'unlabelled' (the sklearn.semi_supervised convention)",
    }
