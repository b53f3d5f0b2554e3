"""What the command line shares between its commands: reading parameters and data, and
writing outputs atomically. Every problem a user can fix is an
:class:`~aekit.exceptions.InputError`, which ``aekit`` prints as one line."""

from __future__ import annotations

import argparse
import ast
import csv
import math
import os
import secrets
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import torch

import aekit
from aekit.data import datasets, sources, streaming
from aekit.data.sources.source import check_file
from aekit.exceptions import InputError
from aekit.runtime import atomic_write
from aekit.training import distributed

#: the longest ``--set`` value read as a literal (a parameter never needs more; a deeply
#: nested one would exhaust the parser's recursion)
MAX_VALUE_CHARS = 10_000


def parse_value(text: str) -> Any:
    """``--set`` values: Python literals (numbers, tuples, True, None) else plain strings."""
    if len(text) > MAX_VALUE_CHARS:
        raise InputError(f"--set value of {len(text)} characters ({text[:30]!r}...); values "
                         f"have at most {MAX_VALUE_CHARS}")
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError, TypeError):
        return text
    except (RecursionError, MemoryError):
        raise InputError(f"--set value {text[:30]!r}... is nested too deeply to read") from None


def read_config(path: str | None) -> dict[str, Any]:
    if path is None:
        return {}
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib  # type: ignore[no-redef]
    try:
        check_file(path, "config file")
    except FileNotFoundError:
        raise InputError(f"config file {path!r} does not exist") from None
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except UnicodeDecodeError as exc:
        raise InputError(f"config file {path!r} is not UTF-8 text ({exc.reason} at byte "
                         f"{exc.start}); save it as UTF-8 TOML") from None
    except tomllib.TOMLDecodeError as exc:
        raise InputError(f"config file {path!r} is not valid TOML: {exc}") from None
    except (RecursionError, MemoryError):
        raise InputError(f"config file {path!r} is nested too deeply to read") from None
    return {k: tuple(v) if isinstance(v, list) else v for k, v in data.items()}


def model_params(args: argparse.Namespace) -> dict[str, Any]:
    params = read_config(args.config)
    for item in args.set or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise InputError(f"--set expects key=value; got {item!r}")
        params[key.strip()] = parse_value(value.strip())
    return params


def make_model(name: str, params: dict[str, Any], base: Any = None) -> Any:
    """The model ``name`` (or ``base``, a model named ``name``: a fitted one trains on with
    ``warm_start``) with ``params`` set; unknown parameters are refused, naming the valid
    ones."""
    model = aekit.get_model(name) if base is None else base
    valid = model.get_params()
    unknown = sorted(set(params) - set(valid))
    if unknown:
        raise InputError(f"unknown parameter(s) for {name}: {', '.join(unknown)}; "
                        f"valid: {', '.join(sorted(valid))}")
    return model.set_params(**params)


def load_data(source: str, split: str, memory_budget: str | None = None,
              columns: str | None = None, label_column: str | None = None,
              allow_text: bool = False) -> tuple[Any, np.ndarray | None, list[str] | None]:
    """Rows, labels and feature names (None where the data have none) of a dataset or
    file. A ``.npy`` / ``.parquet`` file or a folder larger than the memory budget comes
    back as a (flattened) source to stream. ``columns`` (comma-separated names or 0-based
    indices) picks the feature columns of a .csv, .npy or .npz table and ``label_column``
    its label column (read as labels, never trained on). ``allow_text``: a .csv's or a
    .parquet file's text columns are kept (for ``likelihood="mixed"``)."""

    suffix = Path(source).suffix.lower()
    if suffix == ".csv" and source not in datasets.list_datasets():
        table = datasets.read_csv_table(source, _split_columns(columns), label_column,
                                        sources.memory_budget(memory_budget), allow_text)
        return table.X, table.y, table.names
    if suffix == ".parquet" and allow_text and Path(source).is_file():
        # a mixed table: text and holes, read whole (numeric .parquet streams below)
        table = datasets.read_parquet_table(source, _split_columns(columns), label_column,
                                            sources.memory_budget(memory_budget))
        return table.X, table.y, table.names
    if columns is not None or label_column is not None:
        if suffix not in (".npy", ".npz"):
            raise InputError("--columns and --label-column pick columns of a .csv, .npy or "
                             f".npz table; {source!r} is not one")
        X, y = datasets.load(source, split=split, memory_budget=memory_budget)
        return _pick_columns(source, X, y, _split_columns(columns), label_column)
    if source in datasets.list_datasets() or not sources.is_streamable(source):
        return (*datasets.load(source, split=split, memory_budget=memory_budget), None)
    try:
        src = sources.Flattened(sources.open_source(source))
        budget = sources.memory_budget(memory_budget)
    except ImportError as exc:
        raise InputError(str(exc)) from None
    return streaming.resolve(src, budget), src.labels(), None


def _split_columns(columns: str | None) -> list[str] | None:
    return None if columns is None else [c.strip() for c in columns.split(",") if c.strip()]


def _pick_columns(source: str, X: np.ndarray, y: np.ndarray | None, columns: list[str] | None,
                  label_column: str | None) -> tuple[np.ndarray, np.ndarray | None, None]:
    """Columns of an array table by 0-based index: features, and the label column."""
    X = X.reshape(len(X), -1)

    def index(text: str, option: str) -> int:
        if not text.isdigit() or int(text) >= X.shape[1]:
            raise InputError(f"{option} {text!r}: {source!r} has no header, so columns are "
                             f"0-based indices below {X.shape[1]}")
        return int(text)

    label = None if label_column is None else index(label_column, "--label-column")
    keep = ([index(c, "--columns") for c in columns] if columns
            else [i for i in range(X.shape[1]) if i != label])
    if label is not None:
        y = X[:, label].astype(np.int64) if np.all(X[:, label] == np.round(X[:, label])) \
            else X[:, label]
    return np.ascontiguousarray(X[:, keep]), y, None


def write_table_csv(path: str, table: Any, names: list[str]) -> None:
    """Write a table of mixed types (an object array or a DataFrame) as CSV, atomically;
    missing cells are empty."""

    rows = table.to_numpy(dtype=object) if hasattr(table, "to_numpy") else np.asarray(table)

    def write(tmp: str) -> None:
        with open(tmp, "w", newline="") as f:
            out = csv.writer(f)
            out.writerow(names)
            out.writerows([[_cell(v) for v in row] for row in rows])

    atomic_write(path, write)


def _cell(value: Any) -> str:
    """A table cell as CSV text: empty when missing; a float that float32 holds exactly
    (what the model computed) in float32's shortest form."""
    if value is None or (isinstance(value, float) and value != value):
        return ""
    if isinstance(value, float) and float(np.float32(value)) == value:
        return str(np.float32(value))
    return str(value)


def describe_choices(model: Any) -> str:
    """What the model chose for this data and why: likelihood, scaling and networks."""
    lik = model.module_.likelihood
    standardizes = getattr(lik, "standardizes", False)
    why_lik = {"gaussian_learned": "a Gaussian with a learned sigma per feature, the default",
               "gaussian": "a Gaussian of fixed sigma (MSE)",
               "bernoulli": "binary cross-entropy, for data in [0, 1]"}
    if model.likelihood_ == "mixed":
        kinds = ", ".join(f"{c['name']}: {c['kind']}"
                          + (f" ({len(c['levels'])} levels)" if c["levels"] else "")
                          for c in model.columns_[:20])
        why_lik["mixed"] = f"one likelihood per column: {kinds}"
    scaling = ("features standardised by their training mean and std (scale="
               f"{model.scale!r}; outputs and log p(x) are of the data as given)"
               if standardizes else f"features as given (scale={model.scale!r})")
    if model.encoder is not None or model.decoder is not None:
        nets = "your own networks"
    else:
        shape = model.input_shape_
        conv = any(isinstance(m, torch.nn.Conv2d) for m in model.module_.modules())
        widths = [model.n_features_in_, *model.hidden_layer_sizes, model.n_components]
        nets = (f"conv networks for {'x'.join(map(str, shape))} images" if conv
                else f"MLP {' -> '.join(map(str, widths))}")
    return (f"likelihood {model.likelihood_!r} ({why_lik.get(model.likelihood_, 'as set')}); "
            f"{scaling}; {nets}")

def in_memory(X: Any, command: str) -> None:
    if hasattr(X, "n_rows"):
        raise InputError(f"aekit {command} reads its data into memory, and these exceed the "
                        "memory budget; evaluate a subset, or pass a larger --memory-budget")


def count_rows(X: Any) -> int:
    return X.n_rows if hasattr(X, "n_rows") else len(X)


def write_output(path: str, fn: Any, X: Any, column_prefix: str) -> None:
    """Write ``fn`` of the rows of ``X`` (an array or a source) to ``path`` (.npy or
    .parquet) chunk by chunk; under torchrun the shards are computed by every process and
    rank 0 writes them."""

    chunk = 65536
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        out = distributed.map_sharded(fn, X)
        chunks = (out[a:a + chunk] for a in range(0, len(out), chunk))
    else:
        chunks = (fn(rows) for rows in streaming.iter_chunks(X, chunk))
    if distributed.is_main_process():
        streaming.write_rows(path, chunks, count_rows(X),
                             column_prefix=column_prefix)


def write_npy(path: str, array: np.ndarray) -> None:

    def write(tmp: str) -> None:
        with open(tmp, "wb") as f:
            np.save(f, array, allow_pickle=False)

    atomic_write(path, write)


def check_output(path: str, suffix: str | tuple[str, ...],
                 inputs: Iterable[str | os.PathLike | None] = ()) -> None:
    """Refuse a bad output file before any work is done: another suffix, a folder, a
    missing or unwritable folder, or a file that is one of ``inputs`` (the data, the model,
    a checkpoint) and would be replaced."""
    p = Path(path)
    suffixes = (suffix,) if isinstance(suffix, str) else suffix
    if p.suffix not in suffixes:
        raise InputError(f"output {path!r} should end in {' or '.join(suffixes)}")
    if p.is_dir():
        raise InputError(f"output {path!r} is a folder; give a file name ending in "
                         f"{' or '.join(suffixes)}")
    if not p.parent.exists():
        raise InputError(f"output folder {str(p.parent)!r} does not exist")
    if not p.parent.is_dir():
        raise InputError(f"output folder {str(p.parent)!r} is a file, not a folder")
    for source in inputs:
        if source is not None and _same_file(p, Path(source)):
            raise InputError(f"output {path!r} is the input {str(source)!r}: writing it would "
                             "replace what is being read; give another output")
    _probe(p.parent, f"output {path!r}")


def check_output_folder(path: str, what: str) -> None:
    """Refuse a bad output folder (created when missing) before any work is done: a file
    at its path, or an unwritable folder where it would be made."""
    p = Path(path)
    if p.exists() and not p.is_dir():
        raise InputError(f"{what} {path!r} is a file, not a folder; give a folder (it is "
                         "created when missing)")
    existing = next((a for a in (p, *p.parents) if a.exists()), Path("."))
    if not existing.is_dir():
        raise InputError(f"{what} {path!r} cannot be created: {str(existing)!r} is a file")
    _probe(existing, f"{what} {path!r}")


def _same_file(a: Path, b: Path) -> bool:
    try:
        if a.exists() and b.exists():
            return os.path.samefile(a, b)
    except OSError:
        return False
    return os.path.realpath(a) == os.path.realpath(b)


def _probe(folder: Path, what: str) -> None:
    """Create and remove a file in ``folder`` (named as aekit's temporaries are): a
    read-only file system, a missing permission or a full inode table is found now, not
    after the whole training run."""
    probe = folder / f".aekit-probe.{secrets.token_hex(6)}.tmp"
    try:
        os.close(os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        os.unlink(probe)
    except OSError as exc:
        raise InputError(f"cannot write {what}: {exc.strerror or exc} in {str(folder)!r}"
                         ) from None


def _gib(n: float) -> str:
    return f"{n / 2**30:.3g} GiB"


def check_samples(model: Any, n_samples: int, seed: int | None) -> None:
    """Refuse ``sample -n`` counts whose output would not fit in the memory budget, and
    seeds outside numpy's range, before any work."""
    if n_samples < 1:
        raise InputError(f"-n must be a positive number of samples; got {n_samples}")
    budget = sources.memory_budget(None)
    row = 4 * math.prod(model.input_shape_)
    if n_samples * row > budget:
        raise InputError(f"-n {n_samples} samples of {row // 4} values take "
                         f"{_gib(n_samples * row)}, more than the memory budget of "
                         f"{_gib(budget)} (a quarter of this machine's memory); ask for at "
                         f"most {budget // row}, in several runs with different --seed")
    if seed is not None and not 0 <= seed < 2**32:
        raise InputError(f"--seed must be in [0, 2**32 - 1]; got {seed}")


def parse_contamination(text: str) -> str | float:
    """``--contamination``: ``"auto"`` or a number (the detector checks its range)."""
    if text == "auto":
        return text
    try:
        return float(text)
    except ValueError:
        raise InputError(f"--contamination must be 'auto' or a fraction in (0, 0.5]; "
                         f"got {text!r}") from None


def write_scores_csv(path: str, scores: np.ndarray, labels: np.ndarray,
                     feature_scores: np.ndarray, top: int) -> None:
    """One line a row: its anomaly score, its label (1 = anomaly) and the indices and scores
    of its ``top`` most unusual features (largest -log p(x_j | z)), written atomically."""
    if top < 0:
        raise InputError(f"--top-features must be 0 or more; got {top}")
    top = min(top, feature_scores.shape[1])
    order = np.argsort(-feature_scores, axis=1)[:, :top]                   # (n, top)
    header = ["score", "label"] + [f"{kind}_{i + 1}" for i in range(top)
                                   for kind in ("feature", "feature_score")]

    def write(tmp: str) -> None:
        with open(tmp, "w", newline="") as f:
            out = csv.writer(f)
            out.writerow(header)
            for row, (s, label) in enumerate(zip(scores, labels)):
                cells = [repr(float(s)), int(label)]
                for j in order[row]:
                    cells += [int(j), repr(float(feature_scores[row, j]))]
                out.writerow(cells)

    atomic_write(path, write)
