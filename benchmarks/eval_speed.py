"""Evaluation speed: importance-sampled NLL over the full Fashion-MNIST test set, fp32 and bf16.

Trains the reference VAE (MLP 784-512-256-16, Bernoulli decoder, batch 128, Adam 1e-3) in
fp32 for --epochs epochs, then scores all 10k test images with K importance samples
(``score_samples``: vectorised over samples and rows, chunked to a memory budget, common
random numbers) four times, in one process: with the model's fp32 precision and with
``precision="bf16-mixed"`` (decoder and encoder matrix work in bf16, log-likelihoods and
log-sum-exp in float32), each eager and with ``compile=True``. A compiled setting is first
called on the rows of two evaluation chunks, which compiles it for the chunk's shape; that call is reported
as the compile time, and the 10k rows are timed after it. Reports wall time and NLL of each.

Usage: python benchmarks/eval_speed.py [--epochs 10] [--k 1000] [--write BENCHMARKS.md]
"""

from __future__ import annotations

import argparse
import time

import torch

import aekit
from aekit.estimator.inference import rows_per_chunk
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
    warm_rows = 2 * rows_per_chunk(model, X_test.shape[1], args.k)
    rows = []
    for precision, use_compile in (("32", False), ("bf16-mixed", False), ("32", True),
                                   ("bf16-mixed", True)):
        model.set_params(precision=precision, compile=use_compile)
        warm = None
        if use_compile:
            start = time.perf_counter()
            model.score_samples(X_test[:warm_rows])
            warm = time.perf_counter() - start
        start = time.perf_counter()
        nll = -model.score(X_test)
        rows.append((precision, use_compile, nll, time.perf_counter() - start, warm))
        print(f"{precision} compile={use_compile}: NLL {nll:.3f} nats in {rows[-1][3]:.1f} s"
              + ("" if warm is None else f" (first call on {warm_rows} rows {warm:.1f} s)"),
              flush=True)
    lines = [
        "<!-- eval_speed:start -->",
        f"Command: `python benchmarks/eval_speed.py --epochs {args.epochs} --k {args.k} "
        f"--write BENCHMARKS.md`. Machine: {machine_description()}; "
        f"torch {torch.__version__}; aekit {aekit.__version__}; "
        f"{time.strftime('%Y-%m-%d')}.", "",
        f"Reference VAE trained {args.epochs} epochs in fp32; `score_samples` with K={args.k} "
        "over all 10k Fashion-MNIST test images (grey levels), in one process.", "",
        "| evaluation precision | compile | test NLL [nats] | wall time | first call "
        f"(compiles; {warm_rows} rows) |", "|---|---|---|---|---|"]
    lines += [f"| {p} | {'yes' if c else 'no'} | {nll:.3f} | {s:.1f} s | "
              f"{'–' if w is None else f'{w:.1f} s'} |" for p, c, nll, s, w in rows]
    fastest = min(rows, key=lambda r: r[3])
    lines += ["", f"Fastest: {fastest[0]}{' + compile' if fastest[1] else ''}, "
              f"{fastest[3]:.1f} s, {rows[0][3] / fastest[3]:.2f}x the eager fp32 time; its NLL "
              f"differs from fp32's by {fastest[2] - rows[0][2]:+.3f} nats.",
              "<!-- eval_speed:end -->"]
    text = "\n".join(lines)
    print(text)
    if args.write:
        update_section(args.write, "eval_speed", "Evaluation speed: K=1000 NLL on 10k images",
                       text)


if __name__ == "__main__":
    main()
