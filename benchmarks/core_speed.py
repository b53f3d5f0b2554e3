"""aekit's VAE against a bare PyTorch loop of the same network, in one run.

Reference network (issue "aekit core"): Fashion-MNIST, MLP 784-512-256-16 with mean and
log-variance heads, Bernoulli decoder on the grey levels, batch 128, Adam 1e-3 (fused
where the build supports it, in both loops). The bare loop is tensor slicing and the
textbook loss, nothing else. The two run in alternating rounds (aekit, bare, aekit, bare)
so machine noise hits both; seconds per epoch are medians over epochs 2 and later.
Test quality: negative ELBO on the 10k test images, and importance-sampled NLL with
``--k`` samples on the first ``--n-test-nll`` test images, computed for the bare model by
an independent few-line implementation.

Usage: python benchmarks/core_speed.py [--epochs 10] [--rounds 2] [--write BENCHMARKS.md]
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

import aekit
from aekit.evaluation.quick_bench import machine_description, update_section
from aekit.runtime import flush_denormal

HIDDEN, LATENT, BATCH, LR = (512, 256), 16, 128, 1e-3


class BareVAE(nn.Module):
    """The reference VAE written out (other sizes for ``step_overhead.py``)."""

    def __init__(self, d: int, hidden: tuple[int, int] = HIDDEN, latent: int = LATENT) -> None:
        super().__init__()
        h1, h2 = hidden
        self.enc = nn.Sequential(nn.Linear(d, h1), nn.ReLU(), nn.Linear(h1, h2), nn.ReLU(),
                                 nn.Linear(h2, 2 * latent))
        self.dec = nn.Sequential(nn.Linear(latent, h2), nn.ReLU(), nn.Linear(h2, h1),
                                 nn.ReLU(), nn.Linear(h1, d))

    def loss(self, x: torch.Tensor) -> torch.Tensor:
        mu, log_var = self.enc(x).chunk(2, dim=-1)
        z = mu + (0.5 * log_var).exp() * torch.randn_like(mu)
        bce = nn.functional.binary_cross_entropy_with_logits(self.dec(z), x, reduction="none")
        kl = 0.5 * (mu.pow(2) + log_var.exp() - 1 - log_var).sum(-1)
        return (bce.sum(-1) + kl).mean()

    @torch.no_grad()
    def nll(self, x: torch.Tensor, k: int, chunk: int = 20) -> np.ndarray:
        out = []
        for i in range(0, len(x), chunk):
            xb = x[i:i + chunk]
            mu, log_var = self.enc(xb).chunk(2, dim=-1)
            std = (0.5 * log_var).exp()
            eps = torch.randn(k, *mu.shape)
            z = mu + std * eps                                            # (K, B, k)
            log_px = -nn.functional.binary_cross_entropy_with_logits(
                self.dec(z), xb.expand(k, -1, -1), reduction="none").sum(-1)
            log_pz = (-0.5 * z.pow(2) - 0.5 * math.log(2 * math.pi)).sum(-1)
            log_qz = (-0.5 * eps.pow(2) - 0.5 * math.log(2 * math.pi) - std.log()).sum(-1)
            log_w = log_px + log_pz - log_qz
            out.append(-(torch.logsumexp(log_w, 0) - math.log(k)).numpy())
        return np.concatenate(out)


def bare_fit(X: torch.Tensor, epochs: int, seed: int, flush: bool
             ) -> tuple[BareVAE, list[float]]:
    with flush_denormal(flush):     # the same floating-point mode as aekit's run
        return _bare_fit(X, epochs, seed)


def _bare_fit(X: torch.Tensor, epochs: int, seed: int) -> tuple[BareVAE, list[float]]:
    torch.manual_seed(seed)
    model = BareVAE(X.shape[1])
    try:
        opt = torch.optim.Adam(model.parameters(), lr=LR, fused=True)
    except (RuntimeError, ValueError, TypeError):
        opt = torch.optim.Adam(model.parameters(), lr=LR)
    times = []
    for _ in range(epochs):
        start = time.perf_counter()
        perm = torch.randperm(len(X))
        for i in range(0, len(X), BATCH):
            loss = model.loss(X[perm[i:i + BATCH]])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        times.append(time.perf_counter() - start)
    return model, times


def aekit_fit(X: np.ndarray, epochs: int, seed: int, k: int, flush: bool) -> aekit.VAE:
    return aekit.VAE(n_components=LATENT, hidden_layer_sizes=HIDDEN, likelihood="bernoulli",
                     batch_size=BATCH, learning_rate=LR, max_iter=epochs, tol=0.0,
                     n_iter_no_change=epochs + 1, n_importance_samples=k, random_state=seed,
                     device="cpu", flush_denormal=flush).fit(X)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--k", type=int, default=1000)
    ap.add_argument("--n-test-nll", type=int, default=2000)
    ap.add_argument("--fp-mode", choices=("flush", "ieee"), default="flush",
                    help="both loops with subnormals flushed to zero (aekit's default) or "
                         "both with IEEE gradual underflow")
    ap.add_argument("--write", help="update this markdown file's core_speed section")
    args = ap.parse_args()

    X, _ = aekit.datasets.load("fashion-mnist", split="train")
    X_test, _ = aekit.datasets.load("fashion-mnist", split="test")
    Xt, Xt_test = torch.from_numpy(X), torch.from_numpy(X_test)
    ours, bare, models = [], [], {}
    for r in range(args.rounds):
        flush = args.fp_mode == "flush"
        vae = aekit_fit(X, args.epochs, seed=r, k=args.k, flush=flush)
        ours += vae.history_["time"][1:]
        net, times = bare_fit(Xt, args.epochs, seed=r, flush=flush)
        bare += times[1:]
        models = {"aekit": vae, "bare": net}
        print(f"round {r}: aekit {statistics.median(vae.history_['time'][1:]):.2f} s/epoch, "
              f"bare {statistics.median(times[1:]):.2f} s/epoch", flush=True)

    vae, net = models["aekit"], models["bare"]
    sub = X_test[: args.n_test_nll]
    start = time.perf_counter()
    nll_ours = -vae.score(sub)
    nll_time = time.perf_counter() - start
    torch.manual_seed(0)
    nll_bare = float(net.nll(Xt_test[: args.n_test_nll], args.k).mean())
    with torch.no_grad():
        torch.manual_seed(0)
        elbo_bare = float(np.mean([net.loss(Xt_test[i:i + 1000]).item()
                                   for i in range(0, len(Xt_test), 1000)]))
    result = {
        "machine": machine_description(),
        "torch": torch.__version__, "aekit": aekit.__version__,
        "epochs": args.epochs, "rounds": args.rounds, "fp_mode": args.fp_mode,
        "aekit_s_per_epoch": statistics.median(ours), "bare_s_per_epoch": statistics.median(bare),
        "ratio": statistics.median(ours) / statistics.median(bare),
        "aekit_neg_elbo": float(-vae.elbo(X_test).mean()), "bare_neg_elbo": elbo_bare,
        "aekit_nll": nll_ours, "bare_nll": nll_bare, "k": args.k, "n_test_nll": args.n_test_nll,
        "aekit_nll_seconds": nll_time,
    }
    print(json.dumps(result, indent=2))
    if args.write:
        write_section(Path(args.write), result)


def write_section(path: Path, r: dict) -> None:
    table = f"""<!-- core_speed:start -->
Command: `python benchmarks/core_speed.py --epochs {r['epochs']} --rounds {r['rounds']} --k {r['k']} --fp-mode {r['fp_mode']} --write BENCHMARKS.md` (both loops {"with subnormals flushed to zero" if r['fp_mode'] == "flush" else "in IEEE mode, subnormals kept"})
Machine: {r['machine']}; torch {r['torch']}; aekit {r['aekit']}.

| loop | s / epoch (median, epochs 2+) | test -ELBO (10k) | test NLL, K={r['k']} (first {r['n_test_nll']}) |
|---|---|---|---|
| bare PyTorch | {r['bare_s_per_epoch']:.2f} | {r['bare_neg_elbo']:.2f} | {r['bare_nll']:.2f} |
| aekit VAE | {r['aekit_s_per_epoch']:.2f} | {r['aekit_neg_elbo']:.2f} | {r['aekit_nll']:.2f} |

aekit / bare time per epoch: **{r['ratio']:.3f}** (over {r['rounds']} alternating rounds of {r['epochs']} epochs).
aekit's importance-sampled NLL (K={r['k']}, {r['n_test_nll']} images) took {r['aekit_nll_seconds']:.1f} s.
<!-- core_speed:end -->"""
    update_section(path, "core_speed", "aekit VAE vs a bare PyTorch loop (Fashion-MNIST)", table)


if __name__ == "__main__":
    main()
