"""aekit's defaults on a user's own data: AE and VAE with defaults only, against PCA.

Each data set goes in as a user would pass it (raw, unscaled features; images as flat rows
of grey levels in [0, 1] as ``aekit.datasets.load`` gives them). The only settings are
``n_components`` (the same for PCA, AE and VAE) and ``max_iter`` (the default, 100,
unless ``--epochs``). A stratified 70/30 split with seed 0 (``--seed``); every number is
on the test part:

* ``probe``: accuracy of a logistic regression trained on the training codes (standardised)
  to predict the labels (the class; the anomaly label for the ADBench tables); "—" for
  diabetes, whose target is continuous;
* ``1-NN``: accuracy of a 1-nearest-neighbour classifier on the codes;
* ``active``: active latent units of the VAE (Burda et al. 2015: Cov_x E_q[z_j|x] > 0.01);
* ``log p(x)``: mean test log-likelihood in nats per row: the VAE's ``score`` (importance
  sampled), PCA's probabilistic-PCA likelihood (Tipping & Bishop 1999, scikit-learn's
  ``PCA.score``), and a full-covariance Gaussian (``GaussianMixture(1)``) fitted to the
  training rows, all of the rows as given.

Every finished (data set, method) result goes to ``results.jsonl`` in ``--checkpoint-dir``
as it finishes; ``--resume`` skips those already there.

Usage: python benchmarks/defaults.py [--datasets digits,wine] [--epochs N]
       [--checkpoint-dir runs/defaults --resume] [--write BENCHMARKS.md]
"""

from __future__ import annotations

import argparse
import json
import time
import warnings
from pathlib import Path

import numpy as np
import results_log
import sklearn.datasets as skd
import torch
from sklearn.decomposition import PCA
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.mixture import GaussianMixture
from sklearn.model_selection import train_test_split
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

import aekit
from aekit.evaluation.quick_bench import machine_description, update_section

ROOT = Path(__file__).resolve().parents[1]
ADBENCH = ROOT / ".." / "shared" / "data" / "adbench"
#: tabular ADBench sets (continuous features, a few hundred to ten thousand rows)
ADBENCH_SETS = ("6_cardio", "38_thyroid", "29_Pima", "42_WBC", "47_yeast", "44_Wilt",
                "30_satellite")
SKLEARN_SETS = {"breast_cancer": skd.load_breast_cancer, "wine": skd.load_wine,
                "diabetes": skd.load_diabetes}
METHODS = ("pca", "ae", "vae")


def load(name: str, adbench: Path) -> tuple[np.ndarray, np.ndarray | None, bool]:
    """Rows as given, labels, and whether the labels are classes (a probe makes sense)."""
    if name == "digits":
        X, y = skd.load_digits(return_X_y=True)              # raw grey levels 0..16
        return X.astype(np.float64), y, True
    if name == "fashion-mnist":
        X, y = aekit.datasets.load("fashion-mnist", split="train")
        keep = np.random.default_rng(0).choice(len(X), 10_000, replace=False)
        return X[keep].astype(np.float64), y[keep], True
    if name in SKLEARN_SETS:
        X, y = SKLEARN_SETS[name](return_X_y=True)
        return X.astype(np.float64), y, name != "diabetes"
    with np.load(adbench / f"{name}.npz", allow_pickle=False) as d:
        return d["X"].astype(np.float64), d["y"].astype(np.int64), True


def n_components_for(n_features: int) -> int:
    return min(8, max(2, n_features // 2))


def codes_and_density(method: str, k: int, epochs: int | None, seed: int,
                      X_train: np.ndarray, X_test: np.ndarray,
                      settings: dict | None = None) -> dict:
    extra = {} if epochs is None else {"max_iter": epochs}
    extra.update(settings or {})
    if method == "pca":
        model = PCA(k, random_state=seed).fit(X_train)
        return {"train": model.transform(X_train), "test": model.transform(X_test),
                "loglik": float(model.score(X_test))}
    cls = aekit.AE if method == "ae" else aekit.VAE
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        model = cls(n_components=k, random_state=seed, **extra).fit(X_train.astype(np.float32))
    out = {"train": model.transform(X_train.astype(np.float32)),
           "test": model.transform(X_test.astype(np.float32)),
           "warnings": [str(w.message)[:200] for w in caught],
           "likelihood": model.likelihood, "scale": model.scale}
    if method == "vae":
        out["active"] = int(model.history_["active_units"][-1])
        out["loglik"] = float(model.score(X_test.astype(np.float32)))
    return out


def probe(train, test, y_train, y_test) -> float:
    clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=3000))
    return float(clf.fit(train, y_train).score(test, y_test))


def one_nn(train, test, y_train, y_test) -> float:
    return float(KNeighborsClassifier(1).fit(train, y_train).score(test, y_test))


def gaussian_loglik(X_train: np.ndarray, X_test: np.ndarray) -> float:
    gm = GaussianMixture(1, covariance_type="full", random_state=0).fit(X_train)
    return float(gm.score(X_test))


def run(name: str, method: str, args) -> dict:
    X, y, classes = load(name, args.adbench)
    stratify = y if classes else None
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.3,
                                                        random_state=args.seed,
                                                        stratify=stratify)
    k = n_components_for(X.shape[1])
    start = time.perf_counter()
    if method == "gaussian":
        return {"loglik": gaussian_loglik(X_train, X_test), "k": k,
                "seconds": time.perf_counter() - start, "n": len(X), "d": X.shape[1]}
    out = codes_and_density(method, k, args.epochs, args.seed, X_train, X_test,
                            json.loads(args.settings) if args.settings else None)
    seconds = time.perf_counter() - start
    tr, te = out.pop("train"), out.pop("test")
    result = {"k": k, "seconds": seconds, "n": len(X), "d": X.shape[1], **out}
    if classes:
        result["probe"] = probe(tr, te, y_train, y_test)
        result["1nn"] = one_nn(tr, te, y_train, y_test)
    return result


def fmt(value, spec="{:.3f}") -> str:
    return "—" if value is None else spec.format(value)


def render(results: dict, names: list[str], args) -> str:
    lines = ["<!-- defaults:start -->",
             f"Machine: {machine_description()}. Command: `python benchmarks/defaults.py"
             f"{'' if args.epochs is None else f' --epochs {args.epochs}'}"
             f"{'' if not args.settings else f' --settings {args.settings!r}'} --checkpoint-dir "
             "runs/defaults --write BENCHMARKS.md` (seed "
             f"{args.seed}; `max_iter` {'100, the default' if args.epochs is None else args.epochs})."
             " Every model with its defaults, only `n_components` set; 70/30 split, numbers on "
             "the test part. log p(x): mean nats per row of the data as given.", "",
             "| data (n, D, k) | probe PCA / AE / VAE | 1-NN PCA / AE / VAE | VAE active "
             "| log p(x) VAE | log p(x) PPCA | log p(x) full Gaussian |",
             "|---|---|---|---|---|---|---|"]
    for name in names:
        r = {m: results.get((name, m)) for m in (*METHODS, "gaussian")}
        if not all(r.values()):
            continue
        first = r["pca"]
        probes = " / ".join(fmt(r[m].get("probe")) for m in METHODS)
        nns = " / ".join(fmt(r[m].get("1nn")) for m in METHODS)
        lines.append(
            f"| {name} ({first['n']}, {first['d']}, {first['k']}) | {probes} | {nns} "
            f"| {r['vae']['active']}/{first['k']} | {fmt(r['vae']['loglik'], '{:.1f}')} "
            f"| {fmt(r['pca']['loglik'], '{:.1f}')} | {fmt(r['gaussian']['loglik'], '{:.1f}')} |")
    lines.append("<!-- defaults:end -->")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--datasets", default=",".join(["digits", "fashion-mnist",
                                                    *SKLEARN_SETS, *ADBENCH_SETS]))
    ap.add_argument("--adbench", type=Path, default=ADBENCH)
    ap.add_argument("--epochs", type=int, default=None,
                    help="max_iter of AE and VAE (default: their default)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--settings", help="JSON of extra AE/VAE parameters, to compare candidate "
                                       "defaults (the table is then not of the defaults)")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--checkpoint-dir", type=Path)
    ap.add_argument("--resume", action="store_true")
    ap.add_argument("--write")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    names = args.datasets.split(",")
    log, done = results_log.open_log(args.checkpoint_dir, args.resume)
    results = {(r["dataset"], r["method"]): r for r in done}
    for name in names:
        for method in (*METHODS, "gaussian"):
            if (name, method) in results:
                continue
            r = {"dataset": name, "method": method, **run(name, method, args)}
            results[(name, method)] = r
            results_log.append(log, r)
            print(json.dumps({k: v for k, v in r.items() if k != "warnings"}), flush=True)
            for w in r.get("warnings", []):
                print("  warning:", w, flush=True)
    table = render(results, names, args)
    print(table)
    if args.write:
        update_section(args.write, "defaults", "Defaults on your own data", table)


if __name__ == "__main__":
    main()
