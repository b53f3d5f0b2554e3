"""How the anomaly detector's defaults were chosen: variants on the ADBench development tables.

Each variant is the default detector (``aekit.AnomalyDetector()``) with one thing changed,
fitted on the training part of each of the 28 tables in ``anomaly.DEV_TABLES`` (seed 0,
ADBench's unsupervised protocol, as ``benchmarks/anomaly.py``) and scored by AUCROC on its
test part. The other 15 ADBench tables are not used here: ``anomaly.py`` reports the
chosen defaults on them apart, as the check that the choice is not fitted to these 28.

A variant is written ``part+part+...``, each part one of:

- ``p:name=value;name=value``: parameters of the wrapped VAE (``p:n_components=2``);
- ``score=elbo`` / ``score=nll`` / ``score=reconstruction``: the detector's ``score_type``;
- ``ens=K``: the mixture of K models fitted with other seeds,
  ``log p(x) = logsumexp_k log p_k(x) - log K`` over their scores;
- ``robust``: fit, then fit again on the training rows the first model does not flag
  (median + 3 MAD rule);
- ``mle_sigma``: after fitting, each feature's sigma set to its maximum-likelihood value
  given the decoder, the root mean square of its reconstruction residual on the
  training rows.

Usage: python benchmarks/anomaly_choices.py "p:n_components=2" "p:n_components=32" ...
       [--out runs/anomaly_choices/results.jsonl] [--write BENCHMARKS.md]
Results are appended as each (table, variant) finishes; a rerun skips those done.
"""

from __future__ import annotations

import argparse
import json
import math
import time
import warnings
from ast import literal_eval
from pathlib import Path

import numpy as np
import torch
from anomaly import DEFAULT_DATA, DEV_TABLES, datasets_in, short, split
from scipy.special import logsumexp
from sklearn.ensemble import IsolationForest
from sklearn.metrics import roc_auc_score

import aekit
from aekit.detection import default_model
from aekit.evaluation.quick_bench import machine_description, update_section


def parse(variant: str) -> tuple[dict, dict]:
    params, opts = {}, {}
    for part in variant.split("+"):
        if part.startswith("p:"):
            for item in part[2:].split(";"):
                key, value = item.split("=", 1)
                params[key] = literal_eval(value)
        elif "=" in part:
            key, value = part.split("=", 1)
            opts[key] = value
        elif part:
            opts[part] = True
    return params, opts


def fit_detector(X, seed, params, opts):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        det = aekit.AnomalyDetector(default_model(**params), random_state=seed,
                                    score_type=opts.get("score", "auto")).fit(X)
        if opts.get("robust"):
            det = aekit.AnomalyDetector(default_model(**params), random_state=seed,
                                        score_type=opts.get("score", "auto")
                                        ).fit(X[det.labels_ == 0])
    if opts.get("mle_sigma"):
        model, likelihood = det.model_, det.model_.module_.likelihood
        residual = X - model.inverse_transform(model.transform(X))
        if likelihood.standardizes:
            residual = residual / likelihood.data_scale.detach().numpy()
        rms = np.sqrt((residual ** 2).mean(axis=0))
        with torch.no_grad():
            likelihood.log_scale.copy_(torch.as_tensor(np.log(np.maximum(rms, 1e-3))))
    return det


def run_variant(variant: str, X_train, X_test, seed: int) -> np.ndarray:
    """Anomaly scores (higher = more abnormal) of the test rows."""
    if variant == "iforest":
        return -IsolationForest(random_state=seed).fit(X_train).score_samples(X_test)
    params, opts = parse(variant)
    k = int(opts.get("ens", 1))
    log_p = [-fit_detector(X_train, seed * 100 + i if k > 1 else seed, params, opts)
             .anomaly_score(X_test) for i in range(k)]
    return -(logsumexp(np.stack(log_p), axis=0) - math.log(k))


def render(results: list[dict], variants: list[str]) -> str:
    by = {(r["variant"], r["dataset"]): r for r in results}
    base = variants[0]
    lines = ["<!-- anomaly_choices:start -->",
             "Command: `python benchmarks/anomaly_choices.py " + " ".join(
                 f'"{v}"' for v in variants) + f"`. Machine: {machine_description()}; "
             f"{time.strftime('%Y-%m-%d')}. AUCROC (%) on the test parts of the 28 "
             "development tables, seed 0; against the first row.", "",
             "| variant | mean AUCROC | better / worse than the first row (by > 0.5) | "
             "fit+score, all 28 [s] |", "|---|---|---|---|"]
    for v in variants:
        rows = [(by[(v, t)], by.get((base, t))) for t in DEV_TABLES if (v, t) in by]
        if len(rows) < len(DEV_TABLES):
            lines.append(f"| {v} | ({len(rows)} of {len(DEV_TABLES)} tables) | | |")
            continue
        diff = [100 * (r["auc"] - b["auc"]) for r, b in rows if b is not None]
        lines.append(f"| {v} | {100 * np.mean([r['auc'] for r, _ in rows]):.1f} | "
                     f"{sum(d > 0.5 for d in diff)} / {sum(d < -0.5 for d in diff)} | "
                     f"{sum(r['seconds'] for r, _ in rows):.0f} |")
    lines.append("<!-- anomaly_choices:end -->")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("variants", nargs="+")
    ap.add_argument("--data-dir", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--out", type=Path, default=Path("runs/anomaly_choices/results.jsonl"))
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--write", help="update this markdown file's 'anomaly_choices' section")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    results = [json.loads(line) for line in args.out.read_text().splitlines()] \
        if args.out.exists() else []
    done = {(r["variant"], r["dataset"]) for r in results}
    for path in datasets_in(args.data_dir.resolve(), list(DEV_TABLES)):
        X_train, X_test, _, y_test = split(path, 0)
        for v in args.variants:
            if (v, short(path)) in done:
                continue
            start = time.perf_counter()
            scores = run_variant(v, X_train, X_test, 0)
            r = {"dataset": short(path), "variant": v, "seed": 0,
                 "auc": float(roc_auc_score(y_test, scores)),
                 "seconds": time.perf_counter() - start}
            results.append(r)
            with args.out.open("a") as f:
                f.write(json.dumps(r) + "\n")
            print(json.dumps(r), flush=True)
    table = render(results, args.variants)
    print(table)
    if args.write:
        update_section(args.write, "anomaly_choices",
                       "Anomaly detection: how the defaults were chosen", table)


if __name__ == "__main__":
    main()
