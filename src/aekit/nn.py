"""Encoder and decoder builders sized from the input shape.

Every network here works on flat rows: encoders take ``(B, D)`` and return ``(B, n_out)``;
decoders take ``(B, k)`` and return ``(B, D * P)``, where P is the likelihood's number of
parameters per feature. Convolutional networks reshape to images inside, so the training
loop, the likelihood layer and the estimator never see anything but flat rows.
No BatchNorm: it makes a row's output depend on its batch, which breaks one-sample use.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Sequence
from typing import Any

from torch import Tensor, nn

from aekit._registry import Registry
from aekit.exceptions import InputError

#: factories of users' networks, by name: ``factory(input_shape, n_outputs, **kwargs)``
NETWORKS: Registry[Callable[..., nn.Module]] = Registry("network")

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

ARCHITECTURES = ("auto", "mlp", "gated", "conv")


class GatedLinear(nn.Module):
    """A gated dense layer, ``(W x + b) * sigmoid(V x + c)``: the gated linear unit of
    Dauphin et al. 2017 (arXiv:1612.08083), used as the dense layers of the VampPrior and
    Exemplar VAE likelihood benchmarks (Tomczak & Welling 2018, arXiv:1705.07120). ``W``
    and ``V`` are stacked in one ``nn.Linear`` of twice the width: one matrix product."""

    def __init__(self, n_in: int, n_out: int) -> None:
        super().__init__()
        self.linear = nn.Linear(n_in, 2 * n_out)

    def forward(self, x: Tensor) -> Tensor:
        h, gate = self.linear(x).chunk(2, dim=-1)
        return h * gate.sigmoid()


def mlp(sizes: Sequence[int], activation: str, gated: bool = False) -> nn.Sequential:
    """Linear layers through ``sizes``, ``activation`` between them, none after the last.
    With ``gated``, every layer but the last is a :class:`GatedLinear`, whose gate is its
    nonlinearity (``activation`` is then not used)."""
    layers: list[nn.Module] = []
    for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        last = i == len(sizes) - 2
        if gated and not last:
            layers.append(GatedLinear(n_in, n_out))
            continue
        layers.append(nn.Linear(n_in, n_out))
        if not last:
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


#: channels of the conv networks' stride-2 stages, in order
CONV_CHANNELS = (32, 64, 128, 256, 256, 256)


def conv_stages(h: int, w: int) -> int:
    """Stride-2 stages for ``h x w`` images: 2 up to 32 pixels on the shorter side (28x28
    grey, 32x32 RGB end at 7x7 / 8x8), one more for each doubling above (64x64 -> 8x8,
    128x128 -> 8x8), so the dense layer after them stays small at any resolution."""
    side = min(h, w)
    return 2 + max(0, math.ceil(math.log2(side / 32))) if side > 32 else 2


def _halved(n: int, times: int) -> int:
    for _ in range(times):
        n = math.ceil(n / 2)
    return n


class ConvEncoder(nn.Module):
    """Stride-2 3x3 convolutions (32, 64, 128, ... channels; :func:`conv_stages` of them),
    then an MLP head. Each stage maps a side n to ceil(n / 2), so any H, W >= 1 works."""

    def __init__(self, shape: tuple[int, int, int], hidden: Sequence[int], n_out: int,
                 activation: str) -> None:
        super().__init__()
        c, h, w = shape
        self.shape = shape
        act = ACTIVATIONS[activation]
        stages = conv_stages(h, w)
        channels = [c, *CONV_CHANNELS[:stages]]
        layers: list[nn.Module] = []
        for c_in, c_out in zip(channels[:-1], channels[1:]):
            layers += [nn.Conv2d(c_in, c_out, 3, stride=2, padding=1), act()]
        self.features = nn.Sequential(*layers, nn.Flatten())
        n_flat = channels[-1] * _halved(h, stages) * _halved(w, stages)
        self.head = mlp([n_flat, *hidden, n_out], activation)
        self.head_activation = act()

    def forward(self, x: Tensor) -> Tensor:
        lead = x.shape[:-1]                           # (B,) or (K, B)
        x = x.reshape(-1, *self.shape)                # (B, C, H, W)
        h = self.head(self.head_activation(self.features(x)))  # (B, n_out)
        return h.reshape(*lead, -1)


class ConvDecoder(nn.Module):
    """The mirror of :class:`ConvEncoder`: MLP, then stride-2 transposed convolutions;
    the output is cropped to (H, W) and flattened feature-major to ``(B, D * P)``."""

    def __init__(self, shape: tuple[int, int, int], hidden: Sequence[int], n_components: int,
                 n_params: int, activation: str) -> None:
        super().__init__()
        c, h, w = shape
        self.shape, self.n_params = shape, n_params
        stages = conv_stages(h, w)
        self.grid = (_halved(h, stages), _halved(w, stages))
        channels = [*CONV_CHANNELS[:stages][::-1], c * n_params]   # e.g. 64, 32, C*P
        self.channels = channels[0]
        act = ACTIVATIONS[activation]
        self.head = mlp([n_components, *hidden, channels[0] * self.grid[0] * self.grid[1]],
                        activation)
        layers: list[nn.Module] = []
        for c_in, c_out in zip(channels[:-1], channels[1:]):
            layers += [act(), nn.ConvTranspose2d(c_in, c_out, 4, stride=2, padding=1)]
        self.upsample = nn.Sequential(*layers)

    def forward(self, z: Tensor) -> Tensor:
        c, h, w = self.shape
        lead = z.shape[:-1]                            # (B,) or (K, B)
        y = self.head(z).reshape(-1, self.channels, *self.grid)   # (B, C0, h/2^s, w/2^s)
        y = self.upsample(y)[:, :, :h, :w]             # (B, C * P, H, W)
        y = y.unflatten(1, (c, self.n_params))         # (B, C, P, H, W)
        y = y.permute(0, 1, 3, 4, 2).flatten(1)        # (B, C*H*W*P), feature-major
        return y.reshape(*lead, -1)


def build_encoder(input_shape: Sequence[int], hidden_layer_sizes: Sequence[int], n_out: int,
                  activation: str, architecture: str) -> nn.Module:
    """Encoder for rows of ``input_shape``: ``(B, D) -> (B, n_out)``."""
    hidden = list(hidden_layer_sizes)
    architecture = resolve_architecture(architecture, input_shape)
    if architecture == "conv":
        return ConvEncoder(image_shape(input_shape), hidden[-1:], n_out, activation)  # type: ignore[arg-type]
    return mlp([math.prod(input_shape), *hidden, n_out], activation,
               gated=architecture == "gated")


def build_decoder(input_shape: Sequence[int], hidden_layer_sizes: Sequence[int],
                  n_components: int, n_params: int, activation: str,
                  architecture: str) -> nn.Module:
    """Decoder mirroring :func:`build_encoder`: ``(B, k) -> (B, D * n_params)``."""
    hidden = list(reversed(hidden_layer_sizes))
    architecture = resolve_architecture(architecture, input_shape)
    if architecture == "conv":
        return ConvDecoder(image_shape(input_shape), hidden[:1], n_components, n_params,  # type: ignore[arg-type]
                           activation)
    return mlp([n_components, *hidden, math.prod(input_shape) * n_params], activation,
               gated=architecture == "gated")


# ------------------------------------------------------------------ a user's own networks

def register_network(name: str) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Register a network factory under ``name``, so models can be given it by name
    (``encoder="name"`` or ``encoder=("name", {"width": 64})``) and model files rebuild it.

    The factory is called as ``factory(input_shape, n_outputs, **kwargs)``: for an encoder
    ``input_shape`` is the row shape (``(C, H, W)`` for images, ``(D,)`` for flat rows);
    for a decoder it is ``(n_components,)``. It returns an ``nn.Module`` whose output,
    flattened per row, has ``n_outputs`` values.

    Examples
    --------
    >>> import math, aekit
    >>> from torch import nn
    >>> @aekit.register_network("tiny_mlp_doc")
    ... def tiny(input_shape, n_outputs, width=32):
    ...     return nn.Sequential(nn.Flatten(), nn.Linear(math.prod(input_shape), width),
    ...                          nn.ReLU(),
    ...                          nn.Linear(width, n_outputs))
    >>> X, _ = aekit.datasets.load("digits")
    >>> vae = aekit.VAE(encoder=("tiny_mlp_doc", {"width": 16}), max_iter=1).fit(X)
    """
    return NETWORKS.register(name)


def network_spec_problem(spec: Any) -> str | None:
    """Why ``spec`` cannot be an ``encoder=`` / ``decoder=`` value (None when it can)."""
    if spec is None or isinstance(spec, nn.Module):
        return None
    if isinstance(spec, str):
        return None if spec in NETWORKS else f"no network is registered as {spec!r} " \
            f"(registered: {', '.join(NETWORKS.names()) or 'none'}); register its factory " \
            f"with @aekit.register_network({spec!r})"
    if isinstance(spec, (tuple, list)):
        if len(spec) == 2 and isinstance(spec[0], str) and isinstance(spec[1], dict):
            return network_spec_problem(spec[0])
        return "a (name, arguments) pair must be a registered name and a dict of arguments"
    if callable(spec):
        return None
    return (f"expected None, an nn.Module, a factory (input_shape, n_outputs) -> nn.Module or "
            f"a registered name; got {type(spec).__name__}")


def network_spec_json(spec: Any) -> Any:
    """What a model file records of ``spec``: a registered name and its arguments as they
    are, and for a module or an unregistered factory only what it is (files never hold
    code: such a network is given again to :func:`aekit.load`)."""
    if spec is None or isinstance(spec, str):
        return spec
    if isinstance(spec, (tuple, list)):
        return [spec[0], dict(spec[1])]
    return {"user_network": getattr(spec, "__qualname__", type(spec).__qualname__)}


class UserNetwork(nn.Module):
    """A user's network on aekit's flat rows: rows ``(..., D)`` are given to it in the
    shape ``in_shape`` it was built for, and its output is flattened per row and checked
    to have the ``n_outputs`` values the model needs (``what`` says why, in the error)."""

    def __init__(self, net: nn.Module, in_shape: tuple[int, ...], n_outputs: int,
                 what: str) -> None:
        super().__init__()
        self.net, self.in_shape, self.n_outputs, self.what = net, tuple(in_shape), n_outputs, what

    def forward(self, x: Tensor) -> Tensor:
        lead = x.shape[:-1]                             # (B,) or (K, B)
        y = self.net(x.reshape(-1, *self.in_shape))
        y = y.reshape(y.shape[0], -1)                   # (B, n_out)
        if y.shape[-1] != self.n_outputs:
            raise InputError(f"the {self.what.split(':')[0]} gives {y.shape[-1]} values per row "
                             f"for input of shape {self.in_shape}; it must give "
                             f"{self.n_outputs}: {self.what.split(':', 1)[1].strip()}")
        return y.reshape(*lead, -1)


def build_user_network(spec: Any, in_shape: tuple[int, ...], n_outputs: int,
                       what: str) -> UserNetwork:
    """The network ``spec`` (a module, copied so the caller's stays as it is; a factory; a
    registered name or ``(name, kwargs)``) for inputs of ``in_shape``, wrapped in
    :class:`UserNetwork`. ``what`` is ``"role: why n_outputs"`` for error messages."""
    problem = network_spec_problem(spec)
    if problem is not None:
        raise InputError(f"{what.split(':')[0]}: {problem}")
    if isinstance(spec, nn.Module):
        net = copy.deepcopy(spec)
    elif isinstance(spec, str):
        net = NETWORKS.lookup(spec)(in_shape, n_outputs)
    elif isinstance(spec, (tuple, list)):
        net = NETWORKS.lookup(spec[0])(in_shape, n_outputs, **spec[1])
    else:
        net = spec(in_shape, n_outputs)
    if not isinstance(net, nn.Module):
        raise InputError(f"{what.split(':')[0]}: the factory returned "
                         f"{type(net).__name__}, not an nn.Module")
    return UserNetwork(net, in_shape, n_outputs, what)
