"""Speed of aekit's VAE against a bare PyTorch loop and pythae, in one run, same data and network.

Reference network: Fashion-MNIST 60k, MLP 784-512-256-16 (mean and log-variance heads),
Bernoulli decoder, batch 128, Adam 1e-3. Each configuration trains in its own process
(so its peak memory is its own), one after another, and the whole sequence runs --rounds
times in alternating order (a drift in the shared machine's speed then hits every
configuration alike):

  (a) bare   a bare fp32 PyTorch loop (tensor slicing, textbook loss, fused Adam), in the
             default floating-point mode (IEEE gradual underflow: subnormals kept)
  (a') bare_ftz  the same loop with subnormals flushed to zero in every thread
  (b) fp32   aekit, precision="32" (subnormals flushed: aekit's default)
  (b') fp32_ieee  aekit, precision="32", flush_denormal=False: compare with (a)
  (c) bf16   aekit, precision="bf16-mixed"
  (d) compile  aekit, precision="bf16-mixed", compile=True (compile time reported apart)
  (e) pythae pythae's VAE with the same encoder/decoder, when --pythae-python is given
  (f) ddp_bf16  aekit bf16-mixed trained by 2 processes of 1 thread each (torchrun, gloo):
      the same global batch of 128, each process computing half of it
  (g, h) the matrix products of one training step alone, fp32 and bf16, times the steps of
      an epoch: the floor under any loop built on torch's matrix kernels on this machine

On ``--device cuda`` the DDP row (f) runs one process per GPU and is skipped, with the
reason printed, on a machine with fewer than 2; the bare loop's epochs are timed between
``torch.cuda.synchronize()`` calls, and aekit's epoch times end with the epoch's sums read
back from the device, which waits for the GPU too.

Seconds per epoch are medians over epochs 2 and later of every round; test NLL is
importance-sampled with --k samples on the first --n-test test images after the same number
of epochs, computed by aekit's score_samples for (a)-(d) and (f) (the bare model's weights
are loaded into an aekit VAE) and by pythae's own get_nll for (e). Separately it times
aekit's NLL with K=1000 on the full 10k test set.

Usage:
  python benchmarks/speed.py [--epochs 10] [--rounds 2] [--pythae-python .venv-pythae/bin/python]
                             [--device cpu|cuda] [--write BENCHMARKS.md]
Set up pythae's environment with `make pythae-env` (a separate venv; pythae is not an
aekit dependency).
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

import aekit
import aekit.training.distributed
from aekit.evaluation.quick_bench import machine_description, update_section

HERE = Path(__file__).resolve().parent
CONFIGS = {
    "bare": {"flush": False},
    "bare_ftz": {"flush": True},
    "fp32": {"precision": "32"},
    "fp32_ieee": {"precision": "32", "flush_denormal": False},
    "bf16": {"precision": "bf16-mixed"},
    "compile": {"precision": "bf16-mixed", "compile": True},
    # the same global batch of 128 split over 2 processes of 1 thread (torchrun, gloo)
    "ddp_bf16": {"precision": "bf16-mixed"},
}


def _model(epochs: int, device: str, **extra) -> aekit.VAE:
    return aekit.VAE(n_components=16, hidden_layer_sizes=(512, 256), likelihood="bernoulli",
                     batch_size=128, learning_rate=1e-3, max_iter=epochs, tol=0.0,
                     n_iter_no_change=epochs + 1, random_state=0, device=device, **extra)


def _peak_memory_mib(device: str) -> float:
    if device.startswith("cuda"):
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _bare_fit(X: torch.Tensor, epochs: int, flush: bool) -> tuple[torch.nn.Module, list[float]]:
    """core_speed's bare loop on ``X``'s device. On the CPU it is ``bare_fit`` itself; on a
    GPU the same loop with the network moved to the device, the permutation drawn there,
    and each epoch timed between two ``torch.cuda.synchronize()`` (kernels run
    asynchronously: without them the clock stops before the GPU does)."""
    sys.path.insert(0, str(HERE))
    from core_speed import BATCH, LR, BareVAE, bare_fit

    if X.device.type != "cuda":
        return bare_fit(X, epochs, seed=0, flush=flush)
    torch.manual_seed(0)
    model = BareVAE(X.shape[1]).to(X.device)
    opt = torch.optim.Adam(model.parameters(), lr=LR, fused=True)
    times = []
    for _ in range(epochs):
        torch.cuda.synchronize(X.device)
        start = time.perf_counter()
        perm = torch.randperm(len(X), device=X.device)
        for i in range(0, len(X), BATCH):
            loss = model.loss(X[perm[i:i + BATCH]])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        torch.cuda.synchronize(X.device)
        times.append(time.perf_counter() - start)
    return model, times


def _skipped(names: list[str], device: str) -> dict[str, str]:
    """Configurations this machine cannot run, with the reason: the DDP row on CUDA needs
    a GPU for each of its 2 processes."""
    if not device.startswith("cuda"):
        return {}
    gpus = torch.cuda.device_count()
    return {name: f"needs 2 GPUs, this machine has {gpus}"
            for name in names if name.startswith("ddp") and gpus < 2}


def run_config(name: str, epochs: int, k: int, n_test: int, device: str) -> dict:
    """Train one configuration in this process and return its measurements."""
    X, _ = aekit.datasets.load("fashion-mnist", split="train")
    X_test, _ = aekit.datasets.load("fashion-mnist", split="test")
    if name.startswith("bare"):
        net, times = _bare_fit(torch.from_numpy(X).to(device), epochs, **CONFIGS[name])
        model = _model(1, device).fit(X[:256])      # an aekit VAE to hold the same weights
        state = dict(zip(model.module_.encoder.state_dict(), net.enc.state_dict().values()))
        model.module_.encoder.load_state_dict(state)
        state = dict(zip(model.module_.decoder.state_dict(), net.dec.state_dict().values()))
        model.module_.decoder.load_state_dict(state)
        compile_s = 0.0
    else:
        if name.startswith("ddp"):
            torch.set_num_threads(1)
        model = _model(epochs, device, **CONFIGS[name]).fit(X)
        times = list(model.history_["time"])
        compile_s = times[0] - statistics.median(times[1:]) if name == "compile" else 0.0
    result = {}
    if aekit.training.distributed.is_main_process():
        model.set_params(n_importance_samples=k, compile=False)
        result = {"times": times, "nll": -model.score(X_test[:n_test]),
                  "peak_mib": _peak_memory_mib(device), "compile_s": compile_s}
    aekit.training.distributed.finish()
    return result


LAYERS = [(784, 512), (512, 256), (256, 32), (16, 256), (256, 512), (512, 784)]


def step_products(dtype: torch.dtype, device: torch.device, batch: int = 128) -> list:
    """The matrix products of one training step of the reference network, as calls: each
    layer's forward (addmm) and weight gradient, and the input gradient of every layer but
    the first (the data need none)."""
    g = torch.Generator().manual_seed(0)
    ops = []
    for i, (n_in, n_out) in enumerate(LAYERS):
        x, w, b, dy = (torch.randn(*shape, generator=g).to(device, dtype) for shape in
                       ((batch, n_in), (n_out, n_in), (n_out,), (batch, n_out)))
        ops.append(lambda x=x, w=w, b=b: torch.addmm(b, x, w.t()))
        ops.append(lambda x=x, dy=dy: dy.t() @ x)
        if i != 0:
            ops.append(lambda w=w, dy=dy: dy @ w)
    return ops


def matmul_floor(device: str, rounds: int = 7, steps: int = 60) -> dict:
    """Seconds per epoch of the reference network's matrix products alone, fp32 and bf16.

    Timing exactly the products of :func:`step_products` (469 steps an epoch), alternating
    the two dtypes in rounds, bounds what
    any loop built on torch's matrix kernels can reach on this machine: a bf16 epoch cannot
    take less than its products."""
    dev = torch.device(device)
    plans = {str(dtype).removeprefix("torch."): step_products(dtype, dev)
             for dtype in (torch.float32, torch.bfloat16)}
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    times = {name: [] for name in plans}
    for r in range(rounds + 1):
        for name, ops in plans.items():
            sync()
            start = time.perf_counter()
            for _ in range(steps):
                for op in ops:
                    op()
            sync()
            if r:                     # round 0 warms up
                times[name].append((time.perf_counter() - start) / steps)
    per_epoch = -(-60000 // 128)
    return {name: statistics.median(t) * per_epoch for name, t in times.items()}


def full_nll_time(device: str, epochs: int) -> dict:
    """Wall time of aekit's K=1000 importance-sampled NLL over the 10k test images."""
    X, _ = aekit.datasets.load("fashion-mnist", split="train")
    X_test, _ = aekit.datasets.load("fashion-mnist", split="test")
    model = _model(epochs, device).fit(X).set_params(n_importance_samples=1000)
    start = time.perf_counter()
    nll = -model.score(X_test)
    return {"nll_k1000_full": nll, "seconds": time.perf_counter() - start}


def _pool(outs: list[dict]) -> dict:
    """One configuration's rounds as one result: the epochs after each round's first, the
    first round's NLL (every round has the same seed), the largest peak memory and compile
    time."""
    return {"times": [t for o in outs for t in o["times"][1:]], "nll": outs[0]["nll"],
            "peak_mib": max(o["peak_mib"] for o in outs),
            "compile_s": max(o["compile_s"] for o in outs)}


def _child(args: list[str]) -> dict:
    out = subprocess.run(args, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"{' '.join(args[:4])} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--k", type=int, default=200)
    ap.add_argument("--n-test", type=int, default=2000)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--pythae-python", help="python of an environment with pythae installed")
    ap.add_argument("--configs", default=",".join(CONFIGS))
    ap.add_argument("--rounds", type=int, default=2,
                    help="run every configuration this many times, in alternating order")
    ap.add_argument("--skip-full-nll", action="store_true")
    ap.add_argument("--write", help="update this markdown file's speed section")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args()

    if args.child:
        result = (full_nll_time(args.device, args.epochs) if args.child == "full_nll"
                  else matmul_floor(args.device) if args.child == "matmul"
                  else run_config(args.child, args.epochs, args.k, args.n_test, args.device))
        if result:
            print(json.dumps(result))
        return

    me = [sys.executable, __file__, "--epochs", str(args.epochs), "--k", str(args.k),
          "--n-test", str(args.n_test), "--device", args.device]
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone",
                "--nproc_per_node=2"]
    names = args.configs.split(",") + (["pythae"] if args.pythae_python else []) + ["matmul"]
    for name, reason in _skipped(names, args.device).items():
        print(f"skipping {name}: {reason}", flush=True)
        names.remove(name)
    rounds: dict[str, list[dict]] = {name: [] for name in names}
    with tempfile.TemporaryDirectory() as tmp:
        if args.pythae_python:
            X, _ = aekit.datasets.load("fashion-mnist", split="train")
            X_test, _ = aekit.datasets.load("fashion-mnist", split="test")
            np.save(f"{tmp}/train.npy", X)
            np.save(f"{tmp}/test.npy", X_test)
        for r in range(args.rounds):
            # alternate the order so that a drift in the machine's speed hits all alike
            for name in (names if r % 2 == 0 else names[::-1]):
                if name == "pythae":
                    out = _child([args.pythae_python, str(HERE / "_pythae_vae.py"),
                                  f"{tmp}/train.npy", f"{tmp}/test.npy", str(args.epochs),
                                  str(args.k), str(args.n_test), "0", args.device])
                    out = {"times": out["times"], "nll": out["nll"],
                           "peak_mib": out["peak_rss_mib"], "compile_s": 0.0}
                else:
                    cmd = [*me, "--child", name]
                    out = _child([*torchrun, *cmd[1:]] if name.startswith("ddp") else cmd)
                rounds[name].append(out)
                print(f"round {r + 1}: {name}", json.dumps(out), flush=True)
    matmul = rounds.pop("matmul")
    floor = {dtype: statistics.median(o[dtype] for o in matmul)
             for dtype in ("float32", "bfloat16")}
    results = {name: _pool(outs) for name, outs in rounds.items()}
    full = None if args.skip_full_nll else _child([*me, "--child", "full_nll"])
    report = summarise(results, full, floor, args)
    print(report)
    if args.write:
        update_section(args.write, "speed",
                       "Training speed: aekit, a bare loop and pythae (Fashion-MNIST)", report)


def summarise(results: dict, full: dict | None, floor: dict,
              args: argparse.Namespace) -> str:
    labels = {"bare": "(a) bare PyTorch loop, fp32, subnormals kept (IEEE)",
              "bare_ftz": "(a') bare PyTorch loop, fp32, subnormals flushed",
              "fp32": "(b) aekit fp32 (subnormals flushed, the default)",
              "fp32_ieee": "(b') aekit fp32, flush_denormal=False",
              "bf16": "(c) aekit bf16-mixed", "compile": "(d) aekit bf16-mixed + compile",
              "pythae": "(e) pythae 0.1.2 VAE",
              "ddp_bf16": "(f) aekit bf16-mixed, 2 processes of 1 thread (torchrun)"}
    med = {n: statistics.median(r["times"]) for n, r in results.items()}
    ref = med.get("pythae")
    lines = [
        "<!-- speed:start -->",
        f"Command: `python benchmarks/speed.py --epochs {args.epochs} --rounds {args.rounds} "
        f"--k {args.k} "
        f"--n-test {args.n_test} --device {args.device}"
        + (f" --configs {args.configs}" if args.configs != ",".join(CONFIGS) else "")
        + (f" --pythae-python {args.pythae_python}" if "pythae" in results else "")
        + " --write BENCHMARKS.md`",
        f"Machine: {machine_description()}, device "
        f"{args.device}; torch {torch.__version__}; aekit {aekit.__version__}; "
        f"{time.strftime('%Y-%m-%d')}.",
        "",
        f"| configuration | s / epoch (median, epochs 2+) | samples / s | vs pythae | peak memory "
        f"(MiB) | test NLL after {args.epochs} epochs (K={args.k}, {args.n_test} images) |",
        "|---|---|---|---|---|---|",
    ]
    for name, r in results.items():
        speedup = f"{ref / med[name]:.2f}x" if ref else "n/a"
        extra = f" (+{r['compile_s']:.0f} s compile)" if r["compile_s"] else ""
        lines.append(f"| {labels[name]} | {med[name]:.2f}{extra} | {60000 / med[name]:,.0f} | "
                     f"{speedup} | {r['peak_mib']:.0f} | {r['nll']:.2f} |")
    for dtype, tag in (("float32", "g"), ("bfloat16", "h")):
        speedup = f"{ref / floor[dtype]:.2f}x" if ref else "n/a"
        lines.append(f"| ({tag}) the step's matrix products alone, {dtype} (no loop) | "
                     f"{floor[dtype]:.2f} | {60000 / floor[dtype]:,.0f} | {speedup} | – | – |")
    for ours, bare, mode in (("fp32", "bare_ftz", "both with subnormals flushed"),
                             ("fp32_ieee", "bare", "both in IEEE mode")):
        if ours in med and bare in med:
            lines.append(f"\naekit fp32 / bare loop time per epoch, {mode}: "
                         f"**{med[ours] / med[bare]:.3f}**.")
    if "bare" in med and "bare_ftz" in med:
        lines.append(f"Flushing subnormals alone: the bare loop {med['bare'] / med['bare_ftz']:.2f}x "
                     "faster per epoch.")
    if full:
        lines.append(f"Importance-sampled NLL with K=1000 over all 10k test images (aekit fp32 "
                     f"model): {full['nll_k1000_full']:.2f} nats in {full['seconds']:.1f} s.")
    lines.append("<!-- speed:end -->")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
