import copy
import json

import numpy as np
import pytest
import torch
from sklearn.decomposition import PCA
from sklearn.manifold import trustworthiness as sklearn_trustworthiness
from sklearn.neighbors import KNeighborsClassifier
from torch.distributions import Categorical, Independent, MixtureSameFamily, Normal

import aekit
from aekit.evaluation.array_metrics import (
    continuity,
    frechet_distance,
    mean_and_stderr,
    precision_recall,
    reconstruction_mse,
    trustworthiness,
)
from aekit.evaluation.evaluate import (
    FeatureExtractor,
    active_units,
    evaluate,
    format_table,
    importance_sampled_log_likelihood,
    kl_per_dimension,
    reconstruction_error,
)

from .conftest import SMALL


@pytest.fixture(scope="module")
def rows(digits_test):
    return digits_test[0][:100]


@pytest.fixture(scope="module")
def feature_extractor(digits):
    return FeatureExtractor().fit(*digits)


# ------------------------------------------------------------------ density


def test_importance_sampled_ll_is_above_the_elbo_and_rises_with_k(fitted_vae, rows):
    elbo = fitted_vae.elbo(rows).mean()
    ll = {k: importance_sampled_log_likelihood(fitted_vae, rows, k)[0].mean()
          for k in (1, 10, 100)}
    assert ll[1] < ll[10] < ll[100]
    assert ll[10] >= elbo and ll[100] >= elbo
    # k = 1 is an unbiased estimate of the ELBO itself
    assert ll[1] == pytest.approx(elbo, abs=1.0)


def test_importance_sampled_ll_equals_score_samples_on_the_same_draws(fitted_vae, rows):
    # score_samples uses K = n_importance_samples common draws seeded by random_state=0
    ll, _ = importance_sampled_log_likelihood(fitted_vae, rows, fitted_vae.n_importance_samples)
    np.testing.assert_allclose(ll, fitted_vae.score_samples(rows), rtol=1e-5)


def test_stderr_shrinks_with_k_and_matches_the_delta_method(fitted_vae, rows):
    se = {k: importance_sampled_log_likelihood(fitted_vae, rows, k)[1] for k in (1, 10, 100)}
    assert np.isnan(se[1]).all()            # one draw has no spread to measure
    assert np.mean(se[100]) < 0.6 * np.mean(se[10])
    # the running log-space accumulation over chunks of 7 draws against std(w) / (sqrt(K) mean(w))
    _, se_chunked = importance_sampled_log_likelihood(fitted_vae, rows[:20], 30,
                                                      chunk_samples=7)
    eps = torch.randn(30, 2, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        log_w = fitted_vae._log_weights(torch.as_tensor(rows[:20]), eps).double().numpy()
    w = np.exp(log_w - log_w.max(0))                                          # (K, B)
    np.testing.assert_allclose(se_chunked, w.std(0, ddof=1) / (np.sqrt(30) * w.mean(0)),
                               rtol=1e-5)


def test_sample_and_row_chunking_give_the_same_estimate(fitted_vae, rows):
    ll_one, se_one = importance_sampled_log_likelihood(fitted_vae, rows, 64, chunk_samples=64)
    ll_ten, se_ten = importance_sampled_log_likelihood(fitted_vae, rows, 64, chunk_samples=10,
                                                       chunk_rows=7)
    np.testing.assert_allclose(ll_ten, ll_one, rtol=1e-6)
    np.testing.assert_allclose(se_ten, se_one, rtol=1e-4)


def test_deterministic_autoencoder_has_no_importance_sampled_likelihood(fitted_ae, rows):
    with pytest.raises(ValueError, match="no latent-variable likelihood.*decoder log-likel"):
        importance_sampled_log_likelihood(fitted_ae, rows, 10)
    with pytest.raises(ValueError, match="k .* must be a positive integer"):
        importance_sampled_log_likelihood(aekit.VAE(), rows, 0)


def test_mean_and_stderr():
    assert mean_and_stderr(np.array([2.0, 4.0])) == (3.0, 1.0)
    assert np.isnan(mean_and_stderr(np.array([1.0]))[1])


def test_kl_per_dimension_matches_the_closed_form(fitted_vae, rows):
    with torch.inference_mode():
        q = fitted_vae._posterior(torch.as_tensor(rows)).base_dist
        mu, var = q.loc.double().numpy(), q.scale.double().numpy() ** 2
    closed = (0.5 * (mu**2 + var - 1.0 - np.log(var))).mean(0)               # (k,)
    np.testing.assert_allclose(kl_per_dimension(fitted_vae, rows), closed, rtol=1e-5)


def test_kl_per_dimension_monte_carlo_for_a_mixture_prior(fitted_vae, rows):
    # a mixture of two N(0, I) components is N(0, I): the Monte Carlo estimate against its
    # per-dimension marginals must agree with the exact KL of the plain prior
    vae = copy.deepcopy(fitted_vae)
    normal = Normal(torch.zeros(2, 2), torch.ones(2, 2))
    vae._prior = lambda: MixtureSameFamily(Categorical(logits=torch.tensor([0.3, -0.2])),
                                           Independent(normal, 1))
    mc = kl_per_dimension(vae, rows, n_samples=8192)
    np.testing.assert_allclose(mc, kl_per_dimension(fitted_vae, rows), rtol=0.03)


def test_a_collapsed_unit_is_inactive(fitted_vae, digits_test):
    vae = copy.deepcopy(fitted_vae)
    out = vae.module_.encoder[-1]                           # last Linear: [loc, log_var]
    with torch.no_grad():
        out.weight[0].zero_()                               # loc of unit 0 ignores x
        out.bias[0] = 0.0
    X = digits_test[0]
    assert active_units(fitted_vae, X) == 2
    assert active_units(vae, X) == 1
    assert active_units(vae, X, threshold=1e9) == 0
    kl = kl_per_dimension(vae, X)
    assert kl[0] < kl[1]


# ----------------------------------------------------------------- manifold


def test_reconstruction_error_of_an_ae_is_its_score(fitted_ae, rows):
    err = reconstruction_error(fitted_ae, rows)
    # an AE's score_samples is log p(x | z = code(x)), the same quantity
    assert err["nll"] == pytest.approx(-fitted_ae.score(rows), rel=1e-5)
    assert err["mse"] == pytest.approx(reconstruction_mse(rows, fitted_ae.reconstruct(rows)))


def test_trustworthiness_and_continuity_of_pca_match_scikit_learn(digits):
    X = digits[0]
    Z = PCA(n_components=2, random_state=0).fit_transform(X)
    assert trustworthiness(X, Z) == sklearn_trustworthiness(X, Z, n_neighbors=5)
    assert continuity(X, Z) == sklearn_trustworthiness(Z, X, n_neighbors=5)
    assert 0.8 < trustworthiness(X, Z) < 1.0
    # a random code keeps no neighbourhood
    noise = np.random.default_rng(0).normal(size=Z.shape)
    assert trustworthiness(X, noise) < 0.6


# --------------------------------------------------------------- generation


def test_frechet_distance_closed_form():
    rng = np.random.default_rng(0)

    def with_moments(mean, cov, n=400):
        # rows whose sample mean and covariance (ddof=1) are exactly mean and cov
        w = rng.normal(size=(n, len(mean)))
        w -= w.mean(0)
        w = w @ np.linalg.inv(np.linalg.cholesky(np.cov(w, rowvar=False))).T
        return mean + w @ np.linalg.cholesky(cov).T

    rotation = np.linalg.qr(rng.normal(size=(3, 3)))[0]
    d1, d2 = np.array([1.0, 4.0, 9.0]), np.array([4.0, 1.0, 16.0])
    mu1, mu2 = np.zeros(3), np.array([1.0, 2.0, 2.0])
    a = with_moments(mu1, rotation @ np.diag(d1) @ rotation.T)
    b = with_moments(mu2, rotation @ np.diag(d2) @ rotation.T)
    # commuting covariances: tr (S1 S2)^(1/2) = sum sqrt(d1 d2) = 2 + 2 + 12
    expected = 9.0 + d1.sum() + d2.sum() - 2.0 * 16.0
    assert frechet_distance(a, b) == pytest.approx(expected, rel=1e-8)
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-8)
    shifted = [frechet_distance(a, a + shift) for shift in (1.0, 2.0, 4.0)]
    np.testing.assert_allclose(shifted, [3.0, 12.0, 48.0], rtol=1e-8)


def test_precision_recall_extremes():
    a = np.random.default_rng(0).normal(size=(300, 4))
    assert precision_recall(a, a) == (1.0, 1.0)
    assert precision_recall(a, a + 50.0) == (0.0, 0.0)
    # half the fakes are real rows, half far away: precision is exactly one half
    fake = np.concatenate([a[:150], a[150:] + 50.0])
    assert precision_recall(a, fake)[0] == 0.5


def test_feature_extractor_features_separate_real_from_generated(feature_extractor, digits,
                                                                 digits_test):
    X, _ = digits
    Xt, yt = digits_test
    assert feature_extractor.score(Xt, yt) > 0.9
    feats = feature_extractor.transform(Xt)
    assert feats.shape == (len(Xt), 128)
    real_gap = frechet_distance(feature_extractor.transform(X[:len(Xt)]), feats)
    noise = np.random.default_rng(0).uniform(size=Xt.shape).astype(np.float32)
    assert real_gap < 0.1 * frechet_distance(feature_extractor.transform(noise), feats)


# ----------------------------------------------------------------- evaluate


def test_evaluate_vae_is_json_and_agrees_with_direct_computations(
        fitted_vae, feature_extractor, digits, digits_test):
    X, y = digits
    Xt, yt = digits_test
    res = evaluate(fitted_vae, Xt, yt, X_train=X, y_train=y, k=50,
                   feature_extractor=feature_extractor)
    assert json.loads(json.dumps(res, allow_nan=False)) == res
    assert set(res) == {"model", "n_components", "n_test", "density", "manifold",
                        "representation", "generation", "baseline_pca"}
    assert set(res["density"]) == {
        "log_likelihood", "log_likelihood_stderr", "importance_sampling_stderr",
        "bits_per_dim", "bits_per_dim_note", "elbo", "k", "kl_per_dimension", "kl_total",
        "active_units"}
    assert set(res["generation"]) == {"frechet_distance", "precision", "recall",
                                      "feature_accuracy", "frechet_distance_train_test"}
    assert set(res["baseline_pca"]) == {"manifold", "representation", "generation"}
    density = res["density"]
    ll, _ = importance_sampled_log_likelihood(fitted_vae, Xt, 50)
    assert density["log_likelihood"] == pytest.approx(float(ll.mean()))
    assert density["log_likelihood"] > density["elbo"]
    # a Bernoulli on the grey levels of digits is no likelihood: no bits per dimension
    assert density["bits_per_dim"] is None and "grey levels" in density["bits_per_dim_note"]
    assert res["generation"]["frechet_distance_train_test"] < res["generation"][
        "frechet_distance"]
    table = format_table(res)
    assert "density.log_likelihood" in table and "generation.recall" in table


def test_evaluate_ae_knn_matches_scikit_learn_and_has_no_density(fitted_ae, digits,
                                                                  digits_test):
    X, y = digits
    Xt, yt = digits_test
    res = evaluate(fitted_ae, Xt, yt, X_train=X, y_train=y)
    json.dumps(res, allow_nan=False)
    assert "density" not in res and "generation" not in res
    direct = KNeighborsClassifier(n_neighbors=1).fit(fitted_ae.transform(X), y)
    assert res["representation"]["knn1_accuracy"] == direct.score(fitted_ae.transform(Xt), yt)
    pca = PCA(n_components=2, random_state=0).fit(X)
    direct = KNeighborsClassifier(n_neighbors=5).fit(pca.transform(X), y)
    assert res["baseline_pca"]["representation"]["knn5_accuracy"] == direct.score(
        pca.transform(Xt), yt)
    assert res["manifold"]["reconstruction_nll"] == pytest.approx(-fitted_ae.score(Xt),
                                                                  rel=1e-5)


def test_evaluate_without_labels_leaves_out_representation(fitted_ae, digits_test):
    res = evaluate(fitted_ae, digits_test[0])
    assert set(res) == {"model", "n_components", "n_test", "manifold", "baseline_pca"}
    assert set(res["baseline_pca"]) == {"manifold"}


def test_evaluate_conditional_vae_needs_and_uses_labels(digits, digits_test):
    from aekit.models.cvae import CVAE

    X, y = digits
    Xt, yt = digits_test
    cvae = CVAE(likelihood="bernoulli", **SMALL).fit(X, y)
    with pytest.raises(ValueError, match="conditional.*y=None"):
        evaluate(cvae, Xt)
    res = evaluate(cvae, Xt, yt, X_train=X, y_train=y, k=20)
    json.dumps(res, allow_nan=False)
    assert res["conditioned_on_labels"] is True          # computed given the test labels
    ll, _ = importance_sampled_log_likelihood(cvae, Xt, 20, y=yt)
    assert res["density"]["log_likelihood"] == pytest.approx(float(ll.mean()))
    assert res["density"]["log_likelihood"] > res["density"]["elbo"]


@pytest.mark.parametrize("name", ["vq_vae", "m2"])
def test_evaluate_reports_the_own_likelihood_of_models_it_cannot_importance_sample(
        name, digits, digits_test):
    assert name in aekit.list_models(), f"{name} dropped from the model registry"
    X, y = digits
    Xt = digits_test[0][:100]
    model = aekit.get_model(name, likelihood="bernoulli", **{**SMALL, "max_iter": 2}).fit(X, y)
    with pytest.raises(ValueError, match="score_samples is"):
        importance_sampled_log_likelihood(model, Xt, 10)
    res = evaluate(model, Xt)
    json.dumps(res, allow_nan=False)
    assert res["density"]["log_likelihood"] == pytest.approx(model.score(Xt))
    assert res["density"]["k"] == getattr(model, "n_importance_samples", None)
    assert "kl_per_dimension" not in res["density"]
