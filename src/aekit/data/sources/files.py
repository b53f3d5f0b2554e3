"""Sources read from files: ``.npy`` (``pread``), in-memory arrays and memory maps, Parquet
(row groups, pyarrow) and folders of images (Pillow)."""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import numpy as np

from aekit.data.sources.source import LABEL_COLUMNS, Source, as_float32, check_file
from aekit.exceptions import InputError

#: bytes a block of a ``.npy`` file holds when read sequentially.
NPY_BLOCK_BYTES = 8 * 2**20
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")
#: the most pixels aekit decodes of one image (4096 x 4096), read from the file's header
#: before decoding: a few hundred KB of PNG can declare gigabytes of pixels.
MAX_IMAGE_PIXELS = 2**24
#: bytes of float32 rows an image block aims at (fewer than ``block_files`` files when
#: images are large).
IMAGE_BLOCK_BYTES = 64 * 2**20


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
        self.path = check_file(path)
        if offset is None:
            with open(self.path, "rb") as f:
                try:
                    version = np.lib.format.read_magic(f)
                    read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                                   else np.lib.format.read_array_header_2_0)
                    shape, fortran, dtype = read_header(f)
                except ValueError as exc:
                    raise InputError(f"cannot read {str(self.path)!r} as .npy: {exc}") from None
                if fortran and len(shape) > 1:
                    raise InputError(f"{str(self.path)!r} is stored in Fortran order; save it "
                                     "in C order (np.ascontiguousarray) to stream its rows")
                offset = f.tell()
        self.dtype, self.offset = np.dtype(dtype), int(offset)
        if self.dtype.kind not in "uifb" or self.dtype.hasobject:
            raise InputError(f"{str(self.path)!r} holds {self.dtype} data; aekit needs numbers")
        if len(shape) < 2:
            raise InputError(f"{str(self.path)!r} holds an array of shape {tuple(shape)}; "
                             "expected rows (n, D) or images (n, H, W) / (n, C, H, W)")
        self.row_shape = tuple(int(s) for s in shape[1:])
        self._stride = self.dtype.itemsize * math.prod(self.row_shape)
        n = int(shape[0])
        if self._stride <= 0 or n <= 0 or any(int(d) < 0 for d in shape):
            what = ("negative sizes" if any(int(d) < 0 for d in shape)
                    else "no rows" if n == 0 else "rows with no values")
            raise InputError(f"{str(self.path)!r} holds an array of shape {tuple(shape)}: "
                             f"{what}; save an array of shape (n, D) with n, D >= 1")
        size = self.path.stat().st_size
        if self.offset + n * self._stride > size:
            raise InputError(f"{str(self.path)!r} is truncated: its header says {n} rows of "
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
            raise InputError(f"expected rows (n, D) or images; got an array of shape "
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
            raise InputError(f"folder {str(path)!r} holds no .parquet files")
        self.path = path
        try:
            self._files = [pq.ParquetFile(f) for f in files]
        except Exception as exc:    # pyarrow raises its own error types for bad files
            raise InputError(f"cannot read {str(path)!r} as Parquet: {exc}") from None
        schema = self._files[0].schema_arrow
        for f, pf in zip(files[1:], self._files[1:]):
            if pf.schema_arrow != schema:
                raise InputError(f"{str(f)!r} has another schema than {str(files[0])!r}")
        names = list(schema.names)
        self.label_column = next((c for c in names if c.lower() in LABEL_COLUMNS), None)
        if columns is None:
            columns = [c for c in names if c != self.label_column]
        missing = [c for c in columns if c not in names]
        if missing or not columns:
            raise InputError(f"columns {missing or columns} are not in {str(path)!r} "
                             f"(it has {names})")
        self.columns = list(columns)
        self._groups = [(i, g) for i, pf in enumerate(self._files)
                        for g in range(pf.num_row_groups)]
        # empty row groups hold no rows to learn the row shape from
        self._groups = [(i, g) for i, g in self._groups
                        if self._files[i].metadata.row_group(g).num_rows > 0]
        sizes = [self._files[i].metadata.row_group(g).num_rows for i, g in self._groups]
        if not sizes:
            raise InputError(f"{str(path)!r} holds no rows; give a Parquet file with data")
        self.bounds = np.r_[0, np.cumsum(sizes)].astype(np.int64)
        self.row_shape = tuple(int(s) for s in self.read_block(0).shape[1:])

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
            raise InputError(f"{str(self.path)!r}: cannot read columns as numbers ({exc})"
                             ) from None
        if any(c.dtype.kind not in "uifb" for c in cols):
            bad = [n for n, c in zip(self.columns, cols) if c.dtype.kind not in "uifb"]
            raise InputError(f"{str(self.path)!r}: columns {bad} are not numeric; pass "
                             "columns=[...] with the feature columns")
        return as_float32(np.stack(cols, axis=1))

    def labels(self) -> np.ndarray | None:
        """The label column as ints: integer labels as they are, others (text, say) as
        their index among the sorted distinct labels."""
        if self.label_column is None:
            return None
        columns = [self._table(b, [self.label_column]).column(0) for b in range(self.n_blocks)]
        missing = sum(c.null_count for c in columns)
        if missing:
            raise InputError(f"{str(self.path)!r}: the label column {self.label_column!r} has "
                             f"{missing} missing values; fill or drop those rows")
        values = np.concatenate([c.to_numpy(zero_copy_only=False) for c in columns])
        if values.dtype.kind in "uib":
            return values.astype(np.int64)
        if values.dtype.kind == "f" and np.isfinite(values).all() \
                and (values == np.round(values)).all():
            return values.astype(np.int64)
        if values.dtype.kind == "f":
            raise InputError(f"{str(self.path)!r}: the label column {self.label_column!r} "
                             "holds non-integer numbers; class labels are integers or text")
        _, codes = np.unique(values.astype(str), return_inverse=True)
        return codes.reshape(-1).astype(np.int64)


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
    max_pixels : int, default=MAX_IMAGE_PIXELS
        The most pixels (height x width, read from the file's header) an image may have;
        a larger one is refused before it is decoded. A file that is not a readable image
        (empty, truncated, another format) is refused naming it.
    """

    random_access = True
    block_files = 256

    def __init__(self, path: str | os.PathLike, size: tuple[int, int] | None = None,
                 mode: str = "auto", max_pixels: int = MAX_IMAGE_PIXELS) -> None:
        try:
            import PIL.Image  # noqa: F401 (only whether Pillow is there)
        except ImportError:
            raise ImportError("reading images needs Pillow: pip install pillow") from None
        self.path = Path(path)
        if not self.path.is_dir():
            raise FileNotFoundError(f"image folder {str(self.path)!r} does not exist")
        self.files = sorted(p for p in self.path.rglob("*")
                            if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
        if not self.files:
            raise InputError(f"folder {str(self.path)!r} holds no images "
                             f"({', '.join(IMAGE_SUFFIXES)})")
        if mode not in ("auto", "L", "RGB"):
            raise InputError(f"mode must be 'auto', 'L' or 'RGB'; got {mode!r}")
        if size is not None and (len(size) != 2 or not all(
                isinstance(d, (int, np.integer)) and 1 <= d for d in size)
                or size[0] * size[1] > max_pixels):
            raise InputError(f"size must be (H, W), two positive integers of at most "
                             f"{max_pixels} pixels in all; got {size!r}")
        self.max_pixels = int(max_pixels)
        with self._open(0) as first:
            if mode == "auto":
                mode = "L" if first.mode in ("1", "L", "LA", "I", "I;16", "F") else "RGB"
            self.size = tuple(size) if size is not None else (first.height, first.width)
        self.mode = mode
        h, w = self.size
        self.row_shape = (h, w) if mode == "L" else (3, h, w)
        n = len(self.files)
        per_block = max(1, min(self.block_files, IMAGE_BLOCK_BYTES // self.row_bytes))
        self.bounds = np.unique(np.r_[np.arange(0, n, per_block), n]).astype(np.int64)
        self._resize = size is not None

    def _open(self, i: int) -> Any:
        """The image file ``i`` opened (its header read, nothing decoded), refusing a file
        that is no image or declares more than ``max_pixels`` pixels."""
        import warnings

        from PIL import Image

        file = self.files[i]
        try:
            with warnings.catch_warnings():     # a bomb is refused below, not warned about
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                im = Image.open(file)
        except Image.DecompressionBombError as exc:
            raise InputError(f"{str(file)!r} is too large to decode ({exc}); aekit decodes "
                             f"images of at most {self.max_pixels} pixels") from None
        except (OSError, SyntaxError, ValueError) as exc:
            raise InputError(f"{str(file)!r} is not a readable image ({exc}); remove it from "
                             "the folder or replace it") from None
        if im.width * im.height > self.max_pixels:
            im.close()
            raise InputError(f"{str(file)!r} is {im.height}x{im.width} pixels, more than the "
                             f"{self.max_pixels} aekit decodes of one image; resize it, or "
                             "pass a larger max_pixels")
        return im

    def _read(self, i: int) -> np.ndarray:
        with self._open(i) as im:
            if not self._resize and (im.height, im.width) != self.size:
                raise InputError(f"{str(self.files[i])!r} is {im.height}x{im.width}, the first "
                                 f"image {self.size[0]}x{self.size[1]}; pass size=(H, W)")
            try:
                im = im.convert(self.mode)
                if self._resize:
                    im = im.resize(self.size[::-1])
                a = np.asarray(im, dtype=np.uint8)
            except (OSError, SyntaxError, ValueError) as exc:   # truncated or corrupt data
                raise InputError(f"{str(self.files[i])!r} is not a readable image ({exc}); "
                                 "remove it from the folder or replace it") from None
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
