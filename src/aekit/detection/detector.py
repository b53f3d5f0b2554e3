"""AnomalyDetector: any aekit model as a scikit-learn (and PyOD-shaped) outlier detector."""

from __future__ import annotations

import numbers
from numbers import Real
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, OutlierMixin, clone
from sklearn.exceptions import NotFittedError
from sklearn.utils._param_validation import Interval, InvalidParameterError, StrOptions
from sklearn.utils.validation import validate_data

from aekit.detection import thresholds
from aekit.detection.files import save_detector
from aekit.distributions import feature_log_prob
from aekit.estimator import BaseAutoencoder, validation
from aekit.exceptions import InputError, input_checks
from aekit.models import VAE

#: the scores a detector can use; "auto" picks one from the model's capabilities
SCORES = ("auto", "nll", "elbo", "reconstruction")

#: the likelihood of the default model (see :func:`default_model`)
DEFAULT_LIKELIHOOD = "auto"

#: the code size of the default model. Every model's own default, 2, is for pictures of the
#: codes; a density needs room. On 28 of the ADBench tables (one seed), the mean AUCROC of
#: the default detector went 72.5, 73.8, 73.6, 74.6, 74.8 with codes of 2, 4, 8, 16, 32
#: (BENCHMARKS.md, "Anomaly detection"); units the data does not need stay inactive (KL).
DEFAULT_COMPONENTS = 32


def default_model(**params: Any) -> VAE:
    """The model ``AnomalyDetector(model=None)`` fits: ``VAE(n_components=32,
    likelihood="auto")``, with ``params`` set on top (e.g. ``max_iter`` for a quick run)."""
    model = VAE(n_components=DEFAULT_COMPONENTS, likelihood=DEFAULT_LIKELIHOOD)
    return model.set_params(**params)


class ParameterError(InputError, InvalidParameterError):
    """A detector parameter out of range: an :class:`~aekit.exceptions.InputError` that
    scikit-learn's parameter checks also recognise."""


class NotFittedYet(InputError, NotFittedError):
    """A method that needs a fitted detector was called before ``fit``."""


def per_feature_scores(model: Any, X: Any) -> np.ndarray:
    """``-log p(x_j | z = f(x))`` of every feature of every row of ``X`` under a fitted
    model, shape ``(n, *row_shape)``: the decoder's likelihood factorises over features, so
    a row's values sum to ``-log p(x | z = f(x))``. For mixed tables, one value per column."""
    rows = model._validate_X(X, reset=False)
    model._check_support(rows)
    per_feature = model._map_rows(
        rows, lambda x: -feature_log_prob(model._decode(model._encode(x)), x))
    return per_feature.astype(np.float64).reshape(len(rows), *model.input_shape_)


class AnomalyDetector(OutlierMixin, BaseEstimator):
    """Anomaly detection with any aekit model: rows the model finds unlikely are anomalies.

    ``fit(X)`` clones and fits ``model`` on ``X`` (anomalies may be among the rows,
    unlabelled), scores every training row and sets a threshold. Each row's *anomaly score*
    ``a(x)`` is a negative log-likelihood in nats: higher is more abnormal.

    Two conventions, so the detector drops into code written for either:

    ==========================  ======================================  =====================
    what                        meaning                                 convention
    ==========================  ======================================  =====================
    ``score_samples(X)``        ``-a(x)``: higher = more normal         scikit-learn
    ``decision_function(X)``    ``score_samples(X) - offset_``: < 0 is  scikit-learn
                                an outlier
    ``predict(X)``              +1 inlier, -1 outlier                   scikit-learn
    ``offset_``                 ``-threshold_``                         scikit-learn
    ``anomaly_score(X)``        ``a(x)``: higher = more abnormal        PyOD's
                                                                        ``decision_function``
    ``decision_scores_``        ``a(x)`` of the training rows           PyOD
    ``threshold_``              rows with ``a(x) > threshold_`` are     PyOD
                                outliers
    ``labels_``                 training rows: 0 inlier, 1 outlier      PyOD
    ==========================  ======================================  =====================

    A row is an outlier exactly when ``a(x) > threshold_``, i.e. ``decision_function < 0``,
    ``predict == -1``, and (for training rows) ``labels_ == 1``. Unlike PyOD, the method
    ``decision_function`` follows scikit-learn (higher = more normal); PyOD's meaning of it
    is ``anomaly_score``.

    Parameters
    ----------
    model : aekit model, default=None
        Any unconditional aekit model, cloned and fitted in ``fit``. None means
        :func:`default_model`, ``aekit.VAE(n_components=32)``: a code of 32 units rather
        than the 2 that every model defaults to for pictures, since a density needs room
        (unused units stay inactive), and the defaults of every model otherwise: for
        numeric rows (``likelihood="auto"`` chooses ``"gaussian_learned"``) each feature
        standardised inside the model and a learned sigma per feature, so a deviation in
        a feature that barely varies in training counts for much, on data of any scale
        (with the former fixed-sigma default, sigma 1 was too wide for data in [0, 1], the
        posterior collapsed and the score degenerated to a distance from the mean).
        BENCHMARKS.md ("Anomaly detection") has its AUCROC on the ADBench tables.
        A DataFrame with text, categories or missing cells gets ``likelihood="mixed"``
        (one likelihood per column) from ``"auto"``.
    score_type : {"auto", "nll", "elbo", "reconstruction"}, default="auto"
        The anomaly score ``a(x)`` (not named ``score``: scikit-learn, pipelines and its
        estimator checks take an estimator's ``score`` to be a method):

        - ``"nll"``: ``-log p(x)``, the model's ``score_samples``: importance-sampled for
          latent-variable models, exact for VQ-VAE. Needs a model whose
          ``capabilities.score_is_density``.
        - ``"elbo"``: ``-ELBO(x)``, an upper bound on ``-log p(x)`` (for deterministic codes
          it equals ``"reconstruction"``).
        - ``"reconstruction"``: ``-log p(x | z = f(x))``, the decoder's likelihood at the
          code (the posterior mean for a VAE); for deterministic autoencoders this is their
          ``score_samples``.
        - ``"auto"``: ``"elbo"`` for models with an encoder posterior q(z|x)
          (``capabilities.posterior``: VAE, beta-VAE, IWAE, VampPrior, ...), ``"nll"`` for
          other densities (VQ-VAE), else ``"reconstruction"``. The choice made is
          ``score_type_``. ``-ELBO(x) = -log p(x) + KL(q(z|x) || p(z|x))``: the bound adds
          to the density how badly the encoder, trained on the normal rows, infers a
          row's code, and rows unlike the training rows are inferred worse. On the 28
          ADBench tables used to choose the defaults it ranked anomalies better than the
          importance-sampled ``"nll"`` on 12 and worse on 2 (mean AUCROC 75.5 against
          74.8), and tied with it on the 15 held out from that choice (BENCHMARKS.md,
          "Anomaly detection"), at the same cost (both average over the model's
          ``n_importance_samples`` draws).
    contamination : "auto" or float in (0, 0.5], default="auto"
        How the threshold is set on the training rows. A float: that fraction of the
        training rows is flagged (the ``1 - contamination`` quantile of their scores).
        ``"auto"``: ``median + 3 * 1.4826 * MAD`` of the training scores (a robust
        three-standard-deviation cut, :func:`~aekit.detection.thresholds.robust_threshold`),
        needing no fraction. :meth:`fit_threshold` replaces either with a threshold
        calibrated on rows known to be normal.
    random_state : int or None, default=None
        When not None, the model's ``random_state`` (overriding the one it was given).

    Attributes
    ----------
    model_ : aekit model
        The fitted clone of ``model``.
    score_type_ : str
        The score used: "nll", "elbo" or "reconstruction".
    threshold_, offset_ : float
        The cut on anomaly scores, and ``-threshold_``.
    threshold_rule_ : str
        How ``threshold_`` was set, e.g. ``"contamination=0.1"`` or
        ``"fpr=0.01 on 500 normal rows"``.
    decision_scores_ : ndarray of shape (n_samples,)
        Anomaly scores of the training rows (not kept in saved files).
    labels_ : ndarray of shape (n_samples,)
        1 for training rows above ``threshold_``, else 0 (not kept in saved files).
    n_features_in_ : int
    feature_names_in_ : ndarray of str (only when ``X`` had string column names)

    Notes
    -----
    Refused with :class:`aekit.exceptions.InputError`: rows with NaN or infinite values
    (naming the rows), rows of another width than the training rows, conditional models
    (they need labels to score), ``score_type="nll"`` for a model whose ``score_samples`` is
    not a density, and a training set whose rows are all identical (there is no normal
    variation to learn, and every threshold rule would be degenerate).

    Examples
    --------
    >>> import numpy as np, aekit
    >>> X = np.random.default_rng(0).random((200, 4)).astype("float32")
    >>> det = aekit.AnomalyDetector(aekit.AE(hidden_layer_sizes=(8,), max_iter=2),
    ...                             contamination=0.1, random_state=0).fit(X)
    >>> int((det.predict(X) == -1).sum()), int(det.labels_.sum())
    (20, 20)
    """

    _parameter_constraints: dict = {
        "model": [BaseAutoencoder, None],
        "score_type": [StrOptions(set(SCORES))],
        "contamination": [StrOptions({"auto"}), Interval(Real, 0, 0.5, closed="right")],
        "random_state": ["random_state"],
    }

    def __init__(self, model=None, score_type="auto", contamination="auto", random_state=None):
        self.model = model
        self.score_type = score_type
        self.contamination = contamination
        self.random_state = random_state

    # ---------------------------------------------------------------- fitting

    def fit(self, X: Any, y: Any = None) -> AnomalyDetector:
        """Fit a clone of ``model`` on ``X`` and set the threshold from ``contamination``.

        ``y`` is ignored (anomalies in ``X`` stay unlabelled).
        """
        self._check_params()
        for attr in [a for a in vars(self) if a.endswith("_") and not a.startswith("_")]:
            delattr(self, attr)
        model = default_model() if self.model is None else clone(self.model)
        score = self._resolve_score(model)
        X = self._check_rows(X, reset=True,
                             mixed=validation.resolve_likelihood(model, X) == "mixed")
        if self.random_state is not None:
            model.set_params(random_state=self.random_state)
        model.fit(X)
        if model.likelihood_ == "mixed":        # the table was checked by the model
            self.n_features_in_ = model.n_features_in_
        self.model_, self.score_type_ = model, score
        a = self._scores(X)
        bad = np.flatnonzero(~np.isfinite(a))
        if len(bad):
            raise InputError(f"the fitted {type(model).__name__} gives non-finite {score} "
                             f"scores to {len(bad)} training row(s) (rows {_rows(bad)}); the "
                             "model diverged or the data's scale overflows it: scale the "
                             "features to [0, 1] or standardise them")
        self.decision_scores_ = a
        if self.contamination == "auto":
            self._set_threshold(thresholds.robust_threshold(a),
                                f"median + {thresholds.ROBUST_K:g} * MAD")
        else:
            c = float(self.contamination)
            self._set_threshold(thresholds.contamination_threshold(a, c),
                                f"contamination={c:g}")
        return self

    def fit_threshold(self, X_normal: Any, fpr: float = 0.01) -> AnomalyDetector:
        """Calibrate the threshold on rows known to be normal.

        The threshold becomes the ``ceil((n + 1)(1 - fpr))``-th smallest anomaly score of
        the ``n`` rows of ``X_normal`` (split conformal,
        :func:`~aekit.detection.thresholds.conformal_threshold`): a new normal row from the
        same distribution is flagged with probability at most ``fpr`` (and, without ties, at
        least ``fpr - 1 / (n + 1)``). ``X_normal`` should not be the training rows, whose
        scores the model has fitted. ``labels_`` follow the new threshold.
        """
        self._check_fitted("fit_threshold")
        if (not isinstance(fpr, numbers.Real) or isinstance(fpr, bool)
                or not 0.0 < float(fpr) < 1.0):
            raise InputError(f"fpr must be a number in (0, 1), the false-positive rate wanted "
                             f"on normal rows; got {fpr!r}")
        X_normal = self._check_rows(X_normal, reset=False)
        a = self._scores(X_normal)
        bad = np.flatnonzero(~np.isfinite(a))
        if len(bad):
            raise InputError(f"the model gives non-finite scores to {len(bad)} row(s) of "
                             f"X_normal (rows {_rows(bad)}), which cannot calibrate a "
                             "threshold; remove them")
        self._set_threshold(thresholds.conformal_threshold(a, float(fpr)),
                            f"fpr={float(fpr):g} on {len(a)} normal rows")
        return self

    def _set_threshold(self, threshold: float, rule: str) -> None:
        self.threshold_ = float(threshold)
        self.offset_ = -self.threshold_
        self.threshold_rule_ = rule
        if "decision_scores_" in vars(self):
            self.labels_ = self._is_outlier(self.decision_scores_).astype(np.int64)

    # -------------------------------------------------------------- scoring

    def anomaly_score(self, X: Any) -> np.ndarray:
        """``a(x)`` for each row: the chosen negative log-likelihood in nats, higher = more
        abnormal (what PyOD's ``decision_function`` returns)."""
        self._check_fitted("anomaly_score")
        return self._scores(self._check_rows(X, reset=False))

    def score_samples(self, X: Any) -> np.ndarray:
        """``-a(x)``: higher = more normal (scikit-learn's convention)."""
        return -self.anomaly_score(X)

    def decision_function(self, X: Any) -> np.ndarray:
        """``score_samples(X) - offset_``: negative for outliers."""
        return self.score_samples(X) - self.offset_

    def predict(self, X: Any) -> np.ndarray:
        """+1 for inliers, -1 for outliers (``a(x) > threshold_``)."""
        self._check_fitted("predict")
        a = self._scores(self._check_rows(X, reset=False))
        return np.where(self._is_outlier(a), -1, 1).astype(np.int64)

    def _is_outlier(self, a: np.ndarray) -> np.ndarray:
        # the one formula behind predict, labels_ and decision_function's sign
        return (-a) - self.offset_ < 0

    def feature_scores(self, X: Any) -> np.ndarray:
        """Each row's reconstruction score split over its features: ``-log p(x_j | z)``.

        ``z`` is the code (the posterior mean for a VAE, the chosen codebook vector for a
        VQ-VAE), and the decoder's likelihood factorises over features, so the row sums are
        ``-log p(x | z = f(x))``: equal to ``anomaly_score`` when ``score_type_ ==
        "reconstruction"`` (e.g. deterministic autoencoders with ``score_type="auto"``); for
        ``"nll"`` and ``"elbo"`` they explain the reconstruction part of the score. Shape
        ``(n, *row_shape)``; larger = that feature is further from what the model expects.
        """
        self._check_fitted("feature_scores")
        return per_feature_scores(self.model_, self._check_rows(X, reset=False))

    def _scores(self, X: np.ndarray) -> np.ndarray:
        """Anomaly scores of validated rows, float64."""
        model = self.model_
        if self.score_type_ == "nll":
            log_p = model.score_samples(X)
        elif self.score_type_ == "elbo":
            log_p = model.elbo(X)
        elif not model.capabilities.score_is_density:   # score_samples is log p(x|z=f(x))
            log_p = model.score_samples(X)
        else:
            rows = model._validate_X(X, reset=False)
            model._check_support(rows)
            log_p = model._map_rows(rows, lambda x: model._decode(model._encode(x)).log_prob(x))
        return -np.asarray(log_p, dtype=np.float64)

    # ------------------------------------------------------------ persistence

    def save(self, path: str) -> None:
        """Write the fitted detector to one safetensors file: the wrapped model's file, with
        the detector's parameters, score and threshold in its metadata (no pickle). Read it
        back with :func:`aekit.load` (or :func:`aekit.detection.load_detector`, which refuses
        a plain model file)."""
        save_detector(self, path)

    # ------------------------------------------------------------ checks

    def _check_params(self) -> None:
        try:
            self._validate_params()
        except InvalidParameterError as exc:
            raise ParameterError(str(exc)) from None

    def _resolve_score(self, model: Any) -> str:
        caps = model.capabilities
        name = type(model).__name__
        if caps.conditional:
            raise InputError(f"{name} is a conditional model: it scores rows only given "
                             "their labels or conditions; use an unconditional model (VAE, "
                             "AE, ...) for anomaly detection")
        if self.score_type == "auto":
            if caps.posterior:
                return "elbo"
            return "nll" if caps.score_is_density else "reconstruction"
        if self.score_type == "nll" and not caps.score_is_density:
            raise InputError(f"score_type='nll' needs a density log p(x), but {name} has a "
                             "deterministic code: its score_samples is log p(x | z = f(x)); "
                             "use score_type='reconstruction' (or 'auto')")
        return self.score_type

    def _check_rows(self, X: Any, *, reset: bool, mixed: bool | None = None) -> Any:
        """float32 rows (or images), finite, of the training width; NaN rows are named. A
        mixed table (``likelihood="mixed"``: text, categories and holes) goes to the model
        as it is, which checks it against its columns."""
        mixed = self.model_.likelihood_ == "mixed" if mixed is None else mixed
        if mixed:
            return X
        with input_checks():
            X = validate_data(self, X, reset=reset, dtype=np.float32, allow_nd=True,
                              ensure_all_finite=False, ensure_min_samples=2 if reset else 1)
        flat = X.reshape(len(X), -1)
        bad = np.flatnonzero(~np.isfinite(flat).all(axis=1))
        if len(bad):
            raise InputError(f"X has NaN or infinite values in {len(bad)} row(s) (rows "
                             f"{_rows(bad)}, counting from 0); remove or impute them")
        if reset and (flat == flat[0]).all():
            raise InputError(f"all {len(X)} training rows are identical: there is no normal "
                             "variation to learn, so no score or threshold can tell anomalies "
                             "apart; give rows that vary")
        return X

    def _check_fitted(self, method: str) -> None:
        if not self.__sklearn_is_fitted__():
            raise NotFittedYet(f"this AnomalyDetector is not fitted yet: call fit(X) before "
                               f"{method}")

    def __sklearn_is_fitted__(self) -> bool:
        return "model_" in vars(self) and "threshold_" in vars(self)


def _rows(indices: np.ndarray, most: int = 10) -> str:
    """``"3, 17, 42"``, or the first ``most`` followed by ``", ..."``."""
    shown = ", ".join(str(int(i)) for i in indices[:most])
    return shown + (", ..." if len(indices) > most else "")
