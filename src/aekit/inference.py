"""What a fitted autoencoder computes: codes, decodes, samples and log-likelihoods.

:class:`InferenceMixin` holds the public methods every aekit model shares once fitted
(``transform``, ``inverse_transform``, ``reconstruct``, ``sample``, ``score_samples``,
``score``, ``elbo``, ``save``). They run in inference mode under the model's precision,
in chunks sized to :data:`EVAL_MEMORY_BUDGET`, on arrays or on data streamed from disk,
through the hooks a model implements (see :mod:`aekit.base`).
"""

from __future__ import annotations

import numbers
from typing import Any

import numpy as np
import torch
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_array, check_is_fitted
from torch import Tensor

from . import streaming
from .training import autocast, compiled

#: rough bytes one evaluation chunk may use; sets how many rows are scored at once.
EVAL_MEMORY_BUDGET = 256 * 2**20


def _seed(random_state: Any) -> int:
    """A 31-bit seed from ``random_state`` without touching any global RNG state."""
    if random_state is None:
        return int(np.random.SeedSequence().generate_state(1)[0] >> 1)
    if isinstance(random_state, numbers.Integral):
        return int(random_state)
    return int(check_random_state(random_state).randint(2**31 - 1))


class InferenceMixin:
    """The fitted model's public methods; :class:`~aekit.base.BaseAutoencoder` mixes them in."""

    def _device(self) -> torch.device:
        return next(self.module_.parameters()).device

    def _map_rows(self, X: Any, fn: Any, draws: int = 1,
                  others: tuple[np.ndarray, ...] = ()) -> np.ndarray:
        """Apply ``fn(x, *others)`` to chunks of rows under inference mode; concatenate as
        numpy. ``X`` is an array or a streamed source; ``others`` are arrays aligned with
        ``X`` (e.g. labels), chunked alongside."""
        per_row = 4 * draws * (X.shape[1] * 4 + sum(self.hidden_layer_sizes) + 1)
        chunk = max(1, min(len(X), EVAL_MEMORY_BUDGET // per_row))
        device = self._device()
        self.module_.eval()
        out, start = [], 0
        with torch.inference_mode(), autocast(self.precision, device):
            for rows in streaming.row_chunks(X, chunk):
                x = torch.as_tensor(rows, device=device)
                rest = [torch.as_tensor(o[start:start + len(x)], device=device) for o in others]
                out.append(fn(x, *rest).float().cpu().numpy())
                start += len(x)
        return np.concatenate(out)

    def _eval_noise(self, n_draws: int | None = None) -> Tensor:
        """Common random numbers ``(K, k)``: the same draws for every row, so a row's score
        does not depend on which other rows are scored with it."""
        seed = self.random_state if isinstance(self.random_state, numbers.Integral) else 0
        g = torch.Generator().manual_seed(int(seed))
        k = n_draws if n_draws is not None else self._n_eval_samples()
        return torch.randn(k, self.n_components, generator=g).to(self._device())

    def transform(self, X: Any) -> np.ndarray:
        """Codes of ``X``: the posterior mean (or the deterministic code), ``(n, k)``."""
        check_is_fitted(self)
        X = self._validate_X(X, reset=False)
        return self._map_rows(X, self._encode)

    def inverse_transform(self, X: Any) -> np.ndarray:
        """Decoder means for codes ``X`` of shape ``(n, k)``, in the input's row shape."""
        check_is_fitted(self)
        Z = check_array(X, dtype=np.float32)
        if Z.shape[1] != self.n_components:
            raise ValueError(f"codes have {Z.shape[1]} columns, but {type(self).__name__} "
                             f"has n_components={self.n_components}")
        lik = self.module_.likelihood
        X_hat = self._map_rows(Z, lambda z: lik.mean(self._decode(z)))
        return X_hat.reshape(len(Z), *self.input_shape_)

    def reconstruct(self, X: Any) -> np.ndarray:
        """``inverse_transform(transform(X))``: decoder means at the codes of ``X``."""
        return self.inverse_transform(self.transform(X))

    def sample(self, n_samples: int = 1, random_state: Any = None) -> np.ndarray:
        """Decoder means of ``n_samples`` draws from the prior, in the input's row shape.

        ``random_state`` seeds the draws (a fresh seed when None).
        """
        check_is_fitted(self)
        if not isinstance(n_samples, numbers.Integral) or n_samples < 1:
            raise ValueError(f"n_samples must be a positive integer; got {n_samples!r}")
        g = torch.Generator().manual_seed(_seed(random_state))
        self.module_.eval()
        with torch.inference_mode():
            z = self._sample_latent(int(n_samples), g).to(self._device())    # (n, k)
            x = self.module_.likelihood.mean(self._decode(z)).float().cpu().numpy()
        return x.reshape(int(n_samples), *self.input_shape_)

    def score_samples(self, X: Any) -> np.ndarray:
        """log p(x) for each row, in nats (see the model's docstring for how it is estimated).

        Bits per dimension are ``-score_samples(X) / (D * ln 2)``.
        """
        check_is_fitted(self)
        X = self._validate_X(X, reset=False)
        self._check_support(X)
        eps = self._eval_noise()
        log_likelihood = self._log_likelihood
        if self.compile:
            log_likelihood = self.__dict__.setdefault(
                "_compiled_log_likelihood", compiled(self._log_likelihood, "score_samples"))
        return self._map_rows(X, lambda x: log_likelihood(x, eps), draws=len(eps))

    def score(self, X: Any, y: Any = None) -> float:
        """Mean log-likelihood of the rows of ``X`` in nats (larger is better)."""
        return float(np.mean(self.score_samples(X)))

    def elbo(self, X: Any) -> np.ndarray:
        """The evidence lower bound on log p(x) for each row, in nats."""
        check_is_fitted(self)
        X = self._validate_X(X, reset=False)
        self._check_support(X)
        eps = self._eval_noise()
        return self._map_rows(X, lambda x: self._elbo(x, eps), draws=len(eps))

    def save(self, path: str) -> None:
        """Write the fitted model to one safetensors file (weights + JSON metadata).

        Read it back with :func:`aekit.load`; loading never unpickles anything.
        """
        from .io import save_model

        save_model(self, path)
