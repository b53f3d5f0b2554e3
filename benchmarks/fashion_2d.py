"""2-D maps side by side: PCA, t-SNE, UMAP, AE, VAE and the neighbour-preserving AE.

Protocol: the parametric methods (PCA, UMAP, AE, VAE, neighbor_ae) are fitted on the training
images only and map the test images with their own ``transform``; a 1-NN classifier is fitted
on the training codes and scored on the test codes (``aekit.evaluation.knn_accuracy``). t-SNE
has no out-of-sample map, so training rows (``--tsne-train`` of them, seed 0) are embedded
jointly with the test rows and the 1-NN classifier is fitted on the training part.
Trustworthiness (k=5 and k=50, ``aekit.evaluation.trustworthiness``) of the test codes against
the test images, on one fixed random subset of test rows (``--trust-n``, seed 0), the same
for every method. Reconstruction: mean squared error per pixel of the decoded test codes,
for the methods with a decoder (PCA's is its linear inverse).

``--validation`` tunes without the test set: the first 10,000 rows of a fixed permutation of
the training images (seed 0) play the test rows and the rest are the training rows.
``--dataset digits`` runs the same on scikit-learn's 8x8 digits (1437 training and 360 test
rows, offline). With ``--checkpoint-dir`` each finished method goes to ``results.jsonl``
there and ``--resume`` skips it.

Networks: MLP D-512-256-2, Bernoulli decoder on the grey levels, Adam 1e-3, seed 0; AE and
VAE batch 128, the neighbour AE its own settings (``--nae-params``); ``neighbor_ae_tsne`` is
the neighbour AE with ``embedding="tsne"`` at the AE's settings (a t-SNE map of the training
rows by openTSNE, which the decoder learns to decode; new rows are placed on the map), with
``--tsne-params`` over the model's own.

Run with one thread on a shared machine:
``OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 NUMBA_NUM_THREADS=1 nice -n 5 python benchmarks/fashion_2d.py``

Usage: python benchmarks/fashion_2d.py [--dataset fashion-mnist] [--epochs 30]
       [--nae-epochs 100] [--nae-params JSON] [--tsne-params JSON] [--tsne-train 60000]
       [--trust-n 5000]
       [--threads 1] [--methods ae,vae,neighbor_ae,pca,tsne,umap] [--validation]
       [--checkpoint-dir DIR [--resume]] [--write BENCHMARKS.md]
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path

import numpy as np
import torch
from sklearn.decomposition import PCA
from sklearn.manifold import TSNE

import aekit
from aekit.evaluation.array_metrics import knn_accuracy, trustworthiness
from aekit.evaluation.quick_bench import machine_description, update_section
from aekit.models.neighbor_ae import DOF, MAP_ITER, NEAREST_STARTS

sys.path.insert(0, str(Path(__file__).resolve().parent))
from results_log import append, open_log  # noqa: E402

# 1-NN test accuracy of 2-D embeddings of Fashion-MNIST reported by Sainburg, McInnes &
# Gentner, "Parametric UMAP Embeddings for Representation and Semisupervised Learning",
# Neural Computation 33(11), 2021 (their own networks and training, not these).
PUBLISHED = {"ae": 0.682, "vae": 0.665, "tsne": 0.783}
LABELS = {"ae": "AE", "vae": "VAE", "neighbor_ae": "neighbour AE (aekit `neighbor_ae`)",
          "neighbor_ae_tsne": "neighbour AE on a t-SNE map (`neighbor_ae`, `embedding=\"tsne\"`)",
          "neighbor_ae_tsne_hellinger": "neighbour AE on a t-SNE map of Hellinger distances "
                                        "(`embedding=\"tsne\"`, `metric=\"hellinger\"`)",
          "pca": "PCA", "tsne": "t-SNE", "umap": "UMAP"}
#: the neighbour AE's settings, chosen on the validation split (see BENCHMARKS.md)
NAE_DEFAULTS = {"batch_size": 512}


def load(args) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    X, y = aekit.datasets.load(args.dataset, split="train")
    if args.validation:
        perm = np.random.default_rng(0).permutation(len(X))
        n_val = 10_000 if len(X) > 20_000 else len(X) // 5
        return X[perm[n_val:]], y[perm[n_val:]], X[perm[:n_val]], y[perm[:n_val]]
    X_test, y_test = aekit.datasets.load(args.dataset, split="test")
    return X, y, X_test, y_test


def embed(method: str, X, X_test, args):
    """Training codes, their row indices into X, test codes and the decoded test codes
    (None without a decoder) for one method."""
    rows = np.arange(len(X))
    if method in ("ae", "vae", "neighbor_ae", "neighbor_ae_tsne", "neighbor_ae_tsne_hellinger"):
        settings = dict(n_components=2, hidden_layer_sizes=(512, 256), likelihood="bernoulli",
                        max_iter=args.epochs, batch_size=128, n_iter_no_change=args.epochs + 1,
                        random_state=0)
        if method == "neighbor_ae":
            settings.update(max_iter=args.nae_epochs, n_iter_no_change=args.nae_epochs + 1,
                            **NAE_DEFAULTS, **json.loads(args.nae_params))
        if method.startswith("neighbor_ae_tsne"):   # the AE's settings; the map from t-SNE
            settings.update(embedding="tsne", **json.loads(args.tsne_params))
        if method == "neighbor_ae_tsne_hellinger":
            settings["metric"] = "hellinger"
        model = aekit.get_model(method.split("_tsne")[0], **settings).fit(X)
        Z_test = model.transform(X_test)
        return model.transform(X), rows, Z_test, model.inverse_transform(Z_test)
    if method == "pca":
        pca = PCA(2, random_state=0).fit(X)
        Z_test = pca.transform(X_test)
        return pca.transform(X), rows, Z_test, pca.inverse_transform(Z_test)
    if method == "tsne":
        if args.tsne_train < len(X):
            rows = np.sort(np.random.default_rng(0).choice(len(X), args.tsne_train,
                                                            replace=False))
        both = TSNE(2, init="pca", random_state=0, n_jobs=args.threads).fit_transform(
            np.concatenate([X[rows], X_test]))                      # (n_train + n_test, 2)
        return both[: len(rows)], rows, both[len(rows):], None
    if method == "umap":
        import umap

        # the fitted embedding of the training rows, and transform() for the test rows
        reducer = umap.UMAP(n_components=2, random_state=0, n_jobs=args.threads).fit(X)
        return reducer.embedding_, rows, reducer.transform(X_test), None
    raise ValueError(f"unknown method {method!r}; choose from {sorted(LABELS)}")


def measure(method: str, X, y, X_test, y_test, trust, args) -> dict:
    start = time.perf_counter()
    Z, train_rows, Z_test, decoded = embed(method, X, X_test, args)
    seconds = time.perf_counter() - start
    return {"method": method,
            "knn": float(knn_accuracy(Z, y[train_rows], Z_test, y_test)),
            "trust5": float(trustworthiness(X_test[trust], Z_test[trust], n_neighbors=5)),
            "trust50": float(trustworthiness(X_test[trust], Z_test[trust], n_neighbors=50)),
            "mse": None if decoded is None else float(np.mean((decoded - X_test) ** 2)),
            "seconds": seconds}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", default="fashion-mnist", choices=["fashion-mnist", "digits"])
    ap.add_argument("--epochs", type=int, default=30, help="AE and VAE epochs")
    ap.add_argument("--nae-epochs", type=int, default=100, help="neighbour AE epochs")
    ap.add_argument("--tsne-params", default="{}",
                    help="JSON parameters over those of the t-SNE-map methods (for example "
                         '\'{"map_iter": 1500}\')')
    ap.add_argument("--nae-params", default="{}",
                    help="neighbour AE parameters over the defaults, JSON")
    ap.add_argument("--tsne-train", type=int, default=60000,
                    help="training rows embedded together with the test rows by t-SNE")
    ap.add_argument("--trust-n", type=int, default=5000,
                    help="test rows on which trustworthiness is measured")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--methods", default="ae,vae,neighbor_ae,pca,tsne,umap")
    ap.add_argument("--validation", action="store_true",
                    help="score on held-out training rows, never the test set")
    ap.add_argument("--checkpoint-dir", type=Path)
    ap.add_argument("--resume", action="store_true")
    ap.add_argument("--section", help="BENCHMARKS.md section (default from the dataset)")
    ap.add_argument("--write")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    args.machine = machine_description()     # now: t-SNE and UMAP may change the thread count
    log, done = open_log(args.checkpoint_dir, args.resume)
    X, y, X_test, y_test = load(args)
    n_trust = min(args.trust_n, len(X_test))
    trust = np.sort(np.random.default_rng(0).choice(len(X_test), n_trust, replace=False))
    results = {r["method"]: r for r in done}
    for method in args.methods.split(","):
        if method in results:
            continue
        if method == "umap":
            try:
                import umap  # noqa: F401
            except ImportError as err:
                print(f"umap: skipped, umap-learn is not importable ({err}); "
                      "install it with `pip install aekit[umap]`", flush=True)
                continue
        result = measure(method, X, y, X_test, y_test, trust, args)
        results[method] = result
        append(log, result)
        print(json.dumps(result), flush=True)
    write_table(args, results, len(X), len(X_test), n_trust)


def write_table(args, results: dict, n_train: int, n_test: int, n_trust: int) -> None:
    name = "digits" if args.dataset == "digits" else "Fashion-MNIST"
    section = args.section or ("digits_2d" if args.dataset == "digits" else "fashion_2d")
    if args.validation:
        section += "_validation"
    flags = [f"--dataset {args.dataset}"] if args.dataset != "fashion-mnist" else []
    flags += [f"--epochs {args.epochs}", f"--nae-epochs {args.nae_epochs}"]
    if args.nae_params != "{}":
        flags.append(f"--nae-params {shlex.quote(args.nae_params)}")
    if args.tsne_params != "{}":
        flags.append(f"--tsne-params {shlex.quote(args.tsne_params)}")
    flags += [f"--tsne-train {args.tsne_train}", f"--trust-n {args.trust_n}",
              f"--threads {args.threads}", f"--methods {args.methods}"]
    flags += ["--validation"] if args.validation else []
    nae = {**NAE_DEFAULTS, **json.loads(args.nae_params)}
    split = (f"{n_train} training rows and {n_test} held-out training rows (a fixed "
             "permutation, seed 0; the test set is not used)" if args.validation else
             f"the {n_train} training and {n_test} test images")
    tsne_rows = ("all training rows" if args.tsne_train >= n_train else
                 f"a random subset of {args.tsne_train} training rows (seed 0)")
    t = args.threads
    lines = [
        f"<!-- {section}:start -->",
        f"Command: `OMP_NUM_THREADS={t} MKL_NUM_THREADS={t} NUMBA_NUM_THREADS={t} python "
        f"benchmarks/fashion_2d.py {' '.join(flags)} --write BENCHMARKS.md`. Machine: "
        f"{args.machine}; torch {torch.__version__}; aekit {aekit.__version__}; "
        f"{time.strftime('%Y-%m-%d')}.", "",
        f"2-D maps of {name} grey levels, {split}. AE and VAE: MLP D-512-256-2, Bernoulli "
        f"decoder, Adam 1e-3, batch 128, {args.epochs} epochs, seed 0 (the VAE code is the "
        f"posterior mean). Neighbour AE: the same network, {args.nae_epochs} epochs, "
        f"parameters {json.dumps(nae)} over the model's defaults (15 neighbours, "
        "neighbor_weight 1), seed 0. "
        + ("Neighbour AE on a t-SNE map: the AE's network and settings, "
           "`embedding=\"tsne\"` (the training map by openTSNE at the model's defaults: "
           f"perplexity 30, {MAP_ITER} iterations after the early phase, a kernel of {DOF:g} "
           "degrees of freedom"
           + (f", with {json.dumps(json.loads(args.tsne_params))} over the model's parameters"
              if args.tsne_params != "{}" else "")
           + "; each new row placed on it by optimising its t-SNE cost against the fixed "
           f"map from {NEAREST_STARTS + 1} starts, keeping the lowest), seed 0; of Hellinger "
           "distances: the "
           "same with "
           "`metric=\"hellinger\"` (the map, and the placement of new rows, compare the "
           "square roots of the grey levels). "
           if any(m.startswith("neighbor_ae_tsne") for m in args.methods.split(",")) else "")
        + "PCA: scikit-learn. UMAP: umap-learn defaults (15 "
        "neighbours, min_dist 0.1), seed 0. All but t-SNE are fitted on the training rows only "
        "and map the test rows with their own `transform`; the 1-NN classifier is fitted on "
        "the training codes (UMAP: its fitted embedding) and scored on the test codes. t-SNE "
        f"(scikit-learn, Barnes-Hut, PCA initialisation, seed 0) has no out-of-sample map: "
        f"{tsne_rows} are embedded together with the test rows. Trustworthiness (Venna & "
        f"Kaski 2001, Euclidean) of the test codes against the test images on one random "
        f"subset of {n_trust} test rows (seed 0), the same for every method. Reconstruction: "
        "mean squared error per pixel of the decoded test codes (grey levels in [0, 1]). "
        "Published: 2-D 1-NN accuracy from Sainburg, McInnes & Gentner, \"Parametric UMAP "
        "Embeddings for Representation and Semisupervised Learning\", Neural Computation "
        "33(11), 2021 (Fashion-MNIST, their own networks). The time is fitting plus "
        "embedding train and test, not the metrics.", "",
        "| method | 1-NN test acc | trustworthiness (k=5) | trustworthiness (k=50) | "
        "reconstruction MSE | published 1-NN | time |",
        "|---|---|---|---|---|---|---|"]
    for method in args.methods.split(","):
        r = results.get(method)
        published = (f"{PUBLISHED[method]:.3f}" if method in PUBLISHED
                     and args.dataset == "fashion-mnist" else "")
        if r is None:
            lines.append(f"| {LABELS[method]} | not run | | | | {published} | |")
            continue
        mse = "no decoder" if r["mse"] is None else f"{r['mse']:.4f}"
        lines.append(f"| {LABELS[method]} | {r['knn']:.3f} | {r['trust5']:.3f} | "
                     f"{r['trust50']:.3f} | {mse} | {published} | {r['seconds'] / 60:.1f} min |")
    lines.append(f"<!-- {section}:end -->")
    text = "\n".join(lines)
    print(text)
    if args.write:
        title = f"{name} 2-D maps" + (", validation split" if args.validation else "")
        update_section(args.write, section, title, text)


if __name__ == "__main__":
    main()
