"""Fashion-MNIST 2-D codes: 1-NN test accuracy and trustworthiness for AE, VAE, PCA, t-SNE, UMAP.

Protocol: the parametric methods (AE, VAE, PCA, UMAP) are fitted on the 60k training images;
a 1-NN classifier is fitted on the training codes and scored on the 10k test codes
(``aekit.evaluation.knn_accuracy``). t-SNE has no out-of-sample map, so a fixed random subset of
training rows (``--tsne-train``, seed 0) is embedded jointly with the test rows and the 1-NN
classifier is fitted on the training part. Trustworthiness (k=5, ``aekit.evaluation.trustworthiness``)
is measured on one fixed random subset of test rows (``--trust-n``, seed 0), the same for every
method, since it builds full pairwise distance matrices.
Networks: MLP 784-512-256-2, Bernoulli decoder on the grey levels, Adam 1e-3, batch 128.

Run with one thread on a shared machine:
``OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 NUMBA_NUM_THREADS=1 nice -n 5 python benchmarks/fashion_2d.py``

Usage: python benchmarks/fashion_2d.py [--epochs 30] [--tsne-train 10000] [--trust-n 5000]
       [--threads 1] [--methods ae,vae,pca,tsne,umap] [--write BENCHMARKS.md]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from sklearn.decomposition import PCA
from sklearn.manifold import TSNE

import aekit
from aekit.evaluation.array_metrics import knn_accuracy, trustworthiness
from aekit.evaluation.quick_bench import machine_description, update_section

# 1-NN test accuracy of 2-D embeddings of Fashion-MNIST reported by Sainburg, McInnes &
# Gentner, "Parametric UMAP Embeddings for Representation and Semisupervised Learning",
# Neural Computation 33(11), 2021 (their own networks and training, not these).
PUBLISHED = {"ae": 0.682, "vae": 0.665, "tsne": 0.783}
LABELS = {"ae": "AE", "vae": "VAE", "pca": "PCA", "tsne": "t-SNE", "umap": "UMAP"}


def embed(method: str, X, X_test, args) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Training codes, their row indices into X, and test codes for one method."""
    rows = np.arange(len(X))
    if method in ("ae", "vae"):
        model = aekit.get_model(method, n_components=2, hidden_layer_sizes=(512, 256),
                                likelihood="bernoulli", max_iter=args.epochs, batch_size=128,
                                n_iter_no_change=args.epochs + 1, random_state=0).fit(X)
        return model.transform(X), rows, model.transform(X_test)
    if method == "pca":
        pca = PCA(2, random_state=0).fit(X)
        return pca.transform(X), rows, pca.transform(X_test)
    if method == "tsne":
        if args.tsne_train < len(X):
            rows = np.sort(np.random.default_rng(0).choice(len(X), args.tsne_train,
                                                            replace=False))
        both = TSNE(2, init="pca", random_state=0, n_jobs=args.threads).fit_transform(
            np.concatenate([X[rows], X_test]))                      # (n_train + n_test, 2)
        return both[: len(rows)], rows, both[len(rows):]
    if method == "umap":
        import umap

        # the fitted embedding of the training rows, and transform() for the test rows
        reducer = umap.UMAP(n_components=2, random_state=0, n_jobs=args.threads).fit(X)
        return reducer.embedding_, rows, reducer.transform(X_test)
    raise ValueError(f"unknown method {method!r}; choose from {sorted(LABELS)}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--tsne-train", type=int, default=10000,
                    help="training rows embedded together with the test rows by t-SNE")
    ap.add_argument("--trust-n", type=int, default=5000,
                    help="test rows on which trustworthiness is measured")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--methods", default="ae,vae,pca,tsne,umap")
    ap.add_argument("--write")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    X, y = aekit.datasets.load("fashion-mnist", split="train")
    X_test, y_test = aekit.datasets.load("fashion-mnist", split="test")
    trust = np.sort(np.random.default_rng(0).choice(len(X_test), args.trust_n, replace=False))
    rows = []
    for method in args.methods.split(","):
        if method == "umap":
            try:
                import umap  # noqa: F401
            except ImportError as err:
                print(f"umap: skipped, umap-learn is not importable ({err}); "
                      "install it with `pip install aekit[umap]`", flush=True)
                rows.append((method, None, None, None))
                continue
        start = time.perf_counter()
        Z, train_rows, Z_test = embed(method, X, X_test, args)
        seconds = time.perf_counter() - start
        acc = knn_accuracy(Z, y[train_rows], Z_test, y_test)
        tw = trustworthiness(X_test[trust], Z_test[trust], n_neighbors=5)
        rows.append((method, acc, tw, seconds))
        print(f"{method}: 1-NN {acc:.3f}, trustworthiness {tw:.3f}, "
              f"embedding {seconds / 60:.1f} min", flush=True)
    tsne_rows = ("all 60k training images" if args.tsne_train >= len(X) else
                 f"a random subset of {args.tsne_train} training images (seed 0)")
    lines = [
        "<!-- fashion_2d:start -->",
        f"Command: `OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 NUMBA_NUM_THREADS=1 python "
        f"benchmarks/fashion_2d.py --epochs {args.epochs} --tsne-train {args.tsne_train} "
        f"--trust-n {args.trust_n} --threads {args.threads} --methods {args.methods} "
        f"--write BENCHMARKS.md`. Machine: {machine_description()}; "
        f"torch {torch.__version__}; aekit {aekit.__version__}; "
        f"{time.strftime('%Y-%m-%d')}.", "",
        f"2-D embeddings of Fashion-MNIST grey levels. AE and VAE: MLP 784-512-256-2, Bernoulli "
        f"decoder (binary cross-entropy on the grey levels), Adam 1e-3, batch 128, "
        f"{args.epochs} epochs, seed 0; the VAE code is the posterior mean. PCA: scikit-learn. "
        f"UMAP: umap-learn defaults (15 neighbours, min_dist 0.1), seed 0. AE, VAE, PCA and "
        f"UMAP are fitted on all 60k training images; 1-NN accuracy is a 1-nearest-neighbour "
        f"classifier fitted on the 60k training codes (UMAP: its fitted embedding) and scored "
        f"on the codes of all 10k test images (UMAP: `transform`). t-SNE (scikit-learn, "
        f"Barnes-Hut, PCA initialisation, seed 0) has no out-of-sample map: {tsne_rows} are "
        f"embedded together with the 10k test images in one run, and the 1-NN classifier is "
        f"fitted on their codes. Trustworthiness (k=5, Euclidean, Venna & Kaski 2001) of the test codes against "
        f"the test images, on one random subset of {args.trust_n} test images (seed 0), the "
        f"same for every method. Published: 2-D 1-NN accuracy from Sainburg, McInnes & Gentner, "
        f"\"Parametric UMAP Embeddings for Representation and Semisupervised Learning\", Neural "
        f"Computation 33(11), 2021, with their own networks and training. The time is fitting "
        f"plus embedding train and test, not the metrics.", "",
        "| method | 1-NN test acc | trustworthiness (k=5) | published 1-NN (Sainburg et al. "
        "2021) | time |", "|---|---|---|---|---|"]
    for method, acc, tw, seconds in rows:
        published = f"{PUBLISHED[method]:.3f}" if method in PUBLISHED else ""
        if acc is None:
            lines.append(f"| {LABELS[method]} | not installed | not installed | {published} | |")
        else:
            lines.append(f"| {LABELS[method]} | {acc:.3f} | {tw:.3f} | {published} | "
                         f"{seconds / 60:.1f} min |")
    lines.append("<!-- fashion_2d:end -->")
    text = "\n".join(lines)
    print(text)
    if args.write:
        update_section(args.write, "fashion_2d", "Fashion-MNIST 2-D codes", text)


if __name__ == "__main__":
    main()
