"""The :class:`Source` interface, memory budgets, and sources built on other sources."""

from __future__ import annotations

import math
import os
import re
import stat
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from aekit.exceptions import InputError

#: fraction of the machine's memory used when no memory budget is given.
DEFAULT_MEMORY_FRACTION = 0.25

#: column names read as labels (not features) in tables: CSV headers, Parquet columns
LABEL_COLUMNS = ("label", "labels", "y", "target", "class")


def memory_budget(value: int | str | None = None) -> int:
    """Bytes from ``value``: an int, a string such as ``"512M"`` / ``"2G"`` / ``"1.5GiB"``,
    or None for a quarter of this machine's memory.

    >>> memory_budget("512M"), memory_budget(1000)
    (536870912, 1000)
    """
    if value is None:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        return int(total * DEFAULT_MEMORY_FRACTION)
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        if value < 1:
            raise InputError(f"memory budget must be positive; got {value}")
        return int(value)
    match = re.fullmatch(r"\s*([0-9.]+)\s*([kmgt]?)(i?b)?\s*", str(value), re.IGNORECASE)
    if not match or not match.group(1).replace(".", "", 1).isdigit():
        raise InputError(f"cannot read memory budget {value!r}; use bytes or e.g. '512M', '2G'")
    power = " kmgt".index(match.group(2).lower() or " ")
    budget = int(float(match.group(1)) * 1024 ** power)
    if budget < 1:
        raise InputError(f"memory budget must be positive; got {value!r}")
    return budget


def check_file(path: str | os.PathLike, what: str = "data file") -> Path:
    """``path`` as a Path, after checking it is a regular file (through symlinks): a missing
    file is a ``FileNotFoundError`` saying so, anything else (a folder, a device such as
    ``/dev/zero``, a pipe) an :class:`InputError` saying what it is."""
    path = Path(path)
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        link = f" (a symlink to {os.readlink(path)!r}, which does not exist)" \
            if path.is_symlink() else ""
        raise FileNotFoundError(f"{what} {str(path)!r} does not exist{link}") from None
    if not stat.S_ISREG(mode):
        kinds = {stat.S_IFDIR: "a folder", stat.S_IFCHR: "a character device",
                 stat.S_IFBLK: "a block device", stat.S_IFIFO: "a pipe",
                 stat.S_IFSOCK: "a socket"}
        kind = kinds.get(stat.S_IFMT(mode), "not a regular file")
        via = f", through the symlink to {os.path.realpath(path)!r}" if path.is_symlink() else ""
        raise InputError(f"{what} {str(path)!r} is {kind}{via}, not a regular file; "
                         "give the path of a file")
    return path


def as_float32(block: np.ndarray) -> np.ndarray:
    """Rows as float32; integers scaled by 1/255 (the convention of aekit's file readers)."""
    block = np.asarray(block)
    if block.dtype.kind in "ui":
        return block.astype(np.float32) / np.float32(255.0)
    if block.dtype.kind not in "fb":
        raise InputError(f"rows of dtype {block.dtype} are not numbers")
    return block.astype(np.float32, copy=False)


class Source:
    """Rows read a block at a time. Subclasses set ``row_shape``, ``random_access`` and
    ``bounds`` (block boundaries, ``(n_blocks + 1,)``; None until known) and implement
    ``read_block``, plus ``read_rows`` when ``random_access``."""

    row_shape: tuple[int, ...]
    random_access: bool = False
    #: whether blocks can be read in any order (an iterable's batches come in its order)
    seekable: bool = True
    bounds: np.ndarray | None = None

    @property
    def n_rows(self) -> int | None:
        return None if self.bounds is None else int(self.bounds[-1])

    @property
    def n_blocks(self) -> int | None:
        return None if self.bounds is None else len(self.bounds) - 1

    @property
    def row_bytes(self) -> int:
        """Bytes of one row as float32."""
        return 4 * math.prod(self.row_shape)

    def read_block(self, b: int) -> np.ndarray:
        raise NotImplementedError

    def read_rows(self, rows: np.ndarray) -> np.ndarray:
        """Rows at the sorted indices ``rows``, float32, shape ``(len(rows), *row_shape)``."""
        raise NotImplementedError(f"{type(self).__name__} has no random access")

    def iter_blocks(self) -> Iterator[np.ndarray]:
        """Every block in order, as float32."""
        for b in range(self.n_blocks):
            yield self.read_block(b)

    def labels(self) -> np.ndarray | None:
        """Labels the source carries (image class folders, a Parquet label column)."""
        return None

    def __repr__(self) -> str:
        n = "?" if self.n_rows is None else self.n_rows
        return f"{type(self).__name__}({n} rows of shape {self.row_shape})"


class Flattened(Source):
    """Another source's rows as flat vectors ``(D,)`` (what the CLI trains on)."""

    def __init__(self, inner: Source) -> None:
        self.inner = inner
        self.row_shape = (math.prod(inner.row_shape),)
        self.random_access, self.seekable = inner.random_access, inner.seekable
        self.bounds = inner.bounds

    def read_block(self, b: int) -> np.ndarray:
        block = self.inner.read_block(b)
        return block.reshape(len(block), -1)

    def read_rows(self, rows: np.ndarray) -> np.ndarray:
        out = self.inner.read_rows(rows)
        return out.reshape(len(out), -1)

    def iter_blocks(self) -> Iterator[np.ndarray]:
        return (block.reshape(len(block), -1) for block in self.inner.iter_blocks())

    def labels(self) -> np.ndarray | None:
        return self.inner.labels()


class RowRange(Source):
    """Rows ``start:stop`` of another source (e.g. one process's shard)."""

    def __init__(self, inner: Source, start: int, stop: int) -> None:
        self.inner, self.start, self.stop = inner, int(start), int(stop)
        self.row_shape = inner.row_shape
        self.random_access, self.seekable = inner.random_access, inner.seekable
        cuts = inner.bounds[(inner.bounds > self.start) & (inner.bounds < self.stop)]
        self.bounds = np.r_[self.start, cuts, self.stop].astype(np.int64) - self.start
        self._first = int(np.searchsorted(inner.bounds, self.start, side="right")) - 1

    def read_block(self, b: int) -> np.ndarray:
        a, z = int(self.bounds[b]) + self.start, int(self.bounds[b + 1]) + self.start
        inner_b = self._first + b
        block = self.inner.read_block(inner_b)
        first = int(self.inner.bounds[inner_b])
        return block[a - first:z - first]

    def read_rows(self, rows: np.ndarray) -> np.ndarray:
        return self.inner.read_rows(np.asarray(rows, dtype=np.int64) + self.start)
