"""Levers of ``neighbor_ae(embedding="tsne")``'s map and placement, on the validation split.

The model's map of the training images is an openTSNE map, and ``transform`` places new
images on it (``aekit.models.neighbor_ae.PLACEMENT``). This script probes both with openTSNE
directly, without training the networks, on the split of ``fashion_2d.py --validation``
(the last 10,000 rows of a fixed permutation of the training images, seed 0, play the new
images; the test set is never read). Each map is computed once; each placement setting
then places the 10,000 held-out images on it and scores 1-NN accuracy (a classifier fitted
on the map's places) and trustworthiness (k=5 and k=50, on the 5,000 rows
``fashion_2d.py`` uses) against the images.

``--maps``: ``default`` (perplexity 30, as the model), ``perp50``, ``cosine`` (cosine
distances), ``exag2`` (exaggeration 2 after the early phase). ``--placements``: JSON list
of settings over the model's ``PLACEMENT`` (for example ``[{"perplexity": 3}]``). One JSON
line per result goes to stdout and, with ``--out``, is appended to that file.

Usage: OMP_NUM_THREADS=1 NUMBA_NUM_THREADS=1 python benchmarks/tsne_map_levers.py
       [--seed 1] [--maps default,perp50] [--placements JSON] [--out FILE]
       [--n-map 50000] [--n-new 10000]
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

import aekit
from aekit.evaluation.array_metrics import knn_accuracy, trustworthiness
from aekit.models.neighbor_ae import PLACEMENT

MAPS = {
    "default": ({"perplexity": 30}, {}),
    "perp50": ({"perplexity": 50}, {}),
    "cosine": ({"perplexity": 30, "metric": "cosine"}, {}),
    "exag2": ({"perplexity": 30}, {"exaggeration": 2}),
}
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
    rows, held = perm[10_000:][:args.n_map], perm[:10_000][:args.n_new]
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

    emit({"pixel_1nn": float(knn_accuracy(X_map, y_map, X_new, y_new))})
    for name in args.maps.split(","):
        affinity, tsne = MAPS[name]
        start = time.perf_counter()
        affinities = openTSNE.affinity.PerplexityBasedNN(X_map, random_state=args.seed,
                                                         n_jobs=1, **affinity)
        found = openTSNE.TSNE(n_components=2, random_state=args.seed, n_jobs=1,
                              **tsne).fit(X_map, affinities=affinities)
        places = np.asarray(found)
        emit({"map": name, "seed": args.seed, "map_s": time.perf_counter() - start})
        for change in json.loads(args.placements):
            settings = {**PLACEMENT, **change}
            k, perplexity = settings.pop("k"), settings.pop("perplexity")
            start = time.perf_counter()
            partial = found.prepare_partial(X_new, initialization="median", k=k,
                                            perplexity=perplexity)
            placed = np.asarray(partial.optimize(inplace=True, propagate_exception=True,
                                                 **settings))
            emit({"map": name, "seed": args.seed, "placement": change,
                  "knn": float(knn_accuracy(places, y_map, placed, y_new)),
                  "trust5": float(trustworthiness(X_new[trust], placed[trust], n_neighbors=5)),
                  "trust50": float(trustworthiness(X_new[trust], placed[trust],
                                                   n_neighbors=50)),
                  "seconds": time.perf_counter() - start})


if __name__ == "__main__":
    main()
