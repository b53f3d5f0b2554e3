"""Every model measured three ways: as a density, as a manifold and as a generator.

- Density (latent-variable models only): the importance-sampled log-likelihood with a
  per-row standard error, bits per dimension, the ELBO, the KL per latent dimension and
  the active units of Burda, Grosse & Salakhutdinov, "Importance Weighted Autoencoders",
  2015, arXiv:1509.00519.
- Manifold and representation: reconstruction error in the likelihood's own units and
  as MSE, trustworthiness and continuity (Venna & Kaski, 2001), k-NN and linear-probe
  accuracy of the codes.
- Generation: Fréchet distance and improved precision / recall (Kynkäänniemi et al., 2019,
  arXiv:1904.06991) in the feature space of a classifier trained on the data set itself.

:func:`evaluate` gathers all that applies to a model into one JSON-ready dict, next to PCA
with the same number of components; :func:`format_table` prints it. The measurements of a
model (importance sampling, KL per dimension, active units, reconstruction error) live in
:mod:`aekit.measures` and are importable from here too; the numpy-only metric functions
live in :mod:`aekit.metrics`.
"""

from __future__ import annotations

import math
from numbers import Integral
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.decomposition import PCA
from sklearn.neural_network import MLPClassifier
from sklearn.utils.validation import check_is_fitted

from aekit.estimator.inference import rows_per_chunk
from aekit.evaluation.array_metrics import (
    continuity,
    frechet_distance,
    knn_accuracy,
    linear_probe_accuracy,
    precision_recall,
    reconstruction_mse,
    trustworthiness,
)
from aekit.evaluation.model_measures import (
    active_units,
    density_summary,
    flat_rows,
    given_conditions,
    has_kl_per_dimension,
    importance_sampled_log_likelihood,
    kl_per_dimension,
    reconstruction_error,
)
from aekit.exceptions import InputError
from aekit.runtime import seed as seed_of

#: trustworthiness and continuity cost O(n^2): they use a fixed subset of this many rows.
NEIGHBOURHOOD_ROWS = 1000

# ---------------------------------------------------------------------- generation


class FeatureExtractor(TransformerMixin, BaseEstimator):
    """A classifier trained on the data set itself, whose last hidden layer is the feature
    space for :func:`~aekit.metrics.frechet_distance` and
    :func:`~aekit.metrics.precision_recall`.

    An MLP (scikit-learn's ``MLPClassifier``, ReLU, Adam, early stopping) maps rows
    ``D -> 256 -> 128 -> classes``; ``transform`` returns the 128 activations before the
    output layer. **This is not the Inception FID**: published FIDs use an Inception-v3
    network trained on ImageNet, whose weights would have to be downloaded and whose
    features mean little for 8x8 digits or 28x28 grey images that look nothing like
    ImageNet photographs. A network trained here on the labelled training images needs no
    download and sees what distinguishes this data set's classes; the numbers compare
    models evaluated with the same fitted extractor, never published FIDs.

    Parameters
    ----------
    hidden_layer_sizes : tuple of int, default=(256, 128)
        The last width is the feature dimension; use fewer features than rows.
    max_iter : int, default=200
        Maximum epochs (early stopping on 10% of the rows usually ends sooner).
    random_state : int, default=0

    Attributes
    ----------
    classifier_ : sklearn.neural_network.MLPClassifier
    n_features_in_ : int

    Examples
    --------
    >>> import aekit
    >>> X, y = aekit.datasets.load("digits")
    >>> fx = FeatureExtractor(hidden_layer_sizes=(32,)).fit(X, y)
    >>> fx.transform(X[:5]).shape
    (5, 32)
    """

    def __init__(self, hidden_layer_sizes=(256, 128), *, max_iter=200, random_state=0):
        self.hidden_layer_sizes = hidden_layer_sizes
        self.max_iter = max_iter
        self.random_state = random_state

    def fit(self, X: Any, y: Any) -> FeatureExtractor:
        """Train the classifier on rows ``X`` (images are flattened) and labels ``y``."""
        X = flat_rows(X)
        if y is None:
            raise InputError("FeatureExtractor is a classifier: pass the labels y of X; "
                             "got y=None")
        self.classifier_ = MLPClassifier(
            hidden_layer_sizes=tuple(self.hidden_layer_sizes), max_iter=self.max_iter,
            early_stopping=True, random_state=self.random_state).fit(X, y)
        self.n_features_in_ = X.shape[1]
        return self

    def transform(self, X: Any) -> np.ndarray:
        """Activations of the last hidden layer, ``(n, hidden_layer_sizes[-1])``."""
        check_is_fitted(self)
        h = flat_rows(X).astype(np.float64)
        if h.shape[1] != self.n_features_in_:
            raise InputError(f"X has {h.shape[1]} features per row, but the FeatureExtractor "
                             f"was fitted on {self.n_features_in_}")
        clf = self.classifier_
        for W, b in zip(clf.coefs_[:-1], clf.intercepts_[:-1]):
            h = np.maximum(h @ W + b, 0.0)                                    # ReLU layers
        return h

    def score(self, X: Any, y: Any) -> float:
        """Classification accuracy on ``(X, y)``: a check that the features are good."""
        check_is_fitted(self)
        return float(self.classifier_.score(flat_rows(X), y))


def _generation(fx: FeatureExtractor, real: np.ndarray, fake: np.ndarray) -> dict[str, float]:
    feats_real, feats_fake = fx.transform(real), fx.transform(fake)
    precision, recall = precision_recall(feats_real, feats_fake)
    return {"frechet_distance": frechet_distance(feats_real, feats_fake),
            "precision": precision, "recall": recall}


# ------------------------------------------------------------------------ evaluate


def evaluate(model: Any, X_test: Any, y_test: Any = None, *, X_train: Any = None,
             y_train: Any = None, k: int = 1000, feature_extractor: FeatureExtractor | None = None,
             n_neighbors: int = 5, random_state: Any = 0) -> dict[str, Any]:
    """Every metric that applies to a fitted ``model``, next to PCA, as one JSON-ready dict.

    Parameters
    ----------
    model : fitted aekit estimator
    X_test, y_test : array-like
        The rows to evaluate on and (optionally) their labels. A conditional model
        (CVAE) needs ``y_test`` and ``y_train``.
    X_train, y_train : array-like, optional
        Training rows: the PCA baseline is fitted on them (on ``X_test`` without them),
        the k-NN classifiers and linear probe on their codes.
    k : int, default=1000
        Posterior draws per row for the importance-sampled log-likelihood.
    feature_extractor : FeatureExtractor, optional
        A fitted one enables the generation metrics, computed on ``len(X_test)`` samples.
    n_neighbors : int, default=5
        Neighbourhood size of trustworthiness and continuity.
    random_state : int, default=0
        Seeds the importance-sampling draws, the samples and the neighbourhood subset.

    Returns
    -------
    dict
        Plain floats, ints, lists and strings (``json.dumps`` works; an undefined value is
        None). Top level: ``model`` (class name), ``n_components``, ``n_test``,
        ``conditioned_on_labels`` (True, for a conditional model only: every number below
        was computed given ``y_test``, so it is not comparable with an unconditional
        model's), and:

        - ``density`` (models with importance weights only): ``log_likelihood`` (mean
          nats per row), ``log_likelihood_stderr`` (its standard error across rows),
          ``importance_sampling_stderr`` (the mean per-row standard error of the
          estimate), ``bits_per_dim`` (None, with a ``bits_per_dim_note`` saying why,
          unless the likelihood gives probabilities: "categorical", or "bernoulli" on
          binary rows; see :func:`~aekit.evaluation.bits_per_dim`), ``elbo``, ``k``,
          ``kl_per_dimension`` (list), ``kl_total``, ``active_units``. For the other
          latent-variable models (M2, whose weights also depend on the class; VQ-VAE,
          whose likelihood is an exact sum over codes) the model's own
          ``score_samples``, ``elbo`` and ``k`` (its ``n_importance_samples``, None when
          exact), no per-row error or KL. No ``density`` for deterministic autoencoders
          (AE and its subclasses).
        - ``manifold``: ``reconstruction_nll`` (nats per row, the model's likelihood),
          ``reconstruction_mse``, ``trustworthiness``, ``continuity`` (on at most
          ``NEIGHBOURHOOD_ROWS`` test rows).
        - ``representation`` (with ``X_train``, ``y_train``, ``y_test``):
          ``knn1_accuracy``, ``knn5_accuracy``, ``linear_probe_accuracy``.
        - ``generation`` (with ``feature_extractor``): ``frechet_distance``,
          ``precision``, ``recall``, and as references ``feature_accuracy`` (the
          extractor's test accuracy, with ``y_test``) and ``frechet_distance_train_test``
          (real training rows against the test rows: the floor sampling noise sets).
        - ``baseline_pca``: ``manifold`` (``reconstruction_mse``, ``trustworthiness``,
          ``continuity``), ``representation`` and ``generation`` as above for PCA, whose
          samples are decoded draws from N(0, diag(``explained_variance_``)).

    Examples
    --------
    >>> import json, aekit
    >>> X, y = aekit.datasets.load("digits")
    >>> vae = aekit.VAE(likelihood="bernoulli", hidden_layer_sizes=(32,), max_iter=2,
    ...                 random_state=0).fit(X)
    >>> res = evaluate(vae, X[:100], y[:100], X_train=X[100:], y_train=y[100:], k=20)
    >>> sorted(res)
    ['baseline_pca', 'density', 'manifold', 'model', 'n_components', 'n_test', 'representation']
    >>> len(json.dumps(res)) > 0
    True
    """
    given_test = given_conditions(model, y_test)
    X_flat = flat_rows(X_test)
    out: dict[str, Any] = {"model": type(model).__name__, "n_components": model.n_components,
                           "n_test": len(X_flat)}
    caps = model.capabilities
    if caps.conditional:
        # codes, log p(x|y), reconstructions and samples are all given the true test labels:
        # say so, so that the numbers are not read against unconditional models'
        out["conditioned_on_labels"] = True
    if caps.importance_weights:
        out["density"] = _density(model, X_test, y_test, k, random_state)
    elif caps.score_is_density:
        out["density"] = _own_density(model, X_test)
    pca = PCA(n_components=model.n_components, random_state=0).fit(
        X_flat if X_train is None else flat_rows(X_train))
    Z_test = model.transform(X_test, *given_test)
    P_test = pca.transform(X_flat)
    rows = np.random.default_rng(seed_of(random_state)).permutation(len(X_flat))
    rows = np.sort(rows[:NEIGHBOURHOOD_ROWS])
    recon = reconstruction_error(model, X_test, y=y_test)
    out["manifold"] = {
        "reconstruction_nll": recon["nll"], "reconstruction_mse": recon["mse"],
        **_neighbourhoods(X_flat[rows], Z_test[rows], n_neighbors)}
    baseline = {"manifold": {
        "reconstruction_mse": reconstruction_mse(X_flat, pca.inverse_transform(P_test)),
        **_neighbourhoods(X_flat[rows], P_test[rows], n_neighbors)}}
    if X_train is not None and y_train is not None and y_test is not None:
        Z_train = model.transform(X_train, *given_conditions(model, y_train))
        out["representation"] = _representation(Z_train, y_train, Z_test, y_test)
        baseline["representation"] = _representation(pca.transform(flat_rows(X_train)), y_train,
                                                     P_test, y_test)
    if feature_extractor is not None:
        n, seed = len(X_flat), seed_of(random_state)
        fake = _samples(model, n, given_test, seed)
        out["generation"] = _generation(feature_extractor, X_flat, flat_rows(fake))
        if y_test is not None:
            out["generation"]["feature_accuracy"] = feature_extractor.score(X_flat, y_test)
        if X_train is not None:
            train = flat_rows(X_train)[np.random.default_rng(seed).permutation(len(X_train))[:n]]
            out["generation"]["frechet_distance_train_test"] = frechet_distance(
                feature_extractor.transform(train), feature_extractor.transform(X_flat))
        draws = np.random.default_rng(seed).standard_normal((n, model.n_components))
        pca_fake = pca.inverse_transform(draws * np.sqrt(pca.explained_variance_))
        baseline["generation"] = _generation(feature_extractor, X_flat, pca_fake)
    out["baseline_pca"] = baseline
    return _plain(out)


def _samples(model: Any, n: int, given: tuple, seed: int) -> np.ndarray:
    """``model.sample(n, *given)`` in chunks sized with
    :func:`~aekit.estimator.inference.rows_per_chunk`: ``sample`` decodes all its draws at
    once, 8 GB of logits for 10000 rows of 784 features under "categorical". One call
    (the same draws as before) when they fit; chunk ``i`` is seeded ``seed + i``."""
    rows = rows_per_chunk(model, math.prod(model.input_shape_))
    if n <= rows:
        return model.sample(n, *given, random_state=seed)
    return np.concatenate([
        model.sample(min(rows, n - start), *(np.asarray(g)[start:start + rows] for g in given),
                     random_state=seed + i)
        for i, start in enumerate(range(0, n, rows))])


def _density(model: Any, X: Any, y: Any, k: int, random_state: Any) -> dict[str, Any]:
    ll, se = importance_sampled_log_likelihood(model, X, k, y=y, random_state=random_state)
    out = {**density_summary(model, ll, model.elbo(X, *given_conditions(model, y)), X),
           "importance_sampling_stderr": float(np.mean(se)), "k": k}
    if has_kl_per_dimension(model):
        kl = kl_per_dimension(model, X, y=y, random_state=random_state)
        out.update(kl_per_dimension=kl.tolist(), kl_total=float(kl.sum()))
    out["active_units"] = active_units(model, X, y=y)
    return out


def _own_density(model: Any, X: Any) -> dict[str, Any]:
    """For a latent-variable model this module does not importance-sample: its own
    ``score_samples`` (M2 sums its classes out, VQ-VAE sums its codes exactly)."""
    out = {**density_summary(model, model.score_samples(X), model.elbo(X), X),
           "k": model.get_params().get("n_importance_samples")}
    if model.capabilities.posterior:        # units of a Gaussian posterior, N(0, I)-scaled
        out["active_units"] = active_units(model, X)
    return out


def _neighbourhoods(X: np.ndarray, Z: np.ndarray, n_neighbors: int) -> dict[str, float]:
    return {"trustworthiness": trustworthiness(X, Z, n_neighbors),
            "continuity": continuity(X, Z, n_neighbors)}


def _representation(Z_train: np.ndarray, y_train: Any, Z_test: np.ndarray,
                    y_test: Any) -> dict[str, float]:
    return {"knn1_accuracy": knn_accuracy(Z_train, y_train, Z_test, y_test, n_neighbors=1),
            "knn5_accuracy": knn_accuracy(Z_train, y_train, Z_test, y_test, n_neighbors=5),
            "linear_probe_accuracy": linear_probe_accuracy(Z_train, y_train, Z_test, y_test)}


def _plain(value: Any) -> Any:
    """Python floats / ints / lists / dicts for json; non-finite floats become None."""
    if isinstance(value, dict):
        return {str(key): _plain(v) for key, v in value.items()}
    if isinstance(value, list | tuple | np.ndarray):
        return [_plain(v) for v in value]
    if isinstance(value, bool | np.bool_):
        return bool(value)
    if isinstance(value, Integral):
        return int(value)
    if isinstance(value, float | np.floating):
        return float(value) if math.isfinite(value) else None
    return value


def format_table(results: dict[str, Any]) -> str:
    """The dict of :func:`evaluate` as a plain-text table: metric, model, PCA.

    Examples
    --------
    >>> print(format_table({"model": "AE", "n_components": 2, "n_test": 3,
    ...                     "manifold": {"reconstruction_mse": 0.05},
    ...                     "baseline_pca": {"manifold": {"reconstruction_mse": 0.0625}}}))
    AE, 2 components, 3 test rows
    metric                         AE     PCA
    ---------------------------  ----  ------
    manifold.reconstruction_mse  0.05  0.0625
    """
    baseline = results.get("baseline_pca", {})
    rows = [("metric", results.get("model", "model"), "PCA")]
    for section, metrics in results.items():
        if section == "baseline_pca" or not isinstance(metrics, dict):
            continue
        for name, value in metrics.items():
            rows.append((f"{section}.{name}", _cell(value),
                         _cell(baseline.get(section, {}).get(name, ""))))
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    given = (", conditioned on the true labels" if results.get("conditioned_on_labels")
             else "")
    lines = [f"{results.get('model', 'model')}, {results.get('n_components')} components, "
             f"{results.get('n_test')} test rows{given}"]
    for i, row in enumerate(rows):
        lines.append(f"{row[0]:<{widths[0]}}  {row[1]:>{widths[1]}}  {row[2]:>{widths[2]}}")
        if i == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _cell(value: Any) -> str:
    if isinstance(value, list):
        shown = ", ".join(_cell(v) for v in value[:6])
        return f"[{shown}{', ...' if len(value) > 6 else ''}]"
    if isinstance(value, float):
        return f"{value:.4g}"
    return "n/a" if value is None else str(value)
