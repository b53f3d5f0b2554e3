"""Measurements of one fitted model on data: the importance-sampled log-likelihood with
its standard error, the KL per latent dimension, active units (Burda, Grosse &
Salakhutdinov, "Importance Weighted Autoencoders", 2015, arXiv:1509.00519) and the
reconstruction error. :func:`aekit.evaluation.evaluate` gathers them with the other metrics.
"""

from __future__ import annotations

import math
from numbers import Integral
from typing import Any

import numpy as np
import torch
from sklearn.utils.validation import check_array, check_is_fitted
from torch import Tensor

from aekit.data.streaming import row_chunks
from aekit.estimator import latent
from aekit.estimator.inference import (
    EVAL_MEMORY_BUDGET,
    bytes_per_row,
    computing,
    eval_noise,
    rows_per_chunk,
)
from aekit.estimator.latent import ACTIVE_UNIT_THRESHOLD
from aekit.evaluation.array_metrics import (
    bits_per_dim,
    bits_per_dim_refusal,
    mean_and_stderr,
    reconstruction_mse,
)
from aekit.exceptions import InputError
from aekit.runtime import seed

# ------------------------------------------------------------------------------ helpers


def flat_rows(X: Any) -> np.ndarray:
    """Rows (or images) as a float32 array ``(n, D)``."""
    X = check_array(X, dtype=np.float32, allow_nd=True)
    return X.reshape(len(X), -1)


def given_conditions(model: Any, y: Any) -> tuple:
    """``(y,)`` for a conditional model's public methods, ``()`` for the others."""
    if not model.capabilities.conditional:
        return ()
    if y is None:
        raise InputError(f"{type(model).__name__} is conditional: pass the labels or "
                         f"conditions y of the rows to evaluate it; got y=None")
    return (y,)


def _rows(model: Any, X: Any, y: Any, where: str) -> tuple[np.ndarray, tuple[np.ndarray, ...]]:
    """Validated flat rows and, for a conditional model, their condition vectors."""
    check_is_fitted(model)
    X = model._validate_X(X, reset=False)
    model._check_support(X)
    if not given_conditions(model, y):
        return X, ()
    return X, (model._conditions(y, len(X), where),)


def _pair_bytes(model: Any) -> int:
    """Rough bytes one (row, posterior draw) pair takes in a forward pass, counting the
    likelihood's parameters per feature (256 for "categorical") and the activations."""
    return bytes_per_row(model, math.prod(model.input_shape_))


def _chunks(model: Any, X: Any, C: tuple[np.ndarray, ...], rows: int):
    """``(x, c)`` tensors on the model's device, ``rows`` rows at a time."""
    device = model._device()
    start = 0
    for x in row_chunks(X, rows):
        yield (torch.as_tensor(x, device=device),
               tuple(torch.as_tensor(c[start:start + len(x)], device=device) for c in C))
        start += len(x)


def _noise(model: Any, n_draws: int, random_state: Any) -> Tensor:
    """Common random numbers ``(K, k)``, the same draws for every row, made as the model's
    own ``score_samples`` makes them; here ``random_state=None`` draws a fresh seed (the
    functions' scikit-learn convention) instead of the estimator's fixed 0."""
    return eval_noise(seed(random_state), n_draws, model.n_components, model._device())


class _RunningLogMeanExp:
    """log mean_k w_k of log-weights arriving in chunks along k, with a running maximum so
    exp() never overflows, and the delta-method standard error of that estimate."""

    def __init__(self) -> None:
        self.max: Tensor | None = None
        self.sum_w = self.sum_w2 = 0.0          # sums of w / max and (w / max)^2, float64
        self.n = 0

    def add(self, log_w: Tensor) -> None:
        log_w = log_w.double()                                                # (Kc, B)
        top = log_w.max(0).values                                             # (B,)
        if self.max is not None:
            top = torch.maximum(self.max, top)
            rescale = torch.exp(self.max - top)                               # (B,) <= 1
            self.sum_w, self.sum_w2 = self.sum_w * rescale, self.sum_w2 * rescale**2
        self.max = top
        w = torch.exp(log_w - top)                                            # (Kc, B) <= 1
        self.sum_w = self.sum_w + w.sum(0)
        self.sum_w2 = self.sum_w2 + w.square().sum(0)
        self.n += len(log_w)

    def result(self) -> tuple[Tensor, Tensor]:
        log_mean = self.max + self.sum_w.log() - math.log(self.n)             # (B,)
        if self.n < 2:
            return log_mean, torch.full_like(log_mean, math.nan)
        # se(log mean w) ~= std(w) / (sqrt(K) mean(w)); with unbiased variance this is
        # sqrt((K sum w^2 / (sum w)^2 - 1) / (K - 1)), free of the scale of w
        spread = (self.n * self.sum_w2 / self.sum_w.square() - 1.0).clamp_min(0.0)
        return log_mean, (spread / (self.n - 1)).sqrt()


# ------------------------------------------------------------------------------ density


def importance_sampled_log_likelihood(
    model: Any, X: Any, k: int = 1000, *, y: Any = None, chunk_rows: int | None = None,
    chunk_samples: int | None = None, random_state: Any = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """log p(x) per row by importance sampling with ``k`` posterior draws, and its error.

    ``log (1/K) sum_k p(x, z_k) / q(z_k|x)`` with ``z_k ~ q(z|x)`` (Burda et al. 2015,
    arXiv:1509.00519), from the model's ``_log_weights``. It is a stochastic lower bound
    whose mean rises towards log p(x) with ``k`` (``k = 1`` is an unbiased ELBO estimate).
    The draws are common random numbers seeded by ``random_state`` (a row scores the same
    alone or in a batch); so the rows' errors are correlated, and for small ``k`` a mean
    over rows keeps the noise of the shared draws. Rows go through
    ``chunk_rows`` at a time and draws ``chunk_samples`` at a time, the log-sum-exp being
    accumulated across draw chunks with a running maximum, so ``k = 5000`` never holds
    more than one chunk of decoder outputs; both default to a ~256 MiB budget.

    Returns
    -------
    ll : ndarray of shape (n,)
        The estimate per row, in nats (log p(x|c) for a conditional model, given ``y``).
    stderr : ndarray of shape (n,)
        Its standard error per row by the delta method on the mean weight,
        ``std(w) / (sqrt(K) mean(w))``; nan for ``k = 1``. Small values mean the draws
        agree; it does not measure the bias of the bound, which also shrinks with ``k``.

    Examples
    --------
    >>> import aekit
    >>> X, _ = aekit.datasets.load("digits")
    >>> vae = aekit.VAE(likelihood="bernoulli", hidden_layer_sizes=(32,), max_iter=2,
    ...                 random_state=0).fit(X)
    >>> ll, se = importance_sampled_log_likelihood(vae, X[:4], k=50)
    >>> ll.shape, bool((se > 0).all())
    ((4,), True)
    """
    if model.capabilities.semi_supervised:
        raise InputError(
            f"{type(model).__name__}'s importance weights also need a latent condition "
            f"(e.g. M2's class) that this function does not sum out; its score_samples is "
            f"its own estimate of log p(x) with n_importance_samples draws")
    if not model.capabilities.importance_weights:
        raise InputError(_no_weights_message(model))
    if not isinstance(k, Integral) or k < 1:
        raise InputError(f"k (posterior draws per row) must be a positive integer; got {k!r}")
    X, C = _rows(model, X, y, "importance_sampled_log_likelihood")
    n, per_pair = len(X), _pair_bytes(model)
    first = chunk_rows or min(n, 256)       # rows per chunk the draw chunks are sized for
    samples = chunk_samples or max(1, min(k, EVAL_MEMORY_BUDGET // (per_pair * first)))
    rows = chunk_rows or max(1, min(n, EVAL_MEMORY_BUDGET // (per_pair * samples)))
    eps = _noise(model, k, random_state)                                      # (K, k)
    lls, ses = [], []
    model.module_.eval()
    with computing(model, model._device()):
        for x, c in _chunks(model, X, C, rows):
            acc = _RunningLogMeanExp()
            for start in range(0, k, samples):
                acc.add(model._log_weights(x, *c, eps[start:start + samples]))  # (Kc, B)
            ll, se = acc.result()                                             # (B,) each
            lls.append(ll.cpu().numpy())
            ses.append(se.cpu().numpy())
    return np.concatenate(lls), np.concatenate(ses)


def bits_per_dim_of(model: Any, log_likelihood: np.ndarray | float, X: Any = None, *,
                    dequantized: bool = False) -> np.ndarray | float:
    """Bits per dimension of a fitted model's log-likelihood of the rows ``X``, where they
    mean something (:func:`~aekit.evaluation.bits_per_dim` with the model's likelihood
    and D).

    Raises :class:`~aekit.exceptions.InputError` saying why otherwise: a deterministic
    code's score (not a density), a continuous likelihood on data not declared
    ``dequantized``, or ``"bernoulli"`` on grey levels.

    Examples
    --------
    >>> import aekit
    >>> X, _ = aekit.datasets.load("digits")
    >>> vae = aekit.VAE(likelihood="categorical", hidden_layer_sizes=(16,), max_iter=1,
    ...                 n_importance_samples=2, random_state=0).fit(X[:50])
    >>> bpd = bits_per_dim_of(vae, vae.score(X[:5]), X[:5])
    >>> 0 < bpd < 9
    True
    """
    reason = _bits_per_dim_reason(model, X, dequantized)
    if reason is not None:
        raise InputError(f"no bits per dimension for {type(model).__name__}: {reason[0]}; "
                         f"{reason[1]}")
    return bits_per_dim(log_likelihood, math.prod(model.input_shape_), model.likelihood_, X=X,
                        dequantized=dequantized)


def bits_per_dim_or_reason(model: Any, log_likelihood: float, X: Any = None
                           ) -> tuple[float | None, str | None]:
    """``(bits per dimension, None)`` where they mean something, else ``(None, a short
    reason)``: what reports, ``evaluate`` and the command line show."""
    reason = _bits_per_dim_reason(model, X, False)
    if reason is not None:
        return None, reason[0]
    return float(bits_per_dim_of(model, log_likelihood, X)), None


def density_summary(model: Any, log_likelihood: np.ndarray, elbo: np.ndarray | None,
                    X: Any = None) -> dict[str, Any]:
    """The one summary of per-row log-likelihoods that ``evaluate``, ``aekit score`` and the
    report show: ``log_likelihood`` (mean over rows), ``log_likelihood_stderr`` (across
    rows), ``bits_per_dim`` (None, with a ``bits_per_dim_note`` saying why, where they are
    no code length) and ``elbo`` (mean; None when not given)."""
    mean, stderr = mean_and_stderr(log_likelihood)
    bits, why_not = bits_per_dim_or_reason(model, mean, X)
    out: dict[str, Any] = {"log_likelihood": mean, "log_likelihood_stderr": stderr,
                           "bits_per_dim": bits}
    if why_not is not None:
        out["bits_per_dim_note"] = why_not
    out["elbo"] = None if elbo is None else float(np.mean(elbo))
    return out


def _bits_per_dim_reason(model: Any, X: Any, dequantized: bool) -> tuple[str, str] | None:
    if not model.capabilities.score_is_density:
        return ("its score is log p(x | z = f(x)), not a density of x",
                "bits per dimension need a latent-variable model's log p(x)")
    return bits_per_dim_refusal(model.likelihood_, X, dequantized)


def _no_weights_message(model: Any) -> str:
    """Why a model without importance weights cannot be scored here, and what its
    ``score_samples`` is instead."""
    name = type(model).__name__
    if not model.capabilities.score_is_density:
        return (f"{name} has no latent-variable likelihood (a deterministic code, no "
                f"importance weights p(x, z) / q(z|x)), so log p(x) cannot be importance "
                f"sampled; its score_samples is the decoder log-likelihood at the code, "
                f"log p(x | z = code(x)), a reconstruction score in nats and not a density "
                f"of x; use a VAE-family model for log p(x)")
    return (f"{name} has no importance weights p(x, z) / q(z|x) to sample; its "
            f"score_samples is its own log p(x), described in the {name} docstring")


def has_kl_per_dimension(model: Any) -> bool:
    """Whether :func:`kl_per_dimension` applies: a posterior q(z|x) and a prior with
    per-dimension marginals."""
    with torch.inference_mode():
        return latent.prior_marginals(model) is not None


def kl_per_dimension(model: Any, X: Any, *, y: Any = None, n_samples: int = 256,
                     random_state: Any = 0) -> np.ndarray:
    """Mean over rows of KL(q(z_j|x) || p(z_j)) for each latent dimension j, in nats.

    Exact (``torch.distributions.kl_divergence`` of the Normal factors) when the prior is
    a factorised Normal, where the values sum to the ELBO's KL term. For a mixture prior
    (VampPrior) it is a Monte Carlo estimate with ``n_samples`` common posterior draws per
    row (seeded by ``random_state``) against the prior's per-dimension marginals, and then
    does not sum to the full KL.

    Examples
    --------
    >>> import aekit
    >>> X, _ = aekit.datasets.load("digits")
    >>> vae = aekit.VAE(n_components=3, likelihood="bernoulli", hidden_layer_sizes=(32,),
    ...                 max_iter=2, random_state=0).fit(X)
    >>> kl_per_dimension(vae, X[:10]).shape
    (3,)
    """
    if not has_kl_per_dimension(model):
        raise InputError(f"kl_per_dimension needs a posterior q(z|x) and a factorised Normal "
                         f"prior or a mixture of diagonal Normals; {type(model).__name__} has "
                         f"neither such a prior nor per-dimension prior marginals")
    X, C = _rows(model, X, y, "kl_per_dimension")
    model.module_.eval()
    total = torch.zeros(model.n_components, dtype=torch.float64)
    with torch.inference_mode():
        prior, exact = latent.prior_marginals(model)
        eps = None if exact else _noise(model, n_samples, random_state)       # (S, k)
        # the mixture's log_prob holds (S, B, k, M) values: size the row chunks for that
        n_mix = 1 if exact else prior.mixture_distribution.logits.shape[-1]
        per_row = 8 * (1 if exact else n_samples) * model.n_components * (n_mix + 4)
        rows = max(1, EVAL_MEMORY_BUDGET // per_row)
        for x, c in _chunks(model, X, C, rows):
            q = model._posterior(x, *c).base_dist                             # (B, k)
            kl = latent.kl_per_row(q, prior, exact, eps)                      # (B, k)
            total += kl.double().sum(0).cpu()
    return (total / len(X)).numpy()


def active_units(model: Any, X: Any, threshold: float = ACTIVE_UNIT_THRESHOLD, *,
                 y: Any = None) -> int:
    """Number of latent dimensions j with ``Cov_x(E_q[z_j|x]) > threshold``.

    Burda et al. (2015, arXiv:1509.00519, section 5.2): a unit whose posterior mean does
    not vary with x carries no information about x (the posterior has collapsed to the
    prior there). Meant for models with an N(0, I)-scaled latent space (VAE family); the
    variances themselves are ``np.var(model.transform(X), axis=0)``.

    Examples
    --------
    >>> import aekit
    >>> X, _ = aekit.datasets.load("digits")
    >>> vae = aekit.VAE(n_components=4, likelihood="bernoulli", hidden_layer_sizes=(32,),
    ...                 max_iter=2, random_state=0).fit(X)
    >>> 0 <= active_units(vae, X) <= 4
    True
    """
    Z = model.transform(X, *given_conditions(model, y))                                 # (n, k)
    return int((np.var(Z, axis=0) > threshold).sum())


# ------------------------------------------------------------------------ manifold


def reconstruction_error(model: Any, X: Any, *, y: Any = None) -> dict[str, float]:
    """Reconstruction error of ``X`` at the code, in two units.

    ``"nll"``: mean over rows of ``-log p(x | z = transform(x))`` in nats, the model's own
    likelihood (e.g. binary cross-entropy summed over features for "bernoulli"); ``"mse"``:
    mean squared error per feature of the decoder mean, comparable across models and PCA.
    A model whose decoder also needs a latent condition (M2's class) gets ``"nll"`` nan
    and the MSE of its own ``reconstruct``.

    Examples
    --------
    >>> import aekit
    >>> X, _ = aekit.datasets.load("digits")
    >>> ae = aekit.AE(likelihood="bernoulli", hidden_layer_sizes=(32,), max_iter=2,
    ...               random_state=0).fit(X)
    >>> sorted(reconstruction_error(ae, X[:20]))
    ['mse', 'nll']
    """
    given = given_conditions(model, y)
    if model.capabilities.semi_supervised:        # its decoder also needs the class
        return {"nll": math.nan,
                "mse": reconstruction_mse(flat_rows(X), flat_rows(model.reconstruct(X)))}
    Z = model.transform(X, *given).astype(np.float32)                         # (n, k)
    X, C = _rows(model, X, y, "reconstruction_error")
    nll, X_hat = [], []
    model.module_.eval()
    with computing(model, model._device()):
        rows = rows_per_chunk(model, X.shape[1])
        for (x, c), (z, _) in zip(_chunks(model, X, C, rows), _chunks(model, Z, (), rows)):
            p_x = model._decode(z, *c)                                        # (B,) of (D,)
            nll.append(-p_x.log_prob(x).double().cpu().numpy())
            X_hat.append(model.module_.likelihood.mean(p_x).float().cpu().numpy())
    return {"nll": float(np.concatenate(nll).mean()),
            "mse": reconstruction_mse(X, np.concatenate(X_hat))}
