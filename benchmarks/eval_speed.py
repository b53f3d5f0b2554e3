"""Evaluation speed: importance-sampled NLL over the full Fashion-MNIST test set, fp32 and bf16.

Trains the reference VAE (MLP 784-512-256-16, Bernoulli decoder, batch 128, Adam 1e-3) in
fp32 for --epochs epochs, then scores all 10k test images with K importance samples
(``score_samples``: vectorised over samples and rows, chunked to a memory budget, common
random numbers) twice, in one process: with the model's fp32 precision and with
``precision="bf16-mixed"`` (decoder and encoder matrix work in bf16 on the CPU's AMX
units, log-likelihoods and log-sum-exp in float32). Reports wall time and NLL of each.

Usage: python benchmarks/eval_speed.py [--epochs 10] [--k 1000] [--write BENCHMARKS.md]
"""

from __future__ import annotations

import argparse
import time

import torch

import aekit
from aekit.evaluation.quick_bench import machine_description, update_section


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--k", type=int, default=1000)
    ap.add_argument("--write")
    args = ap.parse_args()
    X, _ = aekit.datasets.load("fashion-mnist", split="train")
    X_test, _ = aekit.datasets.load("fashion-mnist", split="test")
    model = aekit.VAE(n_components=16, hidden_layer_sizes=(512, 256), likelihood="bernoulli",
                      batch_size=128, max_iter=args.epochs, n_iter_no_change=args.epochs + 1,
                      random_state=0, device="cpu").fit(X)
    model.set_params(n_importance_samples=args.k)
    rows = []
    for precision in ("32", "bf16-mixed"):
        model.set_params(precision=precision)
        start = time.perf_counter()
        nll = -model.score(X_test)
        rows.append((precision, nll, time.perf_counter() - start))
        print(f"{precision}: NLL {nll:.3f} nats in {rows[-1][2]:.1f} s", flush=True)
    lines = [
        "<!-- eval_speed:start -->",
        f"Command: `python benchmarks/eval_speed.py --epochs {args.epochs} --k {args.k} "
        f"--write BENCHMARKS.md`. Machine: {machine_description()}; "
        f"torch {torch.__version__}; aekit {aekit.__version__}; "
        f"{time.strftime('%Y-%m-%d')}.", "",
        f"Reference VAE trained {args.epochs} epochs in fp32; `score_samples` with K={args.k} "
        "over all 10k Fashion-MNIST test images (grey levels), in one process.", "",
        "| evaluation precision | test NLL [nats] | wall time |", "|---|---|---|"]
    lines += [f"| {p} | {nll:.3f} | {s:.1f} s |" for p, nll, s in rows]
    lines += ["", f"bf16 / fp32 time: **{rows[1][2] / rows[0][2]:.2f}**; NLL difference "
              f"{rows[1][1] - rows[0][1]:+.3f} nats.", "<!-- eval_speed:end -->"]
    text = "\n".join(lines)
    print(text)
    if args.write:
        update_section(args.write, "eval_speed", "Evaluation speed: K=1000 NLL on 10k images",
                       text)


if __name__ == "__main__":
    main()
