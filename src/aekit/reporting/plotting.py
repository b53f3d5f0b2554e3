"""Figures of a fitted autoencoder: codes, decodes, samples, training and the KL per unit.

Every function draws into one matplotlib ``Axes`` and returns it: pass ``ax=`` to draw into
your own figure, or leave it out to get a new ``matplotlib.figure.Figure`` (made without
pyplot, so no backend or display is touched; save it with ``ax.figure.savefig(path)``).
Grids of images are one mosaic array drawn with ``imshow``.

Image figures need image rows: a model fitted on images ``(n, H, W)`` knows their shape
(``input_shape_``); for flat rows pass ``image_shape=(H, W)`` (or
``aekit.datasets.info(name)``). A figure that does not apply to a model or to its data
raises :class:`NotApplicableError` (a ``ValueError``) saying why; the HTML report turns it
into a skip note. matplotlib is an optional extra: ``pip install 'aekit[plot]'``.

References: Kingma & Welling, "Auto-Encoding Variational Bayes", 2013, arXiv:1312.6114
(the decoded latent grid through prior quantiles); Burda, Grosse & Salakhutdinov,
"Importance Weighted Autoencoders", 2015, arXiv:1509.00519 (active units).

Examples
--------
>>> import aekit
>>> from aekit.reporting import plotting
>>> X, y = aekit.datasets.load("digits")
>>> ae = aekit.AE(max_iter=2, random_state=0).fit(X)
>>> ax = plotting.latent_scatter(ae, X, y)
>>> ax.get_xlabel(), ax.get_ylabel()
('z1', 'z2')
>>> ax = plotting.reconstructions(ae, X, image_shape=(8, 8))
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from sklearn.utils.validation import check_is_fitted

from aekit import evaluation
from aekit.detection import per_feature_scores
from aekit.estimator.latent import ACTIVE_UNIT_THRESHOLD
from aekit.evaluation.model_measures import has_kl_per_dimension
from aekit.exceptions import InputError
from aekit.reporting.mosaic import (
    as_images,
    grid,
    mosaic_size,
    new_axes,
    show_mosaic,
    value_range,
)

#: Burda et al.'s threshold: unit j is active when Cov_x(E_q[z_j]) exceeds it.
#: more distinct labels than this are coloured on a continuous scale.
MAX_CATEGORIES = 20


class NotApplicableError(ValueError):
    """This figure does not apply to this model or these data (the message says why)."""


def _name(model: Any) -> str:
    return type(model).__name__


def is_conditional(model: Any) -> bool:
    """True for models whose ``transform`` reads labels or conditions ``y`` (CVAE)."""
    return model.capabilities.conditional


def _unconditional(model: Any, figure: str) -> None:
    if is_conditional(model):
        raise NotApplicableError(f"{figure} decodes without labels, but {_name(model)} is "
                                 "conditional (every decode needs y)")


def image_shape_of(model: Any, image_shape: Any = None) -> tuple[int, ...]:
    """The ``(H, W)`` or ``(C, H, W)`` shape of the model's rows as images.

    ``image_shape`` may be a tuple, a :class:`aekit.datasets.DatasetInfo` or None (use the
    model's ``input_shape_``). Raises :class:`NotApplicableError` for rows that are not
    images and ``ValueError`` for a shape that does not fit the rows.
    """
    check_is_fitted(model)
    image_shape = getattr(image_shape, "image_shape", image_shape)
    n_features = math.prod(model.input_shape_)
    shape = tuple(int(s) for s in (model.input_shape_ if image_shape is None else image_shape))
    if len(shape) < 2:
        raise NotApplicableError(
            f"the data are not images: {_name(model)} was fitted on rows of {n_features} "
            "features; pass image_shape=(H, W) if they are flattened images")
    if math.prod(shape) != n_features:
        raise InputError(f"image_shape={shape} has {math.prod(shape)} pixels, but "
                         f"{_name(model)} was fitted on rows of {n_features} features")
    if len(shape) > 3 or (len(shape) == 3 and shape[0] not in (1, 3)):
        raise NotApplicableError(f"the data are not images that can be shown: rows of shape "
                                 f"{shape}; figures show (H, W) or (C, H, W) with C = 1 or 3")
    return shape


def _first_rows(X: Any, n: int, what: str) -> np.ndarray:
    X = np.asarray(X)
    if not isinstance(n, int | np.integer) or n < 1:
        raise InputError(f"n must be a positive integer; got {n!r}")
    if len(X) == 0:
        raise InputError(f"{what} needs at least one row of X; got none")
    return X[:n]


# ------------------------------------------------------------------------------ codes


def latent_scatter(model: Any, X: Any, y: Any = None, ax: Any = None) -> Any:
    """The codes ``model.transform(X)``, coloured by label ``y`` when given.

    2-D codes are drawn as they are, wider codes projected on their first two principal
    components (axes "PC1 of codes", "PC2 of codes"), 1-D codes against the row index.
    Up to 20 distinct labels get a colour each and a legend, more a colour bar.
    """
    if is_conditional(model):
        if y is None:
            raise NotApplicableError(f"{_name(model)} is conditional: its codes need y")
        Z = model.transform(X, y)                                     # (n, k)
    else:
        Z = model.transform(X)                                        # (n, k)
    n, k = Z.shape
    ax = new_axes(ax, (6.4, 5.0))
    if k == 1:
        xs, ys, labels = Z[:, 0], np.arange(n), ("z1", "row index")
    elif k == 2:
        xs, ys, labels = Z[:, 0], Z[:, 1], ("z1", "z2")
    else:
        from sklearn.decomposition import PCA

        pca = PCA(n_components=2).fit(Z)
        xs, ys = pca.transform(Z).T
        share = pca.explained_variance_ratio_
        labels = (f"PC1 of codes ({share[0]:.0%} of their variance)",
                  f"PC2 of codes ({share[1]:.0%})")
    style = dict(s=8, alpha=0.8, linewidths=0, rasterized=True)
    if y is None:
        ax.scatter(xs, ys, color="C0", **style)
    else:
        y = np.asarray(y)
        if len(y) != n:
            raise InputError(f"y has {len(y)} labels but X has {n} rows")
        classes = np.unique(y)
        if len(classes) <= MAX_CATEGORIES or y.dtype.kind not in "fc":
            cmap = _category_colors(len(classes))
            for i, c in enumerate(classes):
                mask = y == c
                ax.scatter(xs[mask], ys[mask], color=cmap[i], label=str(c), **style)
            ax.legend(title="label", markerscale=2, fontsize="small", loc="upper left",
                      bbox_to_anchor=(1.01, 1.0), frameon=False)
        else:
            points = ax.scatter(xs, ys, c=y, cmap="viridis", **style)
            ax.figure.colorbar(points, ax=ax, label="label")
    ax.set_xlabel(labels[0])
    ax.set_ylabel(labels[1])
    ax.set_title(f"{_name(model)}: {k}-D codes of {n} rows")
    return ax


def _category_colors(n: int) -> list:
    import matplotlib

    name = "tab10" if n <= 10 else "tab20"
    colors = matplotlib.colormaps[name].colors
    return [colors[i % len(colors)] for i in range(n)]


def _latent_axes(model: Any, n: int, X: Any) -> tuple[np.ndarray, np.ndarray, str]:
    """Grid values for z1 and z2: prior quantiles for a normal prior, else +-2 std of the
    training codes (the AE's fitted Gaussian, or the codes of ``X``)."""
    from scipy.stats import norm

    probs = np.linspace(0.05, 0.95, n)
    if model.capabilities.posterior:
        from torch.distributions import Independent, Normal

        with torch.no_grad():
            prior = model._prior()
            base = prior.base_dist if isinstance(prior, Independent) else prior
            if isinstance(base, Normal):
                loc = base.loc.expand(2).cpu().numpy()
                scale = base.scale.expand(2).cpu().numpy()
                axes = loc[:, None] + scale[:, None] * norm.ppf(probs)[None]     # (2, n)
                return axes[0], axes[1], "through the prior's 5%-95% quantiles"
    buffers = dict(model.module_.named_buffers())
    if "code_loc" in buffers and "code_scale_tril" in buffers:
        loc = buffers["code_loc"].cpu().numpy()
        tril = buffers["code_scale_tril"].cpu().numpy()
        std = np.sqrt((tril ** 2).sum(axis=1))               # sqrt of diag(L L^T)
        source = "over +-2 std of the training codes"
    elif X is not None:
        Z = model.transform(X)
        loc, std = Z.mean(axis=0), Z.std(axis=0)
        source = "over +-2 std of the codes of X"
    else:
        raise NotApplicableError(f"{_name(model)} has neither a normal prior nor a fitted "
                                 "code distribution; pass X to span the range of its codes")
    axes = loc[:, None] + 2 * std[:, None] * np.linspace(-1, 1, n)[None]          # (2, n)
    return axes[0], axes[1], source


def manifold_grid(model: Any, n: int = 15, ax: Any = None, image_shape: Any = None,
                  X: Any = None) -> Any:
    """Decoder means over a regular ``n`` x ``n`` grid of the 2-D latent plane.

    Models with a normal prior (the VAE family) are probed through the prior's quantiles
    5%..95% (``scipy.stats.norm.ppf``), as in Kingma & Welling's figure 4; deterministic
    autoencoders over +-2 standard deviations of their training codes (``X`` is used when
    the model keeps no fitted code distribution). Only for ``n_components == 2``.
    """
    check_is_fitted(model)
    shape = image_shape_of(model, image_shape)
    _unconditional(model, "the latent grid")
    if model.n_components != 2:
        raise NotApplicableError(f"the latent plane needs 2-D codes; {_name(model)} has "
                                 f"n_components={model.n_components}")
    if not isinstance(n, int | np.integer) or n < 2:
        raise InputError(f"n must be an integer >= 2; got {n!r}")
    z1, z2, source = _latent_axes(model, n, X)
    # rows from top to bottom go down in z2, columns left to right up in z1
    Z = np.stack(np.meshgrid(z1, z2[::-1]), axis=-1).reshape(-1, 2)           # (n * n, 2)
    images = as_images(model.inverse_transform(Z.astype(np.float32)), shape)
    cells = images.reshape(n, n, *images.shape[1:])
    ax = new_axes(ax, mosaic_size(n, n, images.shape[1:], 0.42, labels=0.8, below=0.4))
    show_mosaic(ax, cells, value_range(images))
    H, W = images.shape[1:3]
    ticks = np.array([0, n // 2, n - 1])
    ax.set_xticks(ticks * W + (W - 1) / 2, [_tick(z1[i]) for i in ticks])
    ax.set_yticks(ticks * H + (H - 1) / 2, [_tick(z2[::-1][i]) for i in ticks])
    ax.set_xlabel("z1")
    ax.set_ylabel("z2")
    ax.set_title(f"{_name(model)}: decoder means {source}", fontsize="medium")
    return ax


def _tick(value: float) -> str:
    return f"{round(float(value), 2) + 0.0:g}"     # + 0.0 turns -0.0 into 0


# --------------------------------------------------------------------------- decodes


def reconstructions(model: Any, X: Any, n: int = 10, ax: Any = None,
                    image_shape: Any = None) -> Any:
    """The first ``n`` rows of ``X`` (top) above their reconstructions (bottom)."""
    shape = image_shape_of(model, image_shape)
    _unconditional(model, "reconstructions")
    X = _first_rows(X, n, "reconstructions")
    originals = as_images(X, shape)
    rebuilt = as_images(model.reconstruct(X), shape)
    ax = new_axes(ax, mosaic_size(2, len(X), originals.shape[1:], 0.65, labels=1.2))
    show_mosaic(ax, np.stack([originals, rebuilt]), value_range(originals),
                 row_labels=["input", "reconstruction"])
    ax.set_title(f"{_name(model)}: reconstructions (decoder means)", fontsize="medium")
    return ax


def samples(model: Any, n: int = 16, random_state: Any = 0, ax: Any = None,
            image_shape: Any = None) -> Any:
    """Decoder means of ``n`` draws from the model's prior, in a near-square grid."""
    shape = image_shape_of(model, image_shape)
    _unconditional(model, "samples")
    images = as_images(model.sample(n, random_state=random_state), shape)
    n_cols = math.ceil(math.sqrt(n))
    ax = new_axes(ax, mosaic_size(math.ceil(n / n_cols), n_cols, images.shape[1:], 1.1))
    show_mosaic(ax, grid(images, n_cols), value_range(images))
    ax.set_title(f"{_name(model)}: {n} samples (decoder means of prior draws)",
                 fontsize="medium")
    return ax


def interpolation(model: Any, x0: Any, x1: Any, n: int = 10, ax: Any = None,
                  image_shape: Any = None) -> Any:
    """Decodes of ``n`` evenly spaced points on the line between the codes of ``x0`` and
    ``x1``, with the two inputs at the ends (A left, B right)."""
    shape = image_shape_of(model, image_shape)
    _unconditional(model, "interpolation")
    if not isinstance(n, int | np.integer) or n < 2:
        raise InputError(f"n must be an integer >= 2; got {n!r}")
    ends = [np.asarray(x, dtype=np.float32) for x in (x0, x1)]
    size = math.prod(model.input_shape_)
    if any(e.size != size for e in ends):
        raise InputError(f"x0 and x1 must each be one row of {size} values (shape "
                         f"{tuple(model.input_shape_)}); got shapes "
                         f"{ends[0].shape} and {ends[1].shape}")
    z0, z1 = model.transform(np.stack([e.reshape(model.input_shape_) for e in ends]))
    t = np.linspace(0.0, 1.0, n, dtype=np.float32)[:, None]                     # (n, 1)
    decoded = model.inverse_transform((1 - t) * z0 + t * z1)                    # (n, ...)
    originals = as_images(np.stack([e.reshape(-1) for e in ends]), shape)
    images = np.concatenate([originals[:1], as_images(decoded, shape), originals[1:]])
    ax = new_axes(ax, mosaic_size(1, n + 2, images.shape[1:], 0.65, below=0.3))
    labels = ["A"] + ["t=0"] + [""] * (n - 2) + ["t=1"] + ["B"]
    show_mosaic(ax, images[None], value_range(originals), col_labels=labels)
    ax.set_title(f"{_name(model)}: decoded straight line between the codes of A and B",
                 fontsize="medium")
    return ax


def denoising(model: Any, X: Any, n: int = 8, ax: Any = None, image_shape: Any = None) -> Any:
    """Rows: corrupted inputs (``model.corrupt(X, random_state=0)``), their
    reconstructions, the clean originals. For models with a ``corrupt`` method."""
    if not model.capabilities.denoising:
        raise NotApplicableError(f"{_name(model)} is not a denoising model (it has no "
                                 "corrupt(X) method)")
    shape = image_shape_of(model, image_shape)
    _unconditional(model, "denoising")
    X = _first_rows(X, n, "denoising")
    noisy = model.corrupt(X, random_state=0)
    clean = as_images(X, shape)
    cells = np.stack([as_images(noisy, shape), as_images(model.reconstruct(noisy), shape),
                      clean])
    ax = new_axes(ax, mosaic_size(3, len(X), clean.shape[1:], 0.65, labels=1.2))
    show_mosaic(ax, cells, value_range(clean),
                 row_labels=["noisy input", "reconstruction", "clean original"])
    ax.set_title(f"{_name(model)}: denoising", fontsize="medium")
    return ax


def cvae_analogies(model: Any, X: Any, y: Any, n: int = 5, ax: Any = None,
                   image_shape: Any = None) -> Any:
    """Each of the first ``n`` inputs (rows) decoded from its own code with every label
    (columns): the code keeps the style, the label sets the class. For conditional models
    with ``classes_``, ``transform(X, y)`` and ``inverse_transform(Z, y)``."""
    if not (model.capabilities.conditional and "classes_" in vars(model)):
        raise NotApplicableError(f"{_name(model)} is not a conditional model with classes "
                                 "(classes_); analogies need transform(X, y) and "
                                 "inverse_transform(Z, y)")
    if y is None:
        raise NotApplicableError("analogies need the labels y of X")
    shape = image_shape_of(model, image_shape)
    X = _first_rows(X, n, "cvae_analogies")
    y = np.asarray(y)[:len(X)]
    Z = model.transform(X, y)                                                   # (n, k)
    classes = list(model.classes_)
    decoded = [as_images(model.inverse_transform(Z, np.full(len(X), c)), shape)
               for c in classes]
    originals = as_images(X, shape)
    cells = np.stack([originals, *decoded], axis=1)                    # (n, 1 + C, H, W)
    ax = new_axes(ax, mosaic_size(len(X), len(classes) + 1, originals.shape[1:], 0.6,
                                    labels=0.8, below=0.5))
    show_mosaic(ax, cells, value_range(originals),
                 col_labels=["input"] + [str(c) for c in classes],
                 row_labels=[str(label) for label in y])
    ax.set_xlabel("decoded with label")
    ax.set_ylabel("input (its label)")
    ax.set_title(f"{_name(model)}: same code, every label", fontsize="medium")
    return ax


# -------------------------------------------------------------------------- training


def training_curves(model: Any, ax: Any = None) -> Any:
    """Per-epoch ``loss`` and, where logged, ``recon`` and ``kl`` from ``history_``; their
    validation values (early stopping) dashed in the same colour."""
    check_is_fitted(model)
    history = vars(model).get("history_") or {}
    if not history.get("loss"):
        raise NotApplicableError(f"{_name(model)} has no training history (history_)")
    ax = new_axes(ax, (6.4, 4.0))
    loss = np.asarray(history["loss"], dtype=float)
    epochs = np.arange(1, len(loss) + 1)
    marker = "o" if len(epochs) <= 30 else None
    for i, key in enumerate(("loss", "recon", "kl")):
        for prefix, dash, where in (("", "-", "training"), ("val_", "--", "validation")):
            values = history.get(prefix + key)
            if not values or not all(isinstance(v, int | float) for v in values):
                continue
            values = np.asarray(values, dtype=float)
            if key == "recon" and np.allclose(values, history.get(prefix + "loss", np.nan)):
                continue        # an AE's loss is its reconstruction term: one line, not two
            label = f"{key} ({where})"
            if key == "loss" and np.allclose(values, history.get(prefix + "recon", np.nan)):
                label = f"loss = recon ({where})"
            ax.plot(np.arange(1, len(values) + 1), values, dash, color=f"C{i}", marker=marker,
                    markersize=3, label=label)
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("epoch")
    ax.set_ylabel("nats per example")
    ax.set_title(f"{_name(model)}: training curves ({len(loss)} epochs)")
    ax.legend(fontsize="small")
    ax.grid(alpha=0.3)
    return ax


#: rows scored for the anomaly figure (the first ones of the evaluation rows)
MAX_ANOMALY_ROWS = 2000


def feature_names(model: Any) -> list[str]:
    """Names of the model's features: a mixed table's columns, ``feature_names_in_``, or
    x0, x1, ..."""
    columns = vars(model).get("columns_")
    if columns:
        return [str(c["name"]) for c in columns]
    names = vars(model).get("feature_names_in_")
    if names is not None:
        return [str(n) for n in names]
    return [f"x{j}" for j in range(math.prod(model.input_shape_))]


def anomalies(model: Any, X: Any, n: int = 8, ax: Any = None, image_shape: Any = None) -> Any:
    """The rows of ``X`` the model finds least likely and where they are unusual.

    Rows are ranked by ``score_samples`` (lowest first, at most the first 2000 rows of
    ``X`` are scored); "where" is each feature's ``-log p(x_j | z = f(x))`` at the row's code
    (:func:`aekit.detection.per_feature_scores`). Images: the ``n`` least likely rows above
    heat maps of their pixels' scores (brighter = less expected; one colour scale for all,
    clipped at its 99th percentile).
    Other rows: the ten features that contribute most to the least likely row's score.
    """
    check_is_fitted(model)
    _unconditional(model, "anomalies")
    X = _first_rows(X, MAX_ANOMALY_ROWS, "anomalies")
    if not isinstance(n, int | np.integer) or n < 1:
        raise InputError(f"n must be a positive integer; got {n!r}")
    log_p = np.asarray(model.score_samples(X), dtype=np.float64)
    worst = np.argsort(log_p, kind="stable")[:n]
    scores = per_feature_scores(model, X[worst])                # (n, *row_shape)
    try:
        shape = image_shape_of(model, image_shape)
    except NotApplicableError:
        shape = None
    if shape is None:
        return _anomaly_columns(model, scores[0].ravel(), log_p[worst[0]], ax)
    import matplotlib

    originals = as_images(X[worst], shape)
    heat = scores.reshape(len(worst), -1)
    if len(shape) == 3:             # one value per pixel: the sum over channels
        heat = heat.reshape(len(worst), shape[0], -1).sum(1)
        shape = shape[1:]
    # one scale for all, clipped at the 99th percentile: a single pixel that the model
    # thought (near) constant can score thousands of nats and would darken every other one
    lo, hi = float(np.min(heat)), float(np.quantile(heat, 0.99))
    level = np.clip((heat - lo) / max(hi - lo, 1e-12), 0, 1)
    heat_rgb = matplotlib.colormaps["inferno"](level)[..., :3]
    heat_rgb = heat_rgb.reshape(len(worst), *shape[-2:], 3)
    lo_x, hi_x = value_range(originals)
    grey = np.clip((originals - lo_x) / (hi_x - lo_x), 0, 1)
    if grey.ndim == 3:
        grey = np.repeat(grey[..., None], 3, axis=-1)
    ax = new_axes(ax, mosaic_size(2, len(worst), grey.shape[1:], 0.65, labels=1.4, below=0.6))
    show_mosaic(ax, np.stack([grey, heat_rgb]), (0.0, 1.0),
                row_labels=["row", "-log p(x_j|z)"],
                col_labels=[f"{v:.3g}" for v in log_p[worst]])
    ax.set_xlabel("log-likelihood of the row [nats] (score_samples)", fontsize="small")
    ax.set_title(f"{_name(model)}: least likely rows, and where\n(heat: {lo:.2g} to "
                 f"{hi:.2g} nats per pixel, the top at the 99th percentile)", fontsize="medium")
    return ax


def _anomaly_columns(model: Any, scores: np.ndarray, log_p: float, ax: Any) -> Any:
    names = feature_names(model)
    top = np.argsort(-scores, kind="stable")[:10][::-1]       # largest at the top
    ax = new_axes(ax, (6.4, 0.35 * len(top) + 1.4))
    ax.barh(np.arange(len(top)), scores[top], color="C3")
    ax.set_yticks(np.arange(len(top)), [names[j] for j in top])
    ax.set_xlabel("-log p(x_j | z = f(x)) [nats]")
    ax.set_title(f"{_name(model)}: the least likely row (log-likelihood {log_p:.3g} nats): "
                 "its most unusual features", fontsize="medium")
    ax.grid(axis="x", alpha=0.3)
    return ax


def kl_per_dimension_refusal(model: Any) -> str:
    """Why the KL-per-dimension figure does not apply to ``model``."""
    if not model.capabilities.posterior:
        return (f"{_name(model)} has deterministic codes, no posterior q(z|x) and prior p(z) "
                "to compare; this figure is for VAEs")
    return f"{_name(model)}'s prior has no per-dimension marginals to compare q(z_j|x) with"


def kl_per_dimension(model: Any, X: Any, ax: Any = None) -> Any:
    """Bars of the mean KL(q(z_j|x) || p(z_j)) over the rows of ``X`` for each latent
    dimension j, active units (Burda et al. 2015: Cov_x(E_q[z_j]) > 0.01) in colour.

    For unconditional models with a posterior q(z|x) and a prior with per-dimension
    marginals (the VAE family), as :func:`aekit.evaluation.kl_per_dimension` computes it.
    """
    check_is_fitted(model)
    if is_conditional(model):
        raise NotApplicableError(f"{_name(model)}'s posterior q(z|x, c) needs conditions; "
                                 "the KL per dimension is drawn for unconditional VAEs")
    if not has_kl_per_dimension(model):
        raise NotApplicableError(kl_per_dimension_refusal(model))
    kl = evaluation.kl_per_dimension(model, X)                                 # (k,)
    Z = model.transform(X)                                                     # (n, k)
    activity = np.var(Z, axis=0)                                               # (k,)
    k = len(kl)
    active = activity > ACTIVE_UNIT_THRESHOLD
    ax = new_axes(ax, (max(6.4, 0.3 * k + 2.5), 4.4))
    dims = np.arange(1, k + 1)
    bars = ax.bar(dims, kl, color=["C0" if a else "0.75" for a in active])
    if k <= 16:
        ax.bar_label(bars, labels=[f"{a:.2g}" for a in activity], fontsize=7, padding=2)
    from matplotlib.patches import Patch

    ax.legend(handles=[Patch(color="C0", label="active: Cov_x(E_q[z_j]) > 0.01"),
                       Patch(color="0.75", label="inactive")]
              + ([Patch(color="none", label="numbers: Cov_x(E_q[z_j])")] if k <= 16 else []),
              fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    ax.set_xticks(dims if k <= 32 else dims[::max(1, k // 16)])
    ax.set_xlabel("latent dimension j")
    ax.set_ylabel("mean KL(q(z_j|x) || p(z_j)) [nats]")
    ax.set_title(f"{_name(model)}: {int(active.sum())} of {k} units active "
                 f"({len(Z)} rows)", fontsize="medium")
    ax.margins(y=0.15)
    return ax
