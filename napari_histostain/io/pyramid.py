"""Lazy multiscale pyramid of a slide: one dask array per level, chunked on the slide's native tiles.

Nothing is read until a chunk is computed; each chunk is exactly one native tile of its level, read
with one `Slide.read_region` call and kept in a bounded, thread-safe LRU cache shared by the levels.
"""

from __future__ import annotations

import functools
import os
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

import dask.array as da
import numpy as np

from .native_tiles import paste_tile, tiles_covering
from .tile_cache import DEFAULT_CACHE_BYTES, TileCache

if TYPE_CHECKING:
    from .slide import Slide


def _default_workers() -> int:
    """Threads a view may decode on: dask's `num_workers` setting, else the CPU count."""
    import dask

    return int(dask.config.get("num_workers", None) or os.cpu_count() or 1)


@functools.cache
def _pool() -> ThreadPoolExecutor:
    return ThreadPoolExecutor(
        max_workers=max(2, os.cpu_count() or 1), thread_name_prefix="histostain-tiles"
    )


def _axis_range(index, n: int) -> tuple[int, int, int] | None:
    """(start, stop, step) for a slice or an int along an axis of length n; None when unsupported."""
    if isinstance(index, slice):
        start, stop, step = index.indices(n)
        return (start, max(start, stop), step) if step > 0 else None
    if isinstance(index, int | np.integer):
        i = int(index) + (n if index < 0 else 0)
        if not 0 <= i < n:
            raise IndexError(f"index {index} is out of bounds for axis with size {n}")
        return i, i + 1, 1
    return None


def _split_key(key, shape: tuple[int, ...]):
    """Split a basic index into y and x ranges plus the rest; None for anything else (fancy, newaxis)."""
    if not isinstance(key, tuple):
        key = (key,)
    if any(k is Ellipsis for k in key):
        i = key.index(Ellipsis)
        key = key[:i] + (slice(None),) * (len(shape) - len(key) + 1) + key[i + 1 :]
    key = key + (slice(None),) * (len(shape) - len(key))
    if len(key) != len(shape):
        return None
    ry, rx = _axis_range(key[0], shape[0]), _axis_range(key[1], shape[1])
    if ry is None or rx is None:
        return None
    # what is left to apply to the gathered (h, w, 3) window: the steps, int squeezes, channels
    rest = tuple(
        0 if not isinstance(k, slice) else slice(None, None, r[2] if r[2] != 1 else None)
        for k, r in ((key[0], ry), (key[1], rx))
    )
    return ry, rx, rest + (key[2],)


class SlideLevelArray:
    """Array-like (height, width, 3) uint8 view of one level; `__getitem__` reads what it needs.

    Any region is gathered from the native tiles it touches: each tile comes from the cache or is
    decoded with one `Slide.read_region` call and copied straight into the output. Tiles are
    decoded on up to `workers` threads (OpenSlide releases the GIL while it decodes).
    """

    ndim = 3
    dtype = np.dtype(np.uint8)

    def __init__(self, slide: Slide, level: int, cache: TileCache | None):
        self.slide = slide
        self.level = level
        w, h = slide.level_dimensions[level]
        self.shape = (h, w, 3)
        self.tile_w, self.tile_h = slide.info.tile_sizes[level]
        self.cache = cache
        self._downsample = slide.level_downsamples[level]

    def tile(self, ty: int, tx: int) -> np.ndarray:
        """Native tile (row ty, column tx), clipped to the level; from the cache when there."""
        H, W = self.shape[:2]
        y0, x0 = ty * self.tile_h, tx * self.tile_w
        key = (self.level, ty, tx)
        tile = self.cache.get(key) if self.cache is not None else None
        if tile is None:
            ds = self._downsample
            size = (min(self.tile_w, W - x0), min(self.tile_h, H - y0))
            tile = self.slide.read_region((round(x0 * ds), round(y0 * ds)), self.level, size)
            if self.cache is not None:
                if not tile.flags.c_contiguous:  # an RGB view of RGBA pixels holds 4/3 of its size
                    compact = np.empty(tile.shape, np.uint8)
                    whole = range(y0, y0 + size[1]), range(x0, x0 + size[0])
                    paste_tile(compact, *whole, ty, tx, tile, self.tile_h, self.tile_w)
                    tile = compact
                tile.setflags(write=False)
                self.cache.put(key, tile)
        return tile

    def read(self, y: range, x: range, workers: int = 1) -> np.ndarray:
        """The (len(y), len(x), 3) region at rows y and columns x (step 1), from its native tiles."""
        out = np.empty((len(y), len(x), 3), np.uint8)
        if not out.size:
            return out
        th, tw = self.tile_h, self.tile_w
        tiles = tiles_covering(y, x, th, tw)

        def copy_share(share: list[tuple[int, int]]) -> None:
            for ty, tx in share:
                paste_tile(out, y, x, ty, tx, self.tile(ty, tx), th, tw)

        workers = max(1, min(workers, len(tiles)))
        futures = [_pool().submit(copy_share, tiles[i::workers]) for i in range(1, workers)]
        copy_share(tiles[::workers])  # this thread takes one share, the pool the others
        for f in futures:
            f.result()
        return out

    def __getitem__(self, key) -> np.ndarray:
        split = _split_key(key, self.shape)
        if split is None:
            raise IndexError(f"only basic indexing (ints and slices) is supported, got {key!r}")
        (y0, y1, _), (x0, x1, _), rest = split
        return self.read(range(y0, y1), range(x0, x1))[rest]


def level_arrays(slide: Slide, cache_bytes: int = DEFAULT_CACHE_BYTES) -> list[SlideLevelArray]:
    """One `SlideLevelArray` per level, sharing one tile cache (0 bytes disables caching)."""
    cache = TileCache(cache_bytes) if cache_bytes > 0 else None
    return [SlideLevelArray(slide, lv, cache) for lv in range(slide.level_count)]


class _Window:
    """A fixed region of a level as an array-like; dask reads it in one call (see `SlideLevel`)."""

    ndim = 3
    dtype = np.dtype(np.uint8)

    def __init__(self, level: SlideLevelArray, y: range, x: range):
        self.level, self.y, self.x = level, y, x
        self.shape = (len(y), len(x), 3)

    def __getitem__(self, key) -> np.ndarray:
        (y0, y1, _), (x0, x1, _), rest = _split_key(key, self.shape)
        window = self.level.read(self.y[y0:y1], self.x[x0:x1], workers=_default_workers())
        return window[rest]


class SlideLevel(da.Array):
    """One pyramid level as a dask array chunked on the slide's native tiles.

    A basic-slice view (what napari asks for while panning and zooming) becomes a dask array of a
    single chunk whose one task gathers the native tiles of the view: from the tile cache, or decoded
    on dask's `num_workers` threads. A graph with one task per tile would cost about as much per tile
    as decoding it: dask culls in time proportional to the level's chunk count (24k for a 40k x 40k
    slide), then schedules and concatenates every tile. Anything else (fancy indexing, reductions,
    map_blocks) uses the regular per-tile graph.
    """

    level_array: SlideLevelArray

    def __getitem__(self, index):
        split = _split_key(index, self.shape)
        if split is None or not hasattr(self, "level_array"):
            return super().__getitem__(index)
        (y0, y1, _), (x0, x1, _), rest = split
        if y1 <= y0 or x1 <= x0:
            return super().__getitem__(index)
        window = _Window(self.level_array, range(y0, y1), range(x0, x1))
        view = da.from_array(
            window,
            chunks=window.shape,
            name=f"{self.name}-view-{y0}-{y1}-{x0}-{x1}",
            asarray=False,
            fancy=False,
            lock=False,
            inline_array=True,
            meta=np.empty((0, 0, 0), np.uint8),
        )[rest]
        out = _SlideView(view.dask, view.name, view.chunks, meta=view._meta)
        out.window, out.rest = window, rest
        return out

    def __array__(self, dtype=None, copy=None, **kwargs):
        """The whole level, read in this thread (see `_SlideView.__array__`)."""
        if not hasattr(self, "level_array"):
            return super().__array__(dtype, copy, **kwargs)
        arr = self.level_array
        whole = arr.read(range(arr.shape[0]), range(arr.shape[1]), workers=_default_workers())
        return whole if dtype is None else whole.astype(dtype, copy=False)


class _SlideView(da.Array):
    """A basic-slice view of a `SlideLevel`: a dask array of one task.

    `np.asarray` (how napari reads what it shows) runs that task in the calling thread instead of
    handing it to dask's scheduler: the scheduler's overhead (and, on first use, importing
    `distributed` to look for a client, about 0.5 s) would otherwise stall napari's GUI thread.
    `compute()` and anything built on the view use the regular graph.
    """

    window: _Window
    rest: tuple

    def __array__(self, dtype=None, copy=None, **kwargs):
        if not hasattr(self, "window"):
            return super().__array__(dtype, copy, **kwargs)
        out = np.ascontiguousarray(self.window[:, :, :][self.rest])
        return out if dtype is None else out.astype(dtype, copy=False)


def slide_pyramid(slide: Slide, cache_bytes: int = DEFAULT_CACHE_BYTES) -> list[SlideLevel]:
    """The slide as a list of lazy dask arrays (largest first), chunked on native tiles.

    Levels smaller than 2 x 2 px are dropped (napari needs at least that).
    """
    out = []
    for arr in level_arrays(slide, cache_bytes):
        if min(arr.shape[:2]) < 2:
            break
        plain = da.from_array(
            arr,
            chunks=(arr.tile_h, arr.tile_w, 3),
            name=f"histostain-{abs(hash((slide.info.path, arr.level))):x}-{arr.level}",
            asarray=False,
            fancy=False,
            lock=False,
            meta=np.empty((0, 0, 0), np.uint8),
        )
        level = SlideLevel(plain.dask, plain.name, plain.chunks, meta=plain._meta)
        level.level_array = arr
        out.append(level)
    return out
