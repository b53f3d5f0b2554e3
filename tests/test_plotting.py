"""aekit.reporting.plotting: every figure draws what it claims, saves as a PNG of the figure's size,
and refuses (with the reason) what does not apply."""

import ast
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import aekit
from aekit.reporting import plotting, report
from aekit.reporting.plotting import NotApplicableError

matplotlib = pytest.importorskip("matplotlib")
from matplotlib.axes import Axes  # noqa: E402

TINY = dict(hidden_layer_sizes=(32,), max_iter=3, batch_size=128, random_state=0)
IMAGE_FIGURES = ("manifold_grid", "reconstructions", "samples", "interpolation")


def draw(name, model, X, y=None, image_shape=None):
    """Call figure ``name`` with the arguments it needs."""
    shape = dict(image_shape=image_shape)
    calls = {
        "latent_scatter": lambda: plotting.latent_scatter(model, X, y),
        "manifold_grid": lambda: plotting.manifold_grid(model, n=5, **shape),
        "reconstructions": lambda: plotting.reconstructions(model, X, n=6, **shape),
        "samples": lambda: plotting.samples(model, n=9, **shape),
        "interpolation": lambda: plotting.interpolation(model, X[0], X[1], n=6, **shape),
        "training_curves": lambda: plotting.training_curves(model),
        "kl_per_dimension": lambda: plotting.kl_per_dimension(model, X),
    }
    return calls[name]()


def png_size(path):
    """(width, height) from the PNG header; fails for anything that is not a PNG."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


def check_saved(ax, path):
    assert isinstance(ax, Axes)
    fig = ax.figure
    fig.savefig(path, dpi=fig.dpi)
    expected = tuple(int(round(v)) for v in fig.get_size_inches() * fig.dpi)
    assert png_size(path) == expected
    pixels = matplotlib.image.imread(path)
    assert pixels.shape[:2] == expected[::-1]
    assert pixels.std() > 0          # not a blank canvas


def mosaic(ax):
    return np.ma.getdata(ax.images[0].get_array()).astype(float)


@pytest.fixture(scope="module")
def image_models(digits):
    """AE and VAE fitted on digits as flat rows and as (n, 8, 8) images (with MLPs: the
    figures only see ``input_shape_``, and conv nets would cost test time)."""
    X, _ = digits
    X, images = X[:600], X[:300].reshape(-1, 8, 8)
    return {
        ("AE", "flat"): aekit.AE(likelihood="bernoulli", **TINY).fit(X),
        ("VAE", "flat"): aekit.VAE(likelihood="bernoulli", n_importance_samples=4,
                                   **TINY).fit(X),
        ("AE", "images"): aekit.AE(likelihood="bernoulli", architecture="mlp",
                                   **TINY).fit(images),
        ("VAE", "images"): aekit.VAE(likelihood="bernoulli", n_importance_samples=4,
                                     architecture="mlp", **TINY).fit(images),
    }


@pytest.fixture(scope="module")
def tabular():
    X = np.random.default_rng(0).normal(size=(200, 5)).astype(np.float32)
    models = {name: cls(likelihood="gaussian", **TINY).fit(X)
              for name, cls in (("AE", aekit.AE), ("VAE", aekit.VAE))}
    return X, models


FIGURES = ("latent_scatter", "training_curves", "kl_per_dimension") + IMAGE_FIGURES


@pytest.mark.parametrize("kind", ["flat", "images"])
@pytest.mark.parametrize("model_name", ["AE", "VAE"])
@pytest.mark.parametrize("figure", FIGURES)
def test_every_figure_on_digits_is_an_axes_saved_as_a_png_of_its_size(
        image_models, digits, tmp_path, figure, model_name, kind):
    X, y = digits
    model = image_models[(model_name, kind)]
    X = X[:300] if kind == "flat" else X[:300].reshape(-1, 8, 8)
    shape = (8, 8) if kind == "flat" else None
    if figure == "kl_per_dimension" and model_name == "AE":
        with pytest.raises(NotApplicableError, match="deterministic codes"):
            draw(figure, model, X, y[:300], shape)
        return
    check_saved(draw(figure, model, X, y[:300], shape), tmp_path / f"{figure}.png")


@pytest.mark.parametrize("model_name", ["AE", "VAE"])
def test_tabular_data_draw_codes_and_curves_and_refuse_image_figures(tabular, tmp_path,
                                                                     model_name):
    X, models = tabular
    model = models[model_name]
    for figure in IMAGE_FIGURES:
        with pytest.raises(NotApplicableError, match="the data are not images"):
            draw(figure, model, X)
    check_saved(plotting.latent_scatter(model, X), tmp_path / "codes.png")
    check_saved(plotting.training_curves(model), tmp_path / "curves.png")


def test_reconstructions_show_the_inputs_above_the_models_reconstructions(image_models,
                                                                          digits):
    X, _ = digits
    model = image_models[("AE", "flat")]
    ax = plotting.reconstructions(model, X[:4], image_shape=(8, 8))
    expected = np.concatenate([
        np.concatenate(list(X[:4].reshape(-1, 8, 8)), axis=1),
        np.concatenate(list(model.reconstruct(X[:4]).reshape(-1, 8, 8)), axis=1)])
    np.testing.assert_allclose(mosaic(ax), expected, atol=1e-6)
    assert [t.get_text() for t in ax.get_yticklabels()] == ["input", "reconstruction"]


def test_a_model_fitted_on_images_gives_the_same_mosaic_as_flat_rows_with_image_shape(
        image_models, digits):
    X, _ = digits
    model = image_models[("VAE", "images")]
    a = plotting.samples(model, n=4)
    b = plotting.samples(model, n=4, image_shape=aekit.datasets.info("digits"))
    np.testing.assert_array_equal(mosaic(a), mosaic(b))
    assert mosaic(a).shape == (16, 16)        # 2 x 2 images of 8 x 8


def test_vae_grid_goes_through_prior_quantiles_and_ae_grid_spans_its_codes(image_models):
    from scipy.stats import norm

    vae = image_models[("VAE", "flat")]
    ax = plotting.manifold_grid(vae, n=3, image_shape=(8, 8))
    q = norm.ppf(0.95)
    # the top-left cell is z = (5% quantile, 95% quantile), the centre is z = 0
    corner = vae.inverse_transform(np.array([[-q, q], [0, 0]], np.float32)).reshape(2, 8, 8)
    np.testing.assert_allclose(mosaic(ax)[:8, :8], corner[0], atol=1e-5)
    np.testing.assert_allclose(mosaic(ax)[8:16, 8:16], corner[1], atol=1e-5)
    assert [t.get_text() for t in ax.get_xticklabels()] == [f"{-q:.2f}", "0", f"{q:.2f}"]

    ae = image_models[("AE", "flat")]
    ax = plotting.manifold_grid(ae, n=3, image_shape=(8, 8))
    loc = ae.module_.code_loc.numpy()
    centre = ae.inverse_transform(loc[None]).reshape(8, 8)
    np.testing.assert_allclose(mosaic(ax)[8:16, 8:16], centre, atol=1e-5)
    tril = ae.module_.code_scale_tril.numpy()
    std = np.sqrt(np.diag(tril @ tril.T))
    assert ax.get_xticklabels()[2].get_text() == f"{round(loc[0] + 2 * std[0], 2) + 0.0:g}"


def test_manifold_grid_needs_two_dimensional_codes(digits):
    X, _ = digits
    vae = aekit.VAE(n_components=3, likelihood="bernoulli", **TINY).fit(X[:300])
    with pytest.raises(NotApplicableError, match="n_components=3"):
        plotting.manifold_grid(vae, image_shape=(8, 8))


def test_latent_scatter_plots_the_codes_and_projects_wider_ones_with_pca(image_models,
                                                                         digits):
    X, y = digits
    vae = image_models[("VAE", "flat")]
    ax = plotting.latent_scatter(vae, X[:200], y[:200])
    points = np.concatenate([c.get_offsets() for c in ax.collections])
    codes = np.concatenate([vae.transform(X[:200])[y[:200] == c] for c in range(10)])
    np.testing.assert_allclose(points, codes, atol=1e-5)
    assert [t.get_text() for t in ax.get_legend().get_texts()] == [str(c) for c in range(10)]

    wide = aekit.AE(n_components=4, **TINY).fit(X[:300])
    ax = plotting.latent_scatter(wide, X[:200])
    assert ax.get_xlabel().startswith("PC1 of codes")
    assert ax.get_ylabel().startswith("PC2 of codes")
    narrow = aekit.AE(n_components=1, **TINY).fit(X[:300])
    ax = plotting.latent_scatter(narrow, X[:200], y[:200].astype(float) + 0.5)  # 10 values
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("z1", "row index")


def test_interpolation_starts_at_the_code_of_x0_and_ends_at_the_code_of_x1(image_models,
                                                                         digits):
    X, _ = digits
    model = image_models[("AE", "images")]
    x0, x1 = X[0].reshape(8, 8), X[1]                 # a flat row is accepted too
    ax = plotting.interpolation(model, x0, x1, n=4)
    cells = mosaic(ax).reshape(8, 6, 8).transpose(1, 0, 2)          # 6 cells of 8 x 8
    recon = model.reconstruct(X[:2].reshape(-1, 8, 8))
    np.testing.assert_allclose(cells[0], x0, atol=1e-6)
    np.testing.assert_allclose(cells[1], recon[0], atol=1e-5)
    np.testing.assert_allclose(cells[4], recon[1], atol=1e-5)
    np.testing.assert_allclose(cells[5], X[1].reshape(8, 8), atol=1e-6)
    with pytest.raises(ValueError, match="one row of 64 values"):
        plotting.interpolation(model, X[0][:10], X[1])


def test_training_curves_draw_every_logged_term(image_models, digits):
    vae = image_models[("VAE", "flat")]
    ax = plotting.training_curves(vae)
    labels = [line.get_label() for line in ax.get_lines()]
    assert labels == ["loss (training)", "recon (training)", "kl (training)"]
    np.testing.assert_allclose(ax.get_lines()[2].get_ydata(), vae.history_["kl"])
    ae = image_models[("AE", "flat")]
    assert [line.get_label() for line in plotting.training_curves(ae).get_lines()] == [
        "loss = recon (training)"]
    X, _ = digits
    early = aekit.AE(early_stopping=True, **TINY).fit(X[:300])
    labels = [line.get_label() for line in plotting.training_curves(early).get_lines()]
    assert "loss = recon (validation)" in labels


def test_kl_bars_are_the_closed_form_kl_and_mark_active_units(digits):
    X, _ = digits
    vae = aekit.VAE(n_components=4, likelihood="bernoulli", **TINY).fit(X[:300])
    ax = plotting.kl_per_dimension(vae, X[:300])
    heights = np.array([bar.get_height() for bar in ax.patches[:4]])
    with torch.no_grad():
        mu, log_var = vae.module_.encoder(torch.as_tensor(X[:300])).chunk(2, dim=-1)
    kl = 0.5 * (mu**2 + log_var.exp() - 1 - log_var)          # KL(N(mu, s^2) || N(0, 1))
    np.testing.assert_allclose(heights, kl.mean(0).numpy(), rtol=1e-4, atol=1e-6)
    active = mu.var(0, correction=0).numpy() > plotting.ACTIVE_UNIT_THRESHOLD
    assert f"{active.sum()} of 4 units active" in ax.get_title()
    colours = [matplotlib.colors.to_hex(bar.get_facecolor()) for bar in ax.patches[:4]]
    assert [c == matplotlib.colors.to_hex("C0") for c in colours] == list(active)


class MaskingAE(aekit.AE):
    """A stand-in for a denoising model: only ``corrupt`` matters to the figure."""

    capabilities = aekit.AE.capabilities.but(denoising=True)

    def corrupt(self, X, random_state=None):
        X = np.asarray(X, dtype=np.float32)
        keep = np.random.default_rng(random_state).random(X.shape) > 0.3
        return X * keep


def test_denoising_shows_noisy_input_reconstruction_and_clean_original(digits, image_models):
    X, _ = digits
    model = MaskingAE(likelihood="bernoulli", **TINY).fit(X[:300])
    ax = plotting.denoising(model, X[:5], image_shape=(8, 8))
    rows = mosaic(ax).reshape(3, 8, 40)
    noisy = model.corrupt(X[:5], random_state=0)
    strip = lambda A: np.concatenate(list(np.asarray(A).reshape(-1, 8, 8)), axis=1)
    np.testing.assert_allclose(rows[0], strip(noisy), atol=1e-6)
    np.testing.assert_allclose(rows[1], strip(model.reconstruct(noisy)), atol=1e-5)
    np.testing.assert_allclose(rows[2], strip(X[:5]), atol=1e-6)
    with pytest.raises(NotApplicableError, match="not a denoising model"):
        plotting.denoising(image_models[("AE", "flat")], X[:5], image_shape=(8, 8))


def test_denoising_figure_of_the_registered_denoising_ae(digits, tmp_path):
    assert "denoising_ae" in aekit.list_models(), "denoising_ae dropped from the model registry"
    X, _ = digits
    model = aekit.get_model("denoising_ae", likelihood="bernoulli", **TINY).fit(X[:300])
    check_saved(plotting.denoising(model, X[:6], image_shape=(8, 8)), tmp_path / "d.png")


def test_analogies_need_a_conditional_model(image_models, digits):
    X, y = digits
    with pytest.raises(NotApplicableError, match="not a conditional model"):
        plotting.cvae_analogies(image_models[("VAE", "flat")], X, y, image_shape=(8, 8))


def test_analogies_of_the_registered_cvae(digits, tmp_path):
    assert "cvae" in aekit.list_models(), "cvae dropped from the model registry"
    X, y = digits
    model = aekit.get_model("cvae", likelihood="bernoulli", **TINY).fit(X[:300], y[:300])
    ax = plotting.cvae_analogies(model, X[:3], y[:3], image_shape=(8, 8))
    check_saved(ax, tmp_path / "analogies.png")
    Z = model.transform(X[:3], y[:3])
    as_seven = model.inverse_transform(Z, np.full(3, 7)).reshape(3, 8, 8)
    # row i, column "7" (the input is column 0, class c is column c + 1)
    np.testing.assert_allclose(mosaic(ax)[8:16, 64:72], as_seven[1], atol=1e-5)
    for figure in ("reconstructions", "samples"):
        with pytest.raises(NotApplicableError, match="conditional"):
            draw(figure, model, X[:10], image_shape=(8, 8))


def test_figures_draw_into_a_given_axes(image_models, digits):
    from matplotlib.figure import Figure

    X, _ = digits
    fig = Figure(figsize=(8, 3))
    left, right = fig.subplots(1, 2)
    model = image_models[("VAE", "flat")]
    assert plotting.samples(model, 4, ax=left, image_shape=(8, 8)) is left
    assert plotting.training_curves(model, ax=right) is right
    assert tuple(fig.get_size_inches()) == (8, 3)


def test_a_wrong_image_shape_is_refused(image_models):
    with pytest.raises(ValueError, match=r"image_shape=\(7, 7\) has 49 pixels"):
        plotting.samples(image_models[("AE", "flat")], image_shape=(7, 7))


def test_figures_without_matplotlib_say_how_to_install_it(image_models, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)   # import fails
    with pytest.raises(ImportError, match=r"pip install 'aekit\[plot\]'"):
        plotting.training_curves(image_models[("AE", "flat")])


@pytest.mark.parametrize("module", [plotting, report])
def test_matplotlib_is_imported_only_inside_functions(module):
    tree = ast.parse(Path(module.__file__).read_text())
    top_level = [node for node in tree.body if isinstance(node, ast.Import | ast.ImportFrom)]
    names = [alias.name for node in top_level for alias in node.names]
    names += [node.module or "" for node in top_level if isinstance(node, ast.ImportFrom)]
    assert not [n for n in names if n.startswith("matplotlib")]


def test_anomalies_shows_the_least_likely_rows_with_pixel_heat_maps(digits):
    X, _ = digits
    model = aekit.AE(likelihood="bernoulli", hidden_layer_sizes=(32,), max_iter=3,
                     random_state=0).fit(X[:500])
    ax = plotting.anomalies(model, X[500:700], n=5, image_shape=(8, 8))
    log_p = np.sort(model.score_samples(X[500:700]))[:5]
    assert [t.get_text() for t in ax.get_xticklabels()] == [f"{v:.3g}" for v in log_p]
    assert "least likely rows" in ax.get_title()


def test_anomalies_of_a_table_names_the_feature_that_made_the_row_unusual():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(400, 6))
    model = aekit.AE(hidden_layer_sizes=(16,), max_iter=20, random_state=0).fit(X)
    X_eval = rng.normal(size=(50, 6))
    X_eval[7, 4] = 12.0                      # one cell twelve standard deviations out
    ax = plotting.anomalies(model, X_eval)
    labels = [t.get_text() for t in ax.get_yticklabels()]
    assert labels[-1] == "x4"                # the top bar
    model.feature_names_in_ = np.array(list("abcdef"), dtype=object)   # as a frame's fit sets
    with pytest.warns(UserWarning, match="feature names"):
        ax = plotting.anomalies(model, X_eval)
    labels = [t.get_text() for t in ax.get_yticklabels()]
    assert labels[-1] == "e"
