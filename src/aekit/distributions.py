"""The likelihood layer: every reconstruction loss in aekit is a ``torch.distributions`` log-prob.

A decoder outputs the parameters of p(x|z); a :class:`Likelihood` turns them into a
distribution over the D features (``Independent`` over the last axis), so ``log_prob`` is
summed over features and the loss is ``-log_prob``. The classic losses fall out:

============================  ==================================  ===========================
name                          distribution                        classic loss it equals
============================  ==================================  ===========================
``bernoulli``                 Bernoulli(logits)                   binary cross-entropy
``gaussian``                  Normal(mu, sigma fixed)             MSE / (2 sigma^2) + const
``gaussian_learned``          Normal(mu, sigma learned, clamped)  sigma-VAE
``laplace``                   Laplace(mu, b fixed)                L1 / b + const
``continuous_bernoulli``      ContinuousBernoulli(logits)         BCE + log normaliser
``categorical``               Categorical over 256 grey levels    per-pixel cross-entropy
============================  ==================================  ===========================

References: Loaiza-Ganem & Cunningham, "The continuous Bernoulli", 2019, arXiv:1907.06845;
Rybkin et al., "Simple and Effective VAE Training with Calibrated Decoders", 2020,
arXiv:2006.13202 (the learned-sigma Gaussian).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.distributions import (
    Bernoulli,
    Categorical,
    ContinuousBernoulli,
    Distribution,
    Independent,
    Laplace,
    Normal,
    Poisson,
)

from aekit._registry import Registry
from aekit.exceptions import InputError

LIKELIHOODS: Registry[type] = Registry("likelihood")

#: the column kinds of a mixed table (see :class:`MixedLikelihood`)
KINDS = ("numeric", "binary", "count", "categorical")
#: log-rate of a count column's Poisson, clamped so exp() stays finite (rates e^-20 to e^15)
LOG_RATE_RANGE = (-20.0, 15.0)


def log_mean_exp(log_w: Tensor, dim: int = 0) -> Tensor:
    """``log(mean(exp(log_w)))`` along ``dim``, computed stably in float32 or wider.

    This turns K importance log-weights per row into the importance-sampled estimate of
    log p(x) (Burda et al., "Importance Weighted Autoencoders", 2015, arXiv:1509.00519).

    Examples
    --------
    >>> import torch
    >>> float(log_mean_exp(torch.log(torch.tensor([1.0, 3.0]))))  # log(2)
    0.6931471824645996
    """
    log_w = log_w.float() if log_w.dtype in (torch.float16, torch.bfloat16) else log_w
    n = log_w.shape[dim]
    # reduced along the last, contiguous axis: a reduction over a leading axis is vectorised
    # across the rows, and a row's rounding (1 ulp) then depends on its position in the
    # batch, so that a row scored in another chunk (or on another rank) differed
    log_w = log_w.movedim(dim, -1).contiguous()
    return torch.logsumexp(log_w, dim=-1) - math.log(n)


class Likelihood(nn.Module):
    """Base class: maps decoder outputs to p(x|z), checks that data lies in its support.

    Subclasses set ``n_params`` (decoder outputs per feature) and implement
    :meth:`base_distribution`. ``forward(params)`` takes decoder outputs of shape
    ``(..., D * n_params)`` and returns a distribution with event shape ``(D,)``.
    """

    n_params: int = 1
    #: (low, high) of the values the distribution can score; None means unbounded.
    support: tuple[float, float] | None = None
    #: what to suggest when data falls outside the support.
    alternative = "likelihood='gaussian'"
    #: a location-scale family over the real line: it can model standardised features and
    #: give back the density of the data as given (see ``standardize``)
    location_scale: bool = False

    def __init__(self, n_features: int, scale: float = 1.0, standardize: bool = False) -> None:
        super().__init__()
        self.n_features = n_features
        #: widths of what the encoder sees and of what the decoder gives
        self.n_inputs, self.n_outputs = n_features, n_features * self.n_params
        self.scale = float(scale)
        self.standardizes = bool(standardize)
        if standardize:
            if not self.location_scale:
                name = getattr(type(self), "_registry_name", type(self).__name__)
                raise InputError(f"likelihood={name!r} models values in a fixed range and "
                                 f"cannot standardise its features; use scale='none'")
            # the training rows' per-feature mean and standard deviation (set by fit)
            self.register_buffer("data_loc", torch.zeros(n_features))
            self.register_buffer("data_scale", torch.ones(n_features))

    def set_standardization(self, loc: Any, scale: Any) -> None:
        """Set the per-feature mean and standard deviation the features are standardised by."""
        with torch.no_grad():
            self.data_loc.copy_(torch.as_tensor(loc, dtype=torch.float32))
            self.data_scale.copy_(torch.as_tensor(scale, dtype=torch.float32))

    def standardize(self, x: Tensor) -> Tensor:
        """What the encoder sees: ``(x - mean) / std`` per feature when this likelihood
        standardises, else ``x`` itself."""
        if not self.standardizes:
            return x
        return (x - self.data_loc) / self.data_scale

    def _in_data_units(self, loc: Tensor, scale: Any) -> tuple[Tensor, Any]:
        """Location and scale of a feature's distribution in the data's own units.

        The decoder models the standardised feature u = (x - m) / s; x = m + s u is then
        of the same family with location m + s loc and scale s scale, whose density is
        that of u times 1 / s: ``log_prob`` includes the log-Jacobian -sum log s, so it
        stays a log-density of the rows as given.
        """
        if not self.standardizes:
            return loc, scale
        return self.data_loc + self.data_scale * loc, self.data_scale * scale

    def base_distribution(self, params: Tensor) -> Distribution:
        """Per-feature distribution from params of shape ``(..., D)`` or ``(..., D, P)``."""
        raise NotImplementedError

    def forward(self, params: Tensor) -> Distribution:
        params = params.float()   # likelihoods stay float32 under mixed precision
        if self.n_params > 1:
            params = params.unflatten(-1, (self.n_features, self.n_params))  # (..., D, P)
        return Independent(self.base_distribution(params), 1)

    def mean(self, p_x: Distribution) -> Tensor:
        """Mean of p(x|z) in data units, shape ``(..., D)``."""
        return p_x.mean

    def check_support(self, X: np.ndarray) -> None:
        """Raise ``ValueError`` if ``X`` has values this likelihood cannot score."""
        if self.support is None or X.size == 0:
            return
        low, high = self.support
        x_min, x_max = float(np.min(X)), float(np.max(X))
        if x_min < low or x_max > high:
            name = getattr(type(self), "_registry_name", type(self).__name__)
            raise InputError(
                f"likelihood={name!r} models values in [{low:g}, {high:g}], but the data "
                f"ranges over [{x_min:g}, {x_max:g}]; rescale the data to [{low:g}, {high:g}] "
                f"(e.g. MinMaxScaler) or use {self.alternative}"
            )


@LIKELIHOODS.register("bernoulli")
class BernoulliLikelihood(Likelihood):
    """Bernoulli(logits): the binary cross-entropy loss. Grey levels in [0, 1] are accepted
    (the usual practice) but only binary data gives a normalised likelihood; use
    ``continuous_bernoulli`` or ``categorical`` for a proper density of grey levels."""

    support = (0.0, 1.0)

    def base_distribution(self, params: Tensor) -> Distribution:
        return LogitBernoulli(logits=params, validate_args=False)


@LIKELIHOODS.register("continuous_bernoulli")
class ContinuousBernoulliLikelihood(Likelihood):
    """ContinuousBernoulli(logits): a normalised density on [0, 1], its normaliser computed
    from the logits (see :class:`LogitContinuousBernoulli`)."""

    support = (0.0, 1.0)

    def base_distribution(self, params: Tensor) -> Distribution:
        return LogitContinuousBernoulli(logits=params, validate_args=False)


#: below this |logit| the normaliser and the mean of the continuous Bernoulli use their
#: Taylor series: the closed forms cancel there (their next terms are < 1e-9 at 0.1)
_CB_TAYLOR_BELOW = 0.1


def continuous_bernoulli_log_norm(logits: Tensor) -> Tensor:
    """log C(eta) of the continuous Bernoulli with natural parameter (logit) ``eta``.

    With lambda = sigmoid(eta), Loaiza-Ganem & Cunningham (2019, arXiv:1907.06845, eq. 7)
    give C = 2 atanh(1 - 2 lambda) / (1 - 2 lambda); as 1 - 2 lambda = -tanh(eta / 2) and
    atanh(1 - 2 lambda) = -eta / 2, this is ``C(eta) = eta / tanh(eta / 2)``, so
    ``log C = log|eta| - log(1 - e^-|eta|) + log(1 + e^-|eta|)``, and near 0
    ``log C = log 2 + eta^2 / 12 - 7 eta^4 / 1440 + 31 eta^6 / 90720 - ...``.
    torch's ``ContinuousBernoulli`` computes it from ``probs`` clamped to
    [eps, 1 - eps], so it saturates for |eta| above ~16 in float32 (log C(30) comes out
    2.769 instead of log 30 = 3.401); here it never goes through ``probs``.

    Examples
    --------
    >>> import math, torch
    >>> float(continuous_bernoulli_log_norm(torch.tensor(30.0))) - math.log(30.0) < 1e-6
    True
    >>> round(float(continuous_bernoulli_log_norm(torch.tensor(0.0))), 6)  # log 2
    0.693147
    """
    # each branch sees only arguments in its own range, so the branch torch.where drops
    # has no inf or nan that would turn the gradient into nan
    a = logits.abs().clamp_min(_CB_TAYLOR_BELOW)
    exact = a.log() - torch.log(-torch.expm1(-a)) + torch.log1p(torch.exp(-a))
    s = logits.clamp(-_CB_TAYLOR_BELOW, _CB_TAYLOR_BELOW).square()
    taylor = math.log(2.0) + s * (1 / 12 + s * (-7 / 1440 + s * (31 / 90720)))
    return torch.where(logits.abs() < _CB_TAYLOR_BELOW, taylor, exact)


class LogitBernoulli(Bernoulli):
    """torch's ``Bernoulli(logits)``, whose ``log_prob`` without gradients (evaluation) is
    ``x l - softplus(l)``: the same value as torch's (minus the binary cross-entropy with
    logits) in two elementwise passes instead of about six, where scoring with many
    importance samples spends most of its time outside the matrix products. The
    difference to torch's is below 1e-6 per feature in float32 (softplus switches to the
    identity above 20, where log1p(e^-20) is 2e-9). With gradients it is torch's, whose
    fused backward is one kernel (the two-pass form made a training step 2% slower).
    """

    def log_prob(self, value: Tensor) -> Tensor:
        logits = self.logits
        if torch.is_grad_enabled() and logits.requires_grad:
            return super().log_prob(value)
        return value * logits - torch.nn.functional.softplus(logits)


class LogitContinuousBernoulli(ContinuousBernoulli):
    """torch's ``ContinuousBernoulli`` with the normaliser (so ``log_prob`` and ``entropy``)
    and the mean computed from the logits (:func:`continuous_bernoulli_log_norm`), exact
    for logits of any size; torch's go through ``probs`` clamped to [eps, 1 - eps].

    ``log_prob(x) = x eta - softplus(eta) + log C(eta)``.
    """

    def _cont_bern_log_norm(self) -> Tensor:
        return continuous_bernoulli_log_norm(self.logits)

    @property
    def mean(self) -> Tensor:
        # E[x] = 1 / (1 - e^-eta) - 1 / eta, and E[x](-eta) = 1 - E[x](eta); near 0 the
        # two terms cancel, and the series 1/2 + sum_n B_2n eta^(2n-1) / (2n)! (Bernoulli
        # numbers) is used up to |eta| = 0.5, where its next term is < 1e-10
        eta, cut = self.logits, 0.5
        a = eta.abs().clamp_min(cut)                    # the exact branch off its pole
        upper = -1.0 / torch.expm1(-a) - 1.0 / a                             # E[x](|eta|)
        exact = torch.where(eta >= 0, upper, 1.0 - upper)
        e = eta.clamp(-cut, cut)
        s = e.square()
        taylor = 0.5 + e * (1 / 12 + s * (-1 / 720 + s * (1 / 30240 - s / 1209600)))
        return torch.where(eta.abs() < cut, taylor, exact)


@LIKELIHOODS.register("gaussian")
class GaussianLikelihood(Likelihood):
    """Normal(mu, sigma), sigma fixed to ``scale``: MSE / (2 sigma^2) + D log(sigma sqrt(2 pi))."""

    location_scale = True

    def base_distribution(self, params: Tensor) -> Distribution:
        return Normal(*self._in_data_units(params, self.scale), validate_args=False)


@LIKELIHOODS.register("gaussian_learned")
class LearnedGaussianLikelihood(Likelihood):
    """Normal(mu, sigma) with one learned log-sigma per feature, clamped to
    [log 1e-3, log 10] so a constant feature cannot drive the likelihood to infinity."""

    min_log_scale = math.log(1e-3)
    max_log_scale = math.log(10.0)
    location_scale = True

    def __init__(self, n_features: int, scale: float = 1.0, standardize: bool = False) -> None:
        super().__init__(n_features, scale, standardize)
        self.log_scale = nn.Parameter(torch.full((n_features,), math.log(scale)))

    def base_distribution(self, params: Tensor) -> Distribution:
        log_scale = self.log_scale.clamp(self.min_log_scale, self.max_log_scale)  # (D,)
        return Normal(*self._in_data_units(params, log_scale.exp()), validate_args=False)


@LIKELIHOODS.register("laplace")
class LaplaceLikelihood(Likelihood):
    """Laplace(mu, b) with b fixed to ``scale``: L1 / b + D log(2 b)."""

    location_scale = True

    def base_distribution(self, params: Tensor) -> Distribution:
        return Laplace(*self._in_data_units(params, self.scale), validate_args=False)


@LIKELIHOODS.register("categorical")
class CategoricalLikelihood(Likelihood):
    """Categorical over 256 grey levels per feature (values in [0, 1] are quantised to
    ``round(255 x)``), as in PixelCNN-style discrete likelihoods."""

    n_params = 256
    support = (0.0, 1.0)
    alternative = "likelihood='gaussian' (or rescale to [0, 1])"

    def base_distribution(self, params: Tensor) -> Distribution:
        return _QuantisedCategorical(logits=params, validate_args=False)

    def mean(self, p_x: Distribution) -> Tensor:
        probs = p_x.base_dist.probs  # (..., D, 256)
        levels = torch.arange(256, device=probs.device, dtype=probs.dtype) / 255.0
        return probs @ levels  # (..., D)


class _QuantisedCategorical(Categorical):
    """A Categorical whose ``log_prob`` takes values in [0, 1] and scores ``round(255 x)``."""

    def log_prob(self, value: Tensor) -> Tensor:
        return super().log_prob((value * 255.0).round().long())


@LIKELIHOODS.register("mixed")
class MixedLikelihood(Likelihood):
    """A table of numeric, binary and categorical columns: each column its own p(x_j | z),
    independent given z, and log p(x | z) their sum (Nazabal et al., "Handling incomplete
    heterogeneous data using VAEs", 2020, arXiv:1807.03653).

    - numeric: Normal with a learned sigma per column, on the standardised column (with
      ``scale="auto"``) mapped back to the data's units, as ``gaussian_learned``;
    - binary (0 / 1): Bernoulli(logit);
    - count (0, 1, 2, ...; declared, never inferred): Poisson(exp(log-rate));
    - categorical with L levels (codes 0..L-1): Categorical over the L logits.

    ``log_prob`` is a log-density with respect to Lebesgue measure on the numeric columns
    and counting measure on the others. A missing cell (NaN) is marginalised out: the
    columns are independent given z, so the observed cells' terms are the likelihood of
    the observed part, and training on them maximises the likelihood of what was observed
    (as in HI-VAE and MIWAE). The encoder sees each numeric column standardised, binary
    columns as 0 / 1, counts as log(1 + n), categorical ones one-hot, missing cells as 0 and
    one missingness indicator per column (:meth:`standardize`).

    ``columns``: a list of ``{"name", "kind", "levels"}`` (see :mod:`aekit.data.tables`);
    None means every column numeric.
    """

    location_scale = True      # standardises its numeric columns with scale="auto"
    min_log_scale = LearnedGaussianLikelihood.min_log_scale
    max_log_scale = LearnedGaussianLikelihood.max_log_scale

    def __init__(self, n_features: int, scale: float = 1.0, standardize: bool = False,
                 columns: list[dict] | None = None) -> None:
        super().__init__(n_features, scale, standardize)
        columns = columns or [{"name": f"x{j}", "kind": "numeric", "levels": []}
                              for j in range(n_features)]
        if len(columns) != n_features:
            raise InputError(f"likelihood='mixed' has {len(columns)} column kinds for "
                             f"{n_features} features")
        for c in columns:
            if (not isinstance(c, dict) or c.get("kind") not in KINDS
                    or not isinstance(c.get("levels", []), list)):
                raise ValueError(f"a mixed table's column must be {{'name', 'kind' (one of "
                                 f"{', '.join(KINDS)}), 'levels'}}; got {c!r:.80}")
        kinds = [c["kind"] for c in columns]
        levels = [len(c["levels"]) if c["kind"] == "categorical" else 0 for c in columns]
        self.columns = [dict(c) for c in columns]
        # column indices are plain data, not buffers: a network built on the meta device
        # (aekit.load) keeps them, and they are made into tensors where they are used
        self._index = {kind: [j for j, k in enumerate(kinds) if k == kind] for kind in KINDS}
        n_num, n_bin = len(self._index["numeric"]), len(self._index["binary"])
        n_cnt = len(self._index["count"])
        cat_levels = [n for n in levels if n]
        self.max_levels = max(cat_levels, default=0)
        # decoder outputs: numeric means, binary logits, count log-rates, then each
        # categorical's logits
        starts = np.cumsum([0, *cat_levels])[:-1] + n_num + n_bin + n_cnt
        self._gather = np.zeros((len(cat_levels), self.max_levels), dtype=np.int64)
        self._valid = np.zeros((len(cat_levels), self.max_levels), dtype=bool)
        for c, (start, n) in enumerate(zip(starts, cat_levels)):
            self._gather[c, :n] = np.arange(start, start + n)
            self._valid[c, :n] = True
        self._tensors: dict = {}
        self.n_outputs = n_num + n_bin + n_cnt + sum(cat_levels)
        self.n_inputs = self.n_outputs + n_features
        self.n_params = max(1, math.ceil(self.n_outputs / n_features))   # for memory sizing
        self.log_scale = nn.Parameter(torch.full((n_num,), math.log(scale)))

    def index(self, name: str, device: torch.device) -> Tensor:
        """The columns of a kind ("numeric", "binary", "count", "categorical") as a long tensor, or
        the categorical logits' positions ("gather") and which are levels ("valid")."""
        key = (name, str(device))
        if key not in self._tensors:
            value = {"gather": self._gather, "valid": self._valid}.get(name)
            value = self._index[name] if value is None else value
            dtype = torch.bool if name == "valid" else torch.long
            self._tensors[key] = torch.as_tensor(np.asarray(value), dtype=dtype, device=device)
        return self._tensors[key]

    def standardize(self, x: Tensor) -> Tensor:
        """The encoder's input ``(..., n_inputs)``: standardised numbers, 0 / 1,
        log(1 + count), one-hot levels, each missing cell 0, then a missingness indicator per
        column."""
        missing = torch.isnan(x)
        numeric = self.index("numeric", x.device)
        num = x[..., numeric]
        if self.standardizes:
            num = (num - self.data_loc[numeric]) / self.data_scale[numeric]
        parts = [num, x[..., self.index("binary", x.device)],
                 torch.log1p(x[..., self.index("count", x.device)])]
        if self.max_levels:
            codes = x[..., self.index("categorical", x.device)].unsqueeze(-1)  # (..., C, 1)
            levels = torch.arange(self.max_levels, device=x.device, dtype=x.dtype)
            valid = self.index("valid", x.device)
            one_hot = (codes == levels) & valid                              # (..., C, L)
            parts.append(one_hot[..., valid].to(x.dtype))                    # (..., sum L)
        parts.append(missing.to(x.dtype))
        return torch.nan_to_num(torch.cat(parts, dim=-1), nan=0.0)

    def forward(self, params: Tensor) -> Distribution:
        return MixedTable(self, params.float())

    def mean(self, p_x: Distribution) -> Tensor:
        return p_x.mean


class MixedTable(Distribution):
    """p(x | z) of :class:`MixedLikelihood` for decoder outputs ``(..., n_outputs)``: event
    shape ``(D,)``; ``log_prob`` sums the observed cells' log-probabilities (NaN = missing);
    ``mean`` is the numeric means, the binary probabilities, the count rates and the most
    probable level's code of each categorical column."""

    arg_constraints: dict = {}

    def __init__(self, lik: MixedLikelihood, params: Tensor) -> None:
        self.lik, device = lik, params.device
        self.columns = {k: lik.index(k, device) for k in KINDS}
        n_num, n_bin = len(self.columns["numeric"]), len(self.columns["binary"])
        loc = params[..., :n_num]
        sigma = lik.log_scale.clamp(lik.min_log_scale, lik.max_log_scale).exp()
        if lik.standardizes:
            numeric = self.columns["numeric"]
            loc = lik.data_loc[numeric] + lik.data_scale[numeric] * loc
            sigma = lik.data_scale[numeric] * sigma
        self.numeric = Normal(loc, sigma, validate_args=False)
        self.binary = LogitBernoulli(logits=params[..., n_num:n_num + n_bin],
                                     validate_args=False)
        n_cnt = len(self.columns["count"])
        log_rate = params[..., n_num + n_bin:n_num + n_bin + n_cnt].clamp(*LOG_RATE_RANGE)
        self.count = Poisson(log_rate.exp(), validate_args=False)
        if lik.max_levels:
            logits = params[..., lik.index("gather", device)]                # (..., C, L)
            valid = lik.index("valid", device)
            self.cat_logp = logits.masked_fill(~valid, -math.inf).log_softmax(-1)
        else:
            self.cat_logp = None
        super().__init__(batch_shape=params.shape[:-1], event_shape=(lik.n_features,),
                         validate_args=False)

    def log_prob(self, x: Tensor) -> Tensor:
        return self.column_log_prob(x).sum(-1)

    def column_log_prob(self, x: Tensor) -> Tensor:
        """log p(x_j | z) of each cell, ``(..., D)``; 0 for a missing (NaN) cell."""
        cols = self.columns
        parts = []
        for idx, dist in ((cols["numeric"], self.numeric), (cols["binary"], self.binary),
                          (cols["count"], self.count)):
            v = x[..., idx]
            seen = ~torch.isnan(v)
            lp = dist.log_prob(torch.where(seen, v, torch.zeros_like(v)))
            parts.append((idx, torch.where(seen, lp, torch.zeros_like(lp))))
        if self.cat_logp is not None:
            v = x[..., cols["categorical"]]                                 # (..., C)
            seen = ~torch.isnan(v)
            codes = torch.where(seen, v, torch.zeros_like(v)).long()
            codes, logp = torch.broadcast_tensors(codes.unsqueeze(-1), self.cat_logp)
            lp = logp.gather(-1, codes[..., :1]).squeeze(-1)
            parts.append((cols["categorical"], torch.where(seen, lp, torch.zeros_like(lp))))
        lead = torch.broadcast_shapes(*[p.shape[:-1] for _, p in parts])
        out = torch.zeros((*lead, self.lik.n_features), device=x.device)
        for idx, lp in parts:
            out[..., idx] = lp.expand(*lead, -1)
        return out

    @property
    def mean(self) -> Tensor:
        cols = self.columns
        out = torch.empty((*self.batch_shape, self.lik.n_features),
                          device=self.lik.log_scale.device)
        out[..., cols["numeric"]] = self.numeric.mean
        out[..., cols["binary"]] = self.binary.probs
        out[..., cols["count"]] = self.count.mean
        if self.cat_logp is not None:
            out[..., cols["categorical"]] = self.cat_logp.argmax(-1).to(out.dtype)
        return out

    def sample(self, sample_shape: tuple[int, ...] = ()) -> Tensor:
        sample_shape = torch.Size(sample_shape)
        cols = self.columns
        out = torch.empty((*sample_shape, *self.batch_shape, self.lik.n_features),
                          device=self.lik.log_scale.device)
        out[..., cols["numeric"]] = self.numeric.sample(sample_shape)
        out[..., cols["binary"]] = self.binary.sample(sample_shape)
        out[..., cols["count"]] = self.count.sample(sample_shape)
        if self.cat_logp is not None:
            draws = Categorical(logits=self.cat_logp, validate_args=False).sample(sample_shape)
            out[..., cols["categorical"]] = draws.to(out.dtype)
        return out


def feature_log_prob(p_x: Distribution, x: Tensor) -> Tensor:
    """log p(x_j | z) per feature, ``(..., D)``, of a likelihood's distribution (they all
    factorise over features); 0 for the missing cells of a mixed table."""
    if isinstance(p_x, MixedTable):
        return p_x.column_log_prob(x)
    return p_x.base_dist.log_prob(x)


def get_likelihood(name: str, n_features: int, scale: float = 1.0,
                   standardize: bool = False, columns: list[dict] | None = None) -> Likelihood:
    """Build the likelihood ``name`` for ``n_features`` features; ``standardize`` (location-
    scale likelihoods only) makes it model standardised features while scoring data as given.

    Examples
    --------
    >>> import torch
    >>> lik = get_likelihood("bernoulli", n_features=3)
    >>> p_x = lik(torch.zeros(2, 3))          # decoder logits for 2 rows
    >>> p_x.log_prob(torch.ones(2, 3)).shape  # summed over the 3 features
    torch.Size([2])
    """
    extra = {} if columns is None else {"columns": columns}
    return LIKELIHOODS.get(name, n_features=n_features, scale=scale, standardize=standardize,
                           **extra)


def list_likelihoods() -> list[str]:
    """Names of the registered likelihoods."""
    return LIKELIHOODS.names()


def standard_normal(n_components: int, device: torch.device | str = "cpu") -> Distribution:
    """The N(0, I) prior over ``n_components`` latent dimensions (event shape ``(k,)``)."""
    zeros = torch.zeros(n_components, device=device)
    return Independent(Normal(zeros, torch.ones_like(zeros), validate_args=False), 1)


def standard_normal_kl(q: Normal) -> Tensor:
    """KL(N(loc, scale^2) || N(0, 1)) per dimension for a ``Normal`` ``q`` (shape of its
    ``loc``): ``(loc^2 + scale^2 - 1) / 2 - log(scale)``.

    The value of torch's ``kl_divergence(q, Normal(0, 1))`` in about half the operations:
    it matters where a training step costs its kernel launches (small networks on a GPU).

    >>> from torch.distributions import kl_divergence
    >>> q = Normal(torch.tensor([0.0, 1.0]), torch.tensor([1.0, 2.0]))
    >>> p = Normal(torch.zeros(2), torch.ones(2))
    >>> bool(torch.allclose(standard_normal_kl(q), kl_divergence(q, p)))
    True
    """
    loc, scale = q.loc, q.scale
    return 0.5 * (loc.square() + scale.square() - 1) - scale.log()


def diagonal_normal(loc: Tensor, log_var: Tensor) -> Distribution:
    """The Gaussian posterior q(z|x) = N(loc, diag(exp(log_var))), event shape ``(k,)``."""
    return Independent(Normal(loc, (0.5 * log_var).exp(), validate_args=False), 1)


def normal_mixture_log_prob(z: Tensor, loc: Tensor, scale: Tensor) -> Tensor:
    """log (1/M) sum_m N(z; loc_m, diag(scale_m^2)) for ``z`` ``(..., k)`` and M diagonal
    Gaussians ``loc``, ``scale`` ``(M, k)``: shape ``z.shape[:-1]``.

    The squared distances are expanded into two matrix products, so the memory is
    ``(N, M)`` for N points rather than ``(N, M, k)``: a VampPrior of 500 components
    scored at 5000 importance draws of a batch fits where the broadcast form does not.

    >>> from torch.distributions import Categorical, MixtureSameFamily
    >>> loc, scale = torch.randn(3, 2), torch.rand(3, 2) + 0.5
    >>> z = torch.randn(4, 5, 2)
    >>> mix = MixtureSameFamily(Categorical(logits=torch.zeros(3)),
    ...                         Independent(Normal(loc, scale), 1))
    >>> bool(torch.allclose(normal_mixture_log_prob(z, loc, scale), mix.log_prob(z),
    ...                     atol=1e-5))
    True
    """
    precision = scale.float().square().reciprocal()                          # (M, k)
    loc = loc.float()
    flat = z.float().reshape(-1, z.shape[-1])                                # (N, k)
    # sum_d (z_d - loc_md)^2 / scale_md^2, expanded
    squared = (flat.square() @ precision.T - 2 * flat @ (loc * precision).T
               + (loc.square() * precision).sum(-1))                         # (N, M)
    log_norm = -scale.float().log().sum(-1) - 0.5 * z.shape[-1] * math.log(2 * math.pi)
    log_p = torch.logsumexp(log_norm - 0.5 * squared.clamp_min(0), dim=-1)  # (N,)
    return (log_p - math.log(len(loc))).reshape(z.shape[:-1])
