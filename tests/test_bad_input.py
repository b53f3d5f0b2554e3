"""Bad input through the Python API must be refused with an error that names the problem.

``CASES`` is the table of inputs ``fit`` must refuse, one test id per (model, input);
``AFTER_FIT`` the inputs ``transform`` / ``score_samples`` must refuse after a good fit.
"""

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

import aekit

MODELS = [aekit.AE, aekit.VAE]
SMALL = dict(hidden_layer_sizes=(8,), max_iter=2, random_state=0)

GOOD = np.random.default_rng(0).random((10, 4)).astype(np.float32)       # in [0, 1)
IMAGES = np.random.default_rng(1).random((10, 8, 8)).astype(np.float32)


def with_value(value, X=GOOD):
    X = X.astype(np.float64)
    X[3, 2] = value
    return X


SUPPORT = r"likelihood='{}' models values in \[0, 1\], but the data ranges over"
OVERFLOW = pytest.mark.filterwarnings("ignore:overflow encountered in cast:RuntimeWarning")

#: (id, X, likelihood, error, message fragment[, marks])
BAD_FIT = [
    ("nan", with_value(np.nan), "gaussian", ValueError,
     r"missing \(NaN\) values in 1 column\(s\): 2 \(rows 3\); .*SimpleImputer"),
    ("inf", with_value(np.inf), "gaussian", ValueError, r"infinite .* in 1 column\(s\): 2"),
    ("minus-inf", with_value(-np.inf), "gaussian", ValueError, "infinite"),
    ("overflow-float32", with_value(1e39), "gaussian", ValueError,
     r"infinite \(or beyond float32's range of 3.4e38\)", OVERFLOW),
    ("empty", np.empty((0, 4)), "gaussian", ValueError, r"0 sample\(s\)"),
    ("no-features", np.empty((10, 0)), "gaussian", ValueError, r"0 feature\(s\)"),
    ("single-row", GOOD[:1], "gaussian", ValueError, r"1 sample\(s\).*minimum of 2"),
    ("strings", [["a", "b"], ["c", "d"]], "gaussian", ValueError, "could not convert string"),
    ("ragged-lists", [[0.1, 0.2], [0.3]], "gaussian", ValueError, "inhomogeneous"),
    ("1-d", GOOD[:, 0], "gaussian", ValueError, "Expected 2D array, got 1D array"),
    ("5-d", np.zeros((4, 2, 2, 2, 2)), "gaussian", ValueError,
     r"images \(n, H, W\).*got an array of shape \(4, 2, 2, 2, 2\)"),
    ("complex", GOOD.astype(np.complex64), "gaussian", ValueError, "Complex data not supported"),
    ("sparse", sp.csr_matrix(GOOD), "gaussian", TypeError, "Sparse data was passed"),
    ("bernoulli-above-1", GOOD * 2, "bernoulli", ValueError, SUPPORT.format("bernoulli")),
    ("bernoulli-negative", GOOD - 0.5, "bernoulli", ValueError, SUPPORT.format("bernoulli")),
    ("continuous-bernoulli-above-1", GOOD * 2, "continuous_bernoulli", ValueError,
     SUPPORT.format("continuous_bernoulli")),
    ("continuous-bernoulli-negative", GOOD - 0.5, "continuous_bernoulli", ValueError,
     SUPPORT.format("continuous_bernoulli")),
]

CASES = [
    pytest.param(cls, X, likelihood, error, match, id=f"{cls.__name__}-{name}",
                 marks=marks)
    for cls in MODELS
    for name, X, likelihood, error, match, *marks in BAD_FIT
]


@pytest.mark.parametrize("cls, X, likelihood, error, match", CASES)
def test_fit_refuses(cls, X, likelihood, error, match):
    with pytest.raises(error, match=match):
        cls(likelihood=likelihood, **SMALL).fit(X)


# ------------------------------------------------------------- after fit

@pytest.fixture(scope="module")
def fitted():
    """Models fitted once on good data: {(class name, "rows" or "images"): model}."""
    return {(cls.__name__, kind): cls(likelihood="bernoulli", **SMALL).fit(X)
            for cls in MODELS for kind, X in (("rows", GOOD), ("images", IMAGES))}


#: (id, fitted on, X, message fragment)
BAD_AFTER_FIT = [
    ("too-few-features", "rows", GOOD[:, :3], "X has 3 features, but .* expecting 4"),
    ("too-many-features", "rows", np.hstack([GOOD, GOOD]), "X has 8 features, but .*expecting 4"),
    ("nan", "rows", with_value(np.nan), r"missing \(NaN\) values"),
    ("inf", "rows", with_value(np.inf), "infinite"),
    ("1-d-row", "rows", GOOD[0], "Expected 2D array, got 1D array"),
    ("image-shape-4x16", "images", IMAGES.reshape(10, 4, 16),
     r"X has 4 features, but .*expecting 8|rows of shape \(4, 16\)"),
    ("image-shape-8x4", "images", IMAGES[:, :, :4],
     r"rows of shape \(8, 4\), but .* fitted on rows of shape \(8, 8\)"),
    ("flat-rows-to-image-model", "images", IMAGES.reshape(10, 64),
     r"X has 64 features, but .*expecting 8|rows of shape \(64,\)"),
    ("image-nan", "images", with_value(np.nan, IMAGES.reshape(10, 64)).reshape(10, 8, 8),
     r"missing \(NaN\) values"),
]

AFTER_FIT = [
    pytest.param(cls.__name__, kind, method, X, match, id=f"{cls.__name__}-{method}-{name}")
    for cls in MODELS
    for method in ("transform", "score_samples")
    for name, kind, X, match in BAD_AFTER_FIT
]


@pytest.mark.parametrize("model, kind, method, X, match", AFTER_FIT)
def test_fitted_model_refuses(fitted, model, kind, method, X, match):
    with pytest.raises(ValueError, match=match):
        getattr(fitted[model, kind], method)(X)


@pytest.mark.parametrize("model", [cls.__name__ for cls in MODELS])
def test_score_samples_refuses_data_outside_the_likelihood_support(fitted, model):
    with pytest.raises(ValueError, match=SUPPORT.format("bernoulli")):
        fitted[model, "rows"].score_samples(GOOD * 2)


@pytest.mark.parametrize("kind", ["rows", "images"])
@pytest.mark.parametrize("model", [cls.__name__ for cls in MODELS])
def test_single_row_works_after_fit(fitted, model, kind):
    est = fitted[model, kind]
    X = GOOD if kind == "rows" else IMAGES
    Z = est.transform(X[:1])
    assert Z.shape == (1, est.n_components)
    np.testing.assert_allclose(Z, est.transform(X)[:1], rtol=1e-5, atol=1e-6)
    ll = est.score_samples(X[-1:])
    assert ll.shape == (1,)
    np.testing.assert_allclose(ll, est.score_samples(X)[-1:], rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("tiny", [1.4013e-45, 6.891124e-25])
def test_a_feature_whose_spread_is_subnormal_counts_as_constant(tiny):
    # found by the property test below: rows 1.4e-45 (the smallest float32) and 0 have a
    # std that float32 holds only as a subnormal, which is 0 once subnormals are flushed;
    # rows 6.9e-25 and 0 a std whose square (the Gaussian's variance in data units) is
    # subnormal, so their log-likelihood divided by 0
    X = np.array([[tiny], [0.0]], dtype=np.float32)
    ae = aekit.AE(likelihood="gaussian", hidden_layer_sizes=(8,), max_iter=1,
                  random_state=0).fit(X)
    assert ae.module_.likelihood.data_scale.item() == 1.0
    assert np.isfinite(ae.transform(X)).all() and np.isfinite(ae.score_samples(X)).all()


# -------------------------------------------------------------- property

@settings(max_examples=15, deadline=None)
@given(arrays(np.float32, st.tuples(st.integers(2, 20), st.integers(1, 6)),
              elements=st.floats(-1e4, 1e4, width=32)))
def test_any_finite_rows_fit_and_give_finite_outputs(X):
    ae = aekit.AE(likelihood="gaussian", hidden_layer_sizes=(8,), max_iter=1, random_state=0)
    ae.fit(X)
    Z = ae.transform(X)
    assert Z.shape == (len(X), 2)
    assert np.isfinite(Z).all()
    ll = ae.score_samples(X)
    assert ll.shape == (len(X),)
    assert np.isfinite(ll).all()
