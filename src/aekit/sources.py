"""Data sources that are read in pieces: for data larger than memory.

A :class:`Source` is a table of rows that aekit reads a block at a time and never holds
whole. Every source has ``row_shape``, blocks (contiguous row ranges: a Parquet row group,
a run of rows of a ``.npy`` file, a run of image files, one batch of an iterable) and,
where the format allows it, random access to single rows:

==========================  ===============  ===============================================
source                      random access    blocks
==========================  ===============  ===============================================
:class:`NpySource`          yes (``pread``)  runs of rows, about 8 MiB each
:class:`ImageFolderSource`  yes (one file)   runs of 256 files
:class:`ParquetSource`      no               the files' row groups
:class:`BatchSource`        no               the batches the iterable yields, in its order
==========================  ===============  ===============================================

Rows come back as float32; integer data is scaled by 1/255 as in
:func:`aekit.datasets.read_file`. Pass a source (or a path, or a ``np.memmap``) to ``fit``,
``transform`` or ``score_samples``; :mod:`aekit.streaming` decides the reading order.

Example
-------
>>> import numpy as np, tempfile, os
>>> from aekit.sources import open_source
>>> path = os.path.join(tempfile.mkdtemp(), "rows.npy")
>>> np.save(path, np.arange(12, dtype=np.float32).reshape(4, 3))
>>> src = open_source(path)
>>> src.n_rows, src.row_shape, src.random_access
(4, (3,), True)
>>> src.read_rows(np.array([3, 0]))
array([[ 9., 10., 11.],
       [ 0.,  1.,  2.]], dtype=float32)
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

#: bytes a block of a ``.npy`` file holds when read sequentially.
NPY_BLOCK_BYTES = 8 * 2**20
#: fraction of the machine's memory used when no memory budget is given.
DEFAULT_MEMORY_FRACTION = 0.25
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")
_LABEL_COLUMNS = ("label", "labels", "y", "target", "class")


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
            raise ValueError(f"memory budget must be positive; got {value}")
        return int(value)
    match = re.fullmatch(r"\s*([0-9.]+)\s*([kmgt]?)(i?b)?\s*", str(value), re.IGNORECASE)
    if not match or not match.group(1).replace(".", "", 1).isdigit():
        raise ValueError(f"cannot read memory budget {value!r}; use bytes or e.g. '512M', '2G'")
    power = " kmgt".index(match.group(2).lower() or " ")
    budget = int(float(match.group(1)) * 1024 ** power)
    if budget < 1:
        raise ValueError(f"memory budget must be positive; got {value!r}")
    return budget


def as_float32(block: np.ndarray) -> np.ndarray:
    """Rows as float32; integers scaled by 1/255 (the convention of aekit's file readers)."""
    block = np.asarray(block)
    if block.dtype.kind in "ui":
        return block.astype(np.float32) / np.float32(255.0)
    if block.dtype.kind not in "fb":
        raise ValueError(f"rows of dtype {block.dtype} are not numbers")
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


class NpySource(Source):
    """A ``.npy`` file read with ``os.pread``: no memory map, so nothing of the file is
    counted in this process's resident memory beyond the rows in use.

    Parameters
    ----------
    path : str or path-like
    offset, dtype, shape : optional
        Where the array starts and what it holds; read from the file's header when omitted
        (given by :meth:`from_memmap`).
    """

    random_access = True

    def __init__(self, path: str | os.PathLike, *, offset: int | None = None,
                 dtype: Any = None, shape: tuple[int, ...] | None = None) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"data file {str(self.path)!r} does not exist")
        if offset is None:
            with open(self.path, "rb") as f:
                try:
                    version = np.lib.format.read_magic(f)
                    read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                                   else np.lib.format.read_array_header_2_0)
                    shape, fortran, dtype = read_header(f)
                except ValueError as exc:
                    raise ValueError(f"cannot read {str(self.path)!r} as .npy: {exc}") from None
                if fortran and len(shape) > 1:
                    raise ValueError(f"{str(self.path)!r} is stored in Fortran order; save it "
                                     "in C order (np.ascontiguousarray) to stream its rows")
                offset = f.tell()
        self.dtype, self.offset = np.dtype(dtype), int(offset)
        if self.dtype.kind not in "uifb" or self.dtype.hasobject:
            raise ValueError(f"{str(self.path)!r} holds {self.dtype} data; aekit needs numbers")
        if len(shape) < 2:
            raise ValueError(f"{str(self.path)!r} holds an array of shape {tuple(shape)}; "
                             "expected rows (n, D) or images (n, H, W) / (n, C, H, W)")
        self.row_shape = tuple(int(s) for s in shape[1:])
        self._stride = self.dtype.itemsize * math.prod(self.row_shape)
        n = int(shape[0])
        size = self.path.stat().st_size
        if self.offset + n * self._stride > size:
            raise ValueError(f"{str(self.path)!r} is truncated: its header says {n} rows of "
                             f"{self._stride} bytes, the file has {size - self.offset}")
        per_block = max(1, NPY_BLOCK_BYTES // max(self._stride, 1))
        self.bounds = np.unique(np.r_[np.arange(0, n, per_block), n]).astype(np.int64)
        self._fd: int | None = None

    @classmethod
    def from_memmap(cls, array: np.memmap) -> NpySource:
        """The file behind ``np.load(path, mmap_mode="r")``."""
        return cls(array.filename, offset=array.offset, dtype=array.dtype, shape=array.shape)

    def _pread(self, out: np.ndarray, start: int) -> None:
        """Fill ``out`` (rows of this file's dtype) with the rows from ``start`` on."""
        if self._fd is None or self._pid != os.getpid():
            self._fd, self._pid = os.open(self.path, os.O_RDONLY), os.getpid()
        view = memoryview(out).cast("B")
        done, offset = 0, self.offset + start * self._stride
        while done < len(view):
            got = os.preadv(self._fd, [view[done:]], offset + done)
            if got == 0:
                raise OSError(f"{str(self.path)!r} ended early: read {done} of {len(view)} bytes")
            done += got

    def read_block(self, b: int) -> np.ndarray:
        start, stop = int(self.bounds[b]), int(self.bounds[b + 1])
        return self.read_rows(np.arange(start, stop))

    def read_rows(self, rows: np.ndarray) -> np.ndarray:
        rows = np.asarray(rows, dtype=np.int64)
        out = np.empty((len(rows), *self.row_shape), self.dtype)
        # one read per run of consecutive rows
        breaks = np.flatnonzero(np.diff(rows) != 1) + 1
        for a, b in zip(np.r_[0, breaks], np.r_[breaks, len(rows)]):
            if b > a:
                self._pread(out[a:b], int(rows[a]))
        return as_float32(out)

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_fd": None}

    def __del__(self) -> None:
        if getattr(self, "_fd", None) is not None and self._pid == os.getpid():
            os.close(self._fd)


class ArraySource(Source):
    """An array already addressable in memory (or a memory-mapped view), read by slicing."""

    random_access = True

    def __init__(self, array: Any, block_rows: int | None = None) -> None:
        self.array = array
        if array.ndim < 2:
            raise ValueError(f"expected rows (n, D) or images; got an array of shape "
                             f"{array.shape}")
        self.row_shape = tuple(int(s) for s in array.shape[1:])
        n = int(array.shape[0])
        per_block = block_rows or max(1, NPY_BLOCK_BYTES // max(self.row_bytes, 1))
        self.bounds = np.unique(np.r_[np.arange(0, n, per_block), n]).astype(np.int64)

    def read_block(self, b: int) -> np.ndarray:
        return as_float32(np.array(self.array[int(self.bounds[b]):int(self.bounds[b + 1])]))

    def read_rows(self, rows: np.ndarray) -> np.ndarray:
        return as_float32(np.asarray(self.array[np.asarray(rows, dtype=np.int64)]))


class ParquetSource(Source):
    """A Parquet file, or a folder of them, read one row group at a time (needs ``pyarrow``).

    Features are the numeric columns (or ``columns``), or one column of fixed-length lists
    (e.g. embeddings). A column named label/labels/y/target/class is taken as labels.
    """

    def __init__(self, path: str | os.PathLike, columns: list[str] | None = None) -> None:
        try:
            import pyarrow.parquet as pq
        except ImportError:
            raise ImportError("reading Parquet needs pyarrow: pip install 'aekit[parquet]'"
                              ) from None
        path = Path(path)
        files = sorted(path.glob("**/*.parquet")) if path.is_dir() else [path]
        if not path.exists():
            raise FileNotFoundError(f"data {str(path)!r} does not exist")
        if not files:
            raise ValueError(f"folder {str(path)!r} holds no .parquet files")
        self.path = path
        try:
            self._files = [pq.ParquetFile(f) for f in files]
        except Exception as exc:    # pyarrow raises its own error types for bad files
            raise ValueError(f"cannot read {str(path)!r} as Parquet: {exc}") from None
        schema = self._files[0].schema_arrow
        for f, pf in zip(files[1:], self._files[1:]):
            if pf.schema_arrow != schema:
                raise ValueError(f"{str(f)!r} has another schema than {str(files[0])!r}")
        names = list(schema.names)
        self.label_column = next((c for c in names if c.lower() in _LABEL_COLUMNS), None)
        if columns is None:
            columns = [c for c in names if c != self.label_column]
        missing = [c for c in columns if c not in names]
        if missing or not columns:
            raise ValueError(f"columns {missing or columns} are not in {str(path)!r} "
                             f"(it has {names})")
        self.columns = list(columns)
        self._groups = [(i, g) for i, pf in enumerate(self._files)
                        for g in range(pf.num_row_groups)]
        sizes = [self._files[i].metadata.row_group(g).num_rows for i, g in self._groups]
        self.bounds = np.r_[0, np.cumsum(sizes)].astype(np.int64)
        first = self.read_block(0) if self._groups else np.empty((0, len(self.columns)))
        self.row_shape = tuple(int(s) for s in first.shape[1:])

    def _table(self, b: int, columns: list[str]):
        i, g = self._groups[b]
        return self._files[i].read_row_group(g, columns=columns)

    def read_block(self, b: int) -> np.ndarray:
        import pyarrow as pa

        table = self._table(b, self.columns)
        kind = table.schema.field(0).type
        if len(self.columns) == 1 and (pa.types.is_list(kind) or pa.types.is_large_list(kind)
                                       or pa.types.is_fixed_size_list(kind)):
            values = table.column(0).combine_chunks()       # one list column: a row vector
            flat = values.flatten().to_numpy(zero_copy_only=False)
            return as_float32(flat.reshape(len(table), -1))
        try:
            cols = [table.column(c).to_numpy(zero_copy_only=False) for c in self.columns]
        except Exception as exc:    # pyarrow's conversion errors
            raise ValueError(f"{str(self.path)!r}: cannot read columns as numbers ({exc})"
                             ) from None
        if any(c.dtype.kind not in "uifb" for c in cols):
            bad = [n for n, c in zip(self.columns, cols) if c.dtype.kind not in "uifb"]
            raise ValueError(f"{str(self.path)!r}: columns {bad} are not numeric; pass "
                             "columns=[...] with the feature columns")
        return as_float32(np.stack(cols, axis=1))

    def labels(self) -> np.ndarray | None:
        if self.label_column is None:
            return None
        return np.concatenate([self._table(b, [self.label_column]).column(0).to_numpy()
                               for b in range(self.n_blocks)]).astype(np.int64)


class ImageFolderSource(Source):
    """A folder of image files (PNG, JPEG, ...; needs Pillow), found recursively and read
    in sorted order. Rows are ``(H, W)`` for greyscale, ``(C, H, W)`` for colour, in [0, 1].
    Images in first-level sub-folders carry the folder's index (in sorted order) as label.

    Parameters
    ----------
    path : folder
    size : (H, W), optional
        Resize every image to this; otherwise every image must have the first one's size.
    mode : {"auto", "L", "RGB"}
        "auto": greyscale when the first image is, else RGB.
    """

    random_access = True
    block_files = 256

    def __init__(self, path: str | os.PathLike, size: tuple[int, int] | None = None,
                 mode: str = "auto") -> None:
        try:
            from PIL import Image
        except ImportError:
            raise ImportError("reading images needs Pillow: pip install pillow") from None
        self.path = Path(path)
        if not self.path.is_dir():
            raise FileNotFoundError(f"image folder {str(self.path)!r} does not exist")
        self.files = sorted(p for p in self.path.rglob("*")
                            if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
        if not self.files:
            raise ValueError(f"folder {str(self.path)!r} holds no images "
                             f"({', '.join(IMAGE_SUFFIXES)})")
        if mode not in ("auto", "L", "RGB"):
            raise ValueError(f"mode must be 'auto', 'L' or 'RGB'; got {mode!r}")
        with Image.open(self.files[0]) as first:
            if mode == "auto":
                mode = "L" if first.mode in ("1", "L", "LA", "I", "I;16", "F") else "RGB"
            self.size = tuple(size) if size is not None else (first.height, first.width)
        self.mode = mode
        h, w = self.size
        self.row_shape = (h, w) if mode == "L" else (3, h, w)
        n = len(self.files)
        self.bounds = np.unique(np.r_[np.arange(0, n, self.block_files), n]).astype(np.int64)
        self._resize = size is not None

    def _read(self, i: int) -> np.ndarray:
        from PIL import Image

        with Image.open(self.files[i]) as im:
            im = im.convert(self.mode)
            if self._resize:
                im = im.resize(self.size[::-1])
            elif (im.height, im.width) != self.size:
                raise ValueError(f"{str(self.files[i])!r} is {im.height}x{im.width}, the first "
                                 f"image {self.size[0]}x{self.size[1]}; pass size=(H, W)")
            a = np.asarray(im, dtype=np.uint8)
        return a if self.mode == "L" else a.transpose(2, 0, 1)

    def read_rows(self, rows: np.ndarray) -> np.ndarray:
        if len(rows) == 0:
            return np.empty((0, *self.row_shape), np.float32)
        return as_float32(np.stack([self._read(int(i)) for i in rows]))

    def read_block(self, b: int) -> np.ndarray:
        return self.read_rows(np.arange(self.bounds[b], self.bounds[b + 1]))

    def labels(self) -> np.ndarray | None:
        parts = [p.relative_to(self.path).parts for p in self.files]
        if any(len(p) < 2 for p in parts):
            return None
        classes = sorted({p[0] for p in parts})
        return np.array([classes.index(p[0]) for p in parts], dtype=np.int64)


class BatchSource(Source):
    """Any iterable of batches: arrays ``(B, ...)`` of the same row shape.

    ``batches`` must start over when iterated again (a list, or an object whose
    ``__iter__`` restarts) or be a function returning a fresh iterator: aekit reads it once
    to check and count the rows and once per epoch. Batches arrive in the iterable's
    order; shuffling mixes rows within the shuffle buffer only.
    """

    seekable = False

    def __init__(self, batches: Iterable[Any] | Callable[[], Iterator[Any]]) -> None:
        if callable(batches) and not hasattr(batches, "__iter__"):
            self._open = batches
        elif isinstance(batches, Iterator):
            raise TypeError("a one-shot iterator (e.g. a generator) can be read only once; "
                            "pass a list, an object whose __iter__ starts over, or a function "
                            "returning a fresh iterator")
        elif hasattr(batches, "__iter__"):
            self._open = lambda: iter(batches)
        else:
            raise TypeError(f"expected an iterable of batches or a function returning one; "
                            f"got {type(batches).__name__}")
        self._it: Iterator[Any] | None = None
        self._next = 0
        sizes, shape = [], None
        for i, batch in enumerate(self._open()):
            batch = np.asarray(batch)
            if batch.ndim < 2 or len(batch) == 0:
                raise ValueError(f"batch {i} has shape {batch.shape}; every batch must be "
                                 "a non-empty array of rows (B, D) or images (B, H, W)")
            if shape is None:
                shape = batch.shape[1:]
            elif batch.shape[1:] != shape:
                raise ValueError(f"batch {i} has rows of shape {batch.shape[1:]}, batch 0 "
                                 f"{shape}; every batch needs the same row shape")
            sizes.append(len(batch))
        if not sizes:
            raise ValueError("the iterable yielded no batches")
        self.row_shape = tuple(int(s) for s in shape)
        self.bounds = np.r_[0, np.cumsum(sizes)].astype(np.int64)

    def read_block(self, b: int) -> np.ndarray:
        if self._it is None or b < self._next:      # start over
            self._it, self._next = self._open(), 0
        while True:
            batch = next(self._it, None)
            if batch is None:
                raise ValueError(f"the iterable ended after {self._next} batches; it had "
                                 f"{self.n_blocks} when it was first read")
            self._next += 1
            if self._next - 1 == b:
                batch = as_float32(batch)
                if len(batch) != self.bounds[b + 1] - self.bounds[b]:
                    raise ValueError(f"batch {b} changed size between passes; an iterable "
                                     "must yield the same batches each time")
                return batch

    def iter_blocks(self) -> Iterator[np.ndarray]:
        self._it = None
        return super().iter_blocks()


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


def is_streamable(data: Any) -> bool:
    """Whether :func:`open_source` takes ``data``."""
    if isinstance(data, (Source, np.memmap)):
        return True
    if not isinstance(data, (str, os.PathLike)):
        return False
    path = Path(data)
    return path.is_dir() or (path.is_file() and path.suffix in (".npy", ".parquet"))


def open_source(data: Any, **options: Any) -> Source:
    """A :class:`Source` for ``data``: a Source (returned as is), a ``np.memmap``, a path to
    a ``.npy`` file, a ``.parquet`` file or folder of them, or a folder of images."""
    if isinstance(data, Source):
        return data
    if isinstance(data, np.memmap):
        return NpySource.from_memmap(data) if _whole_file(data) else ArraySource(data)
    path = Path(data)
    if path.is_dir():
        if any(path.glob("**/*.parquet")):
            return ParquetSource(path, **options)
        return ImageFolderSource(path, **options)
    if path.suffix == ".npy":
        return NpySource(path)
    if path.suffix == ".parquet":
        return ParquetSource(path, **options)
    if not path.exists():
        raise FileNotFoundError(f"data {str(path)!r} does not exist")
    raise ValueError(f"cannot stream {str(path)!r}: aekit streams .npy files, .parquet files "
                     "or folders, and folders of images")


def _whole_file(array: np.memmap) -> bool:
    """Whether ``array`` is the whole C-ordered array of ``np.load(..., mmap_mode=...)``."""
    import mmap

    return (isinstance(array.base, mmap.mmap) and array.filename is not None
            and array.flags.c_contiguous and array.ndim >= 2)
