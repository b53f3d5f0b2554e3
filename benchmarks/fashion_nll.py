"""Dynamically binarized Fashion-MNIST: test NLL with K importance samples for VAE and IWAE.

Protocol (Burda et al. 2015): training images are re-binarized every epoch
(``binarize="dynamic"``), the test set is binarized once with a fixed seed
(``aekit.datasets.binarize(X_test, random_state=0)``), and the NLL is the
importance-sampled estimate with K samples over all 10k test images, in nats.
Network: MLP 784-512-256-k, one stochastic layer, Bernoulli decoder, Adam 1e-3, batch 128.

Levers (one configuration per run, written to its own ``--section``): ``--params`` adds
model parameters as JSON (for example a KL warm-up with ``--models beta_vae --params
'{"beta": 1, "kl_schedule": "linear", "warmup_epochs": 100}'``, or early stopping on a
validation bound with ``'{"early_stopping": true, "n_iter_no_change": 50}'``);
``--hidden`` sets the MLP widths; ``--images`` gives the models 28x28 images instead of
784-value rows (for ``"architecture": "conv"``, whose networks need the image shape, or for
the published two-level model's conv networks: ``--models hvae --params '{"encoder":
"convhvae_top_encoder", "decoder": "convhvae_decoder", ...}'``, from
``benchmarks/hvae_conv_cost.py``). With ``--checkpoint-dir`` every model checkpoints each epoch
and finished results go to ``results.jsonl`` there; ``--resume`` continues a stopped run.
``--time-budget SECONDS`` (with ``--checkpoint-dir``) trains in chunks of ``--chunk`` epochs,
each resumed from the last one's checkpoint (the same run as one fit), and starts no chunk
that would end past the budget: the model is then evaluated at the epochs it reached, which
the table reports. Run again with ``--resume``, it goes on from there for another budget.
``--init-from DIR`` starts every model from the model checkpointed in DIR (or saved in a file
by ``model.save``). A model of the same class trains on from all of its weights
(``warm_start=True``, with a fresh optimizer and schedule: a VAE or a two-level VAE trained on
at a lower learning rate); a model of another class takes its encoder and decoder as its own
networks, and its other weights (a prior, pseudo-inputs) start as usual (an IWAE trained on
from a converged VAE). With ``--epochs 0`` the checkpointed model itself is
evaluated (a checkpoint from another device type included). With ``early_stopping`` in
``--params`` the model holds out the same validation rows as the checkpointed run did, when
both have the same ``random_state`` (the split is drawn on the host, so a GPU run trained on
from a CPU checkpoint holds out the CPU run's rows).

Usage: python benchmarks/fashion_nll.py [--epochs 30] [--k 5000] [--models vae,iwae]
       [--params JSON] [--hidden 512,256] [--images] [--checkpoint-dir DIR [--resume]]
       [--time-budget SECONDS [--chunk 10]] [--init-from CHECKPOINT_DIR | MODEL_FILE]
       [--section NAME] [--write BENCHMARKS.md]
"""

from __future__ import annotations

import argparse
import json
import math
import re
import shlex
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import safe_open

import aekit
from aekit.evaluation.evaluate import importance_sampled_log_likelihood
from aekit.evaluation.quick_bench import machine_description, update_section
from aekit.training.checkpoint import CHECKPOINT_NAME, checkpoint_weights

sys.path.insert(0, str(Path(__file__).resolve().parent))
import hvae_conv_cost  # noqa: E402,F401  (registers the published-size conv networks by name)
from results_log import append, open_log  # noqa: E402


def _fit_in_chunks(model, X: np.ndarray, ckpt: Path, resume: bool, epochs: int, chunk: int,
                   budget: float) -> bool:
    """Fit ``model`` up to ``epochs`` epochs in chunks of ``chunk``, each resumed from the
    previous chunk's checkpoint, starting no chunk that the last one's pace says would end
    past ``budget`` seconds. Early stopping ends it too. True when the budget stopped it."""
    start = time.perf_counter()
    reached = 0
    while reached < epochs:
        chunk_start = time.perf_counter()
        model.set_params(max_iter=min(epochs, reached + chunk))
        model.fit(X, checkpoint_dir=str(ckpt), resume=resume or reached > 0)
        if model.n_iter_ < model.max_iter:                 # stopped early (or diverged)
            return False
        pace = (time.perf_counter() - chunk_start) / max(model.n_iter_ - reached, 1)
        reached = model.n_iter_
        if (reached < epochs
                and time.perf_counter() - start + pace * min(chunk, epochs - reached) > budget):
            return True
    return False


def starting_model(path: Path, X: np.ndarray, overrides: dict) -> tuple[Any, str]:
    """The model of ``--init-from``: a checkpoint folder (:func:`checkpointed_model`) or a
    model file written by ``model.save`` (a few MB: the weights without the optimizer's
    state, which is how a trained model travels to another machine), and a line naming it."""
    if not path.is_file():
        return checkpointed_model(path, X, overrides)
    model = aekit.load(str(path))
    line = f"{type(model).__name__} after {model.n_iter_} epochs"
    val = model.history_.get("val_loss")
    if val:         # an early-stopping fit, and so its file, holds its best epoch's weights
        line += f" (the weights of its best validation epoch, {val.index(min(val)) + 1})"
    return model, line


def checkpointed_model(ckpt: Path, X: np.ndarray, overrides: dict) -> tuple[Any, str]:
    """The model checkpointed in ``ckpt`` as its fit returns it (the weights of the best
    validation epoch with early stopping, else of the last epoch), and a line naming it.

    It is built by a one-epoch fit on a few rows of ``X`` and its weights are then replaced,
    all of them (strictly), by the checkpoint's: so a checkpoint written on another device
    type, which cannot be resumed here, still gives its model. A checkpoint of a model fitted
    with given networks records no architecture for them: ``overrides`` (for example
    ``{"architecture": "gated"}``) says how to build them again."""
    with safe_open(str(ckpt / CHECKPOINT_NAME), framework="pt") as f:
        meta = json.loads(f.metadata()["aekit"])
        kept_best = any(k.startswith("best.") for k in f.keys())
    # a given network sits inside a wrapper ("encoder.net.0..."): the built-in one does not
    weights = {re.sub(r"^(encoder|decoder)\.net\.", r"\1.", k): torch.from_numpy(v)
               for k, v in checkpoint_weights(ckpt, best=True).items()}
    cls = meta["run"]["class"]
    name = next(n for n in aekit.list_models() if type(aekit.get_model(n)).__name__ == cls)
    model = aekit.get_model(name, **{**meta["run"]["params"], **overrides, "max_iter": 1,
                                     "verbose": 0, "device": "cpu"})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.fit(X[:256])
    model.module_.load_state_dict(weights)
    model.history_ = meta["history"]
    model.n_iter_ = meta["epoch"]
    line = f"{cls} after {meta['epoch']} epochs"
    if kept_best:
        val = meta["history"]["val_loss"]
        line += f" (the weights of its best validation epoch, {val.index(min(val)) + 1})"
    return model, line


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--k", type=int, default=5000)
    ap.add_argument("--n-components", type=int, default=32)
    ap.add_argument("--n-test", type=int, default=10000,
                    help="score the first N test images (the protocol: all 10000)")
    ap.add_argument("--models", default="vae,iwae")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: all)")
    ap.add_argument("--section", default="fashion_nll",
                    help="BENCHMARKS.md section to write (one per configuration)")
    ap.add_argument("--params", default="{}", help="extra model parameters, JSON")
    ap.add_argument("--hidden", default="512,256", help="MLP widths, comma-separated")
    ap.add_argument("--images", action="store_true",
                    help="28x28 images instead of 784-value rows (for conv networks)")
    ap.add_argument("--checkpoint-dir", type=Path)
    ap.add_argument("--resume", action="store_true")
    ap.add_argument("--verbose", type=int, default=0, help="2: print every epoch")
    ap.add_argument("--time-budget", type=float,
                    help="seconds of training per model (needs --checkpoint-dir)")
    ap.add_argument("--chunk", type=int, default=10, help="epochs per chunk with --time-budget")
    ap.add_argument("--init-from", type=Path,
                    help="checkpoint folder (or model file) whose encoder and decoder every "
                         "model starts from; "
                         "with --epochs 0, the checkpointed model is evaluated as it is")
    ap.add_argument("--init-params", default="{}",
                    help="JSON: parameters that rebuild the --init-from model's networks when "
                         "it was itself fitted with given networks")
    ap.add_argument("--write")
    args = ap.parse_args()
    params = json.loads(args.params)
    if (args.init_from is not None and not args.init_from.is_file()
            and not (args.init_from / CHECKPOINT_NAME).is_file()):
        ap.error(f"--init-from {args.init_from}: neither a model file nor a folder with "
                 f"{CHECKPOINT_NAME}")
    if args.time_budget and args.checkpoint_dir is None:
        ap.error("--time-budget trains in chunks resumed from checkpoints: give --checkpoint-dir")
    if args.time_budget and params.get("learning_rate_schedule") == "cosine":
        ap.error("--time-budget trains in chunks of growing max_iter, which would move a cosine "
                 "schedule's end: train with --checkpoint-dir (and --resume) instead")
    hidden = tuple(int(h) for h in args.hidden.split(","))
    log, done = open_log(args.checkpoint_dir, args.resume)
    if args.threads:
        torch.set_num_threads(args.threads)
    X, _ = aekit.datasets.load("fashion-mnist", split="train")
    X_test, _ = aekit.datasets.load("fashion-mnist", split="test")
    X_test = aekit.datasets.binarize(X_test, random_state=0)[:args.n_test]
    if args.images:                         # the same values, in the shape conv nets need
        side = math.isqrt(X.shape[1])       # 28 (a square image)
        X, X_test = X.reshape(-1, side, side), X_test.reshape(-1, side, side)
    networks, init_line, source = {}, "", None
    if args.init_from is not None:
        source, init_line = starting_model(args.init_from, X, json.loads(args.init_params))
        networks = dict(encoder=source.module_["encoder"], decoder=source.module_["decoder"])
    elif args.epochs == 0:
        ap.error("--epochs 0 evaluates the model of --init-from: give it")
    # with --time-budget, a model that the budget stopped short of --epochs goes on from its
    # checkpoint (its latest row is replaced); every other finished model is kept as it is
    latest = {r["name"]: r for r in done}
    go_on = {name for name, r in latest.items()
             if args.time_budget and r.get("budget_stopped") and r["epochs"] < args.epochs}
    rows = [(r["model"], r["nll"], r["stderr"], r["fit_s"], r["eval_s"], r["epochs"])
            for name, r in latest.items() if name not in go_on]
    for name in args.models.split(","):
        if name in latest and name not in go_on:
            continue
        settings = dict(n_components=args.n_components, hidden_layer_sizes=hidden,
                        likelihood="bernoulli", binarize="dynamic", max_iter=args.epochs,
                        batch_size=128, n_iter_no_change=args.epochs + 1, random_state=0,
                        verbose=args.verbose)
        model = aekit.get_model(name, **{**settings, **params})
        if source is not None and args.epochs > 0 and type(source) is type(model):
            # the same model trains on from every weight it has, with this run's parameters
            # (all of them: none of the starting run's, such as its schedule, carries over)
            model = source.set_params(**{**model.get_params(), "warm_start": True})
        elif networks:
            model = aekit.get_model(name, **{**settings, **params, **networks})
        ckpt = None if args.checkpoint_dir is None else args.checkpoint_dir / name
        start = time.perf_counter()
        resume = args.resume and ckpt is not None and ckpt.exists()
        budget_stopped = False
        if args.epochs == 0:                # evaluate the checkpointed model itself
            model = source                  # (built on the CPU: scored on a GPU where there is one)
            model.module_.to("cuda" if torch.cuda.is_available() else "cpu")
        elif args.time_budget:
            budget_stopped = _fit_in_chunks(model, X, ckpt, resume, args.epochs, args.chunk,
                                            args.time_budget)
        else:
            model.fit(X, checkpoint_dir=None if ckpt is None else str(ckpt), resume=resume)
        # a resumed fit's wall time misses the earlier part; history_ keeps every epoch's
        fit_s = max(time.perf_counter() - start, float(sum(model.history_.get("time", []))))
        start = time.perf_counter()
        ll, _ = importance_sampled_log_likelihood(model, X_test, args.k, random_state=0)
        eval_s = time.perf_counter() - start
        mean, stderr = float(-np.mean(ll)), float(np.std(ll, ddof=1) / np.sqrt(len(ll)))
        rows.append((type(model).__name__, mean, stderr, fit_s, eval_s, model.n_iter_))
        val = model.history_.get("val_loss")     # early stopping keeps its best epoch's weights
        best = {"best_epoch": val.index(min(val)) + 1, "val_loss": min(val)} if val else {}
        append(log, {"name": name, "model": type(model).__name__, "nll": mean,
                     "stderr": stderr, "fit_s": fit_s, "eval_s": eval_s,
                     "epochs": model.n_iter_, **best, "params": params,
                     **({"init_from": init_line} if init_line else {}),
                     "budget_stopped": budget_stopped})
        print(f"{name}: NLL {mean:.2f} +- {stderr:.2f} nats; {model.n_iter_} epochs, "
              f"fit {fit_s / 60:.1f} min, eval {eval_s / 60:.1f} min", flush=True)
    lines = [
        f"<!-- {args.section}:start -->",
        f"Command: `python benchmarks/fashion_nll.py --epochs {args.epochs} --k {args.k} "
        f"--n-components {args.n_components} --models {args.models}"
        + (f" --threads {args.threads}" if args.threads else "")
        + (f" --n-test {args.n_test}" if args.n_test != 10000 else "")
        + (f" --hidden {args.hidden}" if args.hidden != "512,256" else "")
        + (" --images" if args.images else "")
        + (f" --params {shlex.quote(args.params)}" if params else "")
        + (f" --section {args.section}" if args.section != "fashion_nll" else "")
        + (f" --checkpoint-dir DIR --time-budget {args.time_budget:g} --chunk {args.chunk}"
           if args.time_budget else "")
        + (" --init-from CHECKPOINT_DIR" if init_line else "")
        + (f" --init-params {shlex.quote(args.init_params)}" if args.init_params != "{}" else "")
        + " --write BENCHMARKS.md`. Machine: "
        f"{machine_description()}; torch {torch.__version__}; "
        f"aekit {aekit.__version__}; {time.strftime('%Y-%m-%d')}.", "",
        "Dynamically binarized Fashion-MNIST, "
        + (f"28x28 images, hidden widths {args.hidden}" if args.images
           else f"MLP 784-{args.hidden.replace(',', '-')}-{args.n_components}")
        + f", Bernoulli decoder, at most {args.epochs} epochs"
        + (f", parameters {json.dumps(params)}" if params else "")
        + ((f", the checkpointed {init_line}" if args.epochs == 0
            else f", encoder and decoder starting from a {init_line}") if init_line else "")
        + (f"; NLL over the first {len(X_test)} test images" if len(X_test) < 10000
           else "; NLL over all 10k test images")
        + f" (binarized once, seed 0) with K={args.k} importance "
        "samples; ± is the standard error over test images.", "",
        "| model | test NLL [nats] | epochs | training | evaluation |", "|---|---|---|---|---|"]
    lines += [f"| {n} | {m:.2f} ± {s:.2f} | {ep} | {f / 60:.1f} min | {e / 60:.1f} min |"
              for n, m, s, f, e, ep in rows]
    lines += ["| VAE, published (Exemplar VAE paper, Norouzi et al. 2020, Table 1) | 228.70 | "
              "| | |", f"<!-- {args.section}:end -->"]
    text = "\n".join(lines)
    print(text)
    if args.write:
        title = "Dynamically binarized Fashion-MNIST likelihoods"
        if args.section != "fashion_nll":
            title += f", {args.epochs} epochs"
        update_section(args.write, args.section, title, text)


if __name__ == "__main__":
    main()
