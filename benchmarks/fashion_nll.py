"""Dynamically binarized Fashion-MNIST: test NLL with K importance samples for VAE and IWAE.

Protocol (Burda et al. 2015): training images are re-binarized every epoch
(``binarize="dynamic"``), the test set is binarized once with a fixed seed
(``aekit.datasets.binarize(X_test, random_state=0)``), and the NLL is the
importance-sampled estimate with K samples over all 10k test images, in nats.
Network: MLP 784-512-256-k, one stochastic layer, Bernoulli decoder, Adam 1e-3, batch 128.

Usage: python benchmarks/fashion_nll.py [--epochs 30] [--k 5000] [--write BENCHMARKS.md]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

import aekit
from aekit.evaluation.evaluate import importance_sampled_log_likelihood
from aekit.evaluation.quick_bench import machine_description, update_section


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--k", type=int, default=5000)
    ap.add_argument("--n-components", type=int, default=32)
    ap.add_argument("--models", default="vae,iwae")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: all)")
    ap.add_argument("--section", default="fashion_nll",
                    help="BENCHMARKS.md section to write (one per configuration)")
    ap.add_argument("--verbose", type=int, default=0, help="2: print every epoch")
    ap.add_argument("--write")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    X, _ = aekit.datasets.load("fashion-mnist", split="train")
    X_test, _ = aekit.datasets.load("fashion-mnist", split="test")
    X_test = aekit.datasets.binarize(X_test, random_state=0)
    rows = []
    for name in args.models.split(","):
        model = aekit.get_model(name, n_components=args.n_components,
                                hidden_layer_sizes=(512, 256), likelihood="bernoulli",
                                binarize="dynamic", max_iter=args.epochs, batch_size=128,
                                n_iter_no_change=args.epochs + 1, random_state=0,
                                verbose=args.verbose)
        start = time.perf_counter()
        model.fit(X)
        fit_s = time.perf_counter() - start
        start = time.perf_counter()
        ll, _ = importance_sampled_log_likelihood(model, X_test, args.k, random_state=0)
        eval_s = time.perf_counter() - start
        mean, stderr = float(-np.mean(ll)), float(np.std(ll, ddof=1) / np.sqrt(len(ll)))
        rows.append((type(model).__name__, mean, stderr, fit_s, eval_s))
        print(f"{name}: NLL {mean:.2f} +- {stderr:.2f} nats; fit {fit_s / 60:.1f} min, "
              f"eval {eval_s / 60:.1f} min", flush=True)
    lines = [
        f"<!-- {args.section}:start -->",
        f"Command: `python benchmarks/fashion_nll.py --epochs {args.epochs} --k {args.k} "
        f"--n-components {args.n_components} --models {args.models}"
        + (f" --threads {args.threads}" if args.threads else "")
        + (f" --section {args.section}" if args.section != "fashion_nll" else "")
        + " --write BENCHMARKS.md`. Machine: "
        f"{machine_description()}; torch {torch.__version__}; "
        f"aekit {aekit.__version__}; {time.strftime('%Y-%m-%d')}.", "",
        f"Dynamically binarized Fashion-MNIST, MLP 784-512-256-{args.n_components}, Bernoulli "
        f"decoder, {args.epochs} epochs; NLL over all 10k test images (binarized once, seed 0) "
        f"with K={args.k} importance samples; ± is the standard error over test images.", "",
        "| model | test NLL [nats] | training | evaluation |", "|---|---|---|---|"]
    lines += [f"| {n} | {m:.2f} ± {s:.2f} | {f / 60:.1f} min | {e / 60:.1f} min |"
              for n, m, s, f, e in rows]
    lines += ["| VAE, published (Exemplar VAE paper, Norouzi et al. 2020, Table 1) | 228.70 | "
              "| |", f"<!-- {args.section}:end -->"]
    text = "\n".join(lines)
    print(text)
    if args.write:
        title = "Dynamically binarized Fashion-MNIST likelihoods"
        if args.section != "fashion_nll":
            title += f", {args.epochs} epochs"
        update_section(args.write, args.section, title, text)


if __name__ == "__main__":
    main()
