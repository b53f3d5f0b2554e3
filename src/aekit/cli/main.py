"""The ``aekit`` command line: the Python API's parameters, one subcommand per task.

User errors (:class:`~aekit.exceptions.InputError`: a missing file, an unknown model or
parameter, data a model cannot take; and file-system errors) print one line,
``aekit: error: ...``, and exit with status 2: no traceback and no partial output file
(every output is written to a temporary file and renamed at the end). Any other error is
a bug in aekit and shows its traceback. Set ``AEKIT_DEBUG=1`` to see the traceback anyway.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.utils._param_validation import InvalidParameterError

import aekit
from aekit.cli.demo import run_demo
from aekit.cli.support import (
    check_output,
    check_output_folder,
    check_samples,
    count_rows,
    describe_choices,
    in_memory,
    load_data,
    make_model,
    model_params,
    parse_contamination,
    write_npy,
    write_output,
    write_scores_csv,
    write_table_csv,
)
from aekit.data import datasets, streaming, tables
from aekit.data.streaming import head
from aekit.detection import AnomalyDetector, default_model, load_detector
from aekit.evaluation.evaluate import FeatureExtractor, evaluate, format_table
from aekit.evaluation.model_measures import density_summary
from aekit.evaluation.quick_bench import run
from aekit.exceptions import InputError
from aekit.reporting.report import write_report
from aekit.runtime import atomic_write
from aekit.training import DivergenceError, distributed
from aekit.training.checkpoint import CHECKPOINT_NAME, claim
from aekit.training.distributed import finish, is_main_process

EXIT_USAGE = 2
#: rows of streamed training data that a report after ``fit`` reads
REPORT_ROWS = 10000


# ----------------------------------------------------------------- commands

def cmd_models(args: argparse.Namespace) -> None:

    for name in aekit.list_models():
        cls = aekit.get_model(name).__class__
        summary = (cls.__doc__ or "").strip().splitlines()[0]
        print(f"{name:14s} {cls.__name__:10s} {summary}")


def cmd_datasets(args: argparse.Namespace) -> None:

    for name in datasets.list_datasets():
        meta = datasets.info(name)
        where = "built in" if not meta.files else (str(datasets.locate(name) or "download"))
        print(f"{name:14s} {meta.description}  [{where}]")


def cmd_fit(args: argparse.Namespace) -> None:
    checkpoint = args.checkpoint_dir and Path(args.checkpoint_dir) / CHECKPOINT_NAME
    # every output is checked before the data are read, let alone trained on
    check_output(args.output, ".safetensors",
                 inputs=(args.data, args.config, checkpoint, args.warm_start))
    if args.report:
        check_output_folder(args.report, "--report")
    if args.checkpoint_dir:
        check_output_folder(args.checkpoint_dir, "--checkpoint-dir")
    if args.model is None and args.warm_start is None:
        raise InputError("give the model to train (see 'aekit models'), or --warm-start "
                         "MODEL_FILE to train a saved model on")
    params = model_params(args)
    params.setdefault("verbose", 0 if args.quiet else 1)
    if args.precision is not None:
        params["precision"] = args.precision
    if args.resume and args.checkpoint_dir is None:
        raise InputError("--resume needs --checkpoint-dir (the folder of the run to resume)")
    if args.overwrite and args.checkpoint_dir is None:
        raise InputError("--overwrite needs --checkpoint-dir (the folder whose checkpoint to "
                         "replace)")
    start_from = None
    if args.warm_start is not None:
        start_from = aekit.load(args.warm_start)
        if args.model is not None and type(aekit.get_model(args.model)) is not type(start_from):
            raise InputError(f"--warm-start {args.warm_start!r} holds a "
                             f"{type(start_from).__name__}, not a {args.model}: leave the model "
                             "name out, or train a new model without --warm-start")
        was_warm, params["warm_start"] = start_from.warm_start, True
    model = make_model(args.model or type(start_from).__name__, params, base=start_from)
    # the checkpoint folder is held from here (fit holds it again inside): another run's
    # checkpoint is refused before the data are read; torchrun's rank 0 holds the lock
    rank0 = int(os.environ.get("RANK", "0")) == 0
    with claim(args.checkpoint_dir, resume=args.resume, overwrite=args.overwrite, main=rank0):
        # "auto" reads a .csv with its text and empty cells kept, then takes one likelihood
        # per column only where the table needs it (.parquet and arrays stream as numbers)
        auto_csv = model.likelihood == "auto" and Path(args.data).suffix.lower() == ".csv"
        X, y, names = read_data(args, allow_text=model.likelihood == "mixed" or auto_csv)
        if auto_csv and isinstance(X, np.ndarray) and X.dtype == object:
            if tables.needs_columns(X):
                model.set_params(likelihood="mixed")
            else:
                X = X.astype(np.float32)
        declared = model.columns
        if names is not None and isinstance(declared, dict):
            # the rows reach fit as an array, whose columns are x0, x1, ...: the kinds
            # declared by header name go in by position, and the names come back below
            model.set_params(columns=positional_kinds(declared, names))
        start = time.perf_counter()
        model.fit(X, y, checkpoint_dir=args.checkpoint_dir,
                  checkpoint_every=args.checkpoint_every, resume=args.resume,
                  overwrite=args.overwrite, memory_budget=args.memory_budget)
        model.set_params(columns=declared)
        if start_from is not None:      # the file keeps the parameter the model had
            model.set_params(warm_start=was_warm)

    if names is not None:           # a table's header: kept in the model file, for outputs
        model.feature_names_in_ = np.asarray(names, dtype=object)
        if is_mixed(model):
            for column, name in zip(model.columns_, names):
                column["name"] = name
    if not is_main_process():       # under torchrun only rank 0 writes and reports
        return
    model.save(args.output)
    if args.report:
        X_test, y_test = _test_split(args.data)
        if hasattr(X, "n_rows"):        # streamed: the report reads the first rows
            X, y = head(X, REPORT_ROWS), None if y is None else y[:REPORT_ROWS]
        index = write_report(model, X, y, args.report, data_name=args.data, X_test=X_test,
                             y_test=y_test, training_seconds=time.perf_counter() - start)
        if not args.quiet:
            print(f"report: {index}")
    if not args.quiet:
        losses = model.history_.get("loss") or [float("nan")]
        print(f"trained {type(model).__name__} on {count_rows(X)} rows for {model.n_iter_} "
              f"epochs in {time.perf_counter() - start:.1f} s (final loss {losses[-1]:.4g}); "
              f"wrote {args.output}")
        print(f"chosen: {describe_choices(model)}")


def cmd_detect_fit(args: argparse.Namespace) -> None:
    check_output(args.output, ".safetensors", inputs=(args.data, args.config))
    params = model_params(args)
    params.setdefault("verbose", 0 if args.quiet else 1)
    model = (make_model(args.model, params) if args.model is not None
             else make_model("vae", params, base=default_model()))
    detector = AnomalyDetector(model, score_type=args.score,
                               contamination=parse_contamination(args.contamination))
    X, _, _ = read_data(args)
    in_memory(X, "detect fit")
    start = time.perf_counter()
    detector.fit(X)
    detector.save(args.output)
    if not args.quiet:
        print(f"fitted a detector ({type(model).__name__}, score {detector.score_type_!r}, "
              f"threshold {detector.threshold_:.4g} by {detector.threshold_rule_}) on "
              f"{count_rows(X)} rows in {time.perf_counter() - start:.1f} s; "
              f"{int(detector.labels_.sum())} flagged; wrote {args.output}")


def cmd_detect_score(args: argparse.Namespace) -> None:
    check_output(args.output, (".csv", ".npy"), inputs=(args.data, args.detector_file))
    detector = load_detector(args.detector_file)
    X, _, _ = read_data(args)
    in_memory(X, "detect score")
    scores = detector.anomaly_score(X)                                # (n,) higher = stranger
    labels = (detector.predict(X) == -1).astype(np.int64)             # (n,) 1 = anomaly
    if args.output.endswith(".npy"):
        write_npy(args.output, np.stack([scores, labels], axis=1))
    else:
        write_scores_csv(args.output, scores, labels, detector.feature_scores(X),
                         args.top_features)
    if not args.quiet:
        print(f"scored {len(scores)} rows: {int(labels.sum())} above the threshold "
              f"{detector.threshold_:.4g}; wrote {args.output}")


def cmd_transform(args: argparse.Namespace) -> None:

    check_output(args.output, (".npy", ".parquet", ".csv"), inputs=(args.data, args.model_file))
    model = aekit.load(args.model_file)
    X, _, _ = read_data(args, allow_text=is_mixed(model))
    write_output(args.output, model.transform, X, column_prefix="z")


def cmd_sample(args: argparse.Namespace) -> None:

    check_output(args.output, (".npy", ".csv", ".parquet"), inputs=(args.model_file,))
    if args.n_samples < 1:
        raise InputError(f"-n must be a positive number of samples; got {args.n_samples}")
    model = aekit.load(args.model_file)
    check_samples(model, args.n_samples, args.seed)
    samples = model.sample(args.n_samples, random_state=args.seed)
    if is_mixed(model):
        if not args.output.endswith(".csv"):
            raise InputError("samples of a mixed table (text and numbers) are written to .csv")
        write_table_csv(args.output, samples, [c["name"] for c in model.columns_])
    elif args.output.endswith(".npy"):
        write_npy(args.output, samples)       # in the model's row shape (images stay images)
    else:
        names = vars(model).get("feature_names_in_")
        streaming.write_rows(args.output, iter([samples.reshape(len(samples), -1)]),
                             len(samples), column_prefix="x",
                             columns=None if names is None else list(names))


def cmd_score(args: argparse.Namespace) -> None:

    if args.n_importance_samples is not None and args.n_importance_samples < 1:
        raise InputError(f"-k must be a positive number of importance samples; got "
                         f"{args.n_importance_samples}")
    model = aekit.load(args.model_file)
    if args.n_importance_samples is not None and "n_importance_samples" in model.get_params():
        model.set_params(n_importance_samples=args.n_importance_samples)
    if args.output:
        check_output(args.output, (".npy", ".parquet", ".csv"),
                     inputs=(args.data, args.model_file))
    X, _, _ = read_data(args, allow_text=is_mixed(model))
    ll = distributed.map_sharded(model.score_samples, X)
    if args.output and distributed.is_main_process():
        streaming.write_rows(args.output, iter([ll[:, None]]), len(ll), column_prefix="log_p")
    elbo = distributed.map_sharded(model.elbo, X)
    result = {
        "model": type(model).__name__,
        "data": args.data,
        "split": args.split,
        "n_samples": int(len(ll)),
        # bits_per_dim: None (the key kept) with the reason where -ll / (D ln 2) is no
        # code length: a deterministic code, a continuous likelihood, Bernoulli on grey levels
        **density_summary(model, ll, elbo, X),
        "is_density": bool(model.capabilities.score_is_density),
    }
    if not math.isfinite(result["log_likelihood_stderr"]):     # one row: no spread to show
        result["log_likelihood_stderr"] = None
    bits, why_not = result["bits_per_dim"], result.get("bits_per_dim_note")
    if not distributed.is_main_process():
        return
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        head = f"{result['model']} on {args.data} ({args.split}, {len(ll)} rows): "
        stderr = result["log_likelihood_stderr"]
        value = (f"{result['log_likelihood']:.3f}"
                 + (f" +- {stderr:.3f}" if stderr is not None else "") + " nats")
        if model.capabilities.score_is_density:
            bits = (f"{bits:.4f} bits/dim" if bits is not None
                    else f"no bits/dim ({why_not})")
            print(f"{head}log p(x) = {value}, {bits}, ELBO {result['elbo']:.3f}")
        else:
            print(f"{head}log p(x | z = f(x)) = {value} (decoder log-likelihood at the code; "
                  "not a density of x)")


def read_data(args: argparse.Namespace, allow_text: bool = False
              ) -> tuple[Any, np.ndarray | None, list[str] | None]:
    """The rows, labels and feature names that ``--data`` (with ``--columns`` and
    ``--label-column``) names; ``allow_text`` keeps a CSV's text columns (mixed tables)."""
    return load_data(args.data, args.split, args.memory_budget,
                     columns=getattr(args, "columns", None),
                     label_column=getattr(args, "label_column", None), allow_text=allow_text)


def positional_kinds(declared: dict[str, str], names: list[str]) -> dict[str, str]:
    """``columns=`` kinds keyed by a table's header names, keyed instead by the positional
    names (x0, x1, ...) of the array the table's rows are read into."""
    unknown = sorted(set(declared) - set(names))
    if unknown:
        raise InputError(f"columns names {unknown} that the table does not have; its columns "
                         f"are {', '.join(names[:30])}")
    return {f"x{names.index(name)}": kind for name, kind in declared.items()}


def is_mixed(model: Any) -> bool:
    """Whether a fitted model reads mixed tables (text and missing cells kept)."""
    return model.likelihood_ == "mixed"


def cmd_impute(args: argparse.Namespace) -> None:

    check_output(args.output, ".csv", inputs=(args.data, args.model_file))
    model = aekit.load(args.model_file)
    X, _, names = read_data(args, allow_text=is_mixed(model))
    in_memory(X, "impute")
    filled = model.impute(X)
    write_table_csv(args.output, filled, names or [c["name"] for c in model.columns_])
    if not args.quiet:
        holes = sum(1 for v in np.asarray(X, dtype=object).ravel()
                    if v is None or (isinstance(v, float) and v != v))
        print(f"filled {holes} missing cells of {count_rows(X)} rows; wrote {args.output}")


def _test_split(data: str) -> tuple[np.ndarray | None, np.ndarray | None]:
    """The test split of a registered dataset; (None, None) for files."""

    if data in datasets.list_datasets():
        return datasets.load(data, split="test")
    return None, None


def cmd_report(args: argparse.Namespace) -> None:

    check_output_folder(args.output_dir, "-o")
    model = aekit.load(args.model_file)
    X, y, _ = load_data(args.data, "train" if args.split == "test" else args.split,
                        args.memory_budget)
    in_memory(X, "report")
    X_test, y_test = _test_split(args.data) if args.split == "test" else (None, None)
    index = write_report(model, X, y, args.output_dir, data_name=args.data, X_test=X_test,
                         y_test=y_test)
    print(f"report: {index}")


def cmd_evaluate(args: argparse.Namespace) -> None:

    if args.json:
        check_output(args.json, ".json", inputs=(args.model_file, args.data))
    if args.n_importance_samples < 1:
        raise InputError(f"-k must be a positive number of importance samples; got "
                         f"{args.n_importance_samples}")
    model = aekit.load(args.model_file)
    X_test, y_test, _ = load_data(args.data, args.split, args.memory_budget)
    in_memory(X_test, "evaluate")
    X_train = y_train = None
    if args.split != "train" and args.data in aekit.datasets.list_datasets():
        X_train, y_train = aekit.datasets.load(args.data, split="train")
    extractor = None
    if args.generation:
        if X_train is None or y_train is None:
            raise InputError("--generation needs a registered, labelled dataset to train the "
                            "feature classifier on")
        extractor = FeatureExtractor().fit(X_train, y_train)
    results = evaluate(model, X_test, y_test, X_train=X_train, y_train=y_train,
                       k=args.n_importance_samples, feature_extractor=extractor)
    results["data"], results["split"] = args.data, args.split
    print(format_table(results))
    if args.json:
        text = json.dumps(results, indent=2)
        atomic_write(args.json, lambda tmp: Path(tmp).write_text(text))


def cmd_bench(args: argparse.Namespace) -> None:

    print(run("quick" if args.quick else "full", write=args.write))


def cmd_demo(args: argparse.Namespace) -> None:

    check_output_folder(args.output_dir, "-o")
    run_demo(args.output_dir, max_iter=args.max_iter, quiet=args.quiet)


# ------------------------------------------------------------------- parser

def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="aekit", description="Autoencoders for unsupervised learning, manifold learning, "
        "generation and density estimation.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    sub.add_parser("models", help="list the registered models").set_defaults(func=cmd_models)
    sub.add_parser("datasets", help="list the registered datasets and where they are"
                   ).set_defaults(func=cmd_datasets)

    def data_args(p: argparse.ArgumentParser) -> None:
        p.add_argument("--data", required=True, help="dataset name, file (.npy .npz .csv IDX "
                       ".parquet) or folder (of .parquet files or of images)")
        p.add_argument("--split", default="train", help="train, test or all (datasets only)")
        p.add_argument("--columns", metavar="A,B,...",
                       help="feature columns of a .csv (header names or 0-based indices) or "
                       ".npy/.npz table (indices); default: all but the label column")
        p.add_argument("--label-column", metavar="NAME",
                       help="the table's label column, read as labels and never trained on "
                       "(default for .csv: a column named label, y, target or class)")
        budget_arg(p)

    def budget_arg(p: argparse.ArgumentParser) -> None:
        p.add_argument("--memory-budget", metavar="BYTES", default=None,
                       help="stream .npy/.parquet/image data larger than this (e.g. 2G); "
                       "default: a quarter of this machine's memory")

    def model_args(p: argparse.ArgumentParser, writes: str, model_help: str = "") -> None:
        """The model to train, its data, parameters and output file; with ``model_help``
        the model name may be left out (what happens then is that help)."""
        if model_help:
            p.add_argument("model", nargs="?", help=f"model name, see 'aekit models' "
                           f"({model_help})")
        else:
            p.add_argument("model", help="model name, see 'aekit models'")
        data_args(p)
        p.add_argument("-o", "--output", required=True,
                       help=f"{writes} file to write (.safetensors)")
        p.add_argument("--set", action="append", metavar="KEY=VALUE", help="a model parameter")
        p.add_argument("--config", help="TOML file of model parameters")

    p = sub.add_parser("fit", help="train a model and save it")
    model_args(p, "model", model_help="with --warm-start, the file's model")
    p.add_argument("--warm-start", metavar="MODEL_FILE",
                   help="train on from the model in this file (its weights and parameters; "
                   "--set changes parameters, e.g. max_iter and learning_rate)")
    p.add_argument("--precision", choices=["32", "bf16-mixed", "16-mixed"],
                   help="same as --set precision=...")
    p.add_argument("--checkpoint-dir", help="save the training state here (atomically)")
    p.add_argument("--checkpoint-every", type=int, default=1, metavar="EPOCHS")
    p.add_argument("--resume", action="store_true",
                   help="continue the run saved in --checkpoint-dir")
    p.add_argument("--overwrite", action="store_true",
                   help="replace the checkpoint of an earlier run in --checkpoint-dir "
                   "(without it a fresh run there is refused)")
    p.add_argument("--report", metavar="DIR", help="write an HTML report here after training")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar or summary")
    p.set_defaults(func=cmd_fit)

    detect = sub.add_parser("detect", help="anomaly detection: fit a detector, score rows")
    dsub = detect.add_subparsers(dest="detect_command", required=True, metavar="COMMAND")
    p = dsub.add_parser("fit", help="train a model as an anomaly detector and save it")
    model_args(p, "detector", "default: the detector's default model, a VAE with a 32-unit "
               "code, aekit.detection.default_model()")
    p.add_argument("--score", default="auto", choices=["auto", "nll", "elbo", "reconstruction"],
                   help="what a row's anomaly score is (auto: -ELBO for the VAE family, "
                   "-log p(x) for other densities, else the reconstruction score)")
    p.add_argument("--contamination", default="auto",
                   help="fraction of training rows to flag, in (0, 0.5], or 'auto' (median + "
                   "3 MAD of the training scores)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar or summary")
    p.set_defaults(func=cmd_detect_fit)
    p = dsub.add_parser("score", help="anomaly scores and labels of rows")
    p.add_argument("detector_file")
    data_args(p)
    p.add_argument("-o", "--output", required=True,
                   help=".csv (score, label and the top features of each row) or .npy "
                   "(score, label)")
    p.add_argument("--top-features", type=int, default=3, metavar="N",
                   help="how many of each row's most unusual features the .csv names")
    p.add_argument("-q", "--quiet", action="store_true", help="no summary")
    p.set_defaults(func=cmd_detect_score)

    p = sub.add_parser("evaluate", help="density, manifold and generation metrics, with PCA")
    p.add_argument("model_file")
    p.add_argument("--data", required=True, help="dataset name or file")
    p.add_argument("--split", default="test")
    p.add_argument("-k", "--n-importance-samples", type=int, default=1000)
    p.add_argument("--generation", action="store_true",
                   help="also score samples in the features of a classifier trained here")
    p.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    budget_arg(p)
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("report", help="write an HTML report of a model")
    p.add_argument("model_file")
    p.add_argument("--data", required=True, help="dataset name or file")
    p.add_argument("--split", default="test",
                   help="test: metrics on the dataset's test split (files: on the file)")
    p.add_argument("-o", "--output-dir", required=True)
    budget_arg(p)
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("transform", help="write the codes of data to .npy, .csv or .parquet")
    p.add_argument("model_file")
    data_args(p)
    p.add_argument("-o", "--output", required=True,
                   help=".npy, .csv or .parquet file to write (columns z0, z1, ...)")
    p.set_defaults(func=cmd_transform)

    p = sub.add_parser("impute", help="fill the missing cells of a table (likelihood=mixed)")
    p.add_argument("model_file")
    data_args(p)
    p.add_argument("-o", "--output", required=True, help=".csv file to write")
    p.add_argument("-q", "--quiet", action="store_true", help="no summary")
    p.set_defaults(func=cmd_impute)

    p = sub.add_parser("sample", help="write samples from the model to .npy, .csv or .parquet")
    p.add_argument("model_file")
    p.add_argument("-n", "--n-samples", type=int, default=16)
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("-o", "--output", required=True,
                   help=".npy (rows in the data's shape), .csv or .parquet (flat rows, the "
                   "training table's column names) file to write")
    p.set_defaults(func=cmd_sample)

    p = sub.add_parser("score", help="log-likelihood of data in nats and bits/dim")
    p.add_argument("model_file")
    data_args(p)
    p.add_argument("-k", "--n-importance-samples", type=int, default=None)
    p.add_argument("--json", action="store_true", help="print JSON")
    p.add_argument("-o", "--output",
                   help="also write log p(x) of every row (.npy, .csv or .parquet)")
    p.set_defaults(func=cmd_score)

    p = sub.add_parser("bench", help="measure every model and write the tables")
    p.add_argument("--quick", action="store_true", help="digits, a few minutes")
    p.add_argument("--write", metavar="FILE", help="update this markdown file (BENCHMARKS.md)")
    p.set_defaults(func=cmd_bench)

    p = sub.add_parser("demo", help="train a VAE and an AE on digits and compare with PCA")
    p.add_argument("-o", "--output-dir", default="aekit-demo")
    p.add_argument("--max-iter", type=int, default=150)
    p.add_argument("-q", "--quiet", action="store_true")
    p.set_defaults(func=cmd_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    show = warnings.showwarning
    warnings.showwarning = _one_line_warning
    try:
        with warnings.catch_warnings():
            # the command line reads tables as arrays; a model that keeps a table's column
            # names (for its outputs) would warn on every call that the array has none
            warnings.filterwarnings("ignore", message="X does not have valid feature names")
            args.func(args)

        if finish():                    # under torchrun: every rank waited for rank 0's files
            # gloo's threads can abort the interpreter's teardown ("terminate called
            # without an active exception"); the work is done and written, so leave now
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(0)
    except (InputError, InvalidParameterError, OSError, DivergenceError) as exc:
        # the user's mistakes and the machine's refusals (missing files, permissions, a
        # full disk); anything else is a bug and keeps its traceback
        if os.environ.get("AEKIT_DEBUG"):
            raise
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        print(f"aekit: error: {message}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("aekit: interrupted", file=sys.stderr)
        return 130
    finally:
        warnings.showwarning = show
    return 0


def _one_line_warning(message, category, filename, lineno, file=None, line=None) -> None:
    print(f"aekit: warning: {message}", file=sys.stderr)
