"""The runtime layer: subnormal flushing in every compute thread, restored afterwards;
devices and precision objects."""

import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

import aekit
import aekit.training.loop
from aekit.runtime import Precision, resolve_device

from .conftest import SMALL

#: a script prelude: two intra-op threads, and the share of a subnormal tensor that a
#: multiplication (split between the threads) flushes to zero
PRELUDE = textwrap.dedent("""
    import numpy as np, torch
    torch.set_num_threads(2)
    import aekit
    from aekit.runtime import flush_denormal
    x = torch.full((2_000_000,), 1e-39)
    def flushed():
        return float(((x * 1.5) == 0).float().mean())
""")


def run_script(body: str) -> list[str]:
    result = subprocess.run([sys.executable, "-c", PRELUDE + textwrap.dedent(body)],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout.split()


def test_flushing_reaches_every_worker_thread_and_is_undone():
    out = run_script("""
        print(flushed())
        with flush_denormal():
            print(flushed())
        print(flushed())
        try:
            with flush_denormal():
                raise KeyError("boom")
        except KeyError:
            pass
        print(flushed())
        torch.set_flush_denormal(True)          # a caller who flushes on the main thread
        with flush_denormal():
            pass
        print(flushed())
    """)
    # 0.5 would mean only the calling thread flushes (the mode is per thread)
    assert out == ["0.0", "1.0", "0.0", "0.0", "0.5"]


def test_fit_flushes_in_its_threads_and_restores_the_callers_mode():
    out = run_script("""
        seen = []
        class Probe(aekit.AE):
            def _loss(self, x, y, ctx):
                seen.append(flushed())
                return super()._loss(x, y, ctx)
        X = np.random.default_rng(0).random((64, 5)).astype(np.float32)
        Probe(hidden_layer_sizes=(4,), max_iter=1, random_state=0).fit(X)
        print(min(seen), flushed())
        seen.clear()
        Probe(hidden_layer_sizes=(4,), max_iter=1, random_state=0, flush_denormal=False).fit(X)
        print(max(seen), flushed())
    """)
    assert out == ["1.0", "0.0", "0.0", "0.0"]


def test_evaluation_flushes_in_its_threads_too():
    out = run_script("""
        seen = []
        class Probe(aekit.VAE):
            def _log_likelihood(self, x, eps):
                seen.append(flushed())
                return super()._log_likelihood(x, eps)
        X = np.random.default_rng(0).random((64, 5)).astype(np.float32)
        model = Probe(hidden_layer_sizes=(4,), max_iter=1, random_state=0).fit(X)
        model.score_samples(X)
        print(min(seen), flushed())
    """)
    assert out == ["1.0", "0.0"]


def test_flushing_restores_the_mode_after_a_failed_fit():
    out = run_script("""
        class Failing(aekit.AE):
            def _loss(self, x, y, ctx):
                raise RuntimeError("a failure inside training")
        X = np.random.default_rng(0).random((64, 5)).astype(np.float32)
        try:
            Failing(hidden_layer_sizes=(4,), max_iter=1).fit(X)
        except RuntimeError:
            pass
        print(flushed())
    """)
    assert out == ["0.0"]


def test_results_with_and_without_flushing_agree(digits):
    X, _ = digits
    params = dict(SMALL, likelihood="bernoulli", max_iter=3)
    flushed = aekit.VAE(**params).fit(X)
    ieee = aekit.VAE(flush_denormal=False, **params).fit(X)
    np.testing.assert_allclose(flushed.history_["loss"], ieee.history_["loss"], rtol=1e-5)
    np.testing.assert_allclose(flushed.score_samples(X[:50]), ieee.score_samples(X[:50]),
                               rtol=1e-4, atol=1e-3)


def test_resolve_device_refuses_what_does_not_exist():
    assert resolve_device("cpu") == torch.device("cpu")
    for bad in ("meta", "tpu", "cuda:x"):
        with pytest.raises(ValueError):
            resolve_device(bad)
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            resolve_device("cuda:0")


def test_precision_owns_the_scaler_only_for_fp16():
    cpu = torch.device("cpu")
    assert Precision("32", cpu).scaler is None
    assert Precision("bf16-mixed", cpu).scaler is None
    assert Precision("16-mixed", cpu).scaler is not None
    assert Precision("16-mixed", cpu, training=False).scaler is None
    with pytest.raises(ValueError, match="precision"):
        Precision("64", cpu)


def test_deterministic_kernels_are_asked_for_on_cuda_only(monkeypatch, digits):
    calls = []
    real = aekit.training.loop.deterministic_algorithms

    def spy(enabled=True):
        calls.append(enabled)
        return real(enabled)

    monkeypatch.setattr(aekit.training.loop, "deterministic_algorithms", spy)
    aekit.AE(deterministic=True, **SMALL).fit(digits[0])
    assert calls == [False]             # a CPU fit is deterministic without it
