"""Streaming tile reads: background threads read and decode tiles ahead of the model, in order.

At most `queue_size` reads are in flight, so memory does not grow with the slide; closing the
iterator early cancels what is pending. `embedded_batches` is the one path from a tile grid to tile
features, on the CPU or a GPU: batches are gathered in the encoder's host buffers (page-locked on a
GPU) and, on a GPU, the next batch is launched before the previous one's features are handed out.
"""

from __future__ import annotations

import collections
import concurrent.futures
import contextlib
import os
import sys
import threading
from collections.abc import Callable, Generator, Iterable, Sequence
from typing import Any, TypeVar

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
    alloc: Callable[[int, int], np.ndarray] | None = None,
) -> Generator[tuple[np.ndarray, np.ndarray], None, None]:
    """Yield `(indices (B,), tiles uint8 (B, tile_size, tile_size, 3))` batches in order.

    Each batch is gathered in a new array from `alloc(batch_size, tile_size)` (default: numpy;
    a GPU encoder's `host_batch` gives page-locked memory); the last batch is a view of its first
    rows.
    """
    queue_size = queue_size or max(2 * batch_size, 8)
    alloc = alloc or _numpy_batch
    size = grid.tile_size
    buf_idx: list[int] = []
    buf = None
    tiles = iter_tiles(
        slide, grid, indices, threads=threads, queue_size=queue_size, reader_nice=reader_nice
    )
    with contextlib.closing(tiles):  # stop the readers when the consumer stops early
        for i, rgb in tiles:
            if buf is None:
                buf = alloc(batch_size, size)
            buf[len(buf_idx)] = rgb
            buf_idx.append(i)
            if len(buf_idx) == batch_size:
                yield np.asarray(buf_idx, np.int64), buf
                buf_idx, buf = [], None
    if buf is not None:
        yield np.asarray(buf_idx, np.int64), buf[: len(buf_idx)]


def _numpy_batch(n: int, size: int) -> np.ndarray:
    return np.empty((n, size, size, 3), np.uint8)


def embedded_batches(
    slide,
    grid: TileGrid,
    encoder,
    indices: Sequence[int] | np.ndarray | None = None,
    *,
    batch_size: int | None = None,
    threads: int = 2,
    stop: Callable[[], bool] | None = None,
) -> Generator[tuple[np.ndarray, np.ndarray, Any], None, None]:
    """Yield `(indices (B,), tiles uint8 (B, T, T, 3), features)` per batch, in order.

    `encoder` is a `TileEncoder` (`features` is its torch tensor (B, dim) on its device);
    `batch_size` defaults to the encoder's for its device. Tiles are read ahead by `threads`
    reader threads into the encoder's host buffers. On a GPU one batch is kept in flight: batch
    k+1 is gathered, uploaded and launched before batch k's features are handed out, so reading,
    copying and computing overlap (reading the features, e.g. `.cpu()`, waits for them only).
    On the CPU each batch is computed when it is handed out. When `stop()` returns True, no
    further batch is computed and the iteration ends (the caller checks why).
    """
    in_flight = 0 if encoder.device.type == "cpu" else 1
    batches = iter_batches(
        slide,
        grid,
        indices,
        batch_size=batch_size or encoder.batch_size,
        threads=threads,
        alloc=encoder.host_batch,
    )
    pending: collections.deque = collections.deque()
    with contextlib.closing(batches):
        for idx, tiles in batches:
            if stop is not None and stop():
                return
            pending.append((idx, tiles, encoder.features(tiles)))
            if len(pending) > in_flight:
                yield pending.popleft()
        while pending:
            yield pending.popleft()
