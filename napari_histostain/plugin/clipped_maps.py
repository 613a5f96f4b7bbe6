"""Per-tile heatmaps drawn clipped to the slide (pure compute, no Qt, no napari).

A heatmap has one pixel per tile (`results.maps`), so the last row and column of tiles overhang
the slide's bottom and right edges by up to one tile. The display array splits each tile into
`k` x `k'` pixels and keeps only the pixels inside the slide: its extent never passes the slide's
edge and falls short of it by at most `tol` of a tile. `k` is chosen per axis as the smallest
number of pixels per tile whose grid meets the slide edge within `tol` (a tile of 224 um, an edge
at 0.37 of the last tile: 3 pixels per tile, 2 kept, 10 um short), capped so that the array stays
small. A grid that ends inside the slide needs no split: its display array is the heatmap itself.

World placement follows napari's pixel centres (`results.maps`): level-0 pixel i spans
[i - 0.5, i + 0.5]; tile (r, c) spans level-0 [origin + c * t - 0.5, origin + (c + 1) * t - 0.5].
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..engine.tiling import TileLattice

#: The displayed map may end at most this fraction of a tile short of the slide's edge.
EDGE_TOLERANCE = 1.0 / 32.0
#: At most this many display pixels per tile side.
MAX_PER_TILE = 32
#: Display arrays are kept under this many pixels (a huge grid gets fewer pixels per tile).
MAX_PIXELS = 2_000_000
#: Key of the display geometry in a layer's `metadata["histostain"]`.
DISPLAY_KEY = "display"


def pixels_per_tile(inside: float, k_max: int, tol: float = EDGE_TOLERANCE) -> tuple[int, int]:
    """(k, kept): pixels per tile and how many of the last tile's `k` lie inside the slide, for
    a last tile of which the fraction `inside` (0 < inside) lies in the slide.

    The smallest k whose kept pixels (floor(inside * k): never past the edge) end within `tol`
    of a tile of the edge; else, up to `k_max`, the k that ends closest to it."""
    if inside >= 1.0 - 1e-9:
        return 1, 1
    best = (1, 0)
    best_err = inside
    for k in range(1, max(int(k_max), 1) + 1):
        kept = int(np.floor(inside * k + 1e-9))
        err = inside - kept / k
        if err <= tol + 1e-12:
            return k, kept
        if err < best_err - 1e-12:
            best, best_err = (k, kept), err
    return best


@dataclass(frozen=True)
class DisplayGrid:
    """Display pixels of a per-tile heatmap on `lattice`: `k` (rows, cols) pixels per tile,
    display pixels [0, `shape`) kept (those inside the slide)."""

    lattice: TileLattice
    k: tuple[int, int]
    shape: tuple[int, int]

    @property
    def identity(self) -> bool:
        """One pixel per tile and nothing cropped: the display array is the heatmap itself."""
        return self.k == (1, 1) and self.shape == self.lattice.shape

    @property
    def scale(self) -> tuple[float, float]:
        """(row, col) world size of one display pixel, um."""
        s = self.lattice.scale
        return (s[0] / self.k[0], s[1] / self.k[1])

    @property
    def translate(self) -> tuple[float, float]:
        """(row, col) world centre of display pixel (0, 0), um."""
        g = self.lattice
        t, (mx, my) = g.tile_px0, g.mpp
        return (
            (g.origin[1] - 0.5 + t / (2 * self.k[0])) * my,
            (g.origin[0] - 0.5 + t / (2 * self.k[1])) * mx,
        )

    def extent_um(self) -> tuple[tuple[float, float], tuple[float, float]]:
        """((row0, col0), (row1, col1)): the world box the display pixels cover, um."""
        (sr, sc), (tr, tc) = self.scale, self.translate
        top = (tr - sr / 2, tc - sc / 2)
        return top, (top[0] + self.shape[0] * sr, top[1] + self.shape[1] * sc)

    def to_dict(self) -> dict:
        return {"k": [int(v) for v in self.k], "shape": [int(v) for v in self.shape]}


def display_grid(
    lattice: TileLattice,
    slide_wh: Any,
    *,
    tol: float = EDGE_TOLERANCE,
    max_per_tile: int = MAX_PER_TILE,
    max_pixels: int = MAX_PIXELS,
) -> DisplayGrid:
    """The display pixels of heatmaps on `lattice` over a slide of level-0 `slide_wh` (width,
    height); (0, 0) or None (size unknown): one pixel per tile, nothing cropped."""
    n_rows, n_cols = lattice.shape
    w, h = (float(v) for v in (slide_wh if slide_wh is not None else (0, 0)))
    if w <= 0 or h <= 0 or n_rows <= 0 or n_cols <= 0:
        return DisplayGrid(lattice, (1, 1), lattice.shape)
    t = float(lattice.tile_px0)
    k_max = int(np.clip(np.floor(np.sqrt(max_pixels / (n_rows * n_cols))), 1, max_per_tile))
    shape, k = [], []
    for n, size, origin in ((n_rows, h, lattice.origin[1]), (n_cols, w, lattice.origin[0])):
        tiles_in = (size - origin) / t  # how many tiles (a fraction) the slide holds
        if tiles_in >= n - 1e-9:
            k.append(1)
            shape.append(n)
            continue
        last = max(int(np.floor(tiles_in + 1e-9)), 0)  # whole tiles inside
        ki, kept = pixels_per_tile(tiles_in - last, k_max, tol)
        k.append(ki)
        shape.append(last * ki + kept)
    return DisplayGrid(lattice, (k[0], k[1]), (shape[0], shape[1]))


class ClippedMap:
    """The display array of one per-tile heatmap (`source`, updated in place by `PredictionMaps`),
    kept up to date by `sync()`: only the tiles whose value changed are rewritten."""

    def __init__(self, source: np.ndarray, grid: DisplayGrid):
        self.source = source
        self.grid = grid
        #: whether `data` changed since `take_changed()` (a redraw is due)
        self.changed = True
        if grid.identity:
            self.data = source
            self._seen = None
            return
        n_rows, n_cols = grid.lattice.shape
        kr, kc = grid.k
        self._full = np.full((n_rows * kr, n_cols * kc), np.nan, np.float32)
        self._tiles = self._full.reshape(
            n_rows, kr, n_cols, kc
        )  # a view: tile (r, c) = [r, :, c, :]
        #: the array to show: the pixels inside the slide (a view of the full buffer)
        self.data = self._full[: grid.shape[0], : grid.shape[1]]
        self._seen = np.full(source.shape, np.nan, np.float32)
        self.sync()

    def sync(self) -> bool:
        """Copy the tiles of `source` that changed since the last sync; whether any did."""
        if self._seen is None:
            self.changed = True
            return True  # the display array is the source: always current
        src = self.source
        changed = (src != self._seen) & ~(np.isnan(src) & np.isnan(self._seen))
        if not changed.any():
            return False
        r, c = np.nonzero(changed)
        vals = src[r, c]
        self._tiles[r, :, c, :] = vals[:, None, None]
        self._seen[r, c] = vals
        self.changed = True
        return True

    def take_changed(self) -> bool:
        """Sync, then whether `data` changed since the last call (whether to redraw)."""
        self.sync()
        changed, self.changed = self.changed, False
        return changed

    def layer_kwargs(self) -> dict:
        """The napari placement of `data`: scale and translate (um)."""
        return {"scale": self.grid.scale, "translate": self.grid.translate}


def clipped_map(source: np.ndarray, lattice: TileLattice, slide_wh: Any) -> ClippedMap:
    """A `ClippedMap` of the heatmap `source` on `lattice` over a slide of level-0 `slide_wh`."""
    return ClippedMap(source, display_grid(lattice, slide_wh))


def maps_clip(maps: Any, marker: str, kind: str = "positivity") -> ClippedMap:
    """A `ClippedMap` of `marker`'s `kind` heatmap of `PredictionMaps` `maps`."""
    return clipped_map(maps.heatmap(marker, kind), maps.lattice, maps.slide_dimensions)


def tile_values(data: Any, lattice: TileLattice, display: dict | None) -> np.ndarray:
    """The (n_rows, n_cols) per-tile heatmap back from a display array (`DisplayGrid.to_dict()`
    as `display`; None: `data` is per tile); NaN for tiles with no pixel inside the slide."""
    arr = np.asarray(data, np.float32)
    if not display:
        return arr
    kr, kc = (int(v) for v in display["k"])
    out = np.full(lattice.shape, np.nan, np.float32)
    rows = np.arange(lattice.n_rows) * kr
    cols = np.arange(lattice.n_cols) * kc
    rr, cc = rows < arr.shape[0], cols < arr.shape[1]
    out[np.ix_(rr, cc)] = arr[np.ix_(rows[rr], cols[cc])]
    return out


def place(kw: dict, clip: ClippedMap) -> dict:
    """Napari layer kwargs `kw` (`plugin.layers`) placed for `clip.data`: its scale, translate
    and, in `metadata["histostain"]`, the display geometry (what writers need to undo it)."""
    from ..results.maps import META_KEY

    kw.update(clip.layer_kwargs())
    entry = kw.get("metadata", {}).get(META_KEY)
    if isinstance(entry, dict):
        entry.pop(DISPLAY_KEY, None)
        if not clip.grid.identity:
            entry[DISPLAY_KEY] = clip.grid.to_dict()
    return kw


def layer_tiles(data: Any, entry: dict) -> np.ndarray:
    """The per-tile heatmap of a HistoStain overlay layer's `data`, its `metadata["histostain"]`
    being `entry` (with the grid's `geometry`)."""
    lattice = TileLattice.from_dict(entry["geometry"])
    return tile_values(data, lattice, entry.get(DISPLAY_KEY))


def tile_centre_px(rowcol: Any, display: dict | None) -> np.ndarray:
    """(N, 2) display-array (row, col) coordinates of the centres of tiles `rowcol` (`display`:
    `DisplayGrid.to_dict()`; None: one pixel per tile)."""
    k = np.asarray(display["k"] if display else (1, 1), float)
    return (np.asarray(rowcol, float).reshape(-1, 2) + 0.5) * k - 0.5
