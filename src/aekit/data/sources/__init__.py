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
``transform`` or ``score_samples``; :mod:`aekit.data.streaming` decides the reading order.

Example
-------
>>> import numpy as np, tempfile, os
>>> from aekit.data.sources import open_source
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

import os
from pathlib import Path
from typing import Any

import numpy as np

from aekit.data.sources.batches import BatchSource
from aekit.data.sources.files import (
    IMAGE_SUFFIXES,
    ArraySource,
    ImageFolderSource,
    NpySource,
    ParquetSource,
)
from aekit.data.sources.source import (
    DEFAULT_MEMORY_FRACTION,
    Flattened,
    RowRange,
    Source,
    as_float32,
    memory_budget,
)
from aekit.exceptions import InputError

__all__ = ["DEFAULT_MEMORY_FRACTION", "IMAGE_SUFFIXES", "ArraySource", "BatchSource",
           "Flattened", "ImageFolderSource", "NpySource", "ParquetSource", "RowRange", "Source",
           "as_float32", "is_streamable", "memory_budget", "open_source"]


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
    raise InputError(f"cannot stream {str(path)!r}: aekit streams .npy files, .parquet files "
                     "or folders, and folders of images")


def _whole_file(array: np.memmap) -> bool:
    """Whether ``array`` is the whole C-ordered array of ``np.load(..., mmap_mode=...)``."""
    import mmap

    return (isinstance(array.base, mmap.mmap) and array.filename is not None
            and array.flags.c_contiguous and array.ndim >= 2)
