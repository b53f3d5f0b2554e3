"""Where a training step's time goes on a GPU: aekit's step against the bare loop's.

On a GPU the reference network (MLP 784-512-256-16, Bernoulli decoder, batch 128) is far
too small to keep the device busy: a step takes as long as the host needs to launch its
kernels. This script measures, for one step of each variant, in one process:

  bare        the bare fp32 loop's step (core_speed.BareVAE, fused Adam)
  bare_graph  the same step captured whole (forward, backward, Adam with capturable=True)
              in one CUDA graph and replayed: what removing the launch overhead can give
  aekit_32    aekit's own step (VAE._train_step: loss, distributions, finiteness flag,
              fused Adam), precision="32"
  aekit_bf16  the same, precision="bf16-mixed"

and prints milliseconds per step (median of --rounds alternating rounds of --steps steps,
each timed between two ``torch.cuda.synchronize()``), then, from ``torch.profiler`` over
--steps steps, the kernels launched per step and the ATen operators aekit's step calls
more often than the bare one.

Usage: python benchmarks/gpu_step_profile.py [--steps 200] [--rounds 5] (needs CUDA)
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import warnings
from collections import Counter
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from core_speed import BATCH, LATENT, LR, BareVAE  # noqa: E402

VARIANTS = ("bare", "bare_graph", "aekit_32", "aekit_bf16")


def _batches(n_steps: int, device: torch.device) -> torch.Tensor:
    g = torch.Generator(device=device).manual_seed(0)
    return (torch.rand(n_steps, BATCH, 784, generator=g, device=device) < 0.3).float()


def train_step(model: BareVAE):
    """The bare loop's step for ``model``: its textbook loss, fused Adam."""
    opt = torch.optim.Adam(model.parameters(), lr=LR, fused=True)

    def step(x: torch.Tensor) -> None:
        loss = model.loss(x)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return step


def bare_step(device: torch.device):
    torch.manual_seed(0)
    return train_step(BareVAE(784).to(device))


def bare_graph_step(device: torch.device):
    """The whole step in one CUDA graph, as in PyTorch's CUDA-graph notes (whole-network
    capture): static input, grads allocated inside the capture, Adam capturable."""
    torch.manual_seed(0)
    model = BareVAE(784).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=LR, capturable=True)
    static_x = torch.zeros(BATCH, 784, device=device)
    side = torch.cuda.Stream(device)
    side.wait_stream(torch.cuda.current_stream(device))
    with torch.cuda.stream(side):                  # warm-up outside the capture
        for _ in range(3):
            opt.zero_grad(set_to_none=True)
            model.loss(static_x).backward()
            opt.step()
    torch.cuda.current_stream(device).wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    opt.zero_grad(set_to_none=True)
    with torch.cuda.graph(graph):
        model.loss(static_x).backward()
        opt.step()

    def step(x: torch.Tensor) -> None:
        static_x.copy_(x)
        graph.replay()
    return step


def aekit_step(device: torch.device, precision: str):
    import aekit

    g = torch.Generator().manual_seed(0)
    X = (torch.rand(256, 784, generator=g) < 0.3).float().numpy()
    with warnings.catch_warnings():        # one epoch on 256 random rows: it collapses
        warnings.simplefilter("ignore")
        model = aekit.VAE(n_components=LATENT, hidden_layer_sizes=(512, 256),
                          likelihood="bernoulli", batch_size=BATCH, max_iter=1,
                          random_state=0, precision=precision, device=str(device)).fit(X)
    ctx = aekit.FitContext.standalone(torch.Generator(device=device).manual_seed(0), precision)
    ctx.loss = lambda x, y: model._loss(x, y, ctx)
    opt = model._configure_optimizers()
    model.module_.train()
    return lambda x: model._train_step(x, None, opt, ctx)


def build(name: str, device: torch.device):
    if name == "bare":
        return bare_step(device)
    if name == "bare_graph":
        return bare_graph_step(device)
    return aekit_step(device, "32" if name == "aekit_32" else "bf16-mixed")


def time_steps(step, batches: torch.Tensor) -> float:
    torch.cuda.synchronize()
    start = time.perf_counter()
    for x in batches:
        step(x)
    torch.cuda.synchronize()
    return (time.perf_counter() - start) / len(batches) * 1e3


def profile(step, batches: torch.Tensor) -> tuple[float, Counter]:
    """Kernels launched per step, and ATen operator calls per step by name."""
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    with torch_profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        for x in batches:
            step(x)
        torch.cuda.synchronize()
    kernels, ops = 0, Counter()
    for event in prof.events():
        if event.device_type == torch.autograd.DeviceType.CUDA:
            kernels += 1
        elif event.name.startswith("aten::"):
            ops[event.name] += 1
    n = len(batches)
    return kernels / n, Counter({k: v / n for k, v in ops.items()})


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--variants", default=",".join(VARIANTS))
    args = ap.parse_args()
    if not torch.cuda.is_available():
        print("benchmarks/gpu_step_profile.py needs a CUDA GPU; nothing run")
        return
    device = torch.device("cuda")
    names = args.variants.split(",")
    steps = {name: build(name, device) for name in names}
    batches = _batches(args.steps, device)
    for step in steps.values():                       # warm up every variant
        time_steps(step, batches[:20])
    times: dict[str, list[float]] = {name: [] for name in names}
    for r in range(args.rounds):
        for name in (names if r % 2 == 0 else names[::-1]):
            times[name].append(time_steps(steps[name], batches))
    print(f"{torch.cuda.get_device_name()}; torch {torch.__version__}; batch {BATCH}; "
          f"{args.rounds} rounds of {args.steps} steps\n")
    print("| step | ms / step (median) | s / epoch of 469 steps | kernels / step |")
    print("|---|---|---|---|")
    ops = {}
    for name in names:
        kernels, ops[name] = profile(steps[name], batches[:50])
        ms = statistics.median(times[name])
        print(f"| {name} | {ms:.3f} | {ms * 469 / 1e3:.2f} | {kernels:.0f} |")
    if "bare" in ops and "aekit_32" in ops:
        extra = {k: v - ops["bare"].get(k, 0) for k, v in ops["aekit_32"].items()}
        top = sorted(((v, k) for k, v in extra.items() if v > 0.5), reverse=True)[:20]
        print("\nATen calls per step, aekit_32 minus bare (top 20): "
              + ", ".join(f"{k.removeprefix('aten::')} +{v:.0f}" for v, k in top))
        print(f"all ATen calls per step: bare {sum(ops['bare'].values()):.0f}, "
              f"aekit_32 {sum(ops['aekit_32'].values()):.0f}")


if __name__ == "__main__":
    main()
