"""Is bf16-mixed training's test NLL the same as fp32's? Both over several seeds.

The speed issue asks for the NLL after 10 epochs of bf16-mixed within 0.5 nats of fp32.
One run of each is not enough to tell: fp32 itself moves by about a nat between runs that
differ only in rounding (another CPU's matrix kernels, another seed). This trains the
reference VAE (Fashion-MNIST, MLP 784-512-256-16, Bernoulli, batch 128, Adam 1e-3) for
--epochs with each seed in each precision and reports the NLL (K=--k importance samples
on the first --n-test test images) per seed, their mean and standard deviation, and the
mean paired difference bf16 - fp32 with its standard error.

Usage: python benchmarks/precision_seeds.py [--seeds 0,1,2] [--epochs 10] [--write BENCHMARKS.md]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

import aekit
from aekit.evaluation.quick_bench import machine_description, update_section

PRECISIONS = ("32", "bf16-mixed")


def nll(seed: int, precision: str, epochs: int, k: int, n_test: int, X, X_test) -> float:
    model = aekit.VAE(n_components=16, hidden_layer_sizes=(512, 256), likelihood="bernoulli",
                      batch_size=128, learning_rate=1e-3, max_iter=epochs, tol=0.0,
                      n_iter_no_change=epochs + 1, random_state=seed, device="cpu",
                      precision=precision).fit(X)
    model.set_params(n_importance_samples=k, precision="32")   # every model scored alike
    return -model.score(X_test[:n_test])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--k", type=int, default=200)
    ap.add_argument("--n-test", type=int, default=2000)
    ap.add_argument("--write", help="update this markdown file's precision_seeds section")
    args = ap.parse_args()

    X, _ = aekit.datasets.load("fashion-mnist", split="train")
    X_test, _ = aekit.datasets.load("fashion-mnist", split="test")
    seeds = [int(s) for s in args.seeds.split(",")]
    start = time.perf_counter()
    out = {p: [] for p in PRECISIONS}
    for seed in seeds:
        for p in PRECISIONS:
            out[p].append(nll(seed, p, args.epochs, args.k, args.n_test, X, X_test))
            print(f"seed {seed} precision {p}: NLL {out[p][-1]:.2f}", flush=True)
    diffs = [b - a for a, b in zip(out["32"], out["bf16-mixed"])]
    se = statistics.stdev(diffs) / len(diffs) ** 0.5 if len(diffs) > 1 else float("nan")
    sd = {p: statistics.stdev(v) if len(v) > 1 else float("nan") for p, v in out.items()}
    lines = ["<!-- precision_seeds:start -->",
             f"Command: `python benchmarks/precision_seeds.py --seeds {args.seeds} --epochs "
             f"{args.epochs} --k {args.k} --n-test {args.n_test} --write BENCHMARKS.md` "
             f"({(time.perf_counter() - start) / 60:.0f} min). Machine: {machine_description()}; "
             f"torch {torch.__version__}; aekit {aekit.__version__}; {time.strftime('%Y-%m-%d')}.",
             "",
             f"Test NLL (nats; K={args.k}, first {args.n_test} test images, scored in fp32) "
             f"after {args.epochs} epochs of the reference VAE.", "",
             "| seed | " + " | ".join(f"precision={p}" for p in PRECISIONS) + " | bf16 - fp32 |",
             "|---|---|---|---|"]
    for i, seed in enumerate(seeds):
        lines.append(f"| {seed} | {out['32'][i]:.2f} | {out['bf16-mixed'][i]:.2f} | "
                     f"{diffs[i]:+.2f} |")
    lines.append(f"| mean ± sd | {statistics.mean(out['32']):.2f} ± {sd['32']:.2f} | "
                 f"{statistics.mean(out['bf16-mixed']):.2f} ± {sd['bf16-mixed']:.2f} | "
                 f"{statistics.mean(diffs):+.2f} ± {se:.2f} (s.e.) |")
    lines.append("<!-- precision_seeds:end -->")
    report = "\n".join(lines)
    print(report)
    if args.write:
        update_section(args.write, "precision_seeds",
                       "bf16-mixed vs fp32 test NLL over seeds", report)


if __name__ == "__main__":
    main()
