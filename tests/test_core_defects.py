"""Regression tests of defects found in review: each test fails on the defect it names."""

import math
import os
import subprocess
import sys
from decimal import Decimal, getcontext

import pytest
import torch
from torch.distributions import ContinuousBernoulli

from aekit.distributions import (
    LogitContinuousBernoulli,
    continuous_bernoulli_log_norm,
    get_likelihood,
)
from aekit.estimator.inference import EVAL_MEMORY_BUDGET

# ------------------------------------------- continuous Bernoulli at extreme logits


def _exact_cb_log_prob(x: float, eta: float) -> float:
    """log p(x | eta) = x eta - log(1 + e^eta) + log(eta / tanh(eta / 2)) in 60 digits."""
    getcontext().prec = 60
    x, eta = Decimal(x), Decimal(eta)
    if eta == 0:
        return 0.0                          # the uniform density on [0, 1]
    tanh_half = (1 - (-eta).exp()) / (1 + (-eta).exp())
    return float(x * eta - (1 + eta.exp()).ln() + (eta / tanh_half).ln())


def _exact_cb_mean(eta: float) -> float:
    getcontext().prec = 60
    eta = Decimal(eta)
    return 0.5 if eta == 0 else float(1 / (1 - (-eta).exp()) - 1 / eta)


EXTREME_LOGITS = [30.0, -30.0, 100.0, -100.0, 0.0, 1e-6, -1e-6, 0.05, 0.1, -1.0, 16.0, 1e4]


@pytest.mark.parametrize("eta", EXTREME_LOGITS)
@pytest.mark.parametrize("x", [0.0, 0.3, 1.0])
def test_continuous_bernoulli_log_prob_is_exact_at_extreme_logits(eta, x):
    expected = _exact_cb_log_prob(x, eta)
    for dtype, tol in ((torch.float32, 1e-6), (torch.float64, 1e-12)):
        p = LogitContinuousBernoulli(logits=torch.tensor(eta, dtype=dtype), validate_args=False)
        got = float(p.log_prob(torch.tensor(x, dtype=dtype)))
        assert got == pytest.approx(expected, rel=tol, abs=tol), dtype


def test_continuous_bernoulli_no_longer_saturates_at_logit_30():
    lik = get_likelihood("continuous_bernoulli", 1)
    ll = float(lik(torch.tensor([[30.0]])).log_prob(torch.tensor([[1.0]])))
    assert ll == pytest.approx(math.log(30.0), abs=1e-5)    # tanh(15) = 1 - 2e-13
    # what torch computes through clamped probabilities: the value this replaced
    old = float(ContinuousBernoulli(logits=torch.tensor(30.0)).log_prob(torch.tensor(1.0)))
    assert abs(old - ll) > 0.5


def test_continuous_bernoulli_agrees_with_torch_for_moderate_logits():
    g = torch.Generator().manual_seed(0)
    eta = torch.linspace(-10, 10, 401, dtype=torch.float64)
    x = torch.rand(401, generator=g, dtype=torch.float64)
    ours = LogitContinuousBernoulli(logits=eta, validate_args=False)
    ref = ContinuousBernoulli(logits=eta, validate_args=False)
    torch.testing.assert_close(ours.log_prob(x), ref.log_prob(x), rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(ours.mean, ref.mean, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(ours.entropy(), ref.entropy(), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("eta", EXTREME_LOGITS)
def test_continuous_bernoulli_mean_and_normaliser_are_exact(eta):
    t = torch.tensor(eta, dtype=torch.float64)
    assert float(LogitContinuousBernoulli(logits=t).mean) == pytest.approx(
        _exact_cb_mean(eta), rel=1e-12, abs=1e-12)
    # log C = log p(x = 0) + softplus(eta), the normaliser alone
    log_c = _exact_cb_log_prob(0.0, eta) + float(torch.nn.functional.softplus(t))
    assert float(continuous_bernoulli_log_norm(t)) == pytest.approx(log_c, rel=1e-12, abs=1e-12)
    assert float(continuous_bernoulli_log_norm(t.float())) == pytest.approx(log_c, rel=1e-6)


def test_continuous_bernoulli_gradients_are_finite_everywhere():
    eta = torch.tensor([0.0, 1e-6, 0.1, -0.5, 30.0, -100.0, 1e20], requires_grad=True)
    p = LogitContinuousBernoulli(logits=eta, validate_args=False)
    (p.log_prob(torch.full((7,), 0.3)).sum() + p.mean.sum()).backward()
    assert torch.isfinite(eta.grad).all()
    assert math.isclose(float(eta.grad[0]), 0.3 - 0.5 + 1 / 12, abs_tol=1e-6)  # d/d eta at 0


# ------------------------------------------------- evaluation memory of "categorical"

#: one process measures each evaluation's peak resident memory (VmHWM after resetting it
#: through /proc/self/clear_refs): torch's allocations are invisible to tracemalloc
PEAK_SCRIPT = """
import numpy as np, torch
torch.set_num_threads(1)
import aekit

def peak(fn, X):
    fn(X[:2])                                              # warm up torch's allocations
    open("/proc/self/clear_refs", "w").write("5")         # the peak is now the current size
    status = lambda key: next(int(line.split()[1]) * 1024 for line in open("/proc/self/status")
                              if line.startswith(key))
    start = status("VmRSS")
    fn(X)
    return status("VmHWM") - start

X = (np.random.default_rng(0).integers(0, 256, (1500, 784)) / 255).astype(np.float32)
common = dict(likelihood="categorical", hidden_layer_sizes=(8,), n_components=2, max_iter=1,
              batch_size=64, random_state=0, device="cpu")
vae = aekit.VAE(**common).fit(X[:64])                     # n_importance_samples=100
Z = vae.transform(X)
vq = aekit.get_model("vq_vae", codebook_size=1024, **common).fit(X[:64])
print("score_samples", peak(vae.score_samples, X[:24]))
print("inverse_transform", peak(vae.inverse_transform, Z))
print("vq_score_samples", peak(vq.score_samples, X[:50]))
"""


@pytest.mark.skipif(not os.path.exists("/proc/self/clear_refs"), reason="needs Linux /proc")
def test_categorical_evaluation_stays_within_the_memory_budget():
    """784 features of 256 logits each: 100 draws of one row are 80 MB of decoder outputs.
    Chunks sized without the 256 parameters per feature held 24 rows at once in
    score_samples (3.6 GiB measured growth), 1500 decoded codes in inverse_transform
    (2.3 GiB: sized by the 2 columns of the codes) and VQ-VAE's 1024 decoded codes
    (1.5 GiB); sized with them, each stays near the 256 MiB evaluation budget (measured
    150-260 MiB)."""
    out = subprocess.run([sys.executable, "-c", PEAK_SCRIPT], capture_output=True, text=True,
                         timeout=600, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert out.returncode == 0, out.stderr[-2000:]
    growth = {key: int(value) for key, value in (line.split() for line in out.stdout.split("\n")
                                                 if line)}
    print({key: f"{value / 2**20:.0f} MiB" for key, value in growth.items()})
    assert set(growth) == {"score_samples", "inverse_transform", "vq_score_samples"}
    for key, value in growth.items():
        assert value < 2.5 * EVAL_MEMORY_BUDGET, f"{key}: {value / 2**20:.0f} MiB"
