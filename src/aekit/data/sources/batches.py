"""A source over any iterable of batches."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

import numpy as np

from aekit.data.sources.source import Source, as_float32
from aekit.exceptions import InputError


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
                raise InputError(f"batch {i} has shape {batch.shape}; every batch must be "
                                 "a non-empty array of rows (B, D) or images (B, H, W)")
            if shape is None:
                shape = batch.shape[1:]
            elif batch.shape[1:] != shape:
                raise InputError(f"batch {i} has rows of shape {batch.shape[1:]}, batch 0 "
                                 f"{shape}; every batch needs the same row shape")
            sizes.append(len(batch))
        if not sizes:
            raise InputError("the iterable yielded no batches")
        self.row_shape = tuple(int(s) for s in shape)
        self.bounds = np.r_[0, np.cumsum(sizes)].astype(np.int64)

    def read_block(self, b: int) -> np.ndarray:
        if self._it is None or b < self._next:      # start over
            self._it, self._next = self._open(), 0
        while True:
            batch = next(self._it, None)
            if batch is None:
                raise InputError(f"the iterable ended after {self._next} batches; it had "
                                 f"{self.n_blocks} when it was first read")
            self._next += 1
            if self._next - 1 == b:
                batch = as_float32(batch)
                if len(batch) != self.bounds[b + 1] - self.bounds[b]:
                    raise InputError(f"batch {b} changed size between passes; an iterable "
                                     "must yield the same batches each time")
                return batch

    def iter_blocks(self) -> Iterator[np.ndarray]:
        self._it = None
        return super().iter_blocks()
