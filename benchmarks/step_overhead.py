"""aekit's per-step overhead against a bare loop, where a step is all overhead.

On a GPU the reference VAE is launch-bound: a step takes as long as the host needs to issue
its operations (benchmarks/gpu_step_profile.py measured aekit's step at 1.26x the bare
loop's on an H200). This script reproduces that regime on a CPU, so the overhead can be
measured and cut without a GPU: the same structure (encoder 2 hidden layers, Gaussian
posterior, Bernoulli decoder, fused Adam) at a size where the arithmetic is negligible
(16 features, hidden (8, 8), 4 latent units, batch 8, one thread). What is left is Python,
dispatch and autograd bookkeeping per operation, which is what a GPU step pays as well.

Steps, timed in alternating rounds of --steps steps in one process:

  bare    the bare loop's step (textbook loss, fused Adam; no finiteness check)
  aekit   aekit's VAE step (VAE._train_step: distributions, the finiteness flag)
  aekit_torch_kl  the same with torch's general Normal-Normal KL instead of the closed form
          against N(0, I) (the code before the closed form)

Usage: python benchmarks/step_overhead.py [--rounds 9] [--steps 500]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import warnings
from pathlib import Path

import torch

import aekit
from aekit.evaluation.quick_bench import machine_description
from aekit.models.vae import VAE

sys.path.insert(0, str(Path(__file__).resolve().parent))
import gpu_step_profile  # noqa: E402
from core_speed import BareVAE  # noqa: E402

D, HIDDEN, K, BATCH = 16, (8, 8), 4, 8


def bare_step():
    torch.manual_seed(0)
    return gpu_step_profile.train_step(BareVAE(D, HIDDEN, K))


def aekit_step():
    X = (torch.rand(64, D, generator=torch.Generator().manual_seed(0)) < 0.3).float().numpy()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = aekit.VAE(n_components=K, hidden_layer_sizes=HIDDEN, likelihood="bernoulli",
                          batch_size=BATCH, max_iter=1, random_state=0).fit(X)
    ctx = aekit.FitContext.standalone(torch.Generator().manual_seed(0))
    ctx.loss = lambda x, y: model._loss(x, y, ctx)
    opt = model._configure_optimizers()
    model.module_.train()
    return lambda x: model._train_step(x, None, opt, ctx)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=9)
    ap.add_argument("--steps", type=int, default=500)
    args = ap.parse_args()
    torch.set_num_threads(1)
    steps = {"bare": bare_step(), "aekit": aekit_step(), "aekit_torch_kl": aekit_step()}
    standard = VAE._standard_prior
    batches = (torch.rand(args.steps, BATCH, D) < 0.3).float()

    def timed(name: str) -> float:
        # the torch-KL variant: the prior counted as one of a subclass's own
        VAE._standard_prior = (lambda self: False) if name == "aekit_torch_kl" else standard
        try:
            start = time.perf_counter()
            for x in batches:
                steps[name](x)
            return (time.perf_counter() - start) / len(batches) * 1e6
        finally:
            VAE._standard_prior = standard

    times: dict[str, list[float]] = {name: [] for name in steps}
    for r in range(args.rounds + 1):
        for name in (list(steps) if r % 2 == 0 else list(steps)[::-1]):
            t = timed(name)
            if r:                                    # round 0 warms up
                times[name].append(t)
    med = {name: statistics.median(t) for name, t in times.items()}
    print(f"Machine: {machine_description()}; torch {torch.__version__}; "
          f"{args.rounds} alternating rounds of {args.steps} steps, one thread\n")
    print("| step | µs / step (median) | / bare |")
    print("|---|---|---|")
    for name, m in med.items():
        print(f"| {name} | {m:.0f} | {m / med['bare']:.2f} |")


if __name__ == "__main__":
    main()
