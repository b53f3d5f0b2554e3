"""Scaling out on this machine: 1 vs 2 DDP processes, and streamed fits vs data size.

Part 1 trains the reference VAE (Fashion-MNIST 60k, MLP 784-512-256-16, Bernoulli decoder,
batch 128, Adam) for a few epochs in one process (all cores) and with ``torchrun
--nproc_per_node=2`` (gloo, one thread per process), and reports seconds per epoch (median
of epochs 2+) and the throughput ratio.

Part 2 writes float32 arrays of growing size (rows of 784 features) to ``.npy`` files and
fits one epoch of a small AE from the memory-mapped file, streamed with a 64 MiB memory
budget and, where it fits, read into memory; each fit runs in its own process, which
reports its peak resident memory above what it held before the fit (Linux VmHWM).

Usage: python benchmarks/scaling.py [--epochs 4] [--sizes-mib 256,512,1024,2048]
                                    [--write BENCHMARKS.md]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve()
REFERENCE = dict(n_components=16, hidden_layer_sizes=(512, 256), likelihood="bernoulli",
                 batch_size=128, random_state=0, device="cpu")

PEAK = """
import json, sys, time, numpy as np, torch
import aekit
path, budget = sys.argv[1], sys.argv[2]
model = aekit.get_model("ae", n_components=8, hidden_layer_sizes=(64,), max_iter=1,
                        batch_size=512, random_state=0, device="cpu")
model.fit(np.zeros((2, 784), np.float32))
open("/proc/self/clear_refs", "w").write("5")
rss = lambda key: next(int(l.split()[1]) * 1024 for l in open("/proc/self/status")
                       if l.startswith(key))
start = rss("VmRSS")
t = time.perf_counter()
model.fit(np.load(path, mmap_mode="r"), memory_budget=None if budget == "none" else budget)
print(json.dumps({"growth": rss("VmHWM") - start, "seconds": time.perf_counter() - t}))
"""


def worker(epochs: int, precision: str) -> None:
    """One process of part 1 (under torchrun or alone)."""
    import torch

    import aekit
    from aekit.training.distributed import is_main_process

    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        torch.set_num_threads(1)
    X, _ = aekit.datasets.load("fashion-mnist", split="train")
    model = aekit.get_model("vae", **REFERENCE, max_iter=epochs, n_iter_no_change=epochs + 1,
                            precision=precision)
    model.fit(X)
    if is_main_process():
        print("RESULT " + json.dumps(model.history_["time"]), flush=True)


def ddp_rows(epochs: int) -> list[tuple[str, float]]:
    one = [sys.executable, str(HERE), "--worker", str(epochs)]
    two = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           str(HERE), "--worker", str(epochs)]
    runs = {
        "1 process, 2 threads, fp32": one,
        "2 processes (torchrun, gloo), 1 thread each, fp32": two,
        "1 process, 2 threads, bf16-mixed": [*one, "--precision", "bf16-mixed"],
        "2 processes (torchrun, gloo), 1 thread each, bf16-mixed": [*two, "--precision",
                                                                     "bf16-mixed"],
    }
    rows = []
    for name, cmd in runs.items():
        out = subprocess.run(cmd, capture_output=True, text=True, check=True)
        times = json.loads(next(line for line in out.stdout.splitlines()
                                if line.startswith("RESULT "))[7:])
        rows.append((name, statistics.median(times[1:])))
        print(f"{name}: {rows[-1][1]:.2f} s/epoch ({times})", flush=True)
    return rows


def memory_rows(sizes_mib: list[int], folder: Path) -> list[tuple]:
    rows = []
    for mib in sizes_mib:
        n = mib * 2**20 // (784 * 4)
        path = folder / f"x{mib}.npy"
        X = np.lib.format.open_memmap(path, "w+", np.float32, (n, 784))
        for start in range(0, n, 20000):
            stop = min(n, start + 20000)
            X[start:stop] = np.random.default_rng(start).random((stop - start, 784), np.float32)
        X.flush()
        del X
        result = {}
        for mode, budget in (("streamed", "64M"), ("in memory", "none")):
            out = subprocess.run([sys.executable, "-c", PEAK, str(path), budget],
                                 capture_output=True, text=True, check=True)
            result[mode] = json.loads(out.stdout.strip().splitlines()[-1])
            print(f"{mib} MiB {mode}: {result[mode]}", flush=True)
        rows.append((mib, n, result["streamed"], result["in memory"]))
        path.unlink()
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--sizes-mib", default="256,512,1024,2048")
    ap.add_argument("--worker", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--precision", default="32", help=argparse.SUPPRESS)
    ap.add_argument("--write")
    args = ap.parse_args()
    if args.worker:
        worker(args.worker, args.precision)
        return
    import torch

    import aekit
    from aekit.evaluation.quick_bench import machine_description, update_section

    start = time.perf_counter()
    ddp = ddp_rows(args.epochs) if args.epochs else []
    with tempfile.TemporaryDirectory() as tmp:
        memory = memory_rows([int(s) for s in args.sizes_mib.split(",")], Path(tmp))
    mib = 2**20
    lines = [
        "<!-- scaling:start -->",
        f"Command: `python benchmarks/scaling.py --epochs {args.epochs} --sizes-mib "
        f"{args.sizes_mib} --write BENCHMARKS.md` ({(time.perf_counter() - start) / 60:.0f} "
        f"min). Machine: {machine_description()}; torch "
        f"{torch.__version__}; aekit {aekit.__version__}; {time.strftime('%Y-%m-%d')}.", "",
        f"DDP on one machine: reference VAE on Fashion-MNIST 60k, {args.epochs} epochs, median "
        "s/epoch over epochs 2+.", "",
        "| run | s/epoch | throughput vs 1 process |", "|---|---|---|"]
    lines += [f"| {name} | {s:.2f} | {ddp[0][1] / s:.2f}x |" for name, s in ddp]
    lines += [
        "", "Streaming from a memory-mapped `.npy` (784 float32 features, one epoch of an AE "
        "784-64-8, batch 512): peak resident memory above the process's size before the fit.",
        "", "| data | rows | streamed, 64 MiB budget: peak growth | s/epoch | in memory: peak "
        "growth | s/epoch |", "|---|---|---|---|---|---|"]
    for size, n, streamed, held in memory:
        lines.append(f"| {size} MiB | {n} | {streamed['growth'] / mib:.0f} MiB | "
                     f"{streamed['seconds']:.1f} | {held['growth'] / mib:.0f} MiB | "
                     f"{held['seconds']:.1f} |")
    lines.append("<!-- scaling:end -->")
    text = "\n".join(lines)
    print(text)
    if args.write:
        update_section(args.write, "scaling", "Scaling out: processes and streaming", text)


if __name__ == "__main__":
    main()
