"""The latent code measured one way everywhere: the KL per latent dimension and active
units (Burda, Grosse & Salakhutdinov, "Importance Weighted Autoencoders", 2015,
arXiv:1509.00519, section 5.2). Training history, evaluation and the report's figure all
compute them here, on tensors of rows; :mod:`aekit.evaluation` wraps them for arrays.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor
from torch.distributions import (
    Categorical,
    Distribution,
    Independent,
    MixtureSameFamily,
    Normal,
    kl_divergence,
)

#: a unit is active when its posterior mean varies over the data by more than this
#: (Cov_x(E_q[z_j | x]) > 0.01, Burda et al. 2015).
ACTIVE_UNIT_THRESHOLD = 0.01


def prior_marginals(est: Any) -> tuple[Distribution, bool] | None:
    """Per-dimension prior marginals p(z_j) (batch ``(k,)``) and whether they are the
    factors of a Normal prior (exact KL); None for a model without a posterior or with
    a prior that has no such marginals."""
    if not est.capabilities.posterior or est.capabilities.semi_supervised:
        return None     # M2's posterior needs its class, marginalised elsewhere
    prior = est._prior()
    if isinstance(prior, Independent) and isinstance(prior.base_dist, Normal):
        return prior.base_dist, True
    if (isinstance(prior, MixtureSameFamily)
            and isinstance(prior.component_distribution, Independent)
            and isinstance(prior.component_distribution.base_dist, Normal)):
        # a mixture of diagonal Normals: dimension j's marginal is a 1-D mixture
        comp = prior.component_distribution.base_dist                         # (M, k)
        logits = prior.mixture_distribution.logits                            # (M,)
        mix = Categorical(logits=logits.expand(est.n_components, -1), validate_args=False)
        return MixtureSameFamily(mix, Normal(comp.loc.T, comp.scale.T, validate_args=False),
                                 validate_args=False), False
    return None


def kl_per_row(q: Normal, prior: Distribution, exact: bool, eps: Tensor | None) -> Tensor:
    """KL(q(z_j|x) || p(z_j)) for each row and dimension, ``(B, k)``: exact for Normal
    factors, else a Monte Carlo estimate with common draws ``eps`` ``(S, k)``."""
    if exact:
        return kl_divergence(q, prior)                                        # (B, k)
    z = q.loc + q.scale * eps[:, None, :]                                     # (S, B, k)
    return (q.log_prob(z) - prior.log_prob(z)).mean(0)                        # (B, k)


#: rows the per-epoch latent statistics of ``history_`` are computed on (spread evenly
#: over the training rows; a full pass would cost a forward pass over the data each epoch)
HISTORY_ROWS = 2048


def spread_rows(x: Any, n: int = HISTORY_ROWS) -> Any:
    """At most ``n`` rows of ``x`` taken at an even stride (a tensor or streamed rows), so
    sorted data are still covered end to end."""
    step = max(1, -(-len(x) // n))
    return x if step == 1 else x[::step]


def collapse_message(est: Any) -> str:
    """What to change when every latent unit of ``est`` is inactive."""
    fixes = {}
    if est.scale == "none" and est.likelihood_ in ("gaussian", "laplace"):
        fixes[est.likelihood_] = (
            f"likelihood={est.likelihood_!r} with a fixed scale of {est.likelihood_scale:g} on "
            "features as given is a weak reconstruction term for data of small variance: "
            "use scale='auto' (standardised features), likelihood='gaussian_learned', or "
            "'bernoulli' for data in [0, 1]")
    return (f"{type(est).__name__}: every latent unit is inactive (posterior collapse: "
            f"Cov_x(E_q[z_j|x]) <= {ACTIVE_UNIT_THRESHOLD} for all {est.n_components}), so "
            "the codes carry no information about x. "
            + fixes.get(est.likelihood_, "lower the KL weight (beta), use a KL warm-up or "
                        "free bits (BetaVAE), or train longer"))


def summary(est: Any, x: Any, chunk: int = 4096) -> dict[str, Any]:
    """Active units and the mean KL per dimension over the rows ``x`` (a device tensor
    or streamed rows) of an unconditional model with a Normal-factor prior: what
    ``history_`` records each epoch."""
    marginals = prior_marginals(est)
    if marginals is None or not marginals[1] or est.capabilities.conditional:
        return {}       # (a conditional posterior needs the rows' conditions)
    prior = marginals[0]
    means, kl_sum = [], None
    for start in range(0, len(x), chunk):
        q = est._posterior(x[start:start + chunk]).base_dist                  # (B, k)
        means.append(q.mean.float())
        kl = kl_divergence(q, prior).sum(0)                                   # (k,)
        kl_sum = kl if kl_sum is None else kl_sum + kl
    variance = torch.cat(means).var(0, correction=0)                          # (k,)
    return {"active_units": float((variance > ACTIVE_UNIT_THRESHOLD).sum()),
            "kl_per_dim": (kl_sum / len(x)).tolist()}
