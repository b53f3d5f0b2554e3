"""Pure metric functions shared by the estimators, the CLI and the benchmarks."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from sklearn.neighbors import KNeighborsClassifier

from aekit.data.streaming import iter_chunks
from aekit.distributions import log_mean_exp  # noqa: F401  (re-exported)
from aekit.exceptions import InputError

#: likelihoods whose log p(x) is the log of a probability (of binary values, of 256 levels)
DISCRETE_LIKELIHOODS = ("bernoulli", "categorical")
#: likelihoods whose log p(x) is the log of a density on a continuum
CONTINUOUS_LIKELIHOODS = ("gaussian", "gaussian_learned", "laplace", "continuous_bernoulli")
#: rows read at a time when data (an array or a source to stream) are checked for 0/1
_CHECK_ROWS = 65536


def is_binary(X: Any) -> bool:
    """Whether every value of ``X`` (an array, or a source read chunk by chunk) is 0 or 1.

    Examples
    --------
    >>> is_binary(np.array([[0.0, 1.0], [1.0, 1.0]])), is_binary(np.array([[0.5, 1.0]]))
    (True, False)
    """
    return all(bool(np.all((chunk == 0) | (chunk == 1))) for chunk in iter_chunks(X, _CHECK_ROWS))


def bits_per_dim_refusal(likelihood: str, X: Any = None,
                         dequantized: bool = False) -> tuple[str, str] | None:
    """Why ``-log p(x) / (D ln 2)`` would not be bits per dimension for this likelihood and
    data: ``(short reason, what to do)``, or None when it is (see :func:`bits_per_dim`)."""
    if likelihood in CONTINUOUS_LIKELIHOODS:
        if dequantized:
            return None
        return (f"{likelihood!r} is a density, not a probability: bits need dequantised "
                f"8-bit data",
                "-log p(x) / (D ln 2) of a density depends on the data's units and can be "
                "negative; for 8-bit values scaled to [0, 1] and scored after uniform "
                "dequantisation pass dequantized=True, or use likelihood='categorical'")
    if dequantized:
        return (f"dequantized=True applies to continuous likelihoods; {likelihood!r} "
                f"already gives probabilities",
                "leave dequantized=False")
    if likelihood == "bernoulli":
        if X is None:
            return ("'bernoulli' needs the scored rows X to tell binary data from grey "
                    "levels", "pass X")
        if not is_binary(X):
            return ("'bernoulli' on grey levels is not a likelihood",
                    "Bernoulli probabilities sum to 1 over x in {0, 1} only; score a fixed "
                    "binarization (aekit.datasets.binarize) or use likelihood='categorical'")
        return None
    if likelihood == "categorical":
        return None
    return (f"unknown likelihood {likelihood!r}",
            f"use one of {', '.join(DISCRETE_LIKELIHOODS + CONTINUOUS_LIKELIHOODS)}")


def bits_per_dim(log_likelihood: np.ndarray | float, n_features: int,
                 likelihood: str | None = None, *, X: Any = None,
                 dequantized: bool = False) -> np.ndarray | float:
    """Convert log p(x) in nats to bits per dimension where that means something.

    Bits per dimension are a code length, ``-log2 P(x) / D``, so ``log_likelihood`` must
    be the log of a probability:

    - ``"categorical"`` (a probability over 256 grey levels) and ``"bernoulli"`` on
      binary rows ``X``: ``-ll / (D ln 2)``;
    - ``"bernoulli"`` on grey levels is refused: its log p(x) is not a log-likelihood
      (Bernoulli probabilities sum to 1 over {0, 1} only), so no number is right;
    - continuous likelihoods (``"gaussian"``, ``"gaussian_learned"``, ``"laplace"``,
      ``"continuous_bernoulli"``) give densities, refused unless ``dequantized=True``:
      for 8-bit values scaled to [0, 1] and scored after uniform dequantisation
      (x = (k + u) / 256, u ~ U[0, 1)), ``(-ll + D ln 256) / (D ln 2)`` bounds the bits
      per dimension of the 8-bit values from above (Theis et al., "A note on the
      evaluation of generative models", 2016, arXiv:1511.01844);
    - ``likelihood=None``: ``-ll / (D ln 2)``, the caller vouching that ``ll`` is the log
      of a probability.

    Parameters
    ----------
    log_likelihood : float or ndarray
        log p(x) in nats (per row, or their mean).
    n_features : int
        D, the number of values per row.
    likelihood : str, optional
        The model's ``likelihood``.
    X : array-like or source, optional
        The scored rows; needed for ``"bernoulli"`` (are they binary?).
    dequantized : bool, default=False
        ``log_likelihood`` of a continuous likelihood was computed on dequantised 8-bit
        data in [0, 1].

    Raises
    ------
    aekit.exceptions.InputError
        Where the number would not be bits per dimension, saying why.

    Examples
    --------
    >>> bits_per_dim(-64 * np.log(2), 64, "categorical")
    1.0
    >>> bits_per_dim(0.0, 64, "gaussian", dequantized=True)   # log2(256)
    8.0
    """
    if likelihood is not None:
        refusal = bits_per_dim_refusal(likelihood, X, dequantized)
        if refusal is not None:
            raise InputError(f"no bits per dimension: {refusal[0]}; {refusal[1]}")
    nats = -np.asarray(log_likelihood, dtype=np.float64)
    if dequantized:
        nats = nats + n_features * math.log(256.0)
    bits = nats / (n_features * math.log(2.0))
    return float(bits) if bits.ndim == 0 else bits


def reconstruction_mse(X: np.ndarray, X_hat: np.ndarray) -> float:
    """Mean squared error per feature between rows and their reconstructions."""
    X = np.asarray(X, dtype=np.float64).reshape(len(X), -1)
    X_hat = np.asarray(X_hat, dtype=np.float64).reshape(len(X_hat), -1)
    return float(np.mean((X - X_hat) ** 2))


def knn_accuracy(Z_train: np.ndarray, y_train: np.ndarray, Z_test: np.ndarray,
                 y_test: np.ndarray, n_neighbors: int = 1) -> float:
    """Accuracy of a k-NN classifier fitted on training codes and scored on test codes.

    Examples
    --------
    >>> import numpy as np
    >>> Z = np.array([[0.0], [1.0], [10.0], [11.0]]); y = np.array([0, 0, 1, 1])
    >>> knn_accuracy(Z, y, np.array([[0.5], [10.5]]), np.array([0, 1]))
    1.0
    """
    clf = KNeighborsClassifier(n_neighbors=n_neighbors).fit(Z_train, y_train)
    return float(clf.score(Z_test, y_test))


# ------------------------------------------------------------------------------------------
# Pure metrics for :mod:`aekit.evaluation`: numpy in, numbers out, no model involved.


def mean_and_stderr(values: np.ndarray) -> tuple[float, float]:
    """Mean of per-row values and its standard error across rows, ``std / sqrt(n)``.

    The dataset-level summary of per-row log-likelihoods: the error bar says how much the
    mean would move with another draw of the same number of test rows (nan for one row).

    Examples
    --------
    >>> mean_and_stderr(np.array([1.0, 2.0, 3.0, 4.0]))
    (2.5, 0.6454972243679028)
    """
    values = np.asarray(values, dtype=np.float64).ravel()
    if values.size == 0:
        raise InputError("mean_and_stderr needs at least one value; got an empty array")
    if values.size == 1:
        return float(values[0]), math.nan
    return float(values.mean()), float(values.std(ddof=1) / math.sqrt(values.size))


def linear_probe_accuracy(Z_train: np.ndarray, y_train: np.ndarray, Z_test: np.ndarray,
                          y_test: np.ndarray) -> float:
    """Accuracy of a logistic regression on standardised codes, fitted on the training
    codes and scored on the test codes: how linearly the classes can be read off the code.

    Examples
    --------
    >>> Z = np.array([[0.0], [1.0], [10.0], [11.0]]); y = np.array([0, 0, 1, 1])
    >>> linear_probe_accuracy(Z, y, np.array([[0.5], [10.5]]), np.array([0, 1]))
    1.0
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    probe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
    return float(probe.fit(Z_train, y_train).score(Z_test, y_test))


def trustworthiness(X: np.ndarray, Z: np.ndarray, n_neighbors: int = 5) -> float:
    """How far the codes' neighbourhoods are true ones, in [0, 1] (1: every point's
    ``n_neighbors`` nearest codes are also among its nearest rows in data space).

    Venna & Kaski, "Neighborhood Preservation in Nonlinear Projection Methods: An
    Experimental Study", ICANN 2001; this is :func:`sklearn.manifold.trustworthiness`
    (Euclidean distances, ``n_neighbors < n / 2``). It penalises codes that bring
    far-apart rows together; :func:`continuity` penalises tearing neighbours apart.

    Examples
    --------
    >>> rng = np.random.default_rng(0); X = rng.normal(size=(30, 3))
    >>> trustworthiness(X, 2.0 * X)      # scaling keeps every neighbourhood
    1.0
    >>> trustworthiness(X, X[:, :1]) < 1.0
    True
    """
    from sklearn.manifold import trustworthiness as sklearn_trustworthiness

    X = np.asarray(X, dtype=np.float64).reshape(len(X), -1)
    Z = np.asarray(Z, dtype=np.float64).reshape(len(Z), -1)
    return float(sklearn_trustworthiness(X, Z, n_neighbors=n_neighbors))


def continuity(X: np.ndarray, Z: np.ndarray, n_neighbors: int = 5) -> float:
    """How far the data's neighbourhoods survive in the codes, in [0, 1]: the
    :func:`trustworthiness` with the roles of ``X`` and ``Z`` swapped (Venna & Kaski 2001).

    Examples
    --------
    >>> rng = np.random.default_rng(0); X = rng.normal(size=(30, 3))
    >>> continuity(X, X[:, :2]) == trustworthiness(X[:, :2], X)
    True
    """
    return trustworthiness(Z, X, n_neighbors=n_neighbors)


def frechet_distance(feats_real: np.ndarray, feats_fake: np.ndarray) -> float:
    """Fréchet distance between Gaussians fitted to two sets of feature vectors.

    ``||mu_r - mu_f||^2 + tr(S_r + S_f - 2 (S_r S_f)^(1/2))`` with sample means and
    covariances (Heusel et al., "GANs Trained by a Two Time-Scale Update Rule Converge to a
    Local Nash Equilibrium", 2017, arXiv:1706.08500). The matrix square root is
    :func:`scipy.linalg.sqrtm`; round-off gives it small imaginary parts, which are
    dropped, and a singular product is nudged by ``1e-6 I`` on each covariance as in the
    reference implementation. It is only as meaningful as the features: with the features
    of :class:`aekit.evaluation.FeatureExtractor` it is *not* the published Inception FID.
    Singular covariances (constant features) are fine; an error is raised only when the
    square root comes out with a large imaginary part, which more rows cure.

    Examples
    --------
    >>> rng = np.random.default_rng(0); a = rng.normal(size=(500, 2))
    >>> round(frechet_distance(a, a), 6)
    0.0
    >>> round(frechet_distance(a, a + [3.0, 4.0]), 6)   # a mean shift of length 5
    25.0
    """
    import warnings

    from scipy import linalg

    real = np.asarray(feats_real, dtype=np.float64).reshape(len(feats_real), -1)
    fake = np.asarray(feats_fake, dtype=np.float64).reshape(len(feats_fake), -1)
    if real.shape[1] != fake.shape[1] or min(len(real), len(fake)) < 2:
        raise InputError(f"frechet_distance needs two sets of at least 2 feature vectors of "
                         f"the same width; got shapes {real.shape} and {fake.shape}")
    mu_r, mu_f = real.mean(0), fake.mean(0)                                   # (F,)
    cov_r = np.atleast_2d(np.cov(real, rowvar=False))                         # (F, F)
    cov_f = np.atleast_2d(np.cov(fake, rowvar=False))                         # (F, F)
    with warnings.catch_warnings():
        # features that are constant in a set (dead ReLUs) make the product singular; its
        # square root is still defined and sqrtm gets it right, so the warning is noise
        warnings.simplefilter("ignore", linalg.LinAlgWarning)
        covmean = linalg.sqrtm(cov_r @ cov_f)
        if not np.isfinite(covmean).all():
            offset = 1e-6 * np.eye(len(cov_r))
            covmean = linalg.sqrtm((cov_r + offset) @ (cov_f + offset))
    if np.iscomplexobj(covmean):
        imaginary = np.abs(np.diagonal(covmean).imag).max()
        if imaginary > 1e-3 * max(1.0, np.abs(np.diagonal(covmean).real).max()):
            raise InputError(f"the matrix square root in frechet_distance has an imaginary "
                             f"part of {imaginary:.3g}: the covariances are too ill-conditioned "
                             f"(rows {len(real)}, {len(fake)} for {real.shape[1]} features); "
                             f"use more rows or fewer features")
        covmean = covmean.real
    diff = mu_r - mu_f
    return float(diff @ diff + np.trace(cov_r) + np.trace(cov_f) - 2.0 * np.trace(covmean))


def precision_recall(feats_real: np.ndarray, feats_fake: np.ndarray, k: int = 3,
                     chunk_rows: int = 1024) -> tuple[float, float]:
    """Improved precision and recall of generated features against real ones.

    Kynkäänniemi et al., "Improved Precision and Recall Metric for Assessing Generative
    Models", NeurIPS 2019, arXiv:1904.06991. Each set's manifold is the union of balls
    around its points with radius the distance to the point's ``k``-th nearest neighbour
    in the same set. Precision is the fraction of fake points inside the real manifold
    (are the samples realistic?), recall the fraction of real points inside the fake
    manifold (is the data covered?). Distances are computed ``chunk_rows`` rows at a time.

    Examples
    --------
    >>> rng = np.random.default_rng(0); a = rng.normal(size=(200, 2))
    >>> precision_recall(a, a)
    (1.0, 1.0)
    >>> precision_recall(a, a + 100.0)
    (0.0, 0.0)
    """
    from scipy.spatial.distance import cdist
    from sklearn.neighbors import NearestNeighbors

    real = np.asarray(feats_real, dtype=np.float64).reshape(len(feats_real), -1)
    fake = np.asarray(feats_fake, dtype=np.float64).reshape(len(feats_fake), -1)
    if real.shape[1] != fake.shape[1] or min(len(real), len(fake)) <= k:
        raise InputError(f"precision_recall needs two sets of more than k={k} feature vectors "
                         f"of the same width; got shapes {real.shape} and {fake.shape}")

    def radii(points: np.ndarray) -> np.ndarray:
        # k + 1 neighbours: the nearest one is the point itself
        dist, _ = NearestNeighbors(n_neighbors=k + 1).fit(points).kneighbors(points)
        return dist[:, -1]                                                    # (n,)

    def inside(queries: np.ndarray, points: np.ndarray, radius: np.ndarray) -> float:
        hits = 0
        for start in range(0, len(queries), chunk_rows):
            d = cdist(queries[start:start + chunk_rows], points)              # (b, n)
            hits += int(np.any(d <= radius[None, :], axis=1).sum())
        return hits / len(queries)

    return inside(fake, real, radii(real)), inside(real, fake, radii(fake))
