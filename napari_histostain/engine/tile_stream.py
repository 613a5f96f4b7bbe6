"""Streaming tile reads: background threads read and decode tiles ahead of the model, in order.

At most `queue_size` reads are in flight, so memory does not grow with the slide; closing the
iterator early cancels what is pending.
"""

from __future__ import annotations

import collections
import concurrent.futures
import contextlib
import os
import sys
import threading
from collections.abc import Callable, Generator, Iterable, Sequence
from typing import TypeVar

import numpy as np

from .tiling import TileGrid, read_tile

T = TypeVar("T")


#: Niceness added to tile reader threads (Linux): torch's threads keep the cores, readers fill gaps.
READER_NICE = 10


def _lower_priority(nice: int) -> None:
    """Lower the calling thread's scheduling priority (Linux only: threads are tasks there)."""
    if nice > 0 and sys.platform.startswith("linux"):
        with contextlib.suppress(OSError):  # not permitted in some sandboxes
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), nice)


def read_ahead(
    read: Callable[[int], T],
    order: Iterable[int],
    *,
    threads: int = 2,
    queue_size: int = 64,
    reader_nice: int = READER_NICE,
) -> Generator[T, None, None]:
    """Yield `read(i)` for each `i` of `order`, in order, computed ahead by background threads.

    At most `queue_size` reads are in flight or waiting, so memory does not grow with the slide.
    Closing the generator early cancels pending reads. On Linux the reader threads run at
    niceness +`reader_nice`, so they fill the gaps of the model's threads instead of stalling them.
    """
    it = iter(order)
    pool = concurrent.futures.ThreadPoolExecutor(
        max(int(threads), 1),
        thread_name_prefix="hs-tile",
        initializer=_lower_priority,
        initargs=(reader_nice,),
    )
    pending: collections.deque = collections.deque()
    try:
        for i in it:
            pending.append(pool.submit(read, i))
            if len(pending) >= max(queue_size, 1):
                break
        while pending:
            result = pending.popleft().result()
            nxt = next(it, None)
            if nxt is not None:
                pending.append(pool.submit(read, nxt))
            yield result
    finally:
        for fut in pending:
            fut.cancel()
        pool.shutdown(wait=True, cancel_futures=True)


def iter_tiles(
    slide,
    grid: TileGrid,
    indices: Sequence[int] | np.ndarray | None = None,
    *,
    threads: int = 2,
    queue_size: int = 64,
    reader_nice: int = READER_NICE,
) -> Generator[tuple[int, np.ndarray], None, None]:
    """Yield `(index, rgb uint8 (tile_size, tile_size, 3))` in order, read ahead by `read_ahead`."""
    order = range(len(grid)) if indices is None else [int(i) for i in indices]
    return read_ahead(
        lambda i: (i, read_tile(slide, grid, i)),
        order,
        threads=threads,
        queue_size=queue_size,
        reader_nice=reader_nice,
    )


def iter_batches(
    slide,
    grid: TileGrid,
    indices: Sequence[int] | np.ndarray | None = None,
    *,
    batch_size: int = 32,
    threads: int = 2,
    queue_size: int | None = None,
    reader_nice: int = READER_NICE,
) -> Generator[tuple[np.ndarray, np.ndarray], None, None]:
    """Yield `(indices (B,), tiles uint8 (B, tile_size, tile_size, 3))` batches in order."""
    queue_size = queue_size or max(2 * batch_size, 8)
    buf_idx: list[int] = []
    buf = np.empty((batch_size, grid.tile_size, grid.tile_size, 3), np.uint8)
    tiles = iter_tiles(
        slide, grid, indices, threads=threads, queue_size=queue_size, reader_nice=reader_nice
    )
    with contextlib.closing(tiles):  # stop the readers when the consumer stops early
        for i, rgb in tiles:
            buf[len(buf_idx)] = rgb
            buf_idx.append(i)
            if len(buf_idx) == batch_size:
                yield np.asarray(buf_idx, np.int64), buf.copy()
                buf_idx = []
    if buf_idx:
        yield np.asarray(buf_idx, np.int64), buf[: len(buf_idx)].copy()
