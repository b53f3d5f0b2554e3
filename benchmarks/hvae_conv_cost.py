"""What an epoch of a two-level VAE costs with each kind of network, on this machine.

The best published Fashion-MNIST likelihood (223.26 nats, Exemplar VAE paper, Norouzi et al.
2020, arXiv:2004.04795, Table 1) comes from a two-level VAE with convolutional networks,
trained for up to 2000 epochs with early stopping. This script measures what an epoch of
``aekit.HierarchicalVAE`` (``hvae``) costs with three kinds of network, on the same rows,
in one process, in alternating rounds:

  gated_mlp    the gated 300-300 MLPs of aekit's published-split runs (BENCHMARKS.md)
  aekit_conv   ``architecture="conv"``: aekit's small stride-2 conv encoder and decoder
  gated_conv   convolutional networks of the published two-level model's size, written
               here from the layer list of Tomczak & Welling's ConvHVAE (arXiv:1705.07120,
               the networks the Exemplar VAE paper keeps): q(z2|x) five gated convolutions
               (7x7, 3x3 stride 2, 5x5, 3x3 stride 2, 3x3; 32 to 64 channels, 6 at the end)
               and a linear map; p(x|z1,z2) gated dense layers from z1 and z2 to a 28x28
               plane, four gated 3x3 convolutions of 64 channels at full resolution and a
               1x1 convolution to the pixels' logits. aekit's gated MLPs keep q(z1|x,z2)
               and p(z1|z2) (the published ones run x through convolutions there too, so
               this is a lower bound on the published model's cost). The two networks
               are registered as ``convhvae_top_encoder`` and ``convhvae_decoder``
               (``("convhvae_decoder", {"n_bottom": k})`` for a z1 of k values; 40 by
               default), for ``benchmarks/fashion_nll.py``.

Each configuration is fitted for ``--epochs`` epochs on ``--rows`` dynamically binarized
training images (batch 100); the time of its fastest epoch after the first is scaled to the
50,000 training images of the published split. Precisions: fp32 and bf16-mixed (autocast;
AMX on Xeons that have it).

Usage: python benchmarks/hvae_conv_cost.py [--rows 2000] [--epochs 3] [--rounds 2]
       [--threads 1] [--precisions 32,bf16-mixed] [--device auto] [--write BENCHMARKS.md]
"""

from __future__ import annotations

import argparse
import math
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

import aekit
from aekit.evaluation.quick_bench import machine_description, update_section
from aekit.nn import GatedLinear

sys.path.insert(0, str(Path(__file__).resolve().parent))
from results_log import append  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "hvae_conv_cost.jsonl"
N_TRAIN, SIDE, N1, N2 = 50_000, 28, 40, 40


class GatedConv2d(nn.Module):
    """``conv_h(x) * sigmoid(conv_g(x))``, both convolutions in one of twice the channels."""

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int, padding: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(c_in, 2 * c_out, kernel, stride, padding)

    def forward(self, x: Tensor) -> Tensor:
        h, gate = self.conv(x).chunk(2, dim=1)
        return h * gate.sigmoid()


class TopEncoder(nn.Module):
    """q(z2 | x): 1x28x28 -> 6x7x7 by gated convolutions -> the mean and log-variance."""

    def __init__(self, input_shape: tuple[int, ...], n_outputs: int) -> None:
        super().__init__()
        c = input_shape[0]
        self.features = nn.Sequential(
            GatedConv2d(c, 32, 7, 1, 3), GatedConv2d(32, 32, 3, 2, 1),
            GatedConv2d(32, 64, 5, 1, 2), GatedConv2d(64, 64, 3, 2, 1),
            GatedConv2d(64, 6, 3, 1, 1), nn.Flatten())
        self.out = nn.Linear(6 * math.ceil(input_shape[1] / 4) * math.ceil(input_shape[2] / 4),
                             n_outputs)

    def forward(self, x: Tensor) -> Tensor:
        return self.out(self.features(x))


class ConvDecoder(nn.Module):
    """p(x | z1, z2) for the code ``[z1, z2]``: gated dense layers to a 28x28 plane, four
    gated 3x3 convolutions of 64 channels at full resolution, a 1x1 convolution to logits."""

    def __init__(self, input_shape: tuple[int, ...], n_outputs: int, n_bottom: int = N1
                 ) -> None:
        super().__init__()
        self.n1 = n_bottom                  # the code is [z1, z2]: z1 its first n_bottom values
        self.from_z1 = GatedLinear(n_bottom, 300)
        self.from_z2 = GatedLinear(input_shape[0] - n_bottom, 300)
        self.joint = GatedLinear(600, n_outputs)
        self.side = math.isqrt(n_outputs)   # the square image's side: 28 for 784 pixels
        self.convs = nn.Sequential(
            GatedConv2d(1, 64, 3, 1, 1), GatedConv2d(64, 64, 3, 1, 1),
            GatedConv2d(64, 64, 3, 1, 1), GatedConv2d(64, 64, 3, 1, 1),
            nn.Conv2d(64, 1, 1))

    def forward(self, z: Tensor) -> Tensor:
        h = torch.cat([self.from_z1(z[:, :self.n1]), self.from_z2(z[:, self.n1:])], dim=-1)
        plane = self.joint(h).reshape(-1, 1, self.side, self.side)
        return self.convs(plane).flatten(1)


# registered, so a model can name them in JSON parameters (``fashion_nll.py --params
# '{"encoder": "convhvae_top_encoder", "decoder": "convhvae_decoder"}' --images``) and its
# file records them by name; a script that loads such a file imports this module first
aekit.register_network("convhvae_top_encoder")(TopEncoder)
aekit.register_network("convhvae_decoder")(ConvDecoder)

CONFIGS = {
    "gated_mlp": ({"architecture": "gated"}, False),
    "aekit_conv": ({"architecture": "conv"}, True),
    "gated_conv": ({"architecture": "gated", "encoder": "convhvae_top_encoder",
                    "decoder": "convhvae_decoder"}, True),
}


def epoch_seconds(name: str, X: np.ndarray, precision: str, epochs: int, device: str
                  ) -> tuple[float, int]:
    """The fastest epoch after the first, and the model's number of weights."""
    params, images = CONFIGS[name]
    rows = X.reshape(-1, SIDE, SIDE) if images else X
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")     # a short fit warns of inactive units
        model = aekit.get_model(
            "hvae", n_components=N1 + N2, n_top_components=N2, hidden_layer_sizes=(300, 300),
            likelihood="bernoulli", binarize="dynamic", batch_size=100, learning_rate=5e-4,
            max_iter=epochs, n_iter_no_change=epochs + 1, random_state=0,
            precision=precision, device=device, **params).fit(rows)
    n_weights = sum(p.numel() for p in model.module_.parameters())
    return min(model.history_["time"][1:]), n_weights


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=2000)
    ap.add_argument("--epochs", type=int, default=3, help="epochs per fit (the first is not timed)")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--precisions", default="32,bf16-mixed")
    ap.add_argument("--configs", default=",".join(CONFIGS))
    ap.add_argument("--device", default="auto")
    ap.add_argument("--results", type=Path, default=RESULTS)
    ap.add_argument("--write")
    args = ap.parse_args()
    if args.epochs < 2:
        ap.error("--epochs must be at least 2: the first epoch is not timed")
    torch.set_num_threads(args.threads)
    X, _ = aekit.datasets.load("fashion-mnist", split="train")
    X = X[np.random.default_rng(0).permutation(len(X))[:args.rows]]
    runs = [(c, p) for c in args.configs.split(",") for p in args.precisions.split(",")]
    times: dict[tuple[str, str], list[float]] = {run: [] for run in runs}
    weights: dict[str, int] = {}
    for _ in range(args.rounds):
        for config, precision in runs:
            seconds, weights[config] = epoch_seconds(config, X, precision, args.epochs,
                                                     args.device)
            times[config, precision].append(seconds)
            print(f"{config} {precision}: {seconds:.2f} s for {args.rows} rows", flush=True)
    machine = machine_description()
    stamp = time.strftime("%Y-%m-%d")
    args.results.parent.mkdir(parents=True, exist_ok=True)
    lines = [
        "<!-- hvae_conv_cost:start -->",
        f"Command: `python benchmarks/hvae_conv_cost.py --rows {args.rows} --epochs "
        f"{args.epochs} --rounds {args.rounds} --threads {args.threads} --precisions "
        f"{args.precisions} --configs {args.configs}`. Machine: {machine}; torch "
        f"{torch.__version__}; {stamp}. An epoch is the fastest "
        f"after the first over {args.rounds} round(s), on {args.rows} rows, scaled to "
        f"{N_TRAIN} (batch 100).", "",
        "| networks | weights | precision | s / epoch (50k images) | 400 epochs | "
        "2000 epochs | / gated MLP |", "|---|---|---|---|---|---|---|"]
    base = {p: min(times["gated_mlp", p]) for c, p in runs if c == "gated_mlp"}
    for config, precision in runs:
        per_epoch = min(times[config, precision]) * N_TRAIN / args.rows
        ratio = (f"{min(times[config, precision]) / base[precision]:.1f}x"
                 if precision in base else "")
        lines.append(f"| {config} | {weights[config]:,} | {precision} | {per_epoch:.0f} | "
                     f"{per_epoch * 400 / 3600:.1f} h | {per_epoch * 2000 / 3600:.1f} h | "
                     f"{ratio} |")
        append(args.results, {"config": config, "precision": precision,
                              "seconds": times[config, precision], "rows": args.rows,
                              "s_per_epoch_50k": per_epoch, "weights": weights[config],
                              "threads": args.threads, "machine": machine,
                              "torch": torch.__version__, "date": stamp})
    lines.append("<!-- hvae_conv_cost:end -->")
    text = "\n".join(lines)
    print(text)
    if args.write:
        update_section(args.write, "hvae_conv_cost",
                       "Two-level VAE: what an epoch costs with convolutional networks", text)


if __name__ == "__main__":
    main()
