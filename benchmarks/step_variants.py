"""Where the bf16 training step's time goes: variants of one step, timed side by side.

The reference network (MLP 784-512-256-16, Bernoulli decoder, batch 128, Adam 1e-3) as a
hand-written module, so that each lever the speed issue names can be pulled on its own.
All variants live in one process and run in alternating rounds of --steps steps (the
machine is shared and noisy: compare the ratios, not the milliseconds):

  fp32         fp32 weights and matrix products, fused Adam (the bare loop)
  bf16         autocast to bf16, fp32 weights, fused Adam (aekit's precision="bf16-mixed")
  bf16_compile the same with the loss under torch.compile (aekit's compile=True)
  master       bf16 weights, an fp32 master copy updated by one compiled Adam kernel that
               also writes the bf16 copy (no per-step weight or gradient casts), loss compiled
  pure_bf16    bf16 weights and bf16 Adam state, loss compiled: not a training recipe (the
               update is rounded to bf16), only the floor of what removing casts can give
  matmul       the step's matrix products alone in bf16 (no loop)
  whole_step   the bf16 step (forward, backward and the fused Adam update) as one
               torch.compile'd function, the backward captured by compiled autograd
  aekit_bf16   aekit's own step (VAE._train_step: its loss, distributions and checks),
               precision="bf16-mixed", eager
  aekit_compile  the same with its loss compiled (aekit's compile=True)
  aekit_master   aekit's compiled loss run on bf16 copies of the networks' Linear weights
               (torch.func.functional_call), their fp32 originals updated by the compiled
               Adam-and-copy kernel of ``master``: the master-weights lever inside aekit

Usage: python benchmarks/step_variants.py [--rounds 8] [--steps 60] [--write BENCHMARKS.md]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from aekit.evaluation.quick_bench import machine_description, update_section

sys.path.insert(0, str(Path(__file__).resolve().parent))
from speed import step_products  # noqa: E402

B, LATENT = 128, 16
BETAS, EPS, LR = (0.9, 0.999), 1e-8, 1e-3
VARIANTS = ("fp32", "bf16", "bf16_compile", "master", "pure_bf16", "matmul", "whole_step",
            "aekit_bf16", "aekit_compile", "aekit_master")


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.enc = nn.Sequential(nn.Linear(784, 512), nn.ReLU(), nn.Linear(512, 256), nn.ReLU(),
                                 nn.Linear(256, 2 * LATENT))
        self.dec = nn.Sequential(nn.Linear(LATENT, 256), nn.ReLU(), nn.Linear(256, 512),
                                 nn.ReLU(), nn.Linear(512, 784))

    def forward(self, x: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        """Negative ELBO, batch mean; likelihood and KL in fp32 whatever the weights."""
        h = self.enc(x.to(self.enc[0].weight.dtype))
        mu, logvar = h.float().chunk(2, -1)
        z = (mu + eps * torch.exp(0.5 * logvar)).to(h.dtype)
        logits = self.dec(z).float()
        recon = F.binary_cross_entropy_with_logits(logits, x, reduction="none").sum(-1)
        kl = 0.5 * (mu.pow(2) + logvar.exp() - 1 - logvar).sum(-1)
        return (recon + kl).mean()


def _adam_master(masters, ms, vs, grads, weights, step_size, bias2_sqrt) -> None:
    """Adam on fp32 masters from bf16 gradients, writing the bf16 working weights."""
    b1, b2 = BETAS
    for p, m, v, g, w in zip(masters, ms, vs, grads, weights):
        g = g.float()
        m.mul_(b1).add_(g, alpha=1 - b1)
        v.mul_(b2).addcmul_(g, g, value=1 - b2)
        p.sub_(step_size * m / (v.sqrt() / bias2_sqrt + EPS))
        w.copy_(p)


def make_step(variant: str):
    """A function (x, eps) -> None running one training step of ``variant``."""
    torch.manual_seed(0)
    net = Net()
    params = list(net.parameters())
    if variant == "matmul":
        return _matmul_step()
    if variant.startswith("aekit"):
        return _aekit_step(variant)
    if variant == "whole_step":
        return _whole_step(net)
    if variant in ("pure_bf16", "master"):
        net.to(torch.bfloat16)
    forward = torch.compile(net) if variant in ("bf16_compile", "master", "pure_bf16") else net
    autocast = variant in ("bf16", "bf16_compile")

    def loss(x, eps):
        if autocast:
            with torch.autocast("cpu", dtype=torch.bfloat16):
                return forward(x, eps)
        return forward(x, eps)

    if variant != "master":
        opt = torch.optim.Adam(params, lr=LR, fused=True)

        def step(x, eps):
            out = loss(x, eps)
            opt.zero_grad(set_to_none=True)
            out.backward()
            opt.step()
        return step

    masters = [p.detach().float() for p in params]
    ms = [torch.zeros_like(p) for p in masters]
    vs = [torch.zeros_like(p) for p in masters]
    update = torch.compile(_adam_master)
    t = [0]

    def step(x, eps):
        out = loss(x, eps)
        for p in params:
            p.grad = None
        out.backward()
        t[0] += 1
        step_size = torch.tensor(LR / (1 - BETAS[0] ** t[0]))
        bias2_sqrt = torch.tensor((1 - BETAS[1] ** t[0]) ** 0.5)
        with torch.no_grad():
            update(masters, ms, vs, [p.grad for p in params], [p.data for p in params],
                   step_size, bias2_sqrt)
    return step


def _whole_step(net: Net):
    import torch._dynamo

    opt = torch.optim.Adam(net.parameters(), lr=LR, fused=True)

    def step(x, eps):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = net(x, eps)
        out.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    torch._dynamo.config.compiled_autograd = True      # the backward inside the graph too
    return torch.compile(step)


def _aekit_step(variant: str):
    """aekit's VAE step on the reference network (its noise drawn by aekit, not ``eps``)."""
    import aekit
    from aekit.runtime import compiled
    from aekit.training.distributed import LossModule

    g = torch.Generator().manual_seed(0)
    X = (torch.rand(256, 784, generator=g) < 0.3).float().numpy()
    model = aekit.VAE(n_components=LATENT, hidden_layer_sizes=(512, 256),
                      likelihood="bernoulli", batch_size=B, max_iter=1, random_state=0,
                      verbose=0, precision="bf16-mixed").fit(X)
    ctx = aekit.FitContext.standalone(torch.Generator().manual_seed(0), "bf16-mixed")

    def raw(x, y):
        return model._loss(x, y, ctx)

    ctx.loss = raw if variant == "aekit_bf16" else compiled(raw, "the loss")
    opt = model._configure_optimizers()
    model.module_.train()
    if variant != "aekit_master":
        return lambda x, eps: model._train_step(x, None, opt, ctx)
    loss_module = LossModule(model.module_, ctx)
    named = dict(loss_module.named_parameters())
    names = [f"net.{name}.{p}" for name, mod in model.module_.named_modules()
             if isinstance(mod, nn.Linear) for p in ("weight", "bias")]
    masters = [named[n] for n in names]
    copies = {n: nn.Parameter(named[n].detach().bfloat16()) for n in names}
    ms = [torch.zeros_like(p) for p in masters]
    vs = [torch.zeros_like(p) for p in masters]
    update = torch.compile(_adam_master)
    t = [0]

    def step(x, eps):
        for p in copies.values():
            p.grad = None
        opt.zero_grad(set_to_none=True)       # the parameters not copied (none here)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            objective, _, _ = torch.func.functional_call(loss_module, copies, (x, None))
        objective.backward()
        t[0] += 1
        step_size = torch.tensor(LR / (1 - BETAS[0] ** t[0]))
        bias2_sqrt = torch.tensor((1 - BETAS[1] ** t[0]) ** 0.5)
        with torch.no_grad():
            update(masters, ms, vs, [p.grad for p in copies.values()],
                   [p.data for p in copies.values()], step_size, bias2_sqrt)
    return step


def _matmul_step():
    ops = step_products(torch.bfloat16, torch.device("cpu"), B)

    def step(x, eps):
        for op in ops:
            op()
    return step


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=8)
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--variants", default=",".join(VARIANTS))
    ap.add_argument("--write", help="update this markdown file's step_variants section")
    args = ap.parse_args()

    names = args.variants.split(",")
    g = torch.Generator().manual_seed(0)
    X = (torch.rand(8192, 784, generator=g) < 0.3).float()
    eps = torch.randn(args.steps, B, LATENT, generator=g)
    steps = {name: make_step(name) for name in names}
    for step in steps.values():                 # compile and warm up
        for i in range(5):
            step(X[i * B:(i + 1) * B], eps[i])
    ms = {name: [] for name in names}
    for r in range(args.rounds):
        for name in (names if r % 2 == 0 else names[::-1]):
            start = time.perf_counter()
            for i in range(args.steps):
                j = (i * B) % (len(X) - B)
                steps[name](X[j:j + B], eps[i])
            ms[name].append((time.perf_counter() - start) / args.steps * 1e3)
    med = {name: statistics.median(v) for name, v in ms.items()}
    base = med.get("fp32")
    lines = ["<!-- step_variants:start -->",
             f"Command: `python benchmarks/step_variants.py --rounds {args.rounds} --steps "
             f"{args.steps} --write BENCHMARKS.md`. Machine: {machine_description()}; torch "
             f"{torch.__version__}; {time.strftime('%Y-%m-%d')}.", "",
             "| variant | ms / step (median of rounds) | fp32 time / variant time |",
             "|---|---|---|"]
    for name in names:
        ratio = f"{base / med[name]:.2f}x" if base else "n/a"
        lines.append(f"| {name} | {med[name]:.2f} | {ratio} |")
    lines.append("<!-- step_variants:end -->")
    report = "\n".join(lines)
    print(report)
    if args.write:
        update_section(args.write, "step_variants",
                       "Where the bf16 training step's time goes", report)


if __name__ == "__main__":
    main()
