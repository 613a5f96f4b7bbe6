"""Native tiles of a slide: direct decoding of tiled TIFFs, tile by tile, and pasting tiles into regions.

OpenSlide decodes a 256 x 256 JPEG tile of a TIFF-family slide (SVS, generic tiled TIFF) in about
1 ms: libjpeg, then premultiplied ARGB, then back to RGBA. Reading the tile's bytes with `os.pread`
and decoding them with tifffile's codec (imagecodecs, libjpeg-turbo) takes about 0.2 ms and runs
outside the GIL. `TiffTiles` does that for every pyramid level whose pages it can map one-to-one,
after checking once per level that its pixels equal the reference reader's; a level that differs,
or a region it cannot serve exactly (sparse tiles, sub-pixel offsets), goes to the reference reader.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from typing import Any

import numpy as np

from .tile_cache import TileCache

log = logging.getLogger(__name__)

#: Decoded-tile cache of a `TiffTiles`, as OpenSlide's own (neighbouring regions share tiles).
DECODER_CACHE_BYTES = 32 * 2**20

# TIFF compressions whose decoded pixels match OpenSlide's exactly (checked again per slide)
_COMPRESSIONS = {1, 5, 7, 8, 32946, 33003, 33005}  # none, LZW, JPEG, deflate, Aperio JPEG 2000
_PHOTOMETRICS = {2, 6}  # RGB, YCbCr


def tiles_covering(y: range, x: range, tile_h: int, tile_w: int) -> list[tuple[int, int]]:
    """(row, column) of the native tiles that rows `y` and columns `x` (step 1, non-empty) touch."""
    return [
        (ty, tx)
        for ty in range(y.start // tile_h, (y.stop - 1) // tile_h + 1)
        for tx in range(x.start // tile_w, (x.stop - 1) // tile_w + 1)
    ]


def paste_tile(
    out: np.ndarray,
    y: range,
    x: range,
    ty: int,
    tx: int,
    tile: np.ndarray,
    tile_h: int,
    tile_w: int,
) -> None:
    """Copy the part of native tile (ty, tx) inside rows `y` / columns `x` into `out` (their window).

    Fast also for an RGB view of RGBA pixels: numpy copies a 3-byte innermost axis pixel by pixel,
    about 4x slower than plane by plane.
    """
    ty0, tx0 = ty * tile_h, tx * tile_w
    ya, yb = max(y.start, ty0), min(y.stop, ty0 + tile.shape[0])
    xa, xb = max(x.start, tx0), min(x.stop, tx0 + tile.shape[1])
    dst = out[ya - y.start : yb - y.start, xa - x.start : xb - x.start]
    src = tile[ya - ty0 : yb - ty0, xa - tx0 : xb - tx0]
    if src.strides[-2] == 3:
        dst[...] = src
    else:
        for c in range(3):
            dst[..., c] = src[..., c]


class _LevelTiles:
    """The tiles of one TIFF page (one pyramid level), decoded straight from the file."""

    def __init__(self, fd: int, page: Any):
        self._fd = fd
        self._page = page
        self._offsets = page.dataoffsets
        self._counts = page.databytecounts
        self._tables = page.jpegtables
        self._decode = page.decode  # built now, while the file is open
        self.tile_h, self.tile_w = int(page.tilelength), int(page.tilewidth)
        self.height, self.width = int(page.imagelength), int(page.imagewidth)
        self.cols = -(-self.width // self.tile_w)
        subsampling = tuple(getattr(page, "subsampling", None) or ())
        self.codec = (int(page.compression), int(page.photometric), subsampling)

    def decode(self, ty: int, tx: int) -> np.ndarray | None:
        """Tile (ty, tx) as (h, w, 3) uint8, clipped to the level; None for a sparse (absent) tile."""
        index = ty * self.cols + tx
        count = self._counts[index]
        if not count:
            return None
        data = os.pread(self._fd, count, self._offsets[index])
        pixels, _, _ = self._decode(data, index, jpegtables=self._tables)
        h = min(self.tile_h, self.height - ty * self.tile_h)
        w = min(self.tile_w, self.width - tx * self.tile_w)
        return pixels.reshape(pixels.shape[-3:])[:h, :w, :3]


class TiffTiles:
    """Region reads of a tiled TIFF slide from its decoded native tiles (for the levels it serves).

    `read_level` takes level pixel coordinates and returns the level's own pixels. `read_region`
    follows OpenSlide (a level-0 location) and serves only levels of integer downsample: on a level
    of downsample 1.9999 OpenSlide shifts by a fraction of a pixel and interpolates.
    """

    def __init__(self, path: str, levels: dict[int, _LevelTiles], downsamples, background, fd: int):
        self.path = path
        self.levels = levels
        self._downsamples = downsamples
        self._background = np.asarray(background, np.uint8)
        self._fd = fd
        self._cache = TileCache(DECODER_CACHE_BYTES)

    @classmethod
    def open(
        cls,
        path: str,
        level_dimensions,
        downsamples,
        background,
        reference: Callable[[tuple[int, int], int, tuple[int, int]], np.ndarray],
    ) -> TiffTiles | None:
        """Map each level to a TIFF page and check its pixels against `reference` (an OpenSlide-like
        `read_region`); None when no level qualifies."""
        try:
            import tifffile

            with tifffile.TiffFile(path) as tif:
                pages = [
                    page for series in tif.series for level in series.levels for page in level.pages
                ]
                fd = os.open(path, os.O_RDONLY)
                levels = {}
                for lv, (w, h) in enumerate(level_dimensions):
                    page = next((p for p in pages if _servable(p, w, h)), None)
                    if page is not None:
                        levels[lv] = _LevelTiles(fd, page)  # reads the tile offsets while open
        except (
            Exception
        ) as exc:  # not a TIFF, or a layout we do not handle: the reference serves all
            log.debug("%s: no direct tile decoding (%s)", path, exc)
            return None
        tiles = cls(path, levels, downsamples, background, fd)
        # integer-downsample levels: a tile mid-slide against the reference; the others (which the
        # reference resamples) at the origin, where it does not, and only with an already verified codec
        verified = set()
        for lv in sorted(levels, key=lambda lv: not tiles.exact(lv)):
            level = levels[lv]
            exact = tiles.exact(lv)
            tile = (
                (level.height // level.tile_h // 2, level.width // level.tile_w // 2)
                if exact
                else (0, 0)
            )
            if (exact or level.codec in verified) and tiles._agrees(lv, tile, reference):
                verified.add(level.codec)
            else:
                log.info("%s: level %d is read by the reference reader, not decoded here", path, lv)
                del levels[lv]
        if not levels:
            tiles.close()
            return None
        return tiles

    def exact(self, lv: int) -> bool:
        """Whether level `lv` has an integer downsample (OpenSlide reads it without resampling)."""
        return abs(self._downsamples[lv] - round(self._downsamples[lv])) < 1e-9

    def _agrees(self, lv: int, tile: tuple[int, int], reference) -> bool:
        level = self.levels[lv]
        ty, tx = tile
        try:
            mine = level.decode(ty, tx)
            if mine is None:
                return True  # a sparse tile: nothing decoded here, the reference serves it anyway
            ds = self._downsamples[lv]
            loc = (round(tx * level.tile_w * ds), round(ty * level.tile_h * ds))
            theirs = reference(loc, lv, (mine.shape[1], mine.shape[0]))
            return bool(np.array_equal(mine, theirs))
        except Exception:
            return False

    def _tile(self, lv: int, ty: int, tx: int) -> np.ndarray | None:
        key = (lv, ty, tx)
        tile = self._cache.get(key)
        if tile is None:
            tile = self.levels[lv].decode(ty, tx)
            if tile is not None:
                self._cache.put(key, tile)
        return tile

    def read_region(
        self, location: tuple[int, int], lv: int, size: tuple[int, int]
    ) -> np.ndarray | None:
        """The region as OpenSlide reads it, (h, w, 3) uint8; None when not served exactly here."""
        if lv not in self.levels or not self.exact(lv):
            return None
        ds = round(self._downsamples[lv])
        if location[0] % ds or location[1] % ds:
            return None  # a sub-pixel origin at this level: OpenSlide resamples
        return self.read_level(lv, location[0] // ds, location[1] // ds, size[0], size[1])

    def read_level(self, lv: int, x0: int, y0: int, w: int, h: int) -> np.ndarray | None:
        """(h, w, 3) uint8 pixels of level `lv` from level pixel (x0, y0), background outside the
        level; None when the level, or a (sparse) tile of the region, is not served here."""
        level = self.levels.get(lv)
        if level is None:
            return None
        out = np.empty((h, w, 3), np.uint8)
        xs, ys, xe, ye = max(x0, 0), max(y0, 0), min(x0 + w, level.width), min(y0 + h, level.height)
        if xs >= xe or ys >= ye or xs > x0 or ys > y0 or xe < x0 + w or ye < y0 + h:
            out[:] = self._background  # partly outside the level: background there
        if xs >= xe or ys >= ye:
            return out
        ry, rx = range(ys, ye), range(xs, xe)
        inner = out[ys - y0 : ye - y0, xs - x0 : xe - x0]
        for ty, tx in tiles_covering(ry, rx, level.tile_h, level.tile_w):
            tile = self._tile(lv, ty, tx)
            if tile is None:
                return None
            paste_tile(inner, ry, rx, ty, tx, tile, level.tile_h, level.tile_w)
        return out

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


def _servable(page: Any, width: int, height: int) -> bool:
    """A tiled, 8-bit, 3-sample, contiguous RGB/YCbCr page of this size in a compression we check."""
    return (
        page.is_tiled
        and int(page.imagewidth) == width
        and int(page.imagelength) == height
        and int(page.samplesperpixel) == 3
        and int(page.bitspersample) == 8
        and int(page.planarconfig) == 1
        and int(page.compression) in _COMPRESSIONS
        and int(page.photometric) in _PHOTOMETRICS
        and int(page.imagedepth) == 1
    )
