"""Training and evaluating on data streamed from disk.

``fit``, ``transform``, ``score_samples`` and ``elbo`` accept a
:class:`~aekit.data.sources.Source`, a path (``.npy``, ``.parquet`` file or folder, a folder of
images) or a ``np.memmap``. Data that fits in the memory budget (``memory_budget``, by
default a quarter of the machine's memory) is read whole into memory; larger data is
streamed: the loop sees :class:`StreamedRows`, which reads the rows each minibatch needs
on a background thread while the previous minibatch trains.

Order of the rows (reproducible from ``random_state``, and resumable):

* sources with random access (``.npy``, image folders, memory maps): the same seeded
  permutation as the in-memory path, so a streamed fit trains on exactly the minibatches
  of an in-memory fit with the same seed and gives the same weights;
* other sources (Parquet, iterables of batches): block shuffling. Each epoch the blocks
  (Parquet row groups) are put in a seeded random order (an iterable's batches keep their
  order), consecutive blocks are gathered into a shuffle buffer of about ``buffer_rows``
  rows, and the buffer's rows are permuted. Every row is seen once per epoch; rows only
  mix with rows of the same buffer, so a larger buffer is closer to a full shuffle.

Before training, one pass over the data checks it (finite numbers, the likelihood's
support, the row shape) and counts its rows; nothing is trained on data that fails.
"""

from __future__ import annotations

import csv
import hashlib
import math
import os
import queue
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.utils._pytree import tree_map

from aekit.data.sources import Source, memory_budget, open_source
from aekit.exceptions import InputError
from aekit.runtime import atomic_write

#: minibatches read ahead of the one training.
PREFETCH = 4


def resolve(data: Any, budget: int | str | None = None) -> Any:
    """``data`` itself when it is an ordinary array; for a Source, path or memmap, the
    whole array when it fits in ``budget`` bytes, else the :class:`Source` to stream."""
    if not isinstance(data, (Source, np.memmap, str, os.PathLike)):
        return data
    source = open_source(data)
    n = source.n_rows if source.n_rows is not None else 0
    if n * source.row_bytes > memory_budget(budget):
        return source
    if isinstance(data, np.memmap):
        return np.asarray(data)
    blocks = list(source.iter_blocks())
    return np.concatenate(blocks) if blocks else np.empty((0, *source.row_shape), np.float32)


def check_finite(rows: np.ndarray, start: int) -> None:
    """Refuse NaN or infinity in flat ``rows`` that begin at row ``start`` of the data."""
    bad = ~np.isfinite(rows).all(axis=1)
    if bad.any():
        raise InputError(f"the data hold NaN or infinity (row {start + int(np.argmax(bad))}); "
                         "aekit needs finite numbers")


def scan(source: Source, check: Callable[[np.ndarray], None], fingerprint: bool = False
         ) -> str | None:
    """Read every block once: rows must be finite and pass ``check`` (given flat float32
    rows). Returns the SHA-256 of the rows as float32 when ``fingerprint`` (the same digest
    as an in-memory array of the same rows)."""
    digest = hashlib.sha256() if fingerprint else None
    start = 0
    for block in source.iter_blocks():
        rows = block.reshape(len(block), -1)
        check_finite(rows, start)
        check(rows)
        if digest is not None:
            digest.update(np.ascontiguousarray(rows).tobytes())
        start += len(rows)
    return None if digest is None else digest.hexdigest()


class StreamedRows:
    """Rows of a source that the training loop and the model hooks use like the device
    tensor of the in-memory path: ``len``, ``shape``, ``device``, ``x[a:b]`` and ``x[idx]``
    (rows read on demand, returned flat on the device), plus :meth:`epoch_order` and
    :meth:`batches`.

    Parameters
    ----------
    source : Source
    device : torch.device
    buffer_rows : int
        Shuffle buffer of block shuffling; at most about twice this many rows are held.
    index : array of int, optional
        A view of these source rows (e.g. the training part of a validation split).
    """

    def __init__(self, source: Source, device: torch.device, buffer_rows: int,
                 index: np.ndarray | None = None) -> None:
        self.source, self.device = source, torch.device(device)
        self.buffer_rows = max(1, int(buffer_rows))
        self.index = index
        self.binarize_seed: int | None = None     # fixed binarization of validation rows
        self.sha256: str | None = None
        self._cache: OrderedDict[int, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()

    # ------------------------------------------------------------ tensor-like

    def __len__(self) -> int:
        return self.source.n_rows if self.index is None else len(self.index)

    @property
    def shape(self) -> tuple[int, int]:
        return (len(self), math.prod(self.source.row_shape))

    @property
    def exact(self) -> bool:
        """Whether minibatches follow a full permutation (sources with random access)."""
        return self.source.random_access

    @property
    def order(self) -> str:
        """How the rows are ordered each epoch (part of a checkpoint's run identity)."""
        if self.exact:
            return "permutation"
        return f"block shuffle, {self.buffer_rows}-row buffer"

    def __getitem__(self, key: Any) -> Tensor:
        if isinstance(key, slice):
            start, stop, step = key.indices(len(self))
            rows = np.arange(start, stop, step)
        else:
            rows = key.cpu().numpy() if isinstance(key, Tensor) else np.asarray(key)
            start = None
        x = torch.from_numpy(self.take(rows)).to(self.device)
        if self.binarize_seed is not None and start is not None:
            g = torch.Generator(device=self.device).manual_seed(self.binarize_seed + start)
            x = torch.bernoulli(x, generator=g)
        return x

    def subset(self, rows: Tensor | np.ndarray) -> StreamedRows:
        rows = rows.cpu().numpy() if isinstance(rows, Tensor) else np.asarray(rows)
        index = rows if self.index is None else self.index[rows]
        return StreamedRows(self.source, self.device, self.buffer_rows, index)

    # --------------------------------------------------------------- reading

    def take(self, rows: np.ndarray) -> np.ndarray:
        """Flat float32 rows at view positions ``rows``, in that order: ``(len(rows), D)``."""
        rows = np.asarray(rows, dtype=np.int64)
        if self.index is not None:
            rows = self.index[rows]
        src = self.source
        if src.random_access:
            unique, inverse = np.unique(rows, return_inverse=True)
            out = src.read_rows(unique)[inverse]
        else:
            out = np.empty((len(rows), *src.row_shape), np.float32)
            blocks = np.searchsorted(src.bounds, rows, side="right") - 1
            needed = np.unique(blocks)
            keep = set(needed.tolist())
            with self._lock:
                for b in needed:
                    mask = blocks == b
                    out[mask] = self._block(int(b), keep)[rows[mask] - src.bounds[b]]
        return out.reshape(len(rows), -1)

    def _block(self, b: int, keep: set[int]) -> np.ndarray:
        """Block ``b`` from the cache, read when missing; the oldest blocks not in ``keep``
        are dropped while more than two shuffle buffers' worth of rows are held."""
        if b in self._cache:
            self._cache.move_to_end(b)
            return self._cache[b]
        block = self.source.read_block(b)
        self._cache[b] = block
        held = sum(len(v) for v in self._cache.values())
        for old in list(self._cache):
            if held <= 2 * self.buffer_rows:
                break
            if old not in keep:
                held -= len(self._cache.pop(old))
        return block

    def fingerprint(self) -> str:
        """SHA-256 of all rows as float32 (computed by the check pass in ``fit``)."""
        if self.sha256 is None:
            self.sha256 = scan(self.source, lambda rows: None, fingerprint=True)
        return self.sha256

    # ---------------------------------------------------------------- epochs

    def epoch_order(self, generator: torch.Generator) -> Tensor:
        """This epoch's order of the rows, drawn from ``generator``."""
        n, device = len(self), generator.device
        if self.exact:      # the draw of the in-memory path: same minibatches
            return torch.randperm(n, generator=generator, device=device)
        src = self.source
        sizes = np.diff(src.bounds)
        order = (torch.randperm(len(sizes), generator=generator, device=device).cpu().numpy()
                 if src.seekable else np.arange(len(sizes)))
        parts, group, held = [], [], 0
        for i, b in enumerate(order):
            group.append(b)
            held += sizes[b]
            if held >= self.buffer_rows or i == len(order) - 1:
                rows = np.concatenate([np.arange(src.bounds[g], src.bounds[g + 1])
                                       for g in group])
                perm = torch.randperm(len(rows), generator=generator, device=device)
                parts.append(rows[perm.cpu().numpy()])
                group, held = [], 0
        return torch.from_numpy(np.concatenate(parts)).to(device)

    def batches(self, indices: list[Tensor]) -> Iterator[Tensor]:
        """The rows of each index tensor, read ahead on a background thread.

        The indices (device tensors: slices of the epoch's permutation) come to the host
        together, in one transfer per epoch, before the thread starts; the thread never
        touches the device."""
        sizes = [len(idx) for idx in indices]
        flat = (torch.cat([idx.reshape(-1) for idx in indices]).cpu().numpy() if indices
                else np.empty(0, np.int64))
        host = np.split(flat, np.cumsum(sizes)[:-1]) if indices else []
        items: queue.Queue = queue.Queue(maxsize=PREFETCH)
        stop = threading.Event()
        pin = self.device.type == "cuda"

        def put(item: Any) -> bool:
            while not stop.is_set():
                try:
                    items.put(item, timeout=0.1)
                    return True
                except queue.Full:
                    continue
            return False

        def work() -> None:
            try:
                for rows in host:
                    x = torch.from_numpy(self.take(rows))
                    if not put(x.pin_memory() if pin else x):
                        return
            except BaseException as exc:        # re-raised in the training thread
                put(exc)

        thread = threading.Thread(target=work, name="aekit-prefetch", daemon=True)
        thread.start()
        try:
            for _ in indices:
                item = items.get()
                if isinstance(item, BaseException):
                    raise item
                yield item.to(self.device, non_blocking=pin)
        finally:
            stop.set()
            thread.join()


class RowView:
    """Rows ``base[index]`` of a tensor, gathered when used: e.g. the training part of a
    validation split, which then costs no second copy of the data on the device.

    Used like the tensor it stands for (what the loop and the model hooks use of the
    training rows: ``len``, ``shape``, ``device``, ``dtype``, ``x[a:b]`` and ``x[idx]``
    return the gathered rows); a torch function given it (e.g. ``torch.bernoulli``)
    gets the gathered rows, :meth:`rows`.
    """

    def __init__(self, base: Tensor, index: Tensor) -> None:
        self.base, self.index = base, index.to(base.device)

    def __len__(self) -> int:
        return len(self.index)

    @property
    def shape(self) -> torch.Size:
        return torch.Size((len(self.index), *self.base.shape[1:]))

    @property
    def device(self) -> torch.device:
        return self.base.device

    @property
    def dtype(self) -> torch.dtype:
        return self.base.dtype

    def __getitem__(self, key: Any) -> Tensor:
        if isinstance(key, Tensor):
            key = key.to(self.index.device)
        return self.base[self.index[key]]

    def rows(self) -> Tensor:
        """All the rows, gathered (a copy)."""
        return self.base[self.index]

    @classmethod
    def __torch_function__(cls, func: Any, types: Any, args: Any = (), kwargs: Any = None
                           ) -> Any:
        def gather(a: Any) -> Any:
            return a.rows() if isinstance(a, RowView) else a

        args, kwargs = tree_map(gather, (tuple(args), dict(kwargs or {})))
        return func(*args, **kwargs)


def iter_batches(x: Any, indices: list[Tensor]) -> Iterator[Tensor]:
    """Rows ``x[idx]`` for each index tensor: read ahead for streamed rows."""
    if isinstance(x, StreamedRows):
        return x.batches(indices)
    return (x[idx] for idx in indices)


class CheckedSource:
    """A source read for inference (``transform``, ``score_samples``, ...): every chunk is
    checked as it is read, for finite numbers and by each function in ``checks`` (e.g. the
    likelihood's support), and comes back flat, ``(B, D)``."""

    def __init__(self, source: Source, input_shape: tuple[int, ...], owner: str) -> None:
        if tuple(source.row_shape) != tuple(input_shape):
            raise InputError(f"the data have rows of shape {tuple(source.row_shape)}, but "
                             f"{owner} was fitted on rows of shape {tuple(input_shape)}")
        self.source = source
        self.checks: list[Callable[[np.ndarray], None]] = []

    def __len__(self) -> int:
        return self.source.n_rows

    @property
    def shape(self) -> tuple[int, int]:
        return (len(self), math.prod(self.source.row_shape))

    def chunks(self, rows_per_chunk: int) -> Iterator[np.ndarray]:
        start = 0
        for chunk in iter_chunks(self.source, rows_per_chunk):
            flat = chunk.reshape(len(chunk), -1)
            check_finite(flat, start)
            for check in self.checks:
                check(flat)
            yield flat
            start += len(flat)


def iter_chunks(data: Any, rows_per_chunk: int) -> Iterator[np.ndarray]:
    """Consecutive chunks of at most ``rows_per_chunk`` rows, in their own shape, of an
    array or a source."""
    if isinstance(data, Source):
        for block in data.iter_blocks():
            for a in range(0, len(block), rows_per_chunk):
                yield block[a:a + rows_per_chunk]
    else:
        for a in range(0, len(data), rows_per_chunk):
            yield np.asarray(data[a:a + rows_per_chunk])


def row_chunks(X: np.ndarray | CheckedSource, rows_per_chunk: int) -> Iterator[np.ndarray]:
    """Consecutive chunks of at most ``rows_per_chunk`` rows of an array or a source."""
    if isinstance(X, CheckedSource):
        return X.chunks(rows_per_chunk)
    return (X[a:a + rows_per_chunk] for a in range(0, len(X), rows_per_chunk))


def head(source: Source, n: int) -> np.ndarray:
    """The first ``n`` rows of ``source`` (or all of them), in memory."""
    parts, held = [], 0
    for block in source.iter_blocks():
        parts.append(block[:n - held])
        held += len(parts[-1])
        if held >= n:
            break
    return np.concatenate(parts)


def write_rows(path: str | os.PathLike, chunks: Iterator[np.ndarray], n_rows: int,
               column_prefix: str = "x", columns: list[str] | None = None) -> None:
    """Write chunks of rows to ``path`` as they come: ``.npy`` (2-D, float32),
    ``.parquet`` (one row group per chunk; needs pyarrow) or ``.csv`` (a header line, then
    one line per row). Columns are named ``columns``, else ``{column_prefix}0``, ...
    Atomic: the file appears only when complete."""

    path = Path(path)
    if path.suffix not in (".npy", ".parquet", ".csv"):
        raise InputError(f"output {str(path)!r} should end in .npy, .parquet or .csv")

    def names_of(chunk: np.ndarray) -> list[str]:
        if columns is not None and len(columns) == chunk.shape[1]:
            return [str(c) for c in columns]
        return ([column_prefix] if chunk.shape[1] == 1
                else [f"{column_prefix}{i}" for i in range(chunk.shape[1])])

    def write_csv(tmp: str) -> None:
        written = 0
        with open(tmp, "w", newline="") as f:
            out = csv.writer(f)
            for chunk in chunks:
                chunk = np.asarray(chunk, dtype=np.float32).reshape(len(chunk), -1)
                if written == 0:
                    out.writerow(names_of(chunk))
                # str of a float32: the shortest text that reads back to the same value
                out.writerows([[str(v) for v in row] for row in chunk])
                written += len(chunk)
        if written != n_rows:
            raise InputError(f"wrote {written} rows, expected {n_rows}")

    def write_npy(tmp: str) -> None:
        written = 0
        with open(tmp, "wb") as f:
            for chunk in chunks:
                chunk = np.ascontiguousarray(chunk, dtype=np.float32).reshape(len(chunk), -1)
                if written == 0:
                    header = {"descr": "<f4", "fortran_order": False,
                              "shape": (n_rows, *chunk.shape[1:])}
                    np.lib.format.write_array_header_1_0(f, header)
                f.write(chunk.tobytes())
                written += len(chunk)
        if written != n_rows:
            raise InputError(f"wrote {written} rows, expected {n_rows}")

    def write_parquet(tmp: str) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        writer = None
        try:
            for chunk in chunks:
                chunk = np.asarray(chunk, dtype=np.float32).reshape(len(chunk), -1)
                names = names_of(chunk)
                table = pa.table({n: chunk[:, i] for i, n in enumerate(names)})
                if writer is None:
                    writer = pq.ParquetWriter(tmp, table.schema)
                writer.write_table(table)
        finally:
            if writer is not None:
                writer.close()

    writers = {".npy": write_npy, ".parquet": write_parquet, ".csv": write_csv}
    atomic_write(path, writers[path.suffix])

