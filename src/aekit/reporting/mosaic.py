"""Drawing primitives of :mod:`aekit.reporting.plotting`: pyplot-free Axes, and image mosaics drawn
as one array with thin separating lines."""

from __future__ import annotations

from typing import Any

import numpy as np

#: colour of the gaps between the images of a mosaic (outside any grey level of the data).
GAP_COLOR = "#b8c4d6"


def new_axes(ax: Any, figsize: tuple[float, float]) -> Any:
    """``ax``, or the Axes of a new pyplot-free Figure of ``figsize`` inches at 100 dpi."""
    if ax is not None:
        return ax
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise ImportError("aekit's figures need matplotlib: pip install 'aekit[plot]'") from None
    return Figure(figsize=figsize, dpi=100, layout="constrained").add_subplot()


def mosaic_size(rows: int, cols: int, image: tuple[int, ...], cell: float,
                labels: float = 0.0, below: float = 0.0) -> tuple[float, float]:
    """Figure inches for a mosaic of ``rows`` x ``cols`` images ``cell`` inches wide, plus
    room for the title, ``labels`` inches of row labels and ``below`` inches of column
    labels."""
    H, W = image[:2]
    return max(4.0, cols * cell + labels + 0.4), rows * cell * H / W + 0.7 + below


def as_images(A: Any, shape: tuple[int, ...]) -> np.ndarray:
    """Rows of any shape with prod(shape) values -> ``(n, H, W)`` grey or ``(n, H, W, 3)``."""
    A = np.asarray(A, dtype=np.float64)
    images = A.reshape(len(A), *shape)
    if len(shape) == 3:
        images = images[:, 0] if shape[0] == 1 else images.transpose(0, 2, 3, 1)
    return images


def value_range(reference: np.ndarray) -> tuple[float, float]:
    """Grey levels [0, 1] for data in [0, 1] (so contrast is never stretched), else min..max."""
    lo, hi = float(np.nanmin(reference)), float(np.nanmax(reference))
    if lo >= -1e-6 and hi <= 1 + 1e-6:
        return 0.0, 1.0
    return lo, (hi if hi > lo else lo + 1.0)


def show_mosaic(ax: Any, cells: np.ndarray, levels: tuple[float, float],
                row_labels: list[str] | None = None,
                col_labels: list[str] | None = None) -> Any:
    """Draw images ``cells`` of shape ``(R, C, H, W[, 3])`` (NaN cells are empty) as one
    array, separated by thin lines (not pixel gaps, which look thick on 8x8 images), with
    rows and columns labelled by ticks; ``levels`` are the data values shown black and white."""
    import matplotlib

    R, C, H, W = cells.shape[:4]
    # (R, C, H, W, ...) -> (R, H, C, W, ...) -> (R * H, C * W, ...)
    mosaic = np.swapaxes(cells, 1, 2).reshape(R * H, C * W, *cells.shape[4:])
    lo, hi = levels
    if mosaic.ndim == 3:       # RGB: imshow wants [0, 1]; empty cells white
        rgb = np.clip((mosaic - lo) / (hi - lo), 0, 1)
        ax.imshow(np.nan_to_num(rgb, nan=1.0), interpolation="nearest")
    else:
        cmap = matplotlib.colormaps["gray"].with_extremes(bad=GAP_COLOR)
        ax.imshow(np.ma.masked_invalid(mosaic), cmap=cmap, vmin=lo, vmax=hi,
                  interpolation="nearest")
    ax.vlines(np.arange(1, C) * W - 0.5, -0.5, R * H - 0.5, color=GAP_COLOR, linewidth=1)
    ax.hlines(np.arange(1, R) * H - 0.5, -0.5, C * W - 0.5, color=GAP_COLOR, linewidth=1)
    ax.set_xticks(np.arange(C) * W + (W - 1) / 2 if col_labels else [], col_labels or [])
    ax.set_yticks(np.arange(R) * H + (H - 1) / 2 if row_labels else [], row_labels or [])
    ax.tick_params(length=0)
    return ax


def grid(images: np.ndarray, n_cols: int) -> np.ndarray:
    """``(n, H, W[, 3])`` -> ``(R, n_cols, H, W[, 3])``, the last row padded with NaN."""
    n_rows = -(-len(images) // n_cols)
    cells = np.full((n_rows * n_cols, *images.shape[1:]), np.nan)
    cells[:len(images)] = images
    return cells.reshape(n_rows, n_cols, *images.shape[1:])
