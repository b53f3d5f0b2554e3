"""Where to cut anomaly scores: three rules, pure functions of arrays.

Every function takes anomaly scores ``a`` (higher = more abnormal) and returns the
threshold ``t``: a row is flagged when ``a > t``.

- :func:`contamination_threshold`: a given fraction of the scored rows lies above ``t``;
- :func:`robust_threshold`: no fraction needed, ``median + k * MAD`` (normal-consistent);
- :func:`conformal_threshold`: ``t`` from rows known to be normal, so that a new normal row
  from the same distribution exceeds it with probability at most ``fpr`` (split conformal).
"""

from __future__ import annotations

import math

import numpy as np

from aekit.exceptions import InputError

#: the factor that makes the median absolute deviation estimate the standard deviation of a
#: normal distribution: 1 / Phi^-1(3/4)
MAD_TO_SD = 1.482602218505602

#: ``contamination="auto"`` flags scores above median + ROBUST_K robust standard deviations.
#: 3 is the "very conservative" cut of Leys et al. (2013, J. Exp. Soc. Psychol. 49:764,
#: "Detecting outliers: do not use standard deviation around the mean, use absolute deviation
#: around the median"): were the scores of normal rows normal, it would flag 0.13 % of them;
#: anomaly scores (negative log-likelihoods) have a longer right tail than a normal
#: distribution, so on real normal rows it flags somewhat more.
ROBUST_K = 3.0


def contamination_threshold(scores: np.ndarray, contamination: float) -> float:
    """The ``1 - contamination`` quantile of ``scores`` (linear interpolation, as
    scikit-learn's outlier detectors), so a fraction ``contamination`` of them lies above it
    (to within one row, and exactly unless scores tie).

    Examples
    --------
    >>> float(np.sum(np.arange(100.0) > contamination_threshold(np.arange(100.0), 0.1)))
    10.0
    """
    return float(np.percentile(np.asarray(scores, dtype=np.float64),
                               100.0 * (1.0 - contamination)))


def robust_threshold(scores: np.ndarray, k: float = ROBUST_K) -> float:
    """``median + k * 1.4826 * MAD`` of ``scores``.

    Where more than half the scores tie (MAD = 0) the spread is taken from the scores that
    differ from the median (their MAD about it); when all scores are equal the threshold is
    that value, so nothing is flagged.

    Examples
    --------
    >>> robust_threshold(np.array([1.0, 2.0, 3.0, 4.0, 100.0]))  # doctest: +ELLIPSIS
    7.44...
    """
    a = np.asarray(scores, dtype=np.float64)
    median = float(np.median(a))
    deviation = np.abs(a - median)
    mad = float(np.median(deviation))
    if mad == 0.0:
        rest = deviation[deviation > 0]
        mad = float(np.median(rest)) if len(rest) else 0.0
    return median + k * MAD_TO_SD * mad


def conformal_threshold(scores: np.ndarray, fpr: float) -> float:
    """The ``ceil((n + 1)(1 - fpr))``-th smallest of the ``n`` scores of normal rows.

    If the calibration rows and a new normal row are exchangeable (drawn from the same
    distribution), the new row's score exceeds this threshold with probability at most
    ``fpr``, and (for scores without ties) at least ``fpr - 1 / (n + 1)``: the split
    conformal guarantee (Vovk et al., 2005; Bates et al., 2023, "Testing for outliers with
    conformal p-values", Ann. Statist. 51:149). It needs ``n >= 1 / fpr - 1`` rows.

    Examples
    --------
    >>> conformal_threshold(np.arange(1.0, 100.0), 0.1)   # 99 rows: the 90th smallest
    90.0
    """
    a = np.sort(np.asarray(scores, dtype=np.float64))
    n = len(a)
    rank = math.ceil((n + 1) * (1.0 - fpr) - 1e-9)       # 1-based; the epsilon absorbs
    if rank > n:                                         # rounding of (n + 1)(1 - fpr)
        need = math.ceil(1.0 / fpr - 1.0 - 1e-9)
        raise InputError(f"fpr={fpr:g} needs at least {need} rows known to be normal "
                         f"(ceil((n + 1)(1 - fpr)) <= n); got {n}: give more rows or a "
                         "larger fpr")
    return float(a[rank - 1])
