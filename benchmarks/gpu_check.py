"""What only a GPU can settle, in one run of under 10 minutes on one GPU (plus a
2-process NCCL fit where the machine has 2 GPUs).

Checks, each one row of the table printed at the end:

  fit        every registered model at precision 32 / bf16-mixed / 16-mixed (digits, 2
             epochs): trains, finite losses, transform and score_samples on CUDA
  compile    compile=True against eager (VAE and AE, precision 32): the compiler ran (no
             fallback to eager) and the losses agree within 1%
  resume     resumption bit-identical to an uninterrupted run under
             aekit.runtime.deterministic_algorithms() (AE, VAE, VQ-VAE at 32; VAE at
             16-mixed, whose gradient scaler is checkpointed), as the README documents;
             without it, whether the bits happen to agree (a note, not a check)
  rng        fit, score_samples and sample leave torch's CPU and CUDA generators and
             numpy's global state as they were
  cpu=cuda   score_samples and transform of a CPU-fitted model loaded on CUDA against CPU
  syncs      host-device synchronisations per training step, counted with
             torch.cuda.set_sync_debug_mode("warn"): one per step (the finiteness flag)
  memory     peak GPU memory of score_samples (VAE with K=1000, VQ-VAE), above what was
             allocated before, against the evaluation budget
  speed      seconds per epoch (median of epochs 2-3) of the reference VAE (784-512-256-16,
             Bernoulli, batch 128) on generated 60000 x 784 data, at each precision
  nccl       with 2 GPUs: torchrun fits of AE (with checkpoints, so generator states are
             gathered) against one process, sharded scoring, and a VQ-VAE whose EMA
             statistics are all-reduced over NCCL (every rank's codebook the same)

Exits 1 if any check fails, 0 otherwise; on a machine without CUDA it says so and exits 0.

Usage: python benchmarks/gpu_check.py [--skip-speed] [--skip-nccl] [--json FILE]
(needs a CUDA build of torch: ``make TORCH=torch``)
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
import traceback
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

import aekit
from aekit.estimator.inference import EVAL_MEMORY_BUDGET
from aekit.runtime import deterministic_algorithms

PRECISIONS = ("32", "bf16-mixed", "16-mixed")
TINY = dict(hidden_layer_sizes=(32,), max_iter=2, batch_size=64, random_state=0)
ROWS: list[dict] = []


def record(check: str, case: str, status: str, detail: str = "", seconds: float = 0.0) -> None:
    ROWS.append({"check": check, "case": case, "status": status, "detail": detail,
                 "seconds": round(seconds, 1)})
    print(f"[{status:>4}] {check:<9} {case:<28} {detail}", flush=True)


def run(check: str, case: str, fn: Callable[[], tuple[str, str] | str]) -> None:
    """Run one check; an exception is a failure with its last line as the detail."""
    start = time.perf_counter()
    try:
        out = fn()
        status, detail = out if isinstance(out, tuple) else ("ok", out)
    except Exception as exc:     # every failure becomes a row, the others still run
        last = traceback.format_exception_only(type(exc), exc)[-1].strip()
        status, detail = "FAIL", last[:200]
    record(check, case, status, detail, time.perf_counter() - start)


def _labels(name: str, y: np.ndarray) -> np.ndarray | None:
    caps = aekit.get_model(name).capabilities
    return y if caps.conditional or caps.semi_supervised else None


def _native_bf16() -> bool:
    return torch.cuda.is_bf16_supported(including_emulation=False)


def _same_weights(a, b) -> str | None:
    """None when the two models' tensors are equal bit for bit, else the first name."""
    sa, sb = a.module_.state_dict(), b.module_.state_dict()
    for name in sa:
        if not torch.equal(sa[name], sb[name]):
            return name
    return None


# ------------------------------------------------------------------------- checks


def check_fits(X: np.ndarray, y: np.ndarray) -> None:
    for name in aekit.list_models():
        for precision in PRECISIONS:
            if precision == "bf16-mixed" and not _native_bf16():
                record("fit", f"{name} {precision}", "skip", "no native bfloat16 on this GPU")
                continue

            def fit(name=name, precision=precision):
                model = aekit.get_model(name, precision=precision, device="cuda", **TINY)
                model.fit(X[:512], _labels(name, y[:512]))
                if not np.isfinite(model.history_["loss"]).all():
                    return "FAIL", f"losses {model.history_['loss']}"
                given = (y[:64],) if model.capabilities.conditional else ()
                codes = model.transform(X[:64], *given)
                scores = model.score_samples(X[:64], *given)
                if not (np.isfinite(codes).all() and np.isfinite(scores).all()):
                    return "FAIL", "non-finite codes or scores"
                return f"loss {model.history_['loss'][-1]:.4g}"

            run("fit", f"{name} {precision}", fit)


def check_compile(X: np.ndarray) -> None:
    for name in ("vae", "ae"):
        def compare(name=name):
            params = dict(TINY, max_iter=3, likelihood="bernoulli", device="cuda")
            eager = aekit.get_model(name, **params).fit(X)
            start = time.perf_counter()
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                fast = aekit.get_model(name, compile=True, **params).fit(X)
            took = time.perf_counter() - start
            fallback = [str(w.message) for w in caught if "compile=True" in str(w.message)]
            if fallback:
                return "FAIL", fallback[0][:160]
            a, b = eager.history_["loss"][-1], fast.history_["loss"][-1]
            if abs(a - b) > 0.01 * abs(a):
                return "FAIL", f"eager {a:.5g}, compiled {b:.5g}"
            return f"eager {a:.5g}, compiled {b:.5g} (compiled fit {took:.0f} s)"

        run("compile", f"{name} 32", compare)


def check_resume(X: np.ndarray, tmp: Path) -> None:
    cases = [("ae", "32"), ("vae", "32"), ("vq_vae", "32"), ("vae", "16-mixed")]
    for name, precision in cases:
        def resume(name=name, precision=precision, deterministic=True):
            params = dict(TINY, max_iter=4, precision=precision, device="cuda")
            folder = tmp / f"resume-{name}-{precision}-{deterministic}"
            with deterministic_algorithms(deterministic):
                full = aekit.get_model(name, **params).fit(X)
                aekit.get_model(name, **{**params, "max_iter": 2}).fit(
                    X, checkpoint_dir=str(folder))
                resumed = aekit.get_model(name, **params).fit(
                    X, checkpoint_dir=str(folder), resume=True)
            differs = _same_weights(full, resumed)
            if deterministic:
                return ("FAIL", f"{differs} differs") if differs else "bit-identical"
            return "note", ("bit-identical" if differs is None
                            else f"{differs} differs (expected without deterministic)")

        run("resume", f"{name} {precision} determ.", resume)
        run("resume", f"{name} {precision} default",
            lambda name=name, precision=precision: resume(name, precision, False))


def check_rng(X: np.ndarray) -> None:
    def states():
        return (torch.get_rng_state(), torch.cuda.get_rng_state_all(),
                np.random.get_state()[1].copy())

    def same(a, b) -> bool:
        return (torch.equal(a[0], b[0]) and all(torch.equal(p, q) for p, q in zip(a[1], b[1]))
                and np.array_equal(a[2], b[2]))

    def untouched():
        before = states()
        model = aekit.VAE(device="cuda", **TINY).fit(X)
        model.score_samples(X[:100])
        model.sample(10)
        return "untouched" if same(before, states()) else ("FAIL", "a global state changed")

    run("rng", "vae fit/score/sample", untouched)


def check_cpu_vs_cuda(X: np.ndarray, tmp: Path) -> None:
    for name in ("ae", "vae", "vq_vae"):
        def compare(name=name):
            model = aekit.get_model(name, likelihood="bernoulli", device="cpu", **TINY).fit(X)
            path = tmp / f"{name}.safetensors"
            model.save(str(path))
            gpu = aekit.load(str(path), device="cuda")
            a, b = model.score_samples(X), gpu.score_samples(X)
            err = float(np.max(np.abs(a - b) / (1 + np.abs(a))))
            codes = float(np.max(np.abs(model.transform(X) - gpu.transform(X))))
            detail = f"max rel. score diff {err:.2e}, max code diff {codes:.2e}"
            return ("ok" if err < 1e-4 and codes < 1e-3 else "FAIL"), detail

        run("cpu=cuda", name, compare)


def _sync_warnings(fit: Callable[[], object]) -> int:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            fit()
        finally:
            torch.cuda.set_sync_debug_mode("default")
    return sum("synchronizing" in str(w.message) for w in caught)


def check_syncs(X: np.ndarray, y: np.ndarray) -> None:
    cases = [(name, "32") for name in aekit.list_models()] + [("vae", "16-mixed")]
    if _native_bf16():
        cases.append(("vae", "bf16-mixed"))
    for name, precision in cases:
        def per_step(name=name, precision=precision):
            extra = {"pretrain_max_iter": 0} if name == "stacked_ae" else {}

            def fit(n):
                return lambda: aekit.get_model(
                    name, precision=precision, device="cuda", **{**TINY, "max_iter": 1},
                    **extra).fit(X[:n], _labels(name, y[:n]))

            fit(128)()                                   # warm up (first CUDA calls)
            few, many = _sync_warnings(fit(128)), _sync_warnings(fit(128 + 64 * 8))
            steps = (many - few) / 8
            return ("ok" if steps <= 1 else "FAIL"), f"{steps:g} per step ({few} in 2 steps)"

        run("syncs", f"{name} {precision}", per_step)


def check_memory(X: np.ndarray) -> None:
    cases = {"vae K=1000": dict(model="vae", n_importance_samples=1000),
             "vq_vae 512 codes": dict(model="vq_vae", codebook_size=512)}
    for case, params in cases.items():
        def peak(params=params):
            params = dict(params)
            name = params.pop("model")
            model = aekit.get_model(name, likelihood="bernoulli", device="cuda",
                                    **{**TINY, "max_iter": 1}, **params).fit(X[:2000])
            torch.cuda.synchronize()
            base = torch.cuda.memory_allocated()
            torch.cuda.reset_peak_memory_stats()
            model.score_samples(X[:10000])
            used = torch.cuda.max_memory_allocated() - base
            detail = (f"{used / 2**20:.0f} MiB above baseline (budget "
                      f"{EVAL_MEMORY_BUDGET / 2**20:.0f} MiB per chunk)")
            return ("ok" if used <= 4 * EVAL_MEMORY_BUDGET else "FAIL"), detail

        run("memory", case, peak)


def check_speed(X: np.ndarray) -> None:
    for precision in PRECISIONS:
        if precision == "bf16-mixed" and not _native_bf16():
            record("speed", f"vae {precision}", "skip", "no native bfloat16 on this GPU")
            continue

        def epoch(precision=precision):
            model = aekit.VAE(n_components=16, hidden_layer_sizes=(512, 256),
                              likelihood="bernoulli", batch_size=128, max_iter=3, tol=0.0,
                              n_iter_no_change=10, random_state=0, precision=precision,
                              device="cuda").fit(X)
            times = model.history_["time"]
            return f"{statistics.median(times[1:]):.2f} s/epoch (first {times[0]:.2f} s)"

        run("speed", f"vae {precision} 60000x784", epoch)


VQ_SCRIPT = """
import sys, numpy as np, torch
import aekit
from aekit.training.distributed import finish
X = np.load(sys.argv[1])
model = aekit.VQVAE(n_components=4, codebook_size=32, hidden_layer_sizes=(64,), max_iter=3,
                    batch_size=128, random_state=0, device="cuda").fit(X)
np.save(sys.argv[2] + f"/codebook{torch.distributed.get_rank()}.npy",
        model.module_.codebook.cpu().numpy())
finish()
"""


def check_nccl(X: np.ndarray, tmp: Path) -> None:
    if torch.cuda.device_count() < 2:
        record("nccl", "2 processes", "skip", f"{torch.cuda.device_count()} GPU(s), needs 2")
        return
    data = tmp / "x.npy"
    np.save(data, X[:4096])
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone",
                "--nproc_per_node=2"]
    common = ["--data", str(data), "-q", "--set", "hidden_layer_sizes=(64,)", "--set",
              "random_state=0", "--set", "batch_size=128", "--set", "max_iter=3",
              "--set", "device=cuda", "--set", "n_iter_no_change=100"]

    def call(cmd: list[str]) -> None:
        out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
        if out.returncode != 0:
            raise RuntimeError(out.stderr.strip().splitlines()[-1] if out.stderr else "failed")

    def ae():
        from safetensors.numpy import load_file

        call([sys.executable, "-m", "aekit", "fit", "ae", *common, "-o", str(tmp / "one.st")])
        call([*torchrun, "-m", "aekit", "fit", "ae", *common, "-o", str(tmp / "two.st"),
              "--checkpoint-dir", str(tmp / "ckpt")])
        one, two = load_file(str(tmp / "one.st")), load_file(str(tmp / "two.st"))
        diff = max(float(np.abs(one[k] - two[k]).max()) for k in one)
        return ("ok" if diff < 1e-3 else "FAIL"), f"max weight diff vs 1 process {diff:.1e}"

    def score():
        call([*torchrun, "-m", "aekit", "score", str(tmp / "one.st"), "--data", str(data),
              "-o", str(tmp / "ll2.npy")])
        call([sys.executable, "-m", "aekit", "score", str(tmp / "one.st"), "--data",
              str(data), "-o", str(tmp / "ll1.npy")])
        a, b = np.load(tmp / "ll1.npy"), np.load(tmp / "ll2.npy")
        err = float(np.max(np.abs(a - b)))
        return ("ok" if a.shape == b.shape and err < 1e-4 else "FAIL"), f"max diff {err:.1e}"

    def vq():
        script = tmp / "vq.py"
        script.write_text(VQ_SCRIPT)
        call([*torchrun, str(script), str(data), str(tmp)])
        a, b = np.load(tmp / "codebook0.npy"), np.load(tmp / "codebook1.npy")
        return ("ok", "codebooks equal on both ranks") if np.array_equal(a, b) else (
            "FAIL", f"codebooks differ by {float(np.abs(a - b).max()):.2e}")

    run("nccl", "ae fit + checkpoints", ae)
    run("nccl", "sharded score", score)
    run("nccl", "vq_vae codebook", vq)


# --------------------------------------------------------------------------- main


def table() -> str:
    lines = ["| check | case | result | detail | s |", "|---|---|---|---|---|"]
    lines += [f"| {r['check']} | {r['case']} | {r['status']} | {r['detail']} | {r['seconds']} |"
              for r in ROWS]
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--skip-speed", action="store_true", help="no epoch timings")
    ap.add_argument("--skip-nccl", action="store_true", help="no torchrun fits")
    ap.add_argument("--json", help="also write the rows as JSON here")
    args = ap.parse_args()
    if not torch.cuda.is_available():
        print("benchmarks/gpu_check.py needs a CUDA GPU and a CUDA build of torch "
              f"(torch {torch.__version__}: torch.cuda.is_available() is False); nothing run")
        return 0
    start = time.perf_counter()
    props = torch.cuda.get_device_properties(0)
    print(f"{props.name}, {props.total_memory / 2**30:.0f} GiB, compute capability "
          f"{props.major}.{props.minor}, {torch.cuda.device_count()} GPU(s); torch "
          f"{torch.__version__}, CUDA {torch.version.cuda}; aekit {aekit.__version__}",
          flush=True)
    X, y = aekit.datasets.load("digits", split="train")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        check_fits(X, y)
        check_syncs(X, y)
        check_rng(X)
        check_cpu_vs_cuda(X, tmp)
        check_resume(X, tmp)
        check_compile(X)
        big = torch.rand(60000, 784, generator=torch.Generator().manual_seed(0)).numpy()
        check_memory(big)
        if not args.skip_speed:
            check_speed(big)
        if not args.skip_nccl:
            check_nccl(big, tmp)
    print()
    print(table())
    failed = [r for r in ROWS if r["status"] == "FAIL"]
    print(f"\n{len(ROWS)} rows, {len(failed)} failed, {time.perf_counter() - start:.0f} s")
    if args.json:
        Path(args.json).write_text(json.dumps(ROWS, indent=1))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
