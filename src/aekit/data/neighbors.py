"""k-nearest-neighbour tables of data rows, for models that keep neighbourhoods in their codes.

Two back ends: scikit-learn's exact search (brute force, chunked, Euclidean) and
PyNNDescent's approximate graph (Dong, Moses & Li, "Efficient k-nearest neighbor graph
construction for generic similarity measures", WWW 2011), which needs the optional
``pynndescent`` package and scales to millions of rows. ``"auto"`` takes the exact search up
to :data:`EXACT_UP_TO` rows (60,000 Fashion-MNIST images: about 1.5 min on two cores).
"""

from __future__ import annotations

import numpy as np
from sklearn.neighbors import NearestNeighbors

from aekit.exceptions import InputError

KNN_METHODS = ("auto", "exact", "nndescent")
EXACT_UP_TO = 70_000


def neighbor_table(X: np.ndarray, n_neighbors: int, *, queries: np.ndarray | None = None,
                   method: str = "auto", random_state: int = 0) -> tuple[np.ndarray,
                                                                         np.ndarray | None]:
    """Indices of each row's ``n_neighbors`` nearest other rows of ``X`` (Euclidean).

    Parameters
    ----------
    X : ndarray of shape (n, d)
        The rows the table is built on; a row is never its own neighbour (an exact
        duplicate of it may be).
    n_neighbors : int
        Neighbours per row, at most ``n - 1``.
    queries : ndarray of shape (m, d), optional
        Further rows (held out from ``X``) whose nearest rows **of X** are wanted too.
    method : {"auto", "exact", "nndescent"}
    random_state : int
        Seed of the approximate search.

    Returns
    -------
    table : ndarray of int64, shape (n, n_neighbors)
        Row ``i`` lists the positions in ``X`` of its neighbours, nearest first.
    query_table : ndarray of int64, shape (m, n_neighbors), or None
        The same for ``queries``.
    """
    X = np.ascontiguousarray(X, dtype=np.float32)
    n = len(X)
    if not 1 <= n_neighbors <= n - 1:
        raise InputError(f"n_neighbors={n_neighbors} needs at least n_neighbors + 1 training "
                         f"rows; there are {n}: lower n_neighbors or give more rows")
    if method not in KNN_METHODS:
        raise InputError(f"knn_method={method!r}; choose from {KNN_METHODS}")
    if method == "auto":
        method = "exact" if n <= EXACT_UP_TO else "nndescent"
    if method == "nndescent":
        try:
            from pynndescent import NNDescent
        except ImportError as err:
            raise InputError(
                f"knn_method='nndescent' (the 'auto' choice above {EXACT_UP_TO} rows) needs "
                "the optional package pynndescent: pip install 'aekit[neighbors]', or pass "
                "knn_method='exact'") from err
        index = NNDescent(X, n_neighbors=n_neighbors + 1, random_state=random_state,
                          n_jobs=1, verbose=False)
        found, _ = index.neighbor_graph
        table = _drop_self(found.astype(np.int64), n_neighbors)
        query_table = None
        if queries is not None and len(queries):
            query_table, _ = index.query(np.ascontiguousarray(queries, dtype=np.float32),
                                         k=n_neighbors)
            query_table = query_table.astype(np.int64)
        return table, query_table
    search = NearestNeighbors(n_neighbors=n_neighbors + 1, algorithm="brute").fit(X)
    found = search.kneighbors(X, return_distance=False)
    table = _drop_self(found.astype(np.int64), n_neighbors)
    query_table = None
    if queries is not None and len(queries):
        query_table = search.kneighbors(np.ascontiguousarray(queries, dtype=np.float32),
                                        n_neighbors=n_neighbors,
                                        return_distance=False).astype(np.int64)
    return table, query_table


def _drop_self(found: np.ndarray, n_neighbors: int) -> np.ndarray:
    """Remove each row's own index from its ``n_neighbors + 1`` found neighbours (the last
    one when the row is not among them: a duplicate row was found first)."""
    own = found == np.arange(len(found))[:, None]                 # (n, k + 1)
    own[~own.any(axis=1), -1] = True                              # drop the farthest
    own[np.cumsum(own, axis=1) > 1] = False                       # drop one per row only
    return found[~own].reshape(len(found), n_neighbors)
