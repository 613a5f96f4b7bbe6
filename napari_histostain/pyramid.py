"""Lazy multiscale pyramid of a slide: one dask array per level, chunked on the slide's native tiles.

Nothing is read until a chunk is computed; each chunk is exactly one native tile of its level, read
with one `Slide.read_region` call and kept in a bounded, thread-safe LRU cache shared by the levels.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

import numpy as np
from cachetools import LRUCache

if TYPE_CHECKING:
    import dask.array as da

    from .slide import Slide

#: Default size of the tile cache in bytes (256 MiB holds ~1,300 RGB tiles of 256 x 256).
DEFAULT_CACHE_BYTES = 256 * 2**20


class TileCache:
    """A bounded LRU cache of decoded tiles, keyed by (level, row, col), sized in bytes."""

    def __init__(self, max_bytes: int = DEFAULT_CACHE_BYTES):
        self.max_bytes = int(max_bytes)
        self._cache: LRUCache = LRUCache(maxsize=max(self.max_bytes, 1), getsizeof=lambda a: a.nbytes)
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get(self, key):
        with self._lock:
            tile = self._cache.get(key)
            if tile is None:
                self.misses += 1
            else:
                self.hits += 1
            return tile

    def put(self, key, tile: np.ndarray) -> None:
        if tile.nbytes > self.max_bytes:
            return
        with self._lock:
            self._cache[key] = tile

    @property
    def nbytes(self) -> int:
        with self._lock:
            return int(self._cache.currsize)

    def clear(self) -> None:
        with self._lock:
            self._cache.clear()


class SlideLevelArray:
    """Array-like (height, width, 3) uint8 view of one level; `__getitem__` reads what it needs.

    dask calls it once per chunk, and chunks are aligned on native tiles, so a chunk read is one
    tile read (served from the cache when seen before).
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

    def _read(self, y0: int, x0: int, h: int, w: int) -> np.ndarray:
        ds = self._downsample
        return self.slide.read_region((round(x0 * ds), round(y0 * ds)), self.level, (w, h))

    def __getitem__(self, key) -> np.ndarray:
        if not isinstance(key, tuple):
            key = (key,)
        key = key + (slice(None),) * (3 - len(key))
        ys, xs, cs = key
        H, W = self.shape[:2]
        y0, y1, sy = ys.indices(H) if isinstance(ys, slice) else (ys, ys + 1, 1)
        x0, x1, sx = xs.indices(W) if isinstance(xs, slice) else (xs, xs + 1, 1)
        if y1 <= y0 or x1 <= x0:
            return np.zeros((max(0, y1 - y0), max(0, x1 - x0), 3), np.uint8)[..., cs]
        tw, th = self.tile_w, self.tile_h
        aligned = y0 % th == 0 and x0 % tw == 0 and y1 - y0 <= th and x1 - x0 <= tw
        if aligned and self.cache is not None:
            ck = (self.level, y0 // th, x0 // tw, y1 - y0, x1 - x0)
            out = self.cache.get(ck)
            if out is None:
                out = np.ascontiguousarray(self._read(y0, x0, y1 - y0, x1 - x0))
                out.setflags(write=False)
                self.cache.put(ck, out)
        else:
            out = self._read(y0, x0, y1 - y0, x1 - x0)
        out = out[::sy, ::sx]
        if not isinstance(ys, slice):
            out = out[0]
            return out[::sx][:, cs] if not isinstance(xs, slice) else out[:, cs]
        if not isinstance(xs, slice):
            return out[:, 0, cs]
        return out[:, :, cs]


def level_arrays(slide: Slide, cache_bytes: int = DEFAULT_CACHE_BYTES) -> list[SlideLevelArray]:
    """One `SlideLevelArray` per level, sharing one tile cache (0 bytes disables caching)."""
    cache = TileCache(cache_bytes) if cache_bytes > 0 else None
    return [SlideLevelArray(slide, lv, cache) for lv in range(slide.level_count)]


def slide_pyramid(slide: Slide, cache_bytes: int = DEFAULT_CACHE_BYTES) -> list[da.Array]:
    """The slide as a list of lazy dask arrays (largest first), chunked on native tiles.

    Levels smaller than 2 x 2 px are dropped (napari needs at least that).
    """
    import dask.array as da

    out = []
    for arr in level_arrays(slide, cache_bytes):
        if min(arr.shape[:2]) < 2:
            break
        out.append(
            da.from_array(
                arr,
                chunks=(arr.tile_h, arr.tile_w, 3),
                name=f"histostain-{abs(hash((slide.info.path, arr.level))):x}-{arr.level}",
                asarray=False,
                fancy=False,
                lock=False,
                meta=np.empty((0, 0, 0), np.uint8),
            )
        )
    return out
