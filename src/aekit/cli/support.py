"""What the command line shares between its commands: reading parameters and data, and
writing outputs atomically. Every problem a user can fix is an
:class:`~aekit.exceptions.InputError`, which ``aekit`` prints as one line."""

from __future__ import annotations

import argparse
import ast
import os
from pathlib import Path
from typing import Any

import numpy as np

import aekit
from aekit.data import datasets, sources, streaming
from aekit.exceptions import InputError
from aekit.runtime import atomic_write
from aekit.training import distributed


def parse_value(text: str) -> Any:
    """``--set`` values: Python literals (numbers, tuples, True, None) else plain strings."""
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def read_config(path: str | None) -> dict[str, Any]:
    if path is None:
        return {}
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib  # type: ignore[no-redef]
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except FileNotFoundError:
        raise InputError(f"config file {path!r} does not exist") from None
    except tomllib.TOMLDecodeError as exc:
        raise InputError(f"config file {path!r} is not valid TOML: {exc}") from None
    return {k: tuple(v) if isinstance(v, list) else v for k, v in data.items()}


def model_params(args: argparse.Namespace) -> dict[str, Any]:
    params = read_config(args.config)
    for item in args.set or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise InputError(f"--set expects key=value; got {item!r}")
        params[key.strip()] = parse_value(value.strip())
    return params


def make_model(name: str, params: dict[str, Any]) -> Any:

    model = aekit.get_model(name)
    valid = model.get_params()
    unknown = sorted(set(params) - set(valid))
    if unknown:
        raise InputError(f"unknown parameter(s) for {name}: {', '.join(unknown)}; "
                        f"valid: {', '.join(sorted(valid))}")
    return model.set_params(**params)


def load_data(source: str, split: str, memory_budget: str | None = None
               ) -> tuple[Any, np.ndarray | None]:
    """Rows and labels of a dataset or file. A ``.npy`` / ``.parquet`` file or a folder
    larger than the memory budget comes back as a (flattened) source to stream."""

    if source in datasets.list_datasets() or not sources.is_streamable(source):
        return datasets.load(source, split=split)
    try:
        src = sources.Flattened(sources.open_source(source))
        budget = sources.memory_budget(memory_budget)
    except ImportError as exc:
        raise InputError(str(exc)) from None
    return streaming.resolve(src, budget), src.labels()


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


def check_output(path: str, suffix: str | tuple[str, ...]) -> None:
    """Refuse a bad output path before any work is done."""
    p = Path(path)
    suffixes = (suffix,) if isinstance(suffix, str) else suffix
    if p.suffix not in suffixes:
        raise InputError(f"output {path!r} should end in {' or '.join(suffixes)}")
    if not p.parent.exists():
        raise InputError(f"output folder {str(p.parent)!r} does not exist")
