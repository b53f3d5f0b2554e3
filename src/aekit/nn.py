"""Encoder and decoder builders sized from the input shape.

Every network here works on flat rows: encoders take ``(B, D)`` and return ``(B, n_out)``;
decoders take ``(B, k)`` and return ``(B, D * P)``, where P is the likelihood's number of
parameters per feature. Convolutional networks reshape to images inside, so the training
loop, the likelihood layer and the estimator never see anything but flat rows.
No BatchNorm: it makes a row's output depend on its batch, which breaks one-sample use.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from torch import Tensor, nn

from aekit.exceptions import InputError

ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "leaky_relu": nn.LeakyReLU,
    "elu": nn.ELU,
    "gelu": nn.GELU,
    "silu": nn.SiLU,
    "tanh": nn.Tanh,
    "sigmoid": nn.Sigmoid,
    "identity": nn.Identity,
}

ARCHITECTURES = ("auto", "mlp", "conv")


def mlp(sizes: Sequence[int], activation: str) -> nn.Sequential:
    """Linear layers through ``sizes``, ``activation`` between them, none after the last."""
    layers: list[nn.Module] = []
    for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(n_in, n_out))
        if i < len(sizes) - 2:
            layers.append(ACTIVATIONS[activation]())
    return nn.Sequential(*layers)


def image_shape(input_shape: Sequence[int]) -> tuple[int, int, int] | None:
    """``(C, H, W)`` for an image-shaped row (``(H, W)`` or ``(C, H, W)``), else None."""
    if len(input_shape) == 2:
        return (1, *input_shape)  # type: ignore[return-value]
    if len(input_shape) == 3:
        return tuple(input_shape)  # type: ignore[return-value]
    return None


def resolve_architecture(architecture: str, input_shape: Sequence[int]) -> str:
    """"auto" picks "conv" for image-shaped input and "mlp" for flat rows."""
    if architecture == "auto":
        return "conv" if image_shape(input_shape) is not None else "mlp"
    if architecture == "conv" and image_shape(input_shape) is None:
        raise InputError(
            f"architecture='conv' needs image input of shape (n, H, W) or (n, C, H, W); "
            f"got rows of shape {tuple(input_shape)}; pass images or use architecture='mlp'"
        )
    return architecture


class ConvEncoder(nn.Module):
    """Two stride-2 3x3 convolutions (32, 64 channels), then an MLP head.

    Spatial size goes H -> ceil(H/2) -> ceil(H/4), so any H, W >= 1 works.
    """

    def __init__(self, shape: tuple[int, int, int], hidden: Sequence[int], n_out: int,
                 activation: str) -> None:
        super().__init__()
        c, h, w = shape
        self.shape = shape
        act = ACTIVATIONS[activation]
        self.features = nn.Sequential(
            nn.Conv2d(c, 32, 3, stride=2, padding=1), act(),
            nn.Conv2d(32, 64, 3, stride=2, padding=1), act(),
            nn.Flatten(),
        )
        n_flat = 64 * math.ceil(math.ceil(h / 2) / 2) * math.ceil(math.ceil(w / 2) / 2)
        self.head = mlp([n_flat, *hidden, n_out], activation)
        self.head_activation = act()

    def forward(self, x: Tensor) -> Tensor:
        lead = x.shape[:-1]                           # (B,) or (K, B)
        x = x.reshape(-1, *self.shape)                # (B, C, H, W)
        h = self.head(self.head_activation(self.features(x)))  # (B, n_out)
        return h.reshape(*lead, -1)


class ConvDecoder(nn.Module):
    """The mirror of :class:`ConvEncoder`: MLP, then two stride-2 transposed convolutions;
    the output is cropped to (H, W) and flattened feature-major to ``(B, D * P)``."""

    def __init__(self, shape: tuple[int, int, int], hidden: Sequence[int], n_components: int,
                 n_params: int, activation: str) -> None:
        super().__init__()
        c, h, w = shape
        self.shape, self.n_params = shape, n_params
        self.grid = (math.ceil(h / 4), math.ceil(w / 4))
        act = ACTIVATIONS[activation]
        self.head = mlp([n_components, *hidden, 64 * self.grid[0] * self.grid[1]], activation)
        self.upsample = nn.Sequential(
            act(),
            nn.ConvTranspose2d(64, 32, 4, stride=2, padding=1), act(),
            nn.ConvTranspose2d(32, c * n_params, 4, stride=2, padding=1),
        )

    def forward(self, z: Tensor) -> Tensor:
        c, h, w = self.shape
        lead = z.shape[:-1]                            # (B,) or (K, B)
        y = self.head(z).reshape(-1, 64, *self.grid)   # (B, 64, h/4, w/4)
        y = self.upsample(y)[:, :, :h, :w]             # (B, C * P, H, W)
        y = y.unflatten(1, (c, self.n_params))         # (B, C, P, H, W)
        y = y.permute(0, 1, 3, 4, 2).flatten(1)        # (B, C*H*W*P), feature-major
        return y.reshape(*lead, -1)


def build_encoder(input_shape: Sequence[int], hidden_layer_sizes: Sequence[int], n_out: int,
                  activation: str, architecture: str) -> nn.Module:
    """Encoder for rows of ``input_shape``: ``(B, D) -> (B, n_out)``."""
    hidden = list(hidden_layer_sizes)
    if resolve_architecture(architecture, input_shape) == "conv":
        return ConvEncoder(image_shape(input_shape), hidden[-1:], n_out, activation)  # type: ignore[arg-type]
    return mlp([math.prod(input_shape), *hidden, n_out], activation)


def build_decoder(input_shape: Sequence[int], hidden_layer_sizes: Sequence[int],
                  n_components: int, n_params: int, activation: str,
                  architecture: str) -> nn.Module:
    """Decoder mirroring :func:`build_encoder`: ``(B, k) -> (B, D * n_params)``."""
    hidden = list(reversed(hidden_layer_sizes))
    if resolve_architecture(architecture, input_shape) == "conv":
        return ConvDecoder(image_shape(input_shape), hidden[:1], n_components, n_params,  # type: ignore[arg-type]
                           activation)
    return mlp([n_components, *hidden, math.prod(input_shape) * n_params], activation)
