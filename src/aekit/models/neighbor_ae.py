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

The neighbour table is built once per fit on the training rows as ``metric`` compares them
(``aekit.data.neighbors``: exact search, or PyNNDescent for large data), each epoch draws
one neighbour of every row at random, and the minibatch order is the loop's own, so a fit
repeats with its ``random_state``. Rows held out for early stopping get their neighbours among
the training rows and never serve as anyone's neighbour.

``embedding="tsne"`` takes the map from t-SNE itself instead (van der Maaten & Hinton,
"Visualizing Data using t-SNE", JMLR 2008), computed by the optional package openTSNE
(Poličar, Stražar & Zupan, "openTSNE: A Modular Python Library for t-SNE Dimensionality
Reduction and Embedding", JSS 109(3), 2024) over every edge of its neighbour graph at each
of its iterations, which the sampled term above cannot match. The networks then learn that
map: the decoder reconstructs each training row from its place on the map, and the encoder
regresses onto the map. New rows are placed on the map as openTSNE places them, by
optimising each one's t-SNE cost against the fixed training map (its own affinities to its
nearest training rows, attraction to them and repulsion from the whole map); the model keeps
the training rows (as ``metric`` compares them) for that.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import math
import warnings
from collections.abc import Iterator
from numbers import Integral, Real
from typing import Any, ClassVar

import numpy as np
import torch
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_is_fitted
from torch import Tensor, nn

from aekit._registry import register
from aekit.data.neighbors import KNN_METHODS, neighbor_table
from aekit.exceptions import InputError
from aekit.models.ae import AE
from aekit.training import FitContext, LossTerms

#: Training codes kept in the model file for ``sample`` (a kernel density over them).
N_CODE_POINTS = 1024

#: Where the codes come from: the sampled contrastive term, or a t-SNE map.
EMBEDDINGS = ("contrastive", "tsne")

#: How rows are compared to find neighbours. Each is Euclidean distance after a map of the
#: rows (so every search and t-SNE's affinities serve all three): "cosine" scales each row to
#: unit length (distance sqrt(2 - 2 cos)); "hellinger" takes the square root of each feature
#: of a nonnegative row (distance sqrt(2) times the Hellinger distance between the rows as
#: measures, not normalised to sum to one).
METRICS = ("euclidean", "cosine", "hellinger")

#: How new rows are placed on a t-SNE map: openTSNE's ``TSNEEmbedding.transform`` settings
#: (perplexity 5 over each new row's nearest training rows, start at the median of their
#: places, exaggeration 1.5, gradient norm clipped at 0.25; openTSNE looks up 3 x perplexity
#: = 15 nearest rows, so its ``k`` of 25 takes the median of those 15) with a
#: learning rate of 0.5 instead of 0.1 and 1500 iterations instead of 250, chosen on 10,000
#: held-out Fashion-MNIST training images (a map of the other 50,000): 1-NN accuracy 0.832
#: against 0.812 at openTSNE's settings (BENCHMARKS.md).
PLACEMENT = {"perplexity": 5, "k": 25, "n_iter": 1500, "learning_rate": 0.5,
             "exaggeration": 1.5, "momentum": 0.8, "max_grad_norm": 0.25}

#: The t-SNE map's iterations after its early phase, and its kernel's degrees of freedom:
#: 1500 and 0.9 instead of openTSNE's 500 and 1 (t-SNE's Cauchy kernel). Chosen on the
#: held-out Fashion-MNIST training images, where they keep neighbours better on both counts
#: (1-NN 0.843 against 0.837, trustworthiness 0.9849 against 0.9846), and confirmed on the
#: test images over five seeds (BENCHMARKS.md); the map takes about 2.5 times as long.
#: Files written before these parameters load with openTSNE's values, which made them.
MAP_ITER, DOF = 1500, 0.9

#: More starts for each new row: the places of its ``NEAREST_STARTS`` nearest training rows,
#: each refined by ``NEAREST_REFINE`` (with ``PLACEMENT``'s other settings). A row's t-SNE
#: cost has several minima, and the median start above finds the lowest of the four for
#: fewer than a third of the rows; each row keeps the candidate of lowest cost
#: (:func:`placement_cost`). On the held-out Fashion-MNIST images the model's 1-NN
#: accuracy rises from 0.826 to 0.837 at the same trustworthiness (0.985; BENCHMARKS.md).
NEAREST_STARTS = 3
NEAREST_REFINE = {"n_iter": 100, "learning_rate": 0.1}


def placement_cost(placed: np.ndarray, P: Any, places: np.ndarray,
                   dof: float = 1.0) -> np.ndarray:
    """Each new row's t-SNE cost against a fixed map, ``(m,)`` nats: KL(p_i || q_i).

    ``p_i`` is row i of ``P`` (sparse ``(m, n)``, each row summing to one: the new row's
    affinities to the training rows), and q_ij = w(y_i, r_j) / sum_l w(y_i, r_l), with
    ``placed`` ``(m, k)`` the new rows' places y, ``places`` ``(n, k)`` the training
    rows' places r, and w(a, b) = (1 + ||a - b||^2 / dof)^-dof the map's kernel (t-SNE's
    Cauchy kernel at ``dof=1``). This is the cost openTSNE's placement lowers for each new
    row (without its exaggeration). The normalising sum runs over the whole map, O(m n),
    in blocks of rows, on float32 distances (about 3 s for 10,000 rows on a map of 50,000
    on one core).

    Examples
    --------
    >>> import numpy as np, scipy.sparse as sp
    >>> places = np.array([[0.0, 0.0], [3.0, 0.0]]); P = sp.csr_matrix([[1.0, 0.0]])
    >>> cost = placement_cost(np.array([[0.0, 0.0], [3.0, 0.0]]), P[[0, 0]], places)
    >>> cost.round(4)        # by its affinity's row: log(1 + 1/10); by the other: log(11)
    array([0.0953, 2.3979])
    """
    placed = np.asarray(placed, dtype=np.float64)
    places_t = torch.as_tensor(np.asarray(places, dtype=np.float32))
    log_norm = np.empty(len(placed))
    step = max(1, min(512, (1 << 22) // max(len(places_t), 1)))   # blocks of <= 16 MiB
    for start in range(0, len(placed), step):
        block = torch.as_tensor(placed[start:start + step], dtype=torch.float32)
        d2 = torch.cdist(block, places_t, compute_mode="donot_use_mm_for_euclid_dist"
                         ).square_()                                       # (b, n)
        w = d2.add_(1.0).reciprocal_() if dof == 1 else d2.div_(dof).add_(1.0).pow_(-dof)
        log_norm[start:start + step] = w.sum(1, dtype=torch.float64).log().numpy()
    P = P.tocoo()
    d2 = np.square(placed[P.row] - np.asarray(places)[P.col]).sum(1)      # (nnz,)
    log_w = -dof * np.log1p(d2 / dof)
    keep = P.data > 0
    kl = np.bincount(P.row[keep], P.data[keep] * (np.log(P.data[keep]) - log_w[keep]),
                     minlength=len(placed))
    mass = np.bincount(P.row, P.data, minlength=len(placed))
    return kl + mass * log_norm


def place_on_map(reference: Any, rows: np.ndarray, settings: dict | None = None,
                 nearest_starts: int = NEAREST_STARTS) -> np.ndarray:
    """Places ``(m, k)`` of new rows ``rows`` ``(m, D)`` on the openTSNE map ``reference``
    (a ``TSNEEmbedding`` of the training rows, in the same space as ``rows``).

    Each row is placed from openTSNE's median start by ``settings`` (``PLACEMENT`` when
    None, ``k`` and ``perplexity`` included), and from the places of its
    ``nearest_starts`` nearest training rows by ``NEAREST_REFINE``; it keeps the candidate
    of lowest :func:`placement_cost`. All candidates share the row's affinities.
    """
    openTSNE = _opentsne()
    settings = dict(PLACEMENT if settings is None else settings)
    n_reference = len(reference)
    with _quiet():
        start = reference.prepare_partial(
            np.ascontiguousarray(rows, dtype=np.float32), initialization="median",
            k=min(settings.pop("k"), n_reference),
            perplexity=min(settings.pop("perplexity"), (n_reference - 1) / 3))
        P = start.P.tocsr()
        candidates = [np.array(start.optimize(inplace=True, propagate_exception=True,
                                              **settings), dtype=np.float64)]
        places = np.asarray(reference, dtype=np.float64)
        ranked = _ranked_neighbors(P, nearest_starts)                  # (m, s), -1: none
        for rank in range(ranked.shape[1]):
            has = ranked[:, rank] >= 0
            init = candidates[0].copy()   # rows without that neighbour: from their first place
            init[has] = places[ranked[has, rank]]
            partial = openTSNE.tsne.PartialTSNEEmbedding(
                init, reference, P=P, **reference.gradient_descent_params)
            candidates.append(np.array(partial.optimize(
                inplace=True, propagate_exception=True, **{**settings, **NEAREST_REFINE}),
                dtype=np.float64))
    if len(candidates) == 1:
        return candidates[0]
    dof = reference.gradient_descent_params.get("dof", 1.0)
    costs = np.stack([placement_cost(c, P, places, dof) for c in candidates])   # (c, m)
    best = costs.argmin(0)
    return np.stack(candidates)[best, np.arange(len(best))]


def _ranked_neighbors(P: Any, count: int) -> np.ndarray:
    """The training rows of each row's ``count`` largest affinities in ``P`` (csr
    ``(m, n)``; its nearest training rows, as the affinities fall with distance), nearest
    first: ``(m, count)``, -1 where a row has fewer."""
    ranked = np.full((P.shape[0], count), -1, dtype=np.int64)
    for i in range(P.shape[0]):
        lo, hi = P.indptr[i], P.indptr[i + 1]
        order = np.argsort(-P.data[lo:hi], kind="stable")[:count]
        ranked[i, :len(order)] = P.indices[lo:hi][order]
    return ranked


def _row_digest(row: np.ndarray) -> bytes:
    """A 128-bit digest of one float32 row's bytes, to find training rows among new ones."""
    return hashlib.blake2b(np.ascontiguousarray(row).tobytes(), digest_size=16).digest()


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """openTSNE's informational log lines (which gradient method it chose, that given
    affinities make the perplexity moot) held back; its warnings still pass."""
    logger = logging.getLogger("openTSNE")
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        logger.setLevel(level)


def _opentsne() -> Any:
    """The openTSNE package, or an :class:`InputError` that says how to install it."""
    try:
        import openTSNE
    except ImportError as err:
        raise InputError("embedding='tsne' needs the optional package openTSNE: pip install "
                         "'aekit[tsne]', or use embedding='contrastive'") from err
    return openTSNE


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

    ``transform`` maps new rows with the encoder (no re-embedding, unlike t-SNE; with
    ``embedding="tsne"`` it places them on the training map, see below),
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
    embedding : {"contrastive", "tsne"}, default="contrastive"
        Where the map comes from. ``"contrastive"``: the encoder's codes, trained with the
        sampled neighbour term above. ``"tsne"``: a t-SNE map of the training rows computed
        first (optional package ``openTSNE``; ``n_components`` 1 or 2), which the decoder
        learns to decode and the encoder to predict (the neighbour term is then the
        squared distance of the encoder's code to the row's place, in units of the map's
        standard deviation); ``transform`` places new rows on that map by optimising their
        t-SNE cost against it, and the model file keeps the training rows for that (as
        large as the data). Slower to map new rows (about 1.5 s per thousand on one CPU
        thread; a loaded model first rebuilds the map's neighbour index), but the map keeps
        neighbours as t-SNE does.
    perplexity : float, default=30.0
        The t-SNE perplexity of the training map (``embedding="tsne"`` only).
    map_iter : int, default=1500
        Iterations of the t-SNE map after its early-exaggeration phase (openTSNE's
        ``n_iter``, 500 by default there; ``embedding="tsne"`` only). More iterations
        converge the map further, and its time grows with them.
    dof : float, default=0.9
        Degrees of freedom of the map's kernel w(d) = (1 + d^2 / dof)^-dof (Kobak, Linderman,
        Steinerberger, Kluger & Berens, "Heavy-tailed kernels reveal a finer cluster
        structure in t-SNE visualisations", ECML PKDD 2019): 1 is t-SNE's Cauchy kernel,
        below 1 heavier tails separate clusters further (``embedding="tsne"`` only). New
        rows are placed with the same kernel. The defaults 1500 and 0.9 keep neighbours
        better than openTSNE's 500 and 1 on Fashion-MNIST (BENCHMARKS.md); model files
        written before these two parameters load with 500 and 1, which made them.
    metric : {"euclidean", "cosine", "hellinger"}, default="euclidean"
        How rows are compared to find neighbours, for the neighbour table, the t-SNE map
        and the placement of new rows. ``"euclidean"``: the rows as the encoder sees them
        (standardised where the likelihood standardises). ``"cosine"``: the angle between
        those rows, whatever their lengths. ``"hellinger"``: the Hellinger distance between
        the rows in the data's own units read as measures, ``sqrt(sum_j (sqrt(x_j) -
        sqrt(y_j))^2 / 2)``, for nonnegative rows such as grey levels or counts (not for
        mixed tables); the square root tempers the brightest features. The rows are not
        normalised: divide each by its sum first for the distance between distributions.
        On Fashion-MNIST's grey levels it classifies better than Euclidean distance (1-NN
        in the data 0.870 against 0.855), and its t-SNE map's clusters are purer, at some
        cost to how well the map keeps *Euclidean* neighbours (BENCHMARKS.md).
    **kwargs
        The parameters shared by every model; see :class:`aekit.estimator.BaseAutoencoder`.

    Attributes
    ----------
    module_ : torch.nn.ModuleDict
        ``encoder``, ``decoder``, ``likelihood``, the buffers of :class:`AE` and
        ``code_points`` ``(1024, k)`` / ``code_bandwidth`` ``(k,)`` of the kernel density
        ``sample`` draws from; with ``embedding="tsne"`` also ``reference_rows``
        ``(n_reference_, D)`` and ``reference_codes`` ``(n_reference_, k)``, the training
        rows as ``metric`` compares them and their places on the map.
    n_reference_ : int
        Training rows on the map (``embedding="tsne"``).
    map_scale_ : float
        The t-SNE map's standard deviation; codes are the map divided by it
        (``embedding="tsne"``).
    map_seed_ : int
        The seed of the map's neighbour search, which ``transform`` repeats after loading
        (``embedding="tsne"``).
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
        "embedding": [StrOptions(set(EMBEDDINGS))],
        "perplexity": [Interval(Real, 0, None, closed="neither")],
        "metric": [StrOptions(set(METRICS))],
        "map_iter": [Interval(Integral, 1, None, closed="left")],
        "dof": [Interval(Real, 0, None, closed="neither")],
    }
    _params_before: ClassVar[dict[str, Any]] = {"map_iter": 500, "dof": 1.0}

    _saved_attributes = (*AE._saved_attributes, "n_reference_", "map_scale_", "map_seed_")
    _fit_buffers = (*AE._fit_buffers, "reference_rows", "reference_codes")

    def __init__(self, n_components=2, *, n_neighbors=15, neighbor_weight=1.0,
                 knn_method="auto", embedding="contrastive", perplexity=30.0,
                 metric="euclidean", map_iter=MAP_ITER, dof=DOF, **kwargs):
        super().__init__(n_components, **kwargs)
        self.n_neighbors = n_neighbors
        self.neighbor_weight = neighbor_weight
        self.knn_method = knn_method
        self.embedding = embedding
        self.perplexity = perplexity
        self.metric = metric
        self.map_iter = map_iter
        self.dof = dof

    @property
    def _mixed_unsupported(self) -> str:
        return ("metric='hellinger' compares each row's features as amounts of one kind, "
                "which a table's columns are not (use metric='euclidean' or 'cosine')"
                if self.metric == "hellinger" else "")

    def _check_hyperparameters(self) -> None:
        super()._check_hyperparameters()
        if self.embedding == "tsne" and self.n_components > 2:
            raise InputError(f"embedding='tsne' makes 1-D or 2-D maps; got n_components="
                             f"{self.n_components}: use embedding='contrastive' for more")

    def _build(self, input_shape: tuple[int, ...]) -> nn.Module:
        module = super()._build(input_shape)
        module.register_buffer("code_points", torch.zeros(N_CODE_POINTS, self.n_components))
        module.register_buffer("code_bandwidth", torch.ones(self.n_components))
        if self.embedding == "tsne":
            # sized by a loaded file's n_reference_; a fit sizes them in _pretrain
            n = self.__dict__.get("n_reference_", 0)
            module.register_buffer("reference_rows", torch.zeros(n, module.likelihood.n_inputs))
            module.register_buffer("reference_codes", torch.zeros(n, self.n_components))
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
        self.__dict__.pop("_tsne_reference", None)
        self.__dict__.pop("_row_index", None)
        if self.embedding == "tsne":
            codes = self._tsne_map(seen, train_np, held_np, seed)           # (n, k)
            ctx.shared["map"] = torch.as_tensor(codes, device=x.device)
            return
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

    def _tsne_map(self, seen: np.ndarray, train: np.ndarray, held: np.ndarray,
                  seed: int) -> np.ndarray:
        """t-SNE codes ``(n, k)`` of every row: the map of the training rows ``train`` and
        the places of the held-out rows ``held`` on it; fills the reference buffers."""
        openTSNE = _opentsne()
        reference = np.ascontiguousarray(seen[train])                      # (n_train, D')
        if len(reference) < 4:
            raise InputError(f"embedding='tsne' needs at least 4 training rows; there are "
                             f"{len(reference)}")
        affinities = self._affinities(reference, seed)
        with _quiet():
            found = openTSNE.TSNE(n_components=self.n_components, n_iter=self.map_iter,
                                  dof=self.dof, random_state=seed, n_jobs=1,
                                  verbose=False).fit(reference, affinities=affinities)
        places = np.asarray(found, dtype=np.float64)
        # centred as openTSNE centres a map before placing new points on it, so its own
        # placement never moves the reference
        places -= (places.max(0) + places.min(0)) / 2
        scale = float(places.std()) or 1.0
        self.n_reference_, self.map_scale_, self.map_seed_ = len(reference), scale, seed
        self.module_.register_buffer("reference_rows",
                                     torch.as_tensor(reference, device=self._device()))
        mapped = (places / scale).astype(np.float32)                      # (n_train, k)
        self.module_.register_buffer("reference_codes",
                                     torch.as_tensor(mapped, device=self._device()))
        self.__dict__["_tsne_reference"] = self._reference_map(affinities)
        self._reference_index()                     # built now, not by a later transform
        codes = np.empty((len(seen), self.n_components), dtype=np.float32)
        codes[train] = mapped
        if len(held):
            codes[held] = self._place(seen[held])
        return codes

    def _affinities(self, reference: np.ndarray, seed: int) -> Any:
        """openTSNE's perplexity-based affinities of the training rows: the same object in
        the fit and when a loaded model rebuilds it (same rows, same seed)."""
        return _opentsne().affinity.PerplexityBasedNN(
            reference, perplexity=min(self.perplexity, (len(reference) - 1) / 3),
            random_state=seed, n_jobs=1, verbose=False)

    def _reference_map(self, affinities: Any = None) -> Any:
        """The training map as an openTSNE ``TSNEEmbedding`` that new rows are placed on
        (built from the model's buffers, and kept until the next fit)."""
        reference = self.__dict__.get("_tsne_reference")
        if reference is not None:
            return reference
        openTSNE = _opentsne()
        module = self.module_
        places = module.reference_codes.cpu().double().numpy() * self.map_scale_
        with _quiet():
            if affinities is None:
                affinities = self._affinities(module.reference_rows.cpu().numpy(),
                                              self.map_seed_)
            reference = openTSNE.TSNEEmbedding(places, affinities, dof=self.dof,
                                               random_state=self.map_seed_, n_jobs=1)
        self.__dict__["_tsne_reference"] = reference
        return reference

    def _place(self, rows: np.ndarray) -> np.ndarray:
        """Codes ``(m, k)`` of new rows ``rows`` ``(m, D')`` (as :meth:`_seen` gives them):
        each optimised against the fixed training map as openTSNE's ``transform`` does,
        from several starts (:func:`place_on_map`)."""
        placed = place_on_map(self._reference_map(), rows)
        return (placed / self.map_scale_).astype(np.float32)

    def _reference_index(self) -> tuple[dict[bytes, int], np.ndarray]:
        """Each training row's digest to its index, and the rows ``(n_ref, D')``: built by
        the fit, or on first use after a load, and kept until the next fit."""
        cached = self.__dict__.get("_row_index")
        if cached is None:
            reference = self.module_.reference_rows.cpu().numpy()         # (n_ref, D')
            cached = ({_row_digest(r): i for i, r in enumerate(reference)}, reference)
            self.__dict__["_row_index"] = cached
        return cached

    def _training_row(self, rows: np.ndarray) -> np.ndarray:
        """For each of ``rows`` ``(m, D')`` (as :meth:`_seen` gives them), the index of the
        training row on the map it equals, or -1: ``(m,)``."""
        index, reference = self._reference_index()
        found = np.array([index.get(_row_digest(r), -1) for r in rows], dtype=np.int64)
        hit = found >= 0
        hit[hit] = (reference[found[hit]] == rows[hit]).all(1)     # equal, not only the digest
        return np.where(hit, found, -1)

    def transform(self, X: Any) -> np.ndarray:
        """Codes of ``X``, ``(n, k)``: the encoder's, or with ``embedding="tsne"`` the rows'
        places on the training map: a training row's own place, any other row placed on
        the map (:meth:`_place`). So ``fit_transform`` gives the training rows' map, as
        t-SNE does."""
        if self.embedding != "tsne":
            return super().transform(X)
        check_is_fitted(self)
        X = self._validate_X(X, reset=False)
        rows = np.ascontiguousarray(self._map_rows(X, self._seen), dtype=np.float32)  # (n, D')
        known = self._training_row(rows)                                    # (n,)
        codes = np.empty((len(rows), self.n_components), dtype=np.float32)
        hit = known >= 0
        codes[hit] = self.module_.reference_codes.cpu().numpy()[known[hit]]
        if not hit.all():
            codes[~hit] = self._place(rows[~hit])
        return codes

    def _seen(self, x: Tensor) -> Tensor:
        """Rows flattened to float32 ``(B, D')`` and mapped so that Euclidean distance
        between them is ``metric``'s: what the neighbour search and the t-SNE map are
        computed on. Euclidean and cosine compare the rows as the encoder sees them;
        Hellinger the rows in the data's own units."""
        if self.metric == "hellinger":
            rows = x.flatten(1).float()
            if bool((rows < 0).any()):
                raise InputError("metric='hellinger' compares nonnegative rows (grey levels, "
                                 "counts, proportions), and these rows have negative values: "
                                 "use metric='euclidean' or 'cosine'")
            return rows.sqrt()
        rows = self._standardize(x).flatten(1).float()
        if self.metric == "cosine":
            return rows / rows.norm(dim=1, keepdim=True).clamp_min(1e-12)
        return rows

    def _encoder_inputs(self, x: Tensor) -> np.ndarray:
        """:meth:`_seen` of all rows ``x`` (on the device), as numpy ``(n, D')``."""
        with torch.no_grad():
            return torch.cat([self._seen(x[i:i + 4096]).cpu()
                              for i in range(0, x.shape[0], 4096)]).numpy()

    def _loss(self, x: Tensor, y: Tensor | None, ctx: FitContext) -> LossTerms:
        if self.embedding == "tsne":
            return self._map_loss(x, y, ctx)
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

    def _map_loss(self, x: Tensor, y: Tensor | None, ctx: FitContext) -> LossTerms:
        """``embedding="tsne"``: -log p(x | t) at the row's place t on the map, plus
        ``neighbor_weight * D`` times the squared distance of the encoder's code to t."""
        if y is None or "map" not in ctx.shared:
            raise InputError("NeighborAE's loss needs the map its _pretrain puts in the fit "
                             "context, and each row's position as y")
        target = ctx.shared["map"][y]                                      # (B, k)
        recon = -self._decode(target).log_prob(x)                          # (B,)
        error = (self._encode(x).float() - target).pow(2).sum(-1)          # (B,)
        n_features = self.module_.likelihood.n_features
        total = (recon + self.neighbor_weight * n_features * error).mean()
        return LossTerms(total, {"recon": recon.mean(), "neighbors": error.mean()})

    def _after_fit(self, x: Tensor) -> None:
        super()._after_fit(x)
        on_map = self.embedding == "tsne"   # the map itself, not the encoder's copy of it
        n = self.n_reference_ if on_map else x.shape[0]
        # evenly spaced rows: deterministic, and every part of the data represented
        idx = torch.arange(N_CODE_POINTS, device=x.device) * n // N_CODE_POINTS
        points = (self.module_.reference_codes[idx] if on_map
                  else self._encode(x[idx]).float())                       # (1024, k)
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
