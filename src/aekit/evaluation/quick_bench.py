"""``aekit bench``: every model measured as a density, a manifold and a generator.

Writes three tables (markdown) with the machine, versions, command and wall time:

1. every registered model at ``n_components=8``: reconstruction MSE, log-likelihood in nats
   (what ``score_samples`` means for that model is stated), 1-NN accuracy of the codes,
   and sample quality (Fréchet distance, precision, recall in the features of a classifier
   trained here on the same data; not the Inception FID), with PCA as the baseline;
2. 2-D codes: 1-NN accuracy and trustworthiness (k=5) for AE, VAE, PCA, t-SNE (and UMAP
   when ``umap-learn`` is installed);
3. the settings used.

``quick`` runs on scikit-learn's digits in a few minutes on 2 CPU cores; the full run uses
Fashion-MNIST and takes hours.
"""

from __future__ import annotations

import os
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sklearn.decomposition import PCA
from sklearn.manifold import TSNE

from aekit._registry import get_model, list_models
from aekit._version import __version__
from aekit.data import datasets
from aekit.evaluation.array_metrics import knn_accuracy, trustworthiness
from aekit.evaluation.evaluate import FeatureExtractor, evaluate

SETTINGS = {
    "quick": {"data": "digits", "max_iter": 60, "hidden_layer_sizes": (128,), "k": 200,
              "n_test": None, "n_train": None},
    "full": {"data": "fashion-mnist", "max_iter": 50, "hidden_layer_sizes": (512, 256),
             "k": 1000, "n_test": None, "n_train": None},
}


#: marks a row of the model table computed given the true test labels (a conditional model)
CONDITIONED_MARK = " †"


def _fit(name: str, X: np.ndarray, y: np.ndarray, n_components: int, s: dict) -> Any:
    model = get_model(name, n_components=n_components, likelihood="bernoulli",
                      hidden_layer_sizes=s["hidden_layer_sizes"], max_iter=s["max_iter"],
                      random_state=0)
    return model.fit(X, y)


def model_table(s: dict, X, y, X_test, y_test, log) -> list[dict]:
    extractor = FeatureExtractor().fit(X, y)
    rows = []
    for name in list_models():
        start = time.perf_counter()
        model = _fit(name, X, y, 8, s)
        seconds = time.perf_counter() - start
        r = evaluate(model, X_test, y_test, X_train=X, y_train=y, k=s["k"],
                     feature_extractor=extractor)
        if not model.capabilities.score_is_density:  # log p(x | z = f(x)), marked *
            r.setdefault("density", {})["log_likelihood"] = model.score(X_test)
        # a conditional model is evaluated given the test labels (evaluate marks it too)
        conditioned = bool(model.capabilities.conditional)
        rows.append({"name": name, "seconds": seconds, "result": r,
                     "conditioned_on_labels": conditioned})
        log(f"{name}: {seconds:.1f} s")
    return rows


def codes_2d_table(s: dict, X, y, X_test, y_test, log) -> list[tuple[str, float, float]]:
    out = []
    for name in ("ae", "vae"):
        model = _fit(name, X, y, 2, s)
        Z, Z_test = model.transform(X), model.transform(X_test)
        out.append((type(model).__name__, knn_accuracy(Z, y, Z_test, y_test),
                    trustworthiness(X_test, Z_test, 5)))
    pca = PCA(2, random_state=0).fit(X)
    out.append(("PCA", knn_accuracy(pca.transform(X), y, pca.transform(X_test), y_test),
                trustworthiness(X_test, pca.transform(X_test), 5)))
    both = TSNE(2, random_state=0, init="pca").fit_transform(np.concatenate([X, X_test]))
    Z, Z_test = both[: len(X)], both[len(X):]
    out.append(("t-SNE (train and test embedded together)", knn_accuracy(Z, y, Z_test, y_test),
                trustworthiness(X_test, Z_test, 5)))
    try:
        import umap

        reducer = umap.UMAP(n_components=2, random_state=0).fit(X)
        Z, Z_test = reducer.transform(X), reducer.transform(X_test)
        out.append(("UMAP", knn_accuracy(Z, y, Z_test, y_test),
                    trustworthiness(X_test, Z_test, 5)))
    except ImportError:
        log("umap-learn is not installed: no UMAP row")
    return out


def _f(value: Any, fmt: str = ".3f") -> str:
    return "n/a" if value is None or (isinstance(value, float) and not np.isfinite(value)) \
        else format(value, fmt)


def render(mode: str, s: dict, rows: list[dict], codes: list, seconds: float) -> str:
    quick = " --quick" if mode == "quick" else ""
    lines = ["<!-- bench:start -->", f"Command: `aekit bench{quick} --write "
             f"BENCHMARKS.md` ({s['data']}, {seconds / 60:.1f} min). Machine: "
             f"{machine_description()}; torch {torch.__version__};"
             f" aekit {__version__}; {time.strftime('%Y-%m-%d')}.", "",
             f"Every model with 8 latent dimensions, Bernoulli decoder, hidden "
             f"{s['hidden_layer_sizes']}, {s['max_iter']} epochs, seed 0; test split. "
             f"log p(x): importance-sampled with K={s['k']} for latent-variable models (exact "
             "enumeration for VQ-VAE; conditional log p(x|y) for CVAE); for deterministic codes "
             "(marked *) it is log p(x|z=f(x)), not a density. FD / precision / recall: features "
             "of an MLP classifier trained on the same training split (not the Inception FID).",
             "", "| model | recon MSE | log p(x) [nats] | 1-NN acc | FD | precision | recall "
             "| fit [s] |", "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        res = r["result"]
        m, d, g = res.get("manifold", {}), res.get("density", {}), res.get("generation", {})
        ll = d.get("log_likelihood")
        star = "" if model_is_density(r["name"]) else " *"
        given = CONDITIONED_MARK if r.get("conditioned_on_labels") else ""
        lines.append(f"| {res['model']}{given} | {_f(m.get('reconstruction_mse'), '.4f')} | "
                     f"{_f(ll, '.2f')}{star if ll is not None else ''} | "
                     f"{_f(res.get('representation', {}).get('knn1_accuracy'))} | "
                     f"{_f(g.get('frechet_distance'), '.1f')} | {_f(g.get('precision'), '.2f')} | "
                     f"{_f(g.get('recall'), '.2f')} | {r['seconds']:.1f} |")
    base = rows[0]["result"].get("baseline_pca", {})
    bm, bg = base.get("manifold", {}), base.get("generation", {})
    lines.append(f"| PCA (baseline) | {_f(bm.get('reconstruction_mse'), '.4f')} | n/a | "
                 f"{_f(base.get('representation', {}).get('knn1_accuracy'))} | "
                 f"{_f(bg.get('frechet_distance'), '.1f')} | {_f(bg.get('precision'), '.2f')} | "
                 f"{_f(bg.get('recall'), '.2f')} | |")
    if any(r.get("conditioned_on_labels") for r in rows):
        lines += ["", f"{CONDITIONED_MARK.strip()} Conditioned on the true test labels: its "
                  "codes, log p(x|y), reconstructions and samples are given y_test, so this "
                  "row is not comparable with the unconditional ones."]
    lines += ["", "2-D codes (same settings, 2 latent dimensions): 1-NN accuracy (fitted on "
              "training codes, scored on test codes) and trustworthiness (k=5) of the test codes.",
              "", "| method | 1-NN acc | trustworthiness |", "|---|---|---|"]
    lines += [f"| {name} | {acc:.3f} | {tw:.3f} |" for name, acc, tw in codes]
    lines.append("<!-- bench:end -->")
    return "\n".join(lines)


def model_is_density(name: str) -> bool:
    return get_model(name).capabilities.score_is_density


def run(mode: str = "quick", write: str | None = None, log: Any = print) -> str:
    """Run the benchmark; returns the markdown and, with ``write``, updates that file."""
    s = SETTINGS[mode]
    start = time.perf_counter()
    X, y = datasets.load(s["data"], split="train")
    X_test, y_test = datasets.load(s["data"], split="test")
    rows = model_table(s, X, y, X_test, y_test, log)
    codes = codes_2d_table(s, X, y, X_test, y_test, log)
    text = render(mode, s, rows, codes, time.perf_counter() - start)
    if write:
        update_section(write, "bench", "Every model as a density, a manifold and a generator",
                       text)
    return text


def machine_description(cpuinfo: str | Path = "/proc/cpuinfo") -> str:
    """The CPU a benchmark ran on, in words: model name, cores, and the matrix instruction
    sets that decide bf16 speed (AVX-512 BF16, AMX). Machines of one kind differ in these,
    and a bf16 speed-up measured on one does not carry to the other.

    >>> machine_description("/nonexistent")  # doctest: +ELLIPSIS
    '...threads'
    """
    name, flags = platform.processor() or "CPU", set()
    try:
        for line in Path(cpuinfo).read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name" and not flags:
                name = value.strip()
            elif key.strip() == "flags":
                flags = set(value.split())
                break
    except OSError:
        pass
    isa = []
    if flags:
        isa.append("AVX-512" if "avx512f" in flags else "no AVX-512")
        if "avx512_bf16" in flags:
            isa.append("AVX-512 BF16")
        isa.append("AMX" if {"amx_bf16", "amx_tile"} & flags else "no AMX")
    detail = f" ({', '.join(isa)})" if isa else ""
    return (f"{name}, {platform.machine()}, {os.cpu_count()} cores{detail}; "
            f"{torch.get_num_threads()} threads")


def update_section(path: str | Path, name: str, title: str, text: str) -> None:
    """Replace the ``<!-- name:start -->`` ... ``<!-- name:end -->`` block of a markdown
    file with ``text`` (which carries those markers), or append it under ``## title``."""
    path = Path(path)
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    old = path.read_text() if path.exists() else "# Benchmarks\n"
    if start in old:
        new = old[: old.index(start)] + text + old[old.index(end) + len(end):]
    else:
        new = old + f"\n## {title}\n\n" + text + "\n"
    path.write_text(new)
