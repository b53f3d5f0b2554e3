"""Levers of ``neighbor_ae(embedding="tsne")``'s map and placement, on the validation split.

The model's map of the training images is an openTSNE map, and ``transform`` places new
images on it (``aekit.models.neighbor_ae.PLACEMENT``). This script probes both with openTSNE
directly, without training the networks, on the split of ``fashion_2d.py --validation``
(the first 10,000 rows of a fixed permutation of the training images, seed 0, play the new
images; the test set is never read). Each map is computed once; each placement setting
then places the 10,000 held-out images on it and scores 1-NN accuracy (a classifier fitted
on the map's places), trustworthiness (k=5 and k=50, on the 5,000 rows
``fashion_2d.py`` uses) against the images, and the mean t-SNE cost of the places (nats,
``placement_cost``, with the new images' affinities at the placement's perplexity).

``--maps``: ``default`` (perplexity 30, as the model), ``perp50``, ``perp15``, ``perp10``,
``cosine`` (cosine distances), ``exag2`` (exaggeration 2 after the early phase),
``hellinger`` (the map and the placement on the square roots of the grey levels, as
``metric="hellinger"``), ``hellinger_sum1`` (the same after dividing each image by its sum,
the Hellinger distance between distributions), ``pow0.75`` (on the grey levels to the power
0.75, between Euclidean and Hellinger), ``dof0.9``, ``dof0.8``, ``dof0.6`` (heavier-tailed
kernels, Kobak et al., "Heavy-tailed kernels reveal a finer cluster structure in t-SNE
visualisations", ECML PKDD 2019; new images are placed with the same kernel), ``iter1500``
(1,500 iterations after the early phase instead of openTSNE's 500), ``dof0.9_iter1500``
(both). Trustworthiness is always against the grey levels themselves.
``--placements``: JSON list of settings over the model's ``PLACEMENT`` (for example
``[{"perplexity": 3}]``); ``"start": "nearest"`` starts each new image at the place of its
nearest training image instead of the median place of its ``k`` nearest, ``"start":
"best"`` places it as the model does (``place_on_map``: from the median start and from the
places of its ``NEAREST_STARTS`` nearest training images, keeping the start of lowest
t-SNE cost; ``"nearest_starts": N`` for N such starts); ``"rows": MAP``
finds the new images' neighbours (for their affinities and start) on the rows that map
``MAP`` is computed on (for example ``"hellinger"`` on a ``default`` map), instead of the
map's own rows. One JSON line per result goes to stdout and, with ``--out``, is appended to
that file.

Usage: OMP_NUM_THREADS=1 NUMBA_NUM_THREADS=1 python benchmarks/tsne_map_levers.py
       [--seed 1] [--maps default,perp50] [--placements JSON] [--out FILE]
       [--n-map 50000] [--n-new 10000]
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
from sklearn.neighbors import NearestNeighbors

import aekit
from aekit.evaluation.array_metrics import knn_accuracy, trustworthiness
from aekit.models.neighbor_ae import NEAREST_STARTS, PLACEMENT, place_on_map, placement_cost

MAPS = {
    "default": ({"perplexity": 30}, {}),
    "perp50": ({"perplexity": 50}, {}),
    "perp15": ({"perplexity": 15}, {}),
    "perp10": ({"perplexity": 10}, {}),
    "cosine": ({"perplexity": 30, "metric": "cosine"}, {}),
    "exag2": ({"perplexity": 30}, {"exaggeration": 2}),
    "hellinger": ({"perplexity": 30}, {}),
    "hellinger_sum1": ({"perplexity": 30}, {}),
    "pow0.75": ({"perplexity": 30}, {}),
    "dof0.9": ({"perplexity": 30}, {"dof": 0.9}),
    "dof0.8": ({"perplexity": 30}, {"dof": 0.8}),
    "dof0.6": ({"perplexity": 30}, {"dof": 0.6}),
    "iter1500": ({"perplexity": 30}, {"n_iter": 1500}),
    "dof0.9_iter1500": ({"perplexity": 30}, {"dof": 0.9, "n_iter": 1500}),
}
#: what each map computes its neighbours on, from the grey levels
ROWS = {"hellinger": np.sqrt, "hellinger_sum1": lambda x: np.sqrt(x / x.sum(1, keepdims=True)),
        "pow0.75": lambda x: x ** 0.75}
DEFAULT_PLACEMENTS = [{}, {"perplexity": 3}, {"perplexity": 2}, {"perplexity": 1, "k": 10},
                      {"exaggeration": 2.5}]


def main() -> None:
    import openTSNE

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--maps", default="default")
    ap.add_argument("--placements", default=json.dumps(DEFAULT_PLACEMENTS))
    ap.add_argument("--out")
    ap.add_argument("--n-map", type=int, default=50_000, help="map rows (fewer for a quick try)")
    ap.add_argument("--n-new", type=int, default=10_000, help="held-out rows placed")
    args = ap.parse_args()
    X, y = aekit.datasets.load("fashion-mnist", split="train")
    perm = np.random.default_rng(0).permutation(len(X))
    n_val = 10_000 if len(X) > 20_000 else len(X) // 5          # as fashion_2d.py's split
    rows, held = perm[n_val:][:args.n_map], perm[:n_val][:args.n_new]
    X_map, y_map = np.ascontiguousarray(X[rows], dtype=np.float32), y[rows]
    X_new, y_new = np.ascontiguousarray(X[held], dtype=np.float32), y[held]
    trust = np.sort(np.random.default_rng(0).choice(len(X_new), min(5000, len(X_new)),
                                                    replace=False))

    def emit(row: dict) -> None:
        line = json.dumps(row)
        print(line, flush=True)
        if args.out:
            with open(args.out, "a") as f:
                f.write(line + "\n")

    def scores(places: np.ndarray, placed: np.ndarray, P: object, dof: float) -> dict:
        return {"knn": float(knn_accuracy(places, y_map, placed, y_new)),
                "trust5": float(trustworthiness(X_new[trust], placed[trust], n_neighbors=5)),
                "trust50": float(trustworthiness(X_new[trust], placed[trust], n_neighbors=50)),
                "cost": float(placement_cost(placed, P, places, dof).mean())}

    emit({"pixel_1nn": float(knn_accuracy(X_map, y_map, X_new, y_new)),
          "sqrt_1nn": float(knn_accuracy(np.sqrt(X_map), y_map, np.sqrt(X_new), y_new))})
    for name in args.maps.split(","):
        affinity, tsne = MAPS[name]
        as_rows = ROWS.get(name, lambda x: x)
        R_map, R_new = as_rows(X_map), as_rows(X_new)
        start = time.perf_counter()
        affinities = openTSNE.affinity.PerplexityBasedNN(R_map, random_state=args.seed,
                                                         n_jobs=1, **affinity)
        found = openTSNE.TSNE(n_components=2, random_state=args.seed, n_jobs=1,
                              **tsne).fit(R_map, affinities=affinities)
        # centred once, as openTSNE centres a map before placing on it (and as the model
        # keeps it), so the places scored against are those every placement sees
        found -= (found.max(0) + found.min(0)) / 2
        places = np.asarray(found)
        emit({"map": name, "seed": args.seed, "map_s": time.perf_counter() - start})
        # placements that find the new rows' neighbours on other rows than the map's: the
        # same places, with affinities built on those rows (one per kind, kept)
        on_rows = {name: (found, R_map, R_new)}
        nearest: dict[str, np.ndarray] = {}
        for change in json.loads(args.placements):
            settings = {**PLACEMENT, **change}
            k, perplexity = settings.pop("k"), settings.pop("perplexity")
            kind = settings.pop("rows", name)
            if kind not in on_rows:
                as_kind = ROWS.get(kind, lambda x: x)
                K_map = as_kind(X_map)
                other = openTSNE.affinity.PerplexityBasedNN(
                    K_map, random_state=args.seed, n_jobs=1, **MAPS[kind][0])
                on_rows[kind] = (openTSNE.TSNEEmbedding(places, other, random_state=args.seed,
                                                        **found.gradient_descent_params),
                                 K_map, as_kind(X_new))
            reference, K_map, K_new = on_rows[kind]
            # the new rows' affinities at this perplexity: what every placement's t-SNE cost
            # is measured with, whatever it started from
            P = reference.affinities.to_new(K_new, perplexity=perplexity)
            dof = reference.gradient_descent_params.get("dof", 1.0)
            start = time.perf_counter()
            init: object = "median"
            where = settings.pop("start", "median")
            if where == "best":                 # the model's own placement
                starts = settings.pop("nearest_starts", NEAREST_STARTS)
                placed = place_on_map(reference, K_new, {"k": k, "perplexity": perplexity,
                                                         **settings}, nearest_starts=starts)
                took = time.perf_counter() - start
                emit({"map": name, "seed": args.seed, "placement": change,
                      **scores(places, placed, P, dof), "seconds": took})
                continue
            if where == "nearest":
                if kind not in nearest:     # in the placement's own space, exact
                    nearest[kind] = NearestNeighbors(n_neighbors=1).fit(K_map).kneighbors(
                        K_new, return_distance=False)[:, 0]
                init = places[nearest[kind]].copy()
            partial = reference.prepare_partial(K_new, initialization=init, k=k,
                                                perplexity=perplexity)
            placed = np.asarray(partial.optimize(inplace=True, propagate_exception=True,
                                                 **settings))
            took = time.perf_counter() - start
            emit({"map": name, "seed": args.seed, "placement": change,
                  **scores(places, placed, P, dof), "seconds": took})


if __name__ == "__main__":
    main()
