"""A one-folder HTML report of a fitted model: model card, metrics next to PCA, figures.

:func:`write_report` writes ``index.html`` and one PNG per figure into a folder that opens
from disk: relative image links, inline CSS, no network, no external fonts or scripts. The
folder is rendered in a temporary sibling first, so a failure leaves no half report.
"""

from __future__ import annotations

import html
import math
import os
import secrets
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.decomposition import PCA
from sklearn.model_selection import train_test_split
from sklearn.utils.validation import check_is_fitted

from aekit._version import __version__
from aekit.data import datasets
from aekit.evaluation.array_metrics import knn_accuracy, reconstruction_mse
from aekit.evaluation.model_measures import (
    bits_per_dim_or_reason,
    flat_rows,
    given_conditions,
    has_kl_per_dimension,
)
from aekit.exceptions import InputError
from aekit.reporting import plotting

#: the latent scatter shows at most this many rows (a fixed random subset).
MAX_SCATTER_POINTS = 5000
#: resolution of the PNG files (the figures are sized in inches at this many dots per inch).
DPI = 100

_CSS = """
body { font: 15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 0;
       color: #1d2330; background: #f6f7f9; }
main { max-width: 1100px; margin: 0 auto; padding: 24px 32px 48px; }
h1 { margin: 0 0 4px; font-size: 26px; } h2 { margin-top: 36px; font-size: 20px; }
.sub { color: #5b6475; margin: 0; }
table { border-collapse: collapse; background: #fff; margin: 8px 0; }
th, td { border: 1px solid #d9dde5; padding: 4px 10px; text-align: left; vertical-align: top; }
th { background: #eef1f6; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
.cards { display: flex; flex-wrap: wrap; gap: 24px; align-items: flex-start; }
figure { background: #fff; border: 1px solid #d9dde5; margin: 16px 0; padding: 12px; }
figure img { display: block; max-width: 100%; height: auto; }
figcaption { color: #3a4252; margin-top: 6px; }
.note { color: #5b6475; font-size: 13px; } code { font-size: 13px; }
#broken { display: none; background: #fde8e8; border: 1px solid #e0a0a0; padding: 8px; }
"""

#: marks the page when a figure fails to load (e.g. the PNG files were not copied along
#: with index.html); tests read ``data-broken-images`` from the DOM.
_SCRIPT = """
window.addEventListener("load", function () {
  var broken = 0;
  document.querySelectorAll("img").forEach(function (img) {
    if (!img.complete || img.naturalWidth === 0) { broken += 1; }
  });
  document.documentElement.setAttribute("data-broken-images", String(broken));
  if (broken > 0) {
    var note = document.getElementById("broken");
    note.textContent = broken + " figure(s) could not be loaded: keep the PNG files " +
      "in the same folder as index.html.";
    note.style.display = "block";
  }
});
"""


def _e(value: Any) -> str:
    return html.escape(str(value))


def _fmt(value: float | None, digits: int = 4) -> str:
    if value is None or not np.isfinite(value):
        return "n/a"
    return f"{value:.{digits}g}" if abs(value) < 1e4 else f"{value:.1f}"


def _likelihood_meaning(model: Any) -> str:
    """What ``score`` returns for this model, in words."""
    caps = model.capabilities
    if caps.posterior:
        k = model.get_params().get("n_importance_samples")
        draws = f" with K = {k} posterior draws per row" if k else ""
        of = "log p(x | y), given the labels," if plotting.is_conditional(model) else "log p(x)"
        return (f"importance-sampled estimate of {of}{draws} (Burda et al. 2015), under "
                f"the {model.likelihood_} decoder; a lower bound in expectation, larger is "
                "better")
    if not caps.score_is_density:
        return ("decoder log-likelihood at the code, log p(x | z = f(x)): not a density of x "
                "(deterministic codes ignore how codes spread) and larger than any proper "
                "log-likelihood; do not compare it with a VAE's")
    return f"see {type(model).__name__}.score_samples for what it estimates"


def _metrics(model: Any, X: Any, y: Any, X_eval: Any, y_eval: Any, on_test: bool
             ) -> tuple[list[tuple[str, str, str, str]], list[str]]:
    """Rows (metric, model, PCA baseline, meaning) and footnotes."""
    k = model.n_components
    D = math.prod(model.input_shape_)
    ll = model.score(X_eval, *given_conditions(model, y_eval))
    rows = [("mean log-likelihood [nats]", _fmt(ll), "n/a", _likelihood_meaning(model))]
    notes = []
    # only where the log-likelihood is the log of a probability; a number elsewhere would
    # look comparable with published bits per dimension and is not
    bits, why_not = bits_per_dim_or_reason(model, ll, X_eval)
    if bits is None:
        notes.append(f"No bits per dimension: {why_not}.")
    else:
        rows.append(("bits per dimension", _fmt(bits), "n/a",
                     f"-log-likelihood / (D ln 2) with D = {D}, {model.likelihood_!r} giving "
                     "probabilities; smaller is better"))
    if model.capabilities.posterior:
        elbo = float(np.mean(model.elbo(X_eval, *given_conditions(model, y_eval))))
        rows.append(("ELBO [nats]", _fmt(elbo), "n/a",
                     "evidence lower bound E_q[log p(x|z)] - KL(q(z|x) || p(z)); "
                     "at most log p(x)"))
    X_flat, X_eval_flat = flat_rows(X), flat_rows(X_eval)
    pca = None
    if k <= min(X_flat.shape):
        pca = PCA(n_components=k, random_state=0).fit(X_flat)
    else:
        notes.append(f"PCA({k}) needs at least {k} rows and features; baseline left out.")
    reconstructed = model.reconstruct(X_eval, *given_conditions(model, y_eval))
    mse = reconstruction_mse(X_eval_flat, reconstructed)
    pca_mse = (reconstruction_mse(X_eval_flat, pca.inverse_transform(pca.transform(X_eval_flat)))
               if pca is not None else None)
    rows.append(("reconstruction MSE", _fmt(mse), _fmt(pca_mse),
                 "mean squared error per feature of the decoder mean at the code; "
                 "smaller is better"))
    knn = _knn_rows(model, pca, X, y, X_eval, y_eval, on_test)
    if knn is not None:
        rows.append(knn)
    return rows, notes


def _knn_rows(model: Any, pca: Any, X: Any, y: Any, X_eval: Any, y_eval: Any,
              on_test: bool) -> tuple[str, str, str, str] | None:
    """1-NN accuracy of the codes: fitted on X's codes and scored on the test codes, or,
    without a labelled test set, on a fixed stratified 80/20 split of the labelled rows
    (scoring a row against itself would give 1.0)."""
    if y_eval is None:
        return None
    if on_test and y is not None:
        fit_X, fit_y, eval_X, eval_y = X, np.asarray(y), X_eval, np.asarray(y_eval)
        how = "classifier fitted on the codes of the training rows, scored on the test rows"
    else:
        y_eval = np.asarray(y_eval)
        if len(y_eval) < 5:
            return None
        rows = np.arange(len(y_eval))
        try:
            idx_fit, idx_eval = train_test_split(rows, test_size=0.2, random_state=0,
                                                 stratify=y_eval)
        except ValueError:      # a class with one row, or more classes than test rows
            idx_fit, idx_eval = train_test_split(rows, test_size=0.2, random_state=0)
        X_eval = np.asarray(X_eval)
        fit_X, fit_y = X_eval[idx_fit], y_eval[idx_fit]
        eval_X, eval_y = X_eval[idx_eval], y_eval[idx_eval]
        how = "classifier fitted on the codes of 80% of the rows, scored on the other 20%"
    acc = knn_accuracy(model.transform(fit_X, *given_conditions(model, fit_y)), fit_y,
                       model.transform(eval_X, *given_conditions(model, eval_y)), eval_y)
    pca_acc = None
    if pca is not None:
        pca_acc = knn_accuracy(pca.transform(flat_rows(fit_X)), fit_y,
                               pca.transform(flat_rows(eval_X)), eval_y)
    verdict = ("a conditional model's codes are given the label, so they need not hold the "
               "class" if plotting.is_conditional(model) else "larger is better")
    return ("1-NN accuracy of the codes", _fmt(acc, 3), _fmt(pca_acc, 3), f"{how}; {verdict}")


def _figures(model: Any, X: Any, y: Any, X_eval: Any, y_eval: Any, image_shape: Any
             ) -> list[tuple[str, str, Callable[[], Any], str | None]]:
    """(file stem, caption, draw, why not) for every figure: ``why not`` says why the
    model's declared capabilities rule a figure out (None when they allow it); a figure
    that does not fit the data raises :class:`~aekit.reporting.plotting.NotApplicableError`."""
    caps, name = model.capabilities, type(model).__name__
    conditional = (f"{name} is conditional (every decode needs y)"
                   if caps.conditional else None)
    P = plotting
    X_eval = np.asarray(X_eval)
    rng = np.random.default_rng(0)
    pick = (np.sort(rng.choice(len(X_eval), MAX_SCATTER_POINTS, replace=False))
            if len(X_eval) > MAX_SCATTER_POINTS else np.arange(len(X_eval)))
    y_pick = None if y_eval is None else np.asarray(y_eval)[pick]
    # interpolate between the first row and the first one with another label
    j = 1
    if y_eval is not None:
        others = np.flatnonzero(np.asarray(y_eval) != np.asarray(y_eval)[0])
        j = int(others[0]) if len(others) else 1
    shape = dict(image_shape=image_shape)

    def interpolate() -> Any:
        if len(X_eval) < 2:
            raise P.NotApplicableError("interpolation needs at least two rows")
        return P.interpolation(model, X_eval[0], X_eval[j], **shape)

    return [
        ("training_curves", "Training curves: per-epoch losses in nats per example from "
         "history_.", lambda: P.training_curves(model), None),
        ("latent_scatter", "Codes (transform) of the evaluation rows"
         + (", coloured by label." if y_eval is not None else "."),
         lambda: P.latent_scatter(model, X_eval[pick], y_pick), None),
        ("manifold_grid", "The learned manifold: decoder means over a regular grid of the "
         "2-D latent plane.", lambda: P.manifold_grid(model, X=X, **shape), conditional),
        ("reconstructions", "Evaluation rows (top) and their reconstructions (bottom).",
         lambda: P.reconstructions(model, X_eval, **shape), conditional),
        ("samples", "Generation: decoder means of draws from the prior.",
         lambda: P.samples(model, 16, **shape), conditional),
        ("interpolation", "Decodes along the straight line between the codes of two "
         "evaluation rows.", interpolate, conditional),
        ("kl_per_dimension", "KL of each latent dimension and the active units (Burda et "
         "al. 2015).", lambda: P.kl_per_dimension(model, X_eval),
         conditional or (None if has_kl_per_dimension(model) else
                         P.kl_per_dimension_refusal(model))),
        ("denoising", "Denoising: corrupted inputs, reconstructions, clean originals.",
         lambda: P.denoising(model, X_eval, **shape),
         None if caps.denoising else f"{name} is not a denoising model"),
        ("anomalies", "The evaluation rows the model finds least likely (lowest "
         "score_samples) and where: each feature's -log p(x_j | z) at the row's code, as "
         "heat maps for images or the top features of the least likely row.",
         lambda: P.anomalies(model, X_eval, **shape), conditional),
        ("cvae_analogies", "Analogies: each input's code decoded with every label.",
         lambda: P.cvae_analogies(model, X_eval, y_eval, **shape),
         None if caps.conditional else f"{name} is not a conditional model"),
    ]


def _table(rows: list[tuple[Any, ...]], header: tuple[str, ...] | None, numeric: set[int]
           ) -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in header or ())
    body = "".join(
        "<tr>" + "".join(f'<td class="num">{_e(c)}</td>' if i in numeric else f"<td>{_e(c)}</td>"
                         for i, c in enumerate(row)) + "</tr>"
        for row in rows)
    head = f"<thead><tr>{head}</tr></thead>" if head else ""
    return f"<table>{head}<tbody>{body}</tbody></table>"


def _png_size(path: Path) -> tuple[int, int]:
    with open(path, "rb") as f:
        header = f.read(24)
    return int.from_bytes(header[16:20], "big"), int.from_bytes(header[20:24], "big")


def write_report(model: Any, X: Any, y: Any = None, out_dir: str | os.PathLike = "aekit-report",
                 *, data_name: str = "", X_test: Any = None, y_test: Any = None,
                 image_shape: Any = None, training_seconds: float | None = None) -> Path:
    """Write an HTML report of a fitted model into ``out_dir``; returns ``index.html``.

    The report holds a model card (class, every parameter, data, epochs, training time), a
    metrics table on ``X_test`` (or on ``X`` when no test set is given) with PCA of the
    same size as the baseline, every figure of :mod:`aekit.reporting.plotting` that applies, and
    the list of figures skipped with the reason (e.g. tabular data are not images).

    Parameters
    ----------
    model : fitted aekit model
    X : array-like
        The training rows (or images); PCA and the latent grid of deterministic models
        are fitted to them.
    y : array-like, optional
        Labels of ``X``: colours the codes and gives the 1-NN accuracy.
    out_dir : str or path-like, default="aekit-report"
        Folder to write (created). Files of an earlier report in it are replaced; other
        files are left alone.
    data_name : str, default=""
        Shown in the report; a registered dataset name also gives the image shape.
    X_test, y_test : array-like, optional
        Held-out rows and labels for the metrics and figures.
    image_shape : tuple of int or DatasetInfo, optional
        ``(H, W)`` or ``(C, H, W)`` of flat image rows, e.g. ``(8, 8)`` for digits.
    training_seconds : float, optional
        Shown on the model card.

    Returns
    -------
    pathlib.Path
        ``out_dir / "index.html"``.

    Examples
    --------
    >>> import tempfile, aekit
    >>> from aekit.reporting.report import write_report
    >>> X, y = aekit.datasets.load("digits")
    >>> ae = aekit.AE(max_iter=2, random_state=0).fit(X)
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     page = write_report(ae, X, y, tmp + "/report", data_name="digits")
    ...     page.name, (page.parent / "samples.png").is_file()
    ('index.html', True)
    """
    check_is_fitted(model)

    if image_shape is None and data_name in datasets.list_datasets():
        image_shape = datasets.info(data_name).image_shape
    on_test = X_test is not None
    X_eval, y_eval = (X_test, y_test) if on_test else (X, y)
    if plotting.is_conditional(model) and (y is None or y_eval is None):
        raise InputError(f"{type(model).__name__} is conditional: pass the labels y (and "
                         "y_test with X_test) so that its methods can be evaluated")
    metrics, notes = _metrics(model, X, y, X_eval, y_eval, on_test)

    out = Path(out_dir)
    out.parent.mkdir(parents=True, exist_ok=True)
    # a sibling folder on the same file system, so the finished files are renamed in
    tmp = out.parent / f".{out.name}.{secrets.token_hex(6)}.tmp"
    tmp.mkdir()
    try:
        shown, skipped = [], []
        for stem, caption, draw, why_not in _figures(model, X, y, X_eval, y_eval,
                                                      image_shape):
            if why_not is not None:
                skipped.append((stem, why_not))
                continue
            try:
                ax = draw()
            except plotting.NotApplicableError as exc:     # the data do not fit it
                skipped.append((stem, str(exc)))
                continue
            ax.figure.savefig(tmp / f"{stem}.png", dpi=DPI)
            shown.append((stem, caption, _png_size(tmp / f"{stem}.png")))
        page = _page(model, X, X_eval, on_test, data_name, image_shape, training_seconds,
                     metrics, notes, shown, skipped)
        (tmp / "index.html").write_text(page, encoding="utf-8")
        if not out.exists():
            os.replace(tmp, out)
        else:
            if not out.is_dir():
                raise NotADirectoryError(f"out_dir {str(out)!r} exists and is not a folder")
            for stem, _, _ in shown:        # the figures first, the page that links them last
                os.replace(tmp / f"{stem}.png", out / f"{stem}.png")
            os.replace(tmp / "index.html", out / "index.html")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out / "index.html"


def _page(model: Any, X: Any, X_eval: Any, on_test: bool, data_name: str, image_shape: Any,
          training_seconds: float | None, metrics: list, notes: list[str], shown: list,
          skipped: list) -> str:

    name = type(model).__name__
    title = f"{name} on {data_name}" if data_name else name
    X_shape = tuple(np.shape(X))
    card = [("class", f"{type(model).__module__}.{name}"),
            ("registry name", type(model).__dict__.get("_registry_name", "")),
            ("data", data_name or "(unnamed array)"),
            ("training data shape", X_shape),
            ("row shape of the model", tuple(model.input_shape_))]
    shape = getattr(image_shape, "image_shape", image_shape)
    if shape is not None:
        card.append(("image shape", tuple(shape)))
    card.append(("evaluated on", f"{'X_test' if on_test else 'the training data X'} "
                                 f"({len(X_eval)} rows)"))
    card.append(("epochs (n_iter_)", model.n_iter_))
    loss = (vars(model).get("history_") or {}).get("loss")
    if loss:
        card.append(("final training loss [nats per example]", _fmt(loss[-1])))
    if training_seconds is not None:
        card.append(("training time", f"{training_seconds:.1f} s"))
    params = sorted(model.get_params(deep=False).items())

    figures = "".join(
        f'<figure id="{_e(stem)}"><img src="{_e(stem)}.png" width="{w}" height="{h}" '
        f'alt="{_e(caption)}"><figcaption>{_e(caption)}</figcaption></figure>'
        for stem, caption, (w, h) in shown)
    skip_list = "".join(f"<li><b>{_e(stem)}</b>: skipped: {_e(reason)}</li>"
                        for stem, reason in skipped)
    note_list = "".join(f"<p class=\"note\">{_e(n)}</p>" for n in notes)
    where = "X_test" if on_test else "the training data X (no X_test given)"
    return f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{_e(title)}: aekit report</title>
<style>{_CSS}</style>
<script>{_SCRIPT}</script>
</head>
<body>
<main>
<h1>{_e(title)}</h1>
<p class="sub">aekit {_e(__version__)} report, written {_e(time.strftime("%Y-%m-%d %H:%M"))}</p>
<p id="broken"></p>
<h2>Model</h2>
<div class="cards">
{_table(card, None, set())}
{_table(params, ("parameter", "value"), set())}
</div>
<h2>Metrics</h2>
<p>On {_e(where)}. The baseline is PCA with the same number of components
({_e(model.n_components)}), fitted to X.</p>
<div id="metrics">{_table(metrics, ("metric", name, "PCA", "what it means"), {1, 2})}</div>
{note_list}
<h2>Figures</h2>
{figures or '<p class="note">No figure applies to this model and data.</p>'}
<h2>Skipped figures</h2>
{f"<ul>{skip_list}</ul>" if skipped else '<p class="note">None: every figure applies.</p>'}
</main>
</body>
</html>
"""
