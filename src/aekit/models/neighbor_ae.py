"""The neighbour-preserving autoencoder: an autoencoder whose codes keep each row's nearest
neighbours near, so a 2-D code is a map in the way t-SNE's is, with an encoder for new rows
and a decoder back to the data.

Loss per row i: the decoder's negative log-likelihood -log p(x_i | z_i), as in
:class:`~aekit.models.ae.AE`, plus ``neighbor_weight`` times a neighbour-embedding term on
the codes. That term is the contrastive form of t-SNE (InfoNC-t-SNE; Damrich, Böhm,
Hamprecht & Kobak, "From t-SNE to UMAP with contrastive learning", ICLR 2023): with the
Cauchy kernel q(a, b) = 1 / (1 + ||a - b||^2) of t-SNE, a positive pair (i, j) drawn from
the k-nearest-neighbour table of the inputs, and the other codes of the minibatch as
negatives N(i),

    L_i = -log q(z_i, z_j) + log( q(z_i, z_j) + sum_{m in N(i)} q(z_i, z_m) ).

Minimising it pulls neighbours together and pushes everything else apart; with many
negatives it approaches t-SNE's objective (Damrich et al.). The encoder is the parametric
map (van der Maaten, "Learning a Parametric Embedding by Preserving Local Structure",
AISTATS 2009; Sainburg, McInnes & Gentner, "Parametric UMAP embeddings", Neural Computation
2021, who also add an autoencoder's loss as here).

The neighbour table is built once per fit on the training rows as the encoder sees them
(``aekit.data.neighbors``: exact search, or PyNNDescent for large data), each epoch draws
one neighbour of every row at random, and the minibatch order is the loop's own, so a fit
repeats with its ``random_state``. Rows held out for early stopping get their neighbours among
the training rows and never serve as anyone's neighbour.
"""

from __future__ import annotations

import math
import warnings
from numbers import Integral, Real

import numpy as np
import torch
from sklearn.utils._param_validation import Interval, StrOptions
from torch import Tensor, nn

from aekit._registry import register
from aekit.data.neighbors import KNN_METHODS, neighbor_table
from aekit.exceptions import InputError
from aekit.models.ae import AE
from aekit.training import FitContext, LossTerms

#: Training codes kept in the model file for ``sample`` (a kernel density over them).
N_CODE_POINTS = 1024


def neighbor_embedding_loss(z: Tensor, z_pos: Tensor) -> Tensor:
    """InfoNC-t-SNE per anchor: shape ``(B,)`` for codes ``z`` ``(B, k)`` and the codes of
    one neighbour of each, ``z_pos`` ``(B, k)``.

    Anchor i's candidates are every neighbour code and every other anchor code of the
    minibatch (2B - 1 of them: its own neighbour and 2B - 2 negatives); the loss is the
    cross-entropy of picking its own neighbour under the Cauchy kernel
    ``q = 1 / (1 + d^2)``: ``-log q_ii + log sum_m q_im``.
    """
    b = len(z)
    candidates = torch.cat([z_pos, z])                                     # (2B, k)
    d2 = (z.unsqueeze(1) - candidates.unsqueeze(0)).pow(2).sum(-1)         # (B, 2B)
    logits = -torch.log1p(d2)                                              # log q
    itself = torch.arange(b, device=z.device)
    # torch.full, not torch.tensor: a fill on the device, not a copy from the host
    logits = logits.index_put((itself, itself + b),
                              torch.full((), -math.inf, device=z.device, dtype=logits.dtype))
    return torch.logsumexp(logits, dim=1) - logits[itself, itself]


@register("neighbor_ae")
class NeighborAE(AE):
    """Autoencoder whose codes preserve nearest neighbours (a parametric t-SNE with a decoder).

    ``transform`` maps new rows with the encoder (no re-embedding, unlike t-SNE),
    ``inverse_transform`` decodes any point of the map, ``sample`` decodes draws from a
    kernel density over training codes (the map is clustered, so a single Gaussian, as
    :class:`AE` fits, would put most draws between clusters), and ``score_samples`` is the
    decoder log-likelihood at the code, log p(x | z = f(x)): as for :class:`AE` it is **not**
    a density of x.

    Parameters
    ----------
    n_components : int, default=2
    n_neighbors : int, default=15
        Neighbours per row in the k-nearest-neighbour table of the inputs.
    neighbor_weight : float, default=1.0
        Weight of the neighbour term per feature of the data: the loss is
        ``recon + neighbor_weight * D * L`` for D features, so the weight means the same
        on 64 or 784 features. 0 gives a plain :class:`AE`.
    knn_method : {"auto", "exact", "nndescent"}, default="auto"
        How the neighbour table is built: exact search (scikit-learn), PyNNDescent's
        approximate graph (optional package ``pynndescent``), or exact up to 70,000 rows.
    **kwargs
        The parameters shared by every model; see :class:`aekit.estimator.BaseAutoencoder`.

    Attributes
    ----------
    module_ : torch.nn.ModuleDict
        ``encoder``, ``decoder``, ``likelihood``, the buffers of :class:`AE` and
        ``code_points`` ``(1024, k)`` / ``code_bandwidth`` ``(k,)`` of the kernel density
        ``sample`` draws from.
    history_ : dict of str to list of float
        Per-epoch ``loss``, ``recon``, ``neighbors`` (the mean L), ``time``.

    Examples
    --------
    >>> import aekit
    >>> X, _ = aekit.datasets.load("digits")
    >>> model = aekit.get_model("neighbor_ae", max_iter=2, random_state=0).fit(X)
    >>> model.transform(X[:5]).shape
    (5, 2)
    """

    capabilities = AE.capabilities.but(streaming=False)
    _streaming_unsupported = ("its neighbour table is built over all training rows at once and "
                              "every step reads the neighbours of its rows wherever they are")

    _parameter_constraints = {
        **AE._parameter_constraints,
        "n_neighbors": [Interval(Integral, 1, None, closed="left")],
        "neighbor_weight": [Interval(Real, 0, None, closed="left")],
        "knn_method": [StrOptions(set(KNN_METHODS))],
    }

    def __init__(self, n_components=2, *, n_neighbors=15, neighbor_weight=1.0,
                 knn_method="auto", **kwargs):
        super().__init__(n_components, **kwargs)
        self.n_neighbors = n_neighbors
        self.neighbor_weight = neighbor_weight
        self.knn_method = knn_method

    def _build(self, input_shape: tuple[int, ...]) -> nn.Module:
        module = super()._build(input_shape)
        module.register_buffer("code_points", torch.zeros(N_CODE_POINTS, self.n_components))
        module.register_buffer("code_bandwidth", torch.ones(self.n_components))
        return module

    def _labels_tensor(self, targets: object, n: int, device: torch.device) -> Tensor:
        # each row's own position: _loss looks its neighbours up by it
        return torch.arange(n, device=device)

    def _pretrain(self, x: Tensor, y: Tensor | None, ctx: FitContext) -> None:
        n = x.shape[0]
        train = (torch.arange(n, device=x.device) if ctx.train_index is None
                 else ctx.train_index.to(x.device))
        held_out = torch.ones(n, dtype=torch.bool, device=x.device)
        held_out[train] = False
        seen = self._encoder_inputs(x)                                     # (n, D') numpy
        train_np = train.cpu().numpy()
        held_np = held_out.nonzero().squeeze(1).cpu().numpy()
        seed = int(torch.randint(2**31 - 1, (1,), generator=ctx.generator,
                                 device=ctx.generator.device))
        if len(train_np) < 2:
            raise InputError(f"{type(self).__name__} needs at least 2 training rows to find "
                             f"neighbours; there are {len(train_np)}")
        k = min(self.n_neighbors, len(train_np) - 1)
        if k < self.n_neighbors:
            warnings.warn(f"{type(self).__name__}: n_neighbors={self.n_neighbors} lowered to "
                          f"{k}: there are only {len(train_np)} training rows", UserWarning,
                          stacklevel=2)
        table, held_table = neighbor_table(seen[train_np], k,
                                           queries=seen[held_np], method=self.knn_method,
                                           random_state=seed)
        neighbors = np.empty((n, k), dtype=np.int64)
        neighbors[train_np] = train_np[table]          # positions among all rows
        if held_table is not None:
            neighbors[held_np] = train_np[held_table]
        # the same dict as the loop's context: what _loss reads in every step
        ctx.shared["neighbors"] = torch.as_tensor(neighbors, device=x.device)
        ctx.shared["rows"] = x

    def _encoder_inputs(self, x: Tensor) -> np.ndarray:
        """The rows as the encoder sees them, flattened, as float32 numpy ``(n, D')``."""
        chunks = []
        with torch.no_grad():
            for i in range(0, x.shape[0], 4096):
                chunks.append(self._standardize(x[i:i + 4096]).flatten(1).float().cpu())
        return torch.cat(chunks).numpy()

    def _loss(self, x: Tensor, y: Tensor | None, ctx: FitContext) -> LossTerms:
        if y is None or "neighbors" not in ctx.shared:
            raise InputError("NeighborAE's loss needs the neighbour table its _pretrain puts "
                             "in the fit context, and each row's position as y")
        neighbors, rows = ctx.shared["neighbors"], ctx.shared["rows"]
        pick = torch.randint(neighbors.shape[1], (len(y),), generator=ctx.generator,
                             device=ctx.generator.device).to(y.device)
        x_pos = rows[neighbors[y, pick]]                                   # (B, ...)
        if self.binarize == "dynamic":          # as the loop does to the anchors
            x_pos = torch.bernoulli(x_pos, generator=ctx.generator)
        z = self._encode(x)                                                # (B, k)
        recon = -self._decode(z).log_prob(x)                               # (B,)
        embedding = neighbor_embedding_loss(z.float(), self._encode(x_pos).float())  # (B,)
        n_features = self.module_.likelihood.n_features
        total = (recon + self.neighbor_weight * n_features * embedding).mean()
        return LossTerms(total, {"recon": recon.mean(), "neighbors": embedding.mean()})

    def _after_fit(self, x: Tensor) -> None:
        super()._after_fit(x)
        n = x.shape[0]
        # evenly spaced rows: deterministic, and every part of the data represented
        idx = torch.arange(N_CODE_POINTS, device=x.device) * n // N_CODE_POINTS
        points = self._encode(x[idx]).float()                              # (1024, k)
        # Scott's rule per dimension, over the distinct rows drawn
        spread = points.std(0).clamp_min(1e-6)
        distinct = min(n, N_CODE_POINTS)
        self.module_.code_points.copy_(points)
        self.module_.code_bandwidth.copy_(spread * distinct ** (-1.0 / (self.n_components + 4)))

    def _sample_latent(self, n_samples: int, generator: torch.Generator) -> Tensor:
        points = self.module_.code_points.cpu()
        which = torch.randint(len(points), (n_samples,), generator=generator)
        eps = torch.randn(n_samples, self.n_components, generator=generator)   # (n, k)
        return points[which] + eps * self.module_.code_bandwidth.cpu()
