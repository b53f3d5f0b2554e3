"""``aekit demo``: the four uses on scikit-learn's digits, next to PCA, in under a minute.

Trains a VAE and an AE with 2-D codes and Bernoulli decoders on the training split, then
reports on the test split: reconstruction MSE, log-likelihood in nats, and 1-NN accuracy of
the 2-D codes (fitted on training codes), with PCA(2) as the baseline. Writes both models.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
from sklearn.decomposition import PCA

import aekit
from aekit.evaluation.array_metrics import knn_accuracy, reconstruction_mse
from aekit.reporting.report import write_report


def run_demo(output_dir: str = "aekit-demo", max_iter: int = 150, quiet: bool = False,
             random_state: int = 0) -> list[dict]:
    """Run the demo; returns the table rows (also printed) and writes models to ``output_dir``."""
    from rich.console import Console
    from rich.table import Table


    console = Console(quiet=quiet)
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    X, y = aekit.datasets.load("digits", split="train")
    X_test, y_test = aekit.datasets.load("digits", split="test")
    console.print(f"digits: {len(X)} training and {len(X_test)} test images of 8x8 pixels")

    rows, models = [], []
    common = dict(n_components=2, likelihood="bernoulli", max_iter=max_iter,
                  random_state=random_state, verbose=0 if quiet else 1)
    for model in (aekit.VAE(n_importance_samples=1000, **common), aekit.AE(**common)):
        start = time.perf_counter()
        model.fit(X)
        seconds = time.perf_counter() - start
        path = out / f"{type(model).__name__.lower()}.safetensors"
        model.save(path)
        models.append((model, seconds))
        rows.append({
            "model": type(model).__name__,
            "recon_mse": reconstruction_mse(X_test, model.reconstruct(X_test)),
            "log_likelihood": model.score(X_test),
            "knn1": knn_accuracy(model.transform(X), y, model.transform(X_test), y_test),
            "seconds": seconds,
            "file": str(path),
        })

    start = time.perf_counter()
    pca = PCA(n_components=2, random_state=random_state).fit(X)
    rows.append({
        "model": "PCA",
        "recon_mse": reconstruction_mse(X_test, pca.inverse_transform(pca.transform(X_test))),
        "log_likelihood": float("nan"),
        "knn1": knn_accuracy(pca.transform(X), y, pca.transform(X_test), y_test),
        "seconds": time.perf_counter() - start,
        "file": "",
    })

    table = Table(title="digits test split, 2-D codes")
    for column in ("model", "recon MSE", r"test log p(x) \[nats]", "1-NN acc", r"fit \[s]"):
        table.add_column(column, justify="left" if column == "model" else "right")
    for r in rows:
        ll = "n/a" if np.isnan(r["log_likelihood"]) else f"{r['log_likelihood']:.2f}"
        if r["model"] == "AE":
            ll += " *"
        table.add_row(r["model"], f"{r['recon_mse']:.4f}", ll, f"{r['knn1']:.3f}",
                      f"{r['seconds']:.1f}")
    console.print(table)
    console.print(
        "VAE log p(x): importance-sampled (K=1000) Bernoulli log-likelihood of the grey levels.\n"
        "* AE: decoder log-likelihood at the code, log p(x|z=f(x)); not a density of x.\n"
        "PCA's log-likelihood is a Gaussian density, not comparable with Bernoulli models.\n"
        f"Models written to {out}/ (load with aekit.load).")
    try:

        vae, seconds = models[0]
        index = write_report(vae, X, y, out / "report", data_name="digits", X_test=X_test,
                             y_test=y_test, training_seconds=seconds)
        console.print(f"Report: {index}")
    except ImportError as exc:      # matplotlib is an optional extra
        console.print(f"No report ({exc}).")
    return rows
