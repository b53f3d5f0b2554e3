"""The vector-quantised variational autoencoder.

van den Oord, Vinyals & Kavukcuoglu, "Neural Discrete Representation Learning", 2017,
arXiv:1711.00937. The encoder output z_e (one vector of k = ``n_components`` numbers per
row) is replaced by its nearest code e_c of a codebook of ``codebook_size`` codes; the
decoder sees z_q = e_c through the straight-through estimator. The codebook follows the
exponential moving averages of the paper's appendix (so the codebook loss term is
dropped), and codes that fall out of use are reset to encoder outputs of the current
minibatch, as in Dhariwal et al., "Jukebox", 2020, arXiv:2005.00341 and Williams et al.,
"Hierarchical Quantized Autoencoders", 2020, arXiv:2002.08111.

With a categorical prior pi over codes, fitted after training, the model is a discrete
latent-variable model p(x) = sum_c pi_c p(x | e_c) whose likelihood is computed exactly
by enumerating the codebook.
"""

from __future__ import annotations

import math
from numbers import Integral, Real
from typing import Any

import numpy as np
import torch
from sklearn.utils._param_validation import Interval
from sklearn.utils.validation import check_is_fitted
from torch import Tensor, nn
from torch.distributions import Categorical

from aekit._registry import register
from aekit.estimator import BaseAutoencoder
from aekit.estimator.inference import EVAL_MEMORY_BUDGET, rows_per_chunk
from aekit.training import FitContext, LossTerms, distributed

#: Laplace smoothing of the EMA code counts, so a code with no recent use keeps a finite
#: codebook vector (Sonnet's VectorQuantizerEMA uses the same epsilon).
EMA_EPSILON = 1e-5
#: pseudo-count added to every code's training frequency in the prior, so a code unused on
#: the training rows keeps a positive probability and every row a finite ``elbo``.
PRIOR_PSEUDOCOUNT = 1.0


@register("vq_vae")
class VQVAE(BaseAutoencoder):
    """VQ-VAE: a discrete code per row, with an exact log-likelihood.

    One row is one code: z_e of shape ``(k,)`` is quantised as a single vector to the
    nearest of ``codebook_size`` codes of dimension k (no splitting into groups). The
    loss is ``-log p(x | z_q) + commitment_cost * ||z_e - sg(z_q)||^2`` (squared
    distance summed over the k dimensions); the codebook is not trained by gradients
    but follows exponential moving averages of the encoder outputs assigned to each
    code. It starts at the encoder outputs of random training rows.

    After training, a categorical prior pi over codes is fitted to the training rows
    (code frequencies plus one pseudo-count each). Then:

    - ``transform`` returns z_q, the quantised code vector (a codebook row), and
      :meth:`predict_codes` the code index;
    - ``sample`` draws codes from pi and decodes them;
    - ``score_samples`` is the **exact** log-likelihood of this discrete latent-variable
      model, log p(x) = logsumexp_c [log pi_c + log p(x | e_c)], computed by decoding
      every code (no sampling, no bound);
    - ``elbo`` is log pi_c(x) + log p(x | e_c(x)) for the nearest code c(x): the lower
      bound given by the deterministic posterior q(c | x) = 1[c = c(x)], whose entropy
      is 0. It never exceeds ``score_samples``.

    Parameters
    ----------
    n_components : int, default=2
        k, the dimension of the encoder output and of every code.
    codebook_size : int, default=64
        Number of codes.
    commitment_cost : float, default=0.25
        beta, the weight of the commitment term that keeps z_e near its code.
    ema_decay : float, default=0.99
        Decay of the moving averages of code counts and code sums.
    dead_code_threshold : float, default=1.0
        A code whose moving-average count (rows per minibatch assigned to it) falls
        below this is reset to the encoder output of a random row of the current
        minibatch, with its count set to 1, as in Jukebox; 0 turns resets off. With 1
        (Jukebox's value) a code is reset as soon as its count drops below one row
        per minibatch, e.g. when a code just reset is not used by the next minibatch.
        Without resets the codes collapse early in training: the encoder outputs drift
        together faster than the moving averages follow, and one code takes all rows.
    **kwargs
        The parameters shared by every model; see :class:`aekit.base.BaseAutoencoder`.

    Attributes
    ----------
    module_ : torch.nn.ModuleDict
        ``encoder``, ``decoder``, ``likelihood`` and the buffers ``codebook``
        ``(codebook_size, k)``, ``ema_count`` ``(codebook_size,)``, ``ema_sum``
        ``(codebook_size, k)`` and ``log_prior`` ``(codebook_size,)``.
    history_ : dict of str to list of float
        Per-epoch ``loss``, ``recon`` (nats per example), ``commitment``, ``perplexity``
        (exp of the entropy of code use in a minibatch, averaged over minibatches),
        ``codes_used`` and ``usage_perplexity`` (the number of codes used on the training
        rows at the end of the epoch, and the perplexity of that use), ``time``, and
        ``val_*`` versions of the minibatch terms with early stopping.
    n_iter_ : int
        Epochs run.
    input_shape_ : tuple of int
        Shape of one input row.

    Examples
    --------
    >>> import aekit
    >>> from aekit.models.vqvae import VQVAE
    >>> X, _ = aekit.datasets.load("digits")
    >>> vq = VQVAE(codebook_size=16, likelihood="bernoulli", max_iter=2,
    ...            random_state=0).fit(X)
    >>> vq.predict_codes(X[:5]).shape
    (5,)
    >>> bool((vq.score_samples(X[:5]) >= vq.elbo(X[:5])).all())
    True
    """

    _parameter_constraints = {
        **BaseAutoencoder._parameter_constraints,
        "codebook_size": [Interval(Integral, 1, None, closed="left")],
        "commitment_cost": [Interval(Real, 0, None, closed="left")],
        "ema_decay": [Interval(Real, 0, 1, closed="left")],
        "dead_code_threshold": [Interval(Real, 0, None, closed="left")],
    }

    def __init__(self, n_components=2, *, codebook_size=64, commitment_cost=0.25,
                 ema_decay=0.99, dead_code_threshold=1.0, **kwargs):
        super().__init__(n_components, **kwargs)
        self.codebook_size = codebook_size
        self.commitment_cost = commitment_cost
        self.ema_decay = ema_decay
        self.dead_code_threshold = dead_code_threshold

    def _build(self, input_shape: tuple[int, ...]) -> nn.Module:
        module = super()._build(input_shape)
        c, k = self.codebook_size, self.n_components
        # replaced by encoder outputs in _pretrain; random here so a bare build is usable
        module.register_buffer("codebook", torch.randn(c, k))
        module.register_buffer("ema_count", torch.ones(c))
        module.register_buffer("ema_sum", module.codebook.clone())
        module.register_buffer("log_prior", torch.full((c,), -math.log(c)))
        return module

    # ------------------------------------------------------------ quantising

    def _quantise(self, z_e: Tensor) -> Tensor:
        """Index of the nearest code for each row of ``z_e`` ``(B, k)``: ``(B,)``."""
        codebook = self.module_.codebook                                      # (C, k)
        # the direct formula, not the matmul one: exact nearest codes, no cancellation
        d = torch.cdist(z_e.detach().float(), codebook,
                        compute_mode="donot_use_mm_for_euclid_dist")          # (B, C)
        return d.argmin(-1)                                                   # (B,)

    def _encoder_out(self, x: Tensor) -> Tensor:
        """The continuous encoder output z_e(x) before quantisation, ``(B, k)``."""
        return self.module_.encoder(self._standardize(x))

    def _encode(self, x: Tensor) -> Tensor:
        return self.module_.codebook[self._quantise(self._encoder_out(x))]    # (B, k)

    @torch.no_grad()
    def _pretrain(self, x: Tensor, y: Tensor | None, ctx: FitContext) -> None:
        """Start the codebook at the encoder outputs of random training rows."""
        g, m = ctx.generator, self.module_
        # a permutation, tiled when there are more codes than rows: no repeats until then
        perm = torch.randperm(len(x), generator=g, device=g.device)
        rows = perm[torch.arange(self.codebook_size, device=perm.device) % len(x)]  # (C,)
        m.codebook.copy_(self._encoder_out(x[rows]).float())                 # (C, k)
        m.ema_sum.copy_(m.codebook)
        m.ema_count.fill_(1.0)

    @torch.no_grad()
    def _update_codebook(self, z_e: Tensor, one_hot: Tensor, finite: Tensor,
                         ctx: FitContext) -> None:
        """Moving averages of the paper's appendix, then reset of dead codes.

        No host-device synchronisation: where the loss is not ``finite`` (a 0-d bool
        tensor) every buffer keeps its value through ``torch.where``, and each code draws
        a replacement row every step, used only where the code is dead. Under DDP the
        counts and sums of every rank's share of the minibatch are summed in one
        all-reduce (so the codebook follows the global minibatch, the same on every rank)
        and the replacement rows are rank 0's.
        """
        m, decay, world = self.module_, self.ema_decay, ctx.world
        c, k = one_hot.shape[1], z_e.shape[1]
        g = ctx.generator
        with torch.autocast(z_e.device.type, enabled=False):   # sums stay float32
            z = z_e.float()
            sums = one_hot.T @ z                                              # (C, k)
            rows = torch.randint(len(z), (c,), generator=g, device=g.device)  # (C,)
            candidates = z[rows]                                              # (C, k)
            if world.size > 1:
                # a rank whose share is only a stand-in row (weight 0) adds nothing
                share = float(ctx.ddp is None or ctx.ddp.module.weight > 0)
                packed = torch.cat([one_hot.sum(0) * share, sums.reshape(-1) * share,
                                    candidates.reshape(-1) * float(world.rank == 0),
                                    (~finite).float().reshape(1)])
                packed = distributed.all_reduce_(packed, world)
                counts, sums = packed[:c], packed[c:c + c * k].reshape(c, k)
                candidates = packed[c + c * k:c + 2 * c * k].reshape(c, k)
                finite = packed[-1] == 0
            else:
                counts = one_hot.sum(0)                                       # (C,)
            ema_count = (m.ema_count * decay).add_(counts, alpha=1 - decay)  # (C,)
            ema_sum = (m.ema_sum * decay).add_(sums, alpha=1 - decay)        # (C, k)
            n = ema_count.sum()
            count = (ema_count + EMA_EPSILON) / (n + self.codebook_size * EMA_EPSILON) * n
            codebook = ema_sum / count[:, None]                               # (C, k)
            dead = (ema_count < self.dead_code_threshold)[:, None]            # (C, 1)
            codebook = torch.where(dead, candidates, codebook)
            ema_sum = torch.where(dead, candidates, ema_sum)
            ema_count = torch.where(dead[:, 0], 1.0, ema_count)
            m.ema_count.copy_(torch.where(finite, ema_count, m.ema_count))
            m.ema_sum.copy_(torch.where(finite, ema_sum, m.ema_sum))
            m.codebook.copy_(torch.where(finite, codebook, m.codebook))

    def _loss(self, x: Tensor, y: Tensor | None, ctx: FitContext) -> LossTerms:
        z_e = self._encoder_out(x).float()                                   # (B, k)
        codes = self._quantise(z_e)                                           # (B,)
        z_q = self.module_.codebook[codes]                                    # (B, k) copy
        z = z_e + (z_q - z_e).detach()            # straight-through: value z_q, gradient to z_e
        recon = -self._decode(z).log_prob(x)                                  # (B,)
        commitment = (z_e - z_q).pow(2).sum(-1)                               # (B,)
        total = (recon + self.commitment_cost * commitment).mean()
        # an elementwise one-hot: no bincount or one_hot, which read the codes back
        one_hot = (codes[:, None] == torch.arange(self.codebook_size, device=codes.device)
                   ).float()                                                  # (B, C)
        perplexity = Categorical(probs=one_hot.mean(0), validate_args=False).entropy().exp()
        # EMA only while training, and never after a non-finite loss (no update then)
        if self.module_.training:
            self._update_codebook(z_e.detach(), one_hot, torch.isfinite(total.detach()), ctx)
        return LossTerms(total, {"recon": recon.mean(), "commitment": commitment.mean(),
                                 "perplexity": perplexity})

    # ----------------------------------------------------------- code counts

    def _code_counts(self, x: Tensor) -> Tensor:
        """How many rows of ``x`` use each code: ``(C,)``."""
        counts = torch.zeros(self.codebook_size, device=x.device)
        for start in range(0, len(x), 4096):
            codes = self._quantise(self._encoder_out(x[start:start + 4096]))
            counts += torch.bincount(codes, minlength=self.codebook_size)
        return counts

    def _on_epoch_end(self, epoch: int, x: Tensor) -> dict[str, Any]:
        counts = self._code_counts(x)                                         # (C,)
        entropy = Categorical(probs=counts / counts.sum(), validate_args=False).entropy()
        return {"codes_used": float((counts > 0).sum()),
                "usage_perplexity": float(entropy.exp())}

    def _after_fit(self, x: Tensor) -> None:
        counts = self._code_counts(x) + PRIOR_PSEUDOCOUNT                      # (C,)
        self.module_.log_prior.copy_((counts / counts.sum()).log())

    # -------------------------------------------------------------- the model

    def _sample_latent(self, n_samples: int, generator: torch.Generator) -> Tensor:
        probs = self.module_.log_prior.exp().cpu()                            # (C,)
        codes = torch.multinomial(probs, n_samples, replacement=True, generator=generator)
        return self.module_.codebook.cpu()[codes]                             # (n, k)

    def _log_joint(self, x: Tensor) -> Tensor:
        """log pi_c + log p(x | e_c) for every row and every code: ``(B, C)``.

        Codes are decoded a chunk at a time (a code holds what a decoded row does, e.g.
        256 logits per feature for "categorical"), and the rows are scored against each
        decoded chunk a chunk at a time; each (row, code) pair then holds only
        log-probabilities, the decoded parameters being shared. Both are sized with
        :func:`~aekit.estimator.inference.rows_per_chunk`, half the budget each.
        """
        n_features, half = x.shape[1], EVAL_MEMORY_BUDGET // 2
        n_codes = min(self.codebook_size, rows_per_chunk(self, n_features, budget=half))
        rows = rows_per_chunk(self, n_features, n_codes, half, n_params=1)
        log_px = []
        for c in range(0, self.codebook_size, n_codes):
            p_x = self._decode(self.module_.codebook[c:c + n_codes])    # batch (c,), event (D,)
            log_px.append(torch.cat([p_x.log_prob(x[i:i + rows, None, :])      # (b, c)
                                     for i in range(0, len(x), rows)]))
        return torch.cat(log_px, dim=1) + self.module_.log_prior              # (B, C)

    def _log_likelihood(self, x: Tensor, eps: Tensor) -> Tensor:
        return torch.logsumexp(self._log_joint(x), dim=1)                     # (B,)

    def _elbo(self, x: Tensor, eps: Tensor) -> Tensor:
        codes = self._quantise(self._encoder_out(x))                         # (B,)
        return self._log_joint(x).gather(1, codes[:, None]).squeeze(1)        # (B,)

    def predict_codes(self, X: Any) -> np.ndarray:
        """Index of the code of each row of ``X``, ``(n,)`` integers in
        ``[0, codebook_size)``; ``transform(X)`` is ``module_.codebook[predict_codes(X)]``."""
        check_is_fitted(self)
        X = self._validate_X(X, reset=False)
        codes = self._map_rows(X, lambda x: self._quantise(self._encoder_out(x)))
        return codes.astype(np.int64)
