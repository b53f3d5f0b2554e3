"""What a model can do, declared on its class: :class:`Capabilities`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Capabilities:
    """What a model can do, declared on its class and read by evaluation, reporting, the
    command line and the benchmarks (nothing probes a model for these).

    Attributes
    ----------
    conditional : bool
        ``transform``, ``score_samples``, ``sample``, ... take conditions ``y`` (CVAE).
    semi_supervised : bool
        ``y`` may leave rows unlabelled and the model predicts classes (M2).
    score_is_density : bool
        ``score_samples`` is log p(x), a density of x; False for deterministic codes,
        where it is the decoder log-likelihood at the code, log p(x | z = f(x)).
    posterior : bool
        A Gaussian posterior ``_posterior`` and a prior ``_prior`` exist.
    importance_weights : bool
        ``_log_weights`` gives importance weights, so log p(x) can be importance sampled.
    denoising : bool
        The model corrupts its input (``corrupt``) and learns to undo it.
    streaming : bool
        It can train on data streamed from disk.
    """

    conditional: bool = False
    semi_supervised: bool = False
    score_is_density: bool = True
    posterior: bool = False
    importance_weights: bool = False
    denoising: bool = False
    streaming: bool = True

    def but(self, **changes: Any) -> Capabilities:
        """A copy with ``changes``: ``capabilities = VAE.capabilities.but(conditional=True)``."""
        return Capabilities(**{**self.__dict__, **changes})
