"""A bounded, thread-safe LRU cache of decoded tiles, sized in bytes (cachetools)."""

from __future__ import annotations

import threading

import numpy as np
from cachetools import LRUCache

#: Default size of the tile cache of the pyramid in bytes (256 MiB holds ~1,300 RGB tiles of 256 x 256).
DEFAULT_CACHE_BYTES = 256 * 2**20


class TileCache:
    """A bounded, thread-safe LRU cache of decoded tiles, sized in bytes."""

    def __init__(self, max_bytes: int = DEFAULT_CACHE_BYTES):
        self.max_bytes = int(max_bytes)
        self._cache: LRUCache = LRUCache(
            maxsize=max(self.max_bytes, 1), getsizeof=lambda a: a.nbytes
        )
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
