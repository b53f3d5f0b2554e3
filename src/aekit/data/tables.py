"""Mixed-type tables: which kind each column is, and the table as numbers and back.

A table (a pandas or polars DataFrame, or a 2-D numpy array, possibly of objects) becomes
float32 rows ``(n, D)``, one value per column: a number for a numeric column, 0 / 1 for a
binary one, the level's index for a categorical one, and NaN for a missing cell. The
column kinds and levels (a list of :class:`Column`) are what ``likelihood="mixed"``
models, and they are kept in the model file as JSON, so outputs come back in the table's
own types.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from aekit.exceptions import InputError

KINDS = ("numeric", "binary", "count", "categorical")
#: a categorical column with more levels than this is refused (declare it numeric or drop it)
MAX_LEVELS = 1000


@dataclass
class Column:
    """One column of a table: its name, its kind and, for categorical columns, its levels
    (as text, in the order of their codes)."""

    name: str
    kind: str
    levels: list[str] = field(default_factory=list)

    @property
    def n_levels(self) -> int:
        return len(self.levels) if self.kind == "categorical" else 2

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, value: Any) -> Column:
        if (not isinstance(value, dict) or value.get("kind") not in KINDS
                or not isinstance(value.get("name"), str)
                or not isinstance(value.get("levels", []), list)):
            raise ValueError(f"a column must be {{'name', 'kind', 'levels'}}; got {value!r:.80}")
        return cls(value["name"], value["kind"], [str(v) for v in value.get("levels", [])])


def is_frame(X: Any) -> bool:
    return hasattr(X, "columns") and hasattr(X, "dtypes") and not isinstance(X, np.ndarray)


def _columns_of(X: Any) -> tuple[list[str], list[np.ndarray]]:
    """Names and values (numpy, one array per column) of a DataFrame or a 2-D array."""
    if is_frame(X):
        if not hasattr(X, "iloc") and hasattr(X, "to_pandas"):     # polars
            X = X.to_pandas()
        names = [str(c) for c in X.columns]
        return names, [X.iloc[:, j].to_numpy(dtype=object) for j in range(X.shape[1])]
    X = np.asarray(X, dtype=object) if not isinstance(X, np.ndarray) else X
    if X.ndim != 2:
        raise InputError(f"likelihood='mixed' takes a table of rows and columns; got an "
                         f"array of shape {X.shape}")
    return [f"x{j}" for j in range(X.shape[1])], [X[:, j] for j in range(X.shape[1])]


def needs_columns(X: Any) -> bool:
    """Whether the table ``X`` needs one likelihood per column: a DataFrame (pandas, polars)
    or a 2-D object array with a non-numeric column (text, categories) or a missing cell
    (None, NaN, pandas NA, an empty string); a numeric array with a NaN. Image-shaped
    arrays and data to stream never do."""
    if is_frame(X):
        if not hasattr(X, "iloc") and hasattr(X, "to_pandas"):     # polars
            X = X.to_pandas()
        return (not all(getattr(d, "kind", "O") in "biuf" for d in X.dtypes)
                or bool(X.isna().to_numpy().any()))
    if not isinstance(X, np.ndarray) or X.ndim != 2:
        return False
    if X.dtype.kind in "biu":
        return False
    if X.dtype.kind == "f":
        return bool(np.isnan(X).any())
    return any(_missing(X[:, j]).any() or any(_as_number(v) is None for v in X[:, j])
               for j in range(X.shape[1]))


def _missing(values: np.ndarray) -> np.ndarray:
    """Which cells are missing: None, NaN, pandas NA/NaT, or an empty string."""
    out = np.zeros(len(values), dtype=bool)
    for i, v in enumerate(values):
        if v is None or (isinstance(v, str) and not v.strip()):
            out[i] = True
        else:
            try:
                out[i] = bool(v != v)          # NaN, pandas NA (raises), NaT
            except TypeError:
                out[i] = True                  # pandas NA: its truth value is ambiguous
    return out


#: text a CSV file writes for booleans
BOOLEAN_TEXT = {"true": 1.0, "false": 0.0}


def _as_number(v: Any) -> float | None:
    if isinstance(v, (bool, np.bool_)):
        return float(v)
    if isinstance(v, str) and v.strip().lower() in BOOLEAN_TEXT:
        return BOOLEAN_TEXT[v.strip().lower()]
    if isinstance(v, (int, float, np.integer, np.floating)):
        return float(v)
    return None


def infer_columns(X: Any, declared: dict[str, str] | None = None) -> list[Column]:
    """Each column's kind: ``declared`` (name -> kind) where given; else bool columns and
    numbers that are all 0 or 1 are binary, other numbers numeric, and anything else
    (text, pandas categories) categorical with its observed levels, sorted."""
    names, values = _columns_of(X)
    declared = dict(declared or {})
    unknown = sorted(set(declared) - set(names))
    if unknown:
        raise InputError(f"columns= names {unknown} that the table does not have; its columns "
                         f"are {', '.join(names[:30])}")
    columns = []
    for name, col in zip(names, values):
        present = col[~_missing(col)]
        if len(present) == 0:
            raise InputError(f"column {name!r} has no values (every cell is missing); drop it")
        kind = declared.get(name)
        if kind is not None and kind not in KINDS:
            raise InputError(f"columns={{{name!r}: {kind!r}}}: the kinds are {', '.join(KINDS)}")
        numbers = [_as_number(v) for v in present]
        all_numbers = all(n is not None for n in numbers)
        if kind is None:
            if all_numbers and set(numbers) <= {0.0, 1.0}:
                kind = "binary"
            elif all_numbers:
                kind = "numeric"
            else:
                kind = "categorical"
        if kind == "numeric" and not all_numbers:
            bad = next(v for v, n in zip(present, numbers) if n is None)
            raise InputError(f"column {name!r} is declared numeric but holds {bad!r:.40}")
        levels: list[str] = []
        if kind == "categorical":
            levels = sorted({_level(v) for v in present})
            if len(levels) > MAX_LEVELS:
                raise InputError(f"column {name!r} has {len(levels)} levels, more than "
                                 f"{MAX_LEVELS}: declare it numeric (columns={{{name!r}: "
                                 "'numeric'}) or drop it")
        elif kind == "binary" and not (all_numbers and set(numbers) <= {0.0, 1.0}):
            raise InputError(f"column {name!r} is declared binary but holds values other than "
                             "0 / 1 / True / False")
        elif kind == "count" and not (all_numbers and all(_is_count(n) for n in numbers)):
            bad = next(v for v, n in zip(present, numbers) if n is None or not _is_count(n))
            raise InputError(f"column {name!r} is declared count but holds {bad!r:.40}; counts "
                             "are whole numbers 0, 1, 2, ...")
        columns.append(Column(name, kind, levels))
    return columns


def _is_count(n: float) -> bool:
    return math.isfinite(n) and n >= 0 and float(n).is_integer()


def _level(v: Any) -> str:
    """A categorical value as the text its level is named by (1 and 1.0 are one level)."""
    n = _as_number(v)
    if n is not None and not isinstance(v, (bool, np.bool_)) and float(n).is_integer():
        return str(int(n))
    return str(v)


def encode(X: Any, columns: list[Column], where: str = "X") -> np.ndarray:
    """The table as float32 rows ``(n, D)``: numbers, 0 / 1, level indices, NaN where missing.
    A level ``fit`` never saw is refused, naming the column and the level."""
    names, values = _columns_of(X)
    expected = [c.name for c in columns]
    if is_frame(X) and names != expected:
        missing = [n for n in expected if n not in names]
        raise InputError(f"{where}: the table's columns {names[:20]} are not those the model was "
                         f"fitted on, {expected[:20]}"
                         + (f" (missing: {missing[:10]})" if missing else ""))
    if len(names) != len(columns):
        raise InputError(f"{where} has {len(names)} columns; the model was fitted on "
                         f"{len(columns)}")
    out = np.full((len(values[0]) if values else 0, len(columns)), np.nan, dtype=np.float32)
    for j, (col, spec) in enumerate(zip(values, columns)):
        hole = _missing(col)
        for i in np.flatnonzero(~hole):
            v = col[i]
            if spec.kind == "categorical":
                level = _level(v)
                try:
                    out[i, j] = spec.levels.index(level)
                except ValueError:
                    raise InputError(
                        f"{where}: column {spec.name!r} has the level {level!r:.40}, which fit "
                        f"never saw (known: {', '.join(spec.levels[:20])}); map it to a known "
                        "level or leave the cell empty (missing)") from None
            else:
                n = _as_number(v)
                if n is None:
                    try:
                        n = float(v)
                    except (TypeError, ValueError):
                        raise InputError(f"{where}: column {spec.name!r} is {spec.kind} but "
                                         f"holds {v!r:.40}") from None
                if spec.kind == "binary" and n not in (0.0, 1.0):
                    raise InputError(f"{where}: column {spec.name!r} is binary but holds {v!r}")
                if spec.kind == "count" and not _is_count(n):
                    raise InputError(f"{where}: column {spec.name!r} is a count but holds "
                                     f"{v!r:.40} (row {i}); counts are whole numbers 0, 1, 2, ...")
                if not math.isfinite(n):
                    raise InputError(f"{where}: column {spec.name!r} holds {n} (row {i})")
                out[i, j] = n
    return out


def decode(rows: np.ndarray, columns: list[Column], like: Any = None,
           as_frame: bool = False) -> Any:
    """Rows of numbers ``(n, D)`` back in the table's types: level names for categorical
    columns, 0 / 1 for binary ones (rounded probabilities), whole numbers for counts (the
    floor of the rate: a Poisson's most probable value), floats for numeric ones. A
    pandas DataFrame when ``like`` is one (its dtypes restored where they fit: bool,
    integers, categories) or ``as_frame`` (when pandas is installed), else an object array."""
    data: dict[str, Any] = {}
    for j, spec in enumerate(columns):
        col = rows[:, j]
        if spec.kind == "categorical":
            codes = np.clip(np.round(col), 0, len(spec.levels) - 1).astype(int)
            data[spec.name] = np.array([spec.levels[c] for c in codes], dtype=object)
        elif spec.kind == "binary":
            data[spec.name] = np.round(col).astype(np.int64)
        elif spec.kind == "count":      # a Poisson's most probable value: floor of its rate
            data[spec.name] = np.floor(np.maximum(col, 0)).astype(np.int64)
        else:
            data[spec.name] = col.astype(np.float32)    # what the model computes in
    pandas_like = like is not None and is_frame(like) and hasattr(like, "iloc")
    if pandas_like or as_frame:
        try:
            import pandas as pd
        except ImportError:
            pandas_like = as_frame = False
    if pandas_like or as_frame:
        frame = pd.DataFrame(data)
        for name in frame.columns if pandas_like else ():
            _restore_dtype(frame, name, like[name].dtype, pd)
        return frame
    table = np.empty((len(rows), len(columns)), dtype=object)
    for j, spec in enumerate(columns):
        table[:, j] = data[spec.name]
    return table


def _restore_dtype(frame: Any, name: str, dtype: Any, pd: Any) -> None:
    """Give ``frame[name]`` the original column's dtype where the values allow it."""
    kind = str(dtype)
    if kind == "category":
        categories = list(dtype.categories)
        if all(isinstance(c, str) for c in categories):
            frame[name] = pd.Categorical(frame[name], categories=categories)
    elif kind in ("bool", "boolean"):
        frame[name] = frame[name].astype(bool)
    elif getattr(dtype, "kind", None) in ("i", "u", "f"):
        frame[name] = frame[name].astype(dtype)


def fill_holes(original: Any, filled: Any) -> Any:
    """``original`` with its missing cells taken from ``filled`` (the same table decoded
    from the model) and every observed cell kept exactly as it was."""
    if is_frame(original) and hasattr(original, "iloc") and is_frame(filled):
        out = original.copy()
        for j, name in enumerate(out.columns):
            hole = _missing(out.iloc[:, j].to_numpy(dtype=object))
            if hole.any():
                column = out[name]
                if str(column.dtype) == "category":
                    values = filled[name].astype(object).to_numpy()
                    out[name] = column.astype(object).where(~hole, values)
                    out[name] = out[name].astype(filled[name].dtype if str(
                        filled[name].dtype) == "category" else column.dtype)
                else:
                    out.loc[hole, name] = filled.loc[hole, name].to_numpy()
                    if str(filled[name].dtype) == "bool":
                        out[name] = out[name].astype(bool)
        return out
    table = np.array(original, dtype=object, copy=True)
    values = np.asarray(filled, dtype=object)
    for j in range(table.shape[1]):
        hole = _missing(table[:, j])
        table[hole, j] = values[hole, j]
    return table
