"""CVAE and M2: conditional generation, conditional and marginal likelihoods, and
semi-supervised classification with 100 labels."""

import math
import pickle

import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score
from torch.nn.functional import binary_cross_entropy_with_logits

import aekit
from aekit.models.cvae import CVAE
from aekit.models.m2 import M2

from .conftest import SMALL


@pytest.fixture(scope="module")
def digit_classifier(digits):
    """The judge of generated digits: a classifier fitted on the real training digits."""
    X, y = digits
    return LogisticRegression(max_iter=1000).fit(X, y)


@pytest.fixture(scope="module")
def cvae(digits):
    X, y = digits
    return CVAE(n_components=8, hidden_layer_sizes=(128,), likelihood="bernoulli",
                max_iter=30, learning_rate=3e-3, n_importance_samples=10,
                random_state=0).fit(X, y)


def per_label_accuracy(classifier, images, labels):
    predicted = classifier.predict(images.reshape(len(images), -1))
    return np.array([np.mean(predicted[labels == c] == c) for c in range(10)])


def manual_terms(model, x, c, e):
    """By hand for one row ``x`` (D,), condition ``c`` and noise ``e`` (k,) with a bernoulli
    decoder: log p(x|z, c), the importance log-weight log p(x, z|c) - log q(z|x, c) and
    KL(q(z|x, c) || N(0, I)), from their formulas."""
    k = model.n_components
    out = model.module_.encoder(torch.cat([x, c]))
    loc, scale = out[:k], (0.5 * out[k:]).exp()
    z = loc + scale * e
    log_px = -binary_cross_entropy_with_logits(model.module_.decoder(torch.cat([z, c])), x,
                                               reduction="sum")
    log_w = log_px - 0.5 * (z**2).sum() + 0.5 * (e**2).sum() + scale.log().sum()
    kl = 0.5 * (loc**2 + scale**2 - 1 - 2 * scale.log()).sum()
    return log_px, log_w, kl


# ------------------------------------------------------------------- CVAE


def test_cvae_samples_are_classified_as_the_label_asked_for(cvae, digit_classifier):
    labels = np.repeat(np.arange(10), 30)
    samples = cvae.sample(len(labels), y=labels, random_state=0)
    accuracy = per_label_accuracy(digit_classifier, samples, labels)
    assert accuracy.min() >= 0.8, accuracy


def test_cvae_one_code_decoded_with_every_label(cvae, digits_test, digit_classifier):
    X, y = digits_test
    Z = cvae.transform(X[:30], y[:30])                               # the style of 30 digits
    images = np.stack([cvae.inverse_transform(Z, np.full(30, c)) for c in range(10)])
    labels = np.repeat(np.arange(10), 30)
    accuracy = per_label_accuracy(digit_classifier, images.reshape(300, -1), labels)
    assert accuracy.min() >= 0.8, accuracy
    # the label changes the picture, not just the classifier's verdict
    gaps = [np.abs(images[a] - images[b]).mean() for a in range(10) for b in range(a)]
    assert min(gaps) > 0.05


def test_cvae_likelihood_is_conditional(cvae, digits_test):
    X, y = digits_test
    ll = np.stack([cvae.score_samples(X, np.full(len(X), c)) for c in range(10)])  # (10, n)
    assert np.mean(ll[y, np.arange(len(X))] > ll[(y + 1) % 10, np.arange(len(X))]) > 0.95
    # Bayes' rule with a uniform p(c) turns log p(x|c) into a classifier
    assert accuracy_score(y, ll.argmax(0)) > 0.9
    assert cvae.elbo(X, y).mean() < cvae.score(X, y)


def test_cvae_importance_weight_matches_its_formula(digits):
    X, y = digits
    cvae = CVAE(likelihood="bernoulli", n_importance_samples=1, **SMALL).fit(X, y)
    eps = cvae._eval_noise()[0]                                      # (k,)
    x, c = torch.as_tensor(X[:20]), torch.eye(10)[torch.as_tensor(y[:20])]
    with torch.no_grad():
        expected = [float(manual_terms(cvae, x[i], c[i], eps)[1]) for i in range(20)]
    np.testing.assert_allclose(cvae.score_samples(X[:20], y[:20]), expected, rtol=1e-5,
                               atol=1e-4)


def test_cvae_continuous_conditions(digits, digits_test):
    X, _ = digits
    Xt, _ = digits_test

    def ink(images):                        # mean ink of the top and the bottom half
        rows = images.reshape(len(images), 8, 8)
        return np.stack([rows[:, :4].mean((1, 2)), rows[:, 4:].mean((1, 2))], 1)

    # standardised, as any network input should be: raw ink varies by only ~0.06
    loc, scale = ink(X).mean(0), ink(X).std(0)
    model = CVAE(n_components=4, hidden_layer_sizes=(128,), likelihood="bernoulli",
                 max_iter=20, learning_rate=3e-3, random_state=0).fit(X, (ink(X) - loc) / scale)
    assert model.n_conditions_ == 2 and not hasattr(model, "classes_")
    wanted = (ink(Xt) - loc) / scale
    got = (ink(model.sample(len(wanted), y=wanted, random_state=0)) - loc) / scale
    for j in range(2):
        assert np.corrcoef(wanted[:, j], got[:, j])[0, 1] > 0.9
    one = model.sample(3, y=wanted[0], random_state=0)       # one condition for all
    np.testing.assert_allclose(one, model.sample(3, y=np.repeat(wanted[:1], 3, 0),
                                                 random_state=0))


def test_cvae_sample_takes_one_label_or_one_per_sample(cvae):
    one = cvae.sample(5, y=3, random_state=0)
    np.testing.assert_array_equal(one, cvae.sample(5, y=[3] * 5, random_state=0))
    assert not np.allclose(one, cvae.sample(5, y=4, random_state=0))


def test_cvae_refuses_missing_or_unknown_conditions(cvae, digits):
    X, y = digits
    for method in (cvae.transform, cvae.score_samples, cvae.elbo, cvae.reconstruct):
        with pytest.raises(ValueError, match=r"needs the conditions y"):
            method(X[:5])
    with pytest.raises(ValueError, match=r"CVAE.sample needs the conditions y"):
        cvae.sample(3)
    with pytest.raises(ValueError, match=r"labels \[42\] that fit never saw"):
        cvae.transform(X[:3], [1, 42, 2])
    with pytest.raises(ValueError, match=r"got 5 rows but 4 conditions"):
        cvae.transform(X[:5], y[:4])
    with pytest.raises(ValueError, match=r"requires y to be passed"):
        CVAE(**SMALL).fit(X)
    with pytest.raises(ValueError, match=r"architecture='conv'"):
        CVAE(architecture="conv", **SMALL).fit(X.reshape(-1, 8, 8), y)


def test_cvae_string_labels_pickle_refit_and_row_independence(digits):
    X, y = digits
    names = np.array(list("abcdefghij"))[y]
    model = CVAE(**SMALL).fit(X, names)
    np.testing.assert_array_equal(model.classes_, list("abcdefghij"))
    assert model.sample(2, y="c", random_state=0).shape == (2, 64)
    Z = model.transform(X[:20], names[:20])
    np.testing.assert_array_equal(pickle.loads(pickle.dumps(model)).transform(X[:20], names[:20]),
                                  Z)
    np.testing.assert_array_equal(CVAE(**SMALL).fit(X, names).transform(X[:20], names[:20]), Z)
    full = model.score_samples(X[:20], names[:20])
    np.testing.assert_allclose(model.score_samples(X[5:8], names[5:8]), full[5:8], rtol=1e-5)


# --------------------------------------------------------------------- M2


@pytest.fixture(scope="module")
def semi_supervised(digits):
    """10 labelled rows per class (a fixed seed), every other row labelled -1."""
    X, y = digits
    rng = np.random.default_rng(0)
    labelled = np.concatenate([rng.choice(np.flatnonzero(y == c), 10, replace=False)
                               for c in range(10)])
    y_semi = np.full_like(y, -1)
    y_semi[labelled] = y[labelled]
    return X, y_semi, labelled


@pytest.fixture(scope="module")
def m2(semi_supervised):
    X, y_semi, _ = semi_supervised
    return M2(n_components=4, hidden_layer_sizes=(256,), likelihood="bernoulli", max_iter=80,
              learning_rate=3e-3, n_importance_samples=10, random_state=0).fit(X, y_semi)


def test_m2_with_100_labels_beats_logistic_regression_on_them(m2, semi_supervised,
                                                              digits, digits_test):
    X, _, labelled = semi_supervised
    _, y = digits
    Xt, yt = digits_test
    baseline = LogisticRegression(max_iter=1000).fit(X[labelled], y[labelled]).score(Xt, yt)
    assert accuracy_score(yt, m2.predict(Xt)) > baseline + 0.01


def test_m2_classifier_outputs(m2, digits_test):
    X, _ = digits_test
    proba = m2.predict_proba(X)
    np.testing.assert_array_equal(m2.classes_, np.arange(10))
    np.testing.assert_allclose(proba.sum(1), 1.0, rtol=1e-5)
    np.testing.assert_array_equal(m2.predict(X), proba.argmax(1))
    assert m2.transform(X).shape == (len(X), 4)


def test_m2_generates_the_class_asked_for(m2, digit_classifier):
    labels = np.repeat(np.arange(10), 30)
    samples = m2.sample(len(labels), y=labels, random_state=0)
    assert per_label_accuracy(digit_classifier, samples, labels).mean() > 0.8
    np.testing.assert_array_equal(m2.sample(4, random_state=1), m2.sample(4, random_state=1))


def test_m2_score_is_the_marginal_log_likelihood(m2, digits_test):
    X, _ = digits_test
    ll = m2.score_samples(X)
    assert np.all(np.isfinite(ll))
    assert m2.score(X) == pytest.approx(ll.mean())
    assert m2.elbo(X).mean() < ll.mean()
    np.testing.assert_allclose(m2.score_samples(X[7:9]), ll[7:9], rtol=1e-5)


def test_m2_loss_and_likelihood_match_a_loop_over_classes(semi_supervised):
    X, y_semi, labelled = semi_supervised
    model = M2(likelihood="bernoulli", n_importance_samples=3, classification_weight=0.7,
               **SMALL).fit(X, y_semi)
    rows = np.concatenate([labelled[:3], [0, 1, 2]])                 # 3 labelled, 3 not
    x, y = torch.as_tensor(X[rows]), torch.as_tensor(y_semi[rows])
    C, B = 10, len(rows)
    ctx = aekit.FitContext.standalone(torch.Generator().manual_seed(0))   # the training noise
    with torch.no_grad():
        loss = float(model._loss(x, y, ctx).total)
    eps = torch.randn(1, C, B, model.n_components, generator=torch.Generator().manual_seed(0))
    eval_eps = model._eval_noise()                                   # (K, k)
    row_losses, ce, log_px = [], [], []
    with torch.no_grad():
        q_y = torch.softmax(model.module_.classifier(x), -1)         # (B, C)
        for i in range(B):
            neg_elbo, log_px_c = [], []
            for c, cond in enumerate(torch.eye(C)):
                log_p, _, kl = manual_terms(model, x[i], cond, eps[0, c, i])
                neg_elbo.append(kl - log_p + math.log(C))            # -log p(y) = log C
                log_w = torch.stack([manual_terms(model, x[i], cond, e)[1] for e in eval_eps])
                log_px_c.append(torch.logsumexp(log_w, 0) - math.log(len(eval_eps)))
            neg_elbo = torch.stack(neg_elbo)                         # (C,)
            log_px.append(torch.logsumexp(torch.stack(log_px_c), 0) - math.log(C))
            if y[i] >= 0:
                row_losses.append(neg_elbo[y[i]])
                ce.append(-q_y[i, y[i]].log())
            else:
                row_losses.append((q_y[i] * (neg_elbo + q_y[i].log())).sum())
    expected = torch.stack(row_losses).mean() + 0.7 * torch.stack(ce).mean()
    assert loss == pytest.approx(float(expected), rel=1e-5)
    np.testing.assert_allclose(model.score_samples(X[rows]), torch.stack(log_px).numpy(),
                               rtol=1e-5)


def test_m2_string_labels_and_unlabelled_rows(digits):
    X, y = digits
    names = np.array(list("abcdefghij"), dtype=object)[y]
    names[50:] = "-1"                                      # the unlabelled mark for strings
    model = M2(**SMALL).fit(X, names)
    np.testing.assert_array_equal(model.classes_, sorted(set(names[:50])))
    assert set(model.predict(X[:10])) <= set(model.classes_)
    assert model.reconstruct(X[:3]).shape == (3, 64)
    assert model.inverse_transform(model.transform(X[:3]), y=names[:3]).shape == (3, 64)


def test_image_input_is_flattened_into_the_mlps(digits):
    X, y = digits
    images = X.reshape(-1, 8, 8)
    cvae = CVAE(**SMALL).fit(images, y)
    assert cvae.reconstruct(images[:3], y[:3]).shape == (3, 8, 8)
    assert cvae.sample(2, y=1, random_state=0).shape == (2, 8, 8)
    m2 = M2(**SMALL).fit(images, y)
    assert m2.reconstruct(images[:3]).shape == (3, 8, 8)
    assert m2.predict(images[:3]).shape == (3,)


def test_m2_refuses_data_without_labels(digits):
    X, y = digits
    with pytest.raises(ValueError, match=r"M2 needs labelled rows: all 1437 labels are -1"):
        M2(**SMALL).fit(X, np.full_like(y, -1))
    with pytest.raises(ValueError, match=r"requires y to be passed"):
        M2(**SMALL).fit(X)


@pytest.mark.parametrize("name", ["cvae", "m2"])
def test_conditional_models_round_trip_through_model_files(digits, tmp_path, name):
    X, y = digits
    y = np.asarray(y).copy()
    if name == "m2":
        y[200:] = -1                         # semi-supervised: most rows unlabelled
    model = aekit.get_model(name, n_importance_samples=4, **SMALL).fit(X[:400], y[:400])
    model.save(tmp_path / "m.safetensors")
    again = aekit.load(tmp_path / "m.safetensors")
    np.testing.assert_array_equal(again.classes_, model.classes_)
    labels = np.asarray(digits[1])[:5]
    np.testing.assert_array_equal(again.score_samples(X[:5], labels) if name == "cvae"
                                  else again.score_samples(X[:5]),
                                  model.score_samples(X[:5], labels) if name == "cvae"
                                  else model.score_samples(X[:5]))
    if name == "m2":
        np.testing.assert_array_equal(again.predict(X[:20]), model.predict(X[:20]))
