"""Fashion-MNIST one class against the rest: AUROC of aekit's AnomalyDetector against
IsolationForest, OC-SVM and PyOD's AutoEncoder, same run.

Protocol (Ruff et al., "Deep One-Class Classification", ICML 2018, on Fashion-MNIST as
in its follow-ups): for each class c, train on the 6,000 training images of c (grey levels
in [0, 1]); score all 10,000 test images, c normal and the nine other classes anomalous;
AUROC per class and the mean over the ten, over ``--seeds`` seeds. Published anchors on
this protocol: Deep SVDD 89.2 mean AUROC, geometric-transformation classifiers (GEOM,
Golan & El-Yaniv 2018) 93.5. Methods, default hyper-parameters: ``aekit.AnomalyDetector()``
(its default model, ``aekit.detection.default_model()``, on the flat rows; ``--images``
gives it (28, 28) images, so conv networks); scikit-learn's ``IsolationForest`` and
``OneClassSVM`` (default gamma); PyOD's ``AutoEncoder`` when ``import pyod`` works.

Every finished (class, seed, method) goes to ``results.jsonl`` in ``--checkpoint-dir`` as
it finishes; ``--resume`` skips those already there. Needs Fashion-MNIST
(``apt-get install -y dataset-fashion-mnist`` or a download through aekit.datasets).

Usage: python benchmarks/anomaly_images.py [--classes 0,1] [--seeds 3] [--epochs N]
       [--checkpoint-dir runs/anomaly_images --resume] [--write BENCHMARKS.md]
"""

from __future__ import annotations

import argparse
import json
import time
import warnings
from pathlib import Path

import numpy as np
import results_log
import torch
from sklearn.ensemble import IsolationForest
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics import roc_auc_score
from sklearn.svm import OneClassSVM

import aekit
from aekit.detection import default_model
from aekit.evaluation.quick_bench import machine_description, update_section

CLASSES = ("T-shirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker",
           "bag", "boot")
PUBLISHED = {"Deep SVDD": 89.2, "GEOM": 93.5}


def run_aekit(train, test, seed, epochs, images):
    """The default detector's score (-ELBO(x)), and from the same fitted model the
    importance-sampled -log p(x) (``score_type="nll"``), an ablation without a second fit."""
    model = None if epochs is None else default_model(max_iter=epochs)
    shape = (-1, 28, 28) if images else (len(train), -1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        det = aekit.AnomalyDetector(model, random_state=seed).fit(train.reshape(shape))
    test = test.reshape((-1, 28, 28) if images else (len(test), -1))
    return {"aekit": det.anomaly_score(test), "aekit_nll": -det.model_.score_samples(test)}


def run_iforest(train, test, seed, epochs, images):
    return -IsolationForest(random_state=seed).fit(train).score_samples(test)


def run_ocsvm(train, test, seed, epochs, images):
    return -OneClassSVM().fit(train).score_samples(test)


def pyod_ae():
    try:
        from pyod.models.auto_encoder import AutoEncoder
    except ImportError:
        return None

    def run(train, test, seed, epochs, images):
        kwargs = {} if epochs is None else {"epoch_num": epochs}
        return AutoEncoder(random_state=seed, verbose=0, **kwargs).fit(train) \
            .decision_function(test)
    return run


def render(results: dict, classes: list[int], methods: list[str], args) -> str:
    names = {"aekit": "aekit (default: -ELBO)", "aekit_nll": "aekit, score_type='nll'",
             "iforest": "IForest", "ocsvm": "OC-SVM", "pyod_ae": "PyOD AE"}
    head = ["class"] + [names.get(m, m) for m in methods]
    lines = ["<!-- anomaly_images:start -->",
             f"Command: `python benchmarks/anomaly_images.py --seeds {args.seeds}"
             + (f" --epochs {args.epochs}" if args.epochs else "")
             + (" --images" if args.images else "")
             + f" --checkpoint-dir runs/anomaly_images`. Machine: {machine_description()}. "
             "AUROC (%) on the 10,000 test images, one class normal; mean ± sd over seeds. "
             f"Published on this protocol: Deep SVDD {PUBLISHED['Deep SVDD']}, GEOM "
             f"{PUBLISHED['GEOM']} (means over the classes).", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    means = {m: [] for m in methods}
    for c in classes:
        row = [f"{c} {CLASSES[c]}"]
        for m in methods:
            aucs = [100 * r["auroc"] for (cc, s, mm), r in results.items() if cc == c and mm == m]
            row.append(f"{np.mean(aucs):.1f} ± {np.std(aucs):.1f}" if aucs else "—")
            if aucs:
                means[m].append(np.mean(aucs))
        lines.append("| " + " | ".join(row) + " |")
    if len(classes) > 1:
        lines.append("| mean | " + " | ".join(
            f"{np.mean(means[m]):.1f}" if len(means[m]) == len(classes) else "—"
            for m in methods) + " |")
    seconds = {m: [r["seconds"] for (_, _, mm), r in results.items() if mm == m]
               for m in methods}
    lines.append("| fit+score [s], mean | " + " | ".join(
        f"{np.mean(seconds[m]):.1f}" if seconds[m] else "—" for m in methods) + " |")
    lines.append("<!-- anomaly_images:end -->")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--classes", default=",".join(map(str, range(10))))
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--epochs", type=int, default=None,
                    help="max_iter / epochs of the networks (smoke runs; not the defaults)")
    ap.add_argument("--images", action="store_true",
                    help="give aekit (28, 28) images (conv networks) instead of flat rows")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--checkpoint-dir", type=Path)
    ap.add_argument("--resume", action="store_true")
    ap.add_argument("--write")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    classes = [int(c) for c in args.classes.split(",")]
    X, y = aekit.datasets.load("fashion-mnist", split="train")
    X_test, y_test = aekit.datasets.load("fashion-mnist", split="test")
    runners = {"aekit": run_aekit, "iforest": run_iforest, "ocsvm": run_ocsvm}
    if pyod_ae() is not None:
        runners["pyod_ae"] = pyod_ae()
    log, done = results_log.open_log(args.checkpoint_dir, args.resume)
    results = {(r["class"], r["seed"], r["method"]): r for r in done}
    methods = [m for name in runners for m in ([name, "aekit_nll"] if name == "aekit"
                                                else [name])]
    for c in classes:
        train = X[y == c]
        anomalous = (y_test != c).astype(int)
        for seed in range(args.seeds):
            for name, run in runners.items():
                if (c, seed, name) in results:
                    continue
                start = time.perf_counter()
                out = run(train, X_test, seed, args.epochs, args.images)
                seconds = time.perf_counter() - start     # one fit for all its scores
                for m, scores in (out.items() if isinstance(out, dict) else [(name, out)]):
                    r = {"class": c, "seed": seed, "method": m,
                         "auroc": float(roc_auc_score(anomalous, scores)),
                         "seconds": seconds, "epochs": args.epochs}
                    results[(c, seed, m)] = r
                    results_log.append(log, r)
                    print(json.dumps(r), flush=True)
    table = render(results, classes, methods, args)
    print(table)
    if args.write:
        update_section(args.write, "anomaly_images", "Anomaly detection (Fashion-MNIST one "
                       "class)", table)


if __name__ == "__main__":
    main()
