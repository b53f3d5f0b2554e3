"""aekit.reporting.report.write_report: a self-contained folder (index.html + PNGs) that opens from
disk, with finite metrics, every applicable figure and skip notes for the others."""

import math
import os
import re
import shutil
import subprocess
from html.parser import HTMLParser

import numpy as np
import pytest

import aekit
from aekit.reporting import plotting
from aekit.reporting.report import write_report

pytest.importorskip("matplotlib")

TINY = dict(hidden_layer_sizes=(32,), max_iter=3, batch_size=128, random_state=0)


class Page(HTMLParser):
    """The img sources, the cells of each metrics row and the skip notes of a report."""

    def __init__(self, text):
        super().__init__()
        self.images, self.metrics, self.skips = [], [], []
        self._in_metrics = self._in_cell = self._in_li = False
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "img":
            self.images.append(attrs["src"])
        elif tag == "div" and attrs.get("id") == "metrics":
            self._in_metrics = True
        elif self._in_metrics and tag == "tr":
            self.metrics.append([])
        elif self._in_metrics and tag == "td":
            self._in_cell = True
            self.metrics[-1].append("")
        elif tag == "li":
            self._in_li = True
            self.skips.append("")

    def handle_endtag(self, tag):
        if tag == "div":
            self._in_metrics = False
        elif tag == "td":
            self._in_cell = False
        elif tag == "li":
            self._in_li = False

    def handle_data(self, data):
        if self._in_cell:
            self.metrics[-1][-1] += data
        if self._in_li:
            self.skips[-1] += data


def png_ok(path):
    data = path.read_bytes()
    width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    return data[:8] == b"\x89PNG\r\n\x1a\n" and width > 100 and height > 100


def check_folder(index):
    """Everything a self-contained report needs; returns the parsed page."""
    text = index.read_text(encoding="utf-8")
    page = Page(text)
    assert page.images
    for src in page.images:
        assert "/" not in src and src.endswith(".png")          # relative, same folder
        assert png_ok(index.parent / src), src
    assert not re.search(r"https?://", text)
    assert not re.search(r"<(link|script)[^>]*\bsrc=|@import|url\(", text)   # nothing external
    rows = {cells[0]: cells[1:] for cells in page.metrics if cells}
    assert rows, "no metrics table"
    for name in ("mean log-likelihood [nats]", "reconstruction MSE"):
        assert math.isfinite(float(rows[name][0])), (name, rows[name])
    # bits per dimension only where the log-likelihood is that of a probability; else a
    # note says why there are none
    if "bits per dimension" in rows:
        assert math.isfinite(float(rows["bits per dimension"][0]))
    else:
        assert "No bits per dimension: " in text
    return page, rows


@pytest.fixture(scope="module")
def models(digits):
    X, _ = digits
    return {
        "AE": aekit.AE(likelihood="bernoulli", **TINY).fit(X[:600]),
        "VAE": aekit.VAE(likelihood="bernoulli", n_importance_samples=8, **TINY).fit(X[:600]),
    }


@pytest.fixture(scope="module")
def vae_report(models, digits, digits_test, tmp_path_factory):
    X, y = digits
    X_test, y_test = digits_test
    out = tmp_path_factory.mktemp("reports") / "vae"
    return write_report(models["VAE"], X[:600], y[:600], out, data_name="digits",
                        X_test=X_test[:200], y_test=y_test[:200], training_seconds=1.25)


def test_vae_report_on_digits_is_a_self_contained_folder(vae_report, models, digits_test):
    assert vae_report.name == "index.html"
    page, rows = check_folder(vae_report)
    assert set(page.images) == {f"{n}.png" for n in (
        "training_curves", "latent_scatter", "manifold_grid", "reconstructions", "samples",
        "interpolation", "kl_per_dimension", "anomalies")}
    X_test, _ = digits_test
    vae = models["VAE"]
    assert float(rows["mean log-likelihood [nats]"][0]) == pytest.approx(
        vae.score(X_test[:200]), rel=1e-3)
    assert float(rows["ELBO [nats]"][0]) <= float(rows["mean log-likelihood [nats]"][0]) + 0.5
    assert 0 <= float(rows["1-NN accuracy of the codes"][0]) <= 1
    assert 0 <= float(rows["1-NN accuracy of the codes"][1]) <= 1      # the PCA baseline
    assert math.isfinite(float(rows["reconstruction MSE"][1]))
    assert sorted(s.split(":")[0] for s in page.skips) == ["cvae_analogies", "denoising"]
    text = vae_report.read_text()
    for expected in ("VAE on digits", "n_importance_samples", "1.2 s", "X_test (200 rows)",
                     "importance-sampled"):
        assert expected in text
    assert sorted(os.listdir(vae_report.parent)) == sorted(page.images + ["index.html"])


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")   # few epochs
def test_bits_per_dimension_only_where_the_likelihood_gives_probabilities(models, digits,
                                                                          tmp_path):
    X, _ = digits
    binary = aekit.datasets.binarize(X[:300], random_state=0)
    vae = aekit.VAE(likelihood="bernoulli", n_importance_samples=8, **TINY).fit(binary)
    _, rows = check_folder(write_report(vae, binary, None, tmp_path / "binary",
                                        image_shape=(8, 8)))
    assert float(rows["bits per dimension"][0]) == pytest.approx(
        -vae.score(binary) / (64 * math.log(2)), rel=1e-3)
    # the old row was -ll / (D ln 2) of a Bernoulli on grey levels or of an AE's
    # reconstruction score: numbers that are no code lengths
    for name, reason in (("VAE", "on grey levels is not a likelihood"),
                         ("AE", "not a density of x")):
        index = write_report(models[name], X[:300], None, tmp_path / name, image_shape=(8, 8))
        _, rows = check_folder(index)
        assert "bits per dimension" not in rows
        assert reason in index.read_text()


def test_ae_report_on_flat_digit_rows_with_an_image_shape(models, digits, tmp_path):
    X, y = digits
    index = write_report(models["AE"], X[:400], y[:400], tmp_path / "ae", image_shape=(8, 8))
    page, rows = check_folder(index)
    assert "samples.png" in page.images and "manifold_grid.png" in page.images
    assert "ELBO [nats]" not in rows                     # an AE has no ELBO of its own
    assert "not a density of x" in rows["mean log-likelihood [nats]"][2]
    assert any(s.startswith("kl_per_dimension: skipped") for s in page.skips)
    # without a test set the 1-NN accuracy is held out, not scored on the rows it fits
    assert "80%" in rows["1-NN accuracy of the codes"][2]
    assert float(rows["1-NN accuracy of the codes"][0]) < 1.0


def test_tabular_report_skips_image_figures_with_the_reason(tmp_path):
    X = np.random.default_rng(0).normal(size=(200, 5)).astype(np.float32)
    y = (X[:, 0] > 0).astype(int)
    vae = aekit.VAE(likelihood="gaussian", n_importance_samples=4, **TINY).fit(X)
    index = write_report(vae, X, y, tmp_path / "tab", data_name="gaussian 200x5")
    page, _ = check_folder(index)
    assert set(page.images) == {"training_curves.png", "latent_scatter.png",
                                "kl_per_dimension.png", "anomalies.png"}   # a bar chart
    for figure in ("manifold_grid", "reconstructions", "samples", "interpolation"):
        assert f"{figure}: skipped: the data are not images" in "\n".join(page.skips)


def test_all_text_is_escaped(models, digits, tmp_path):
    X, _ = digits
    index = write_report(models["AE"], X[:300], None, tmp_path / "esc",
                         data_name="<script>alert(1)</script>", image_shape=(8, 8))
    text = index.read_text()
    assert "<script>alert(1)" not in text and "&lt;script&gt;alert(1)" in text


def test_a_failing_figure_leaves_no_report_and_no_temporary_folder(models, digits, tmp_path,
                                                                    monkeypatch):
    X, _ = digits

    def broken(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(plotting, "samples", broken)
    with pytest.raises(RuntimeError, match="boom"):
        write_report(models["AE"], X[:300], None, tmp_path / "new", image_shape=(8, 8))
    assert os.listdir(tmp_path) == []
    # an earlier report in the folder survives intact, and so do the user's own files
    monkeypatch.undo()
    old = write_report(models["AE"], X[:300], None, tmp_path / "old", image_shape=(8, 8))
    (tmp_path / "old" / "notes.txt").write_text("mine")
    before = old.read_bytes()
    monkeypatch.setattr(plotting, "samples", broken)
    with pytest.raises(RuntimeError):
        write_report(models["VAE"], X[:300], None, tmp_path / "old", image_shape=(8, 8))
    assert old.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["old"]
    monkeypatch.undo()
    write_report(models["VAE"], X[:300], None, tmp_path / "old", image_shape=(8, 8))
    assert "VAE" in old.read_text() and (tmp_path / "old" / "notes.txt").read_text() == "mine"


def test_cvae_report_passes_the_labels(digits, tmp_path):
    assert "cvae" in aekit.list_models(), "cvae dropped from the model registry"
    X, y = digits
    cvae = aekit.get_model("cvae", likelihood="bernoulli", n_importance_samples=4,
                           **TINY).fit(X[:300], y[:300])
    with pytest.raises(ValueError, match="conditional: pass the labels y"):
        write_report(cvae, X[:300], None, tmp_path / "none", image_shape=(8, 8))
    page, _ = check_folder(write_report(cvae, X[:300], y[:300], tmp_path / "cvae",
                                        image_shape=(8, 8)))
    assert {"cvae_analogies.png", "latent_scatter.png"} <= set(page.images)


CHROMIUM = shutil.which("chromium")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@pytest.mark.skipif(CHROMIUM is None, reason="headless browser test needs chromium "
                    "(Debian: apt-get install chromium)")
def test_report_renders_in_a_headless_browser_with_no_broken_image_or_console_error(
        vae_report, tmp_path):
    url = vae_report.resolve().as_uri()
    shot = tmp_path / "shot.png"
    subprocess.run([CHROMIUM, *FLAGS, f"--user-data-dir={tmp_path / 'profile1'}",
                    f"--screenshot={shot}", "--window-size=1200,2000", url],
                   capture_output=True, timeout=60)
    assert shot.is_file() and shot.stat().st_size > 10_000
    done = subprocess.run([CHROMIUM, *FLAGS, f"--user-data-dir={tmp_path / 'profile2'}",
                           "--enable-logging=stderr", "--v=0", "--virtual-time-budget=5000",
                           "--dump-dom", url], capture_output=True, text=True, timeout=60)
    # the report's own script counts images that failed to load once the page has loaded
    assert 'data-broken-images="0"' in done.stdout, done.stdout[:300]
    console = [line for line in done.stderr.splitlines()
               if "CONSOLE" in line or "Uncaught" in line or "ERR_FILE_NOT_FOUND" in line]
    assert console == []


@pytest.mark.skipif(CHROMIUM is None, reason="headless browser test needs chromium "
                    "(Debian: apt-get install chromium)")
def test_the_browser_check_sees_a_missing_image(vae_report, tmp_path):
    folder = tmp_path / "copy"
    shutil.copytree(vae_report.parent, folder)
    (folder / "samples.png").unlink()
    done = subprocess.run([CHROMIUM, *FLAGS, f"--user-data-dir={tmp_path / 'profile'}",
                           "--virtual-time-budget=5000", "--dump-dom",
                           (folder / "index.html").as_uri()],
                          capture_output=True, text=True, timeout=60)
    assert 'data-broken-images="1"' in done.stdout
