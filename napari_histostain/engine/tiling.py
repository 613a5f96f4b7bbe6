"""The tile grid of a slide: one global lattice of model tiles, kept where there is tissue.

The grid is one global lattice anchored at level-0 (0, 0): tile (row, col) covers level-0 pixels
[col * tile_px0, (col + 1) * tile_px0) horizontally (rounded to whole pixels), so a region grid is an
exact subset of the whole-slide grid. Tiles are read from the pyramid level closest to (and not
coarser than) the tile resolution, never from level 0 when a closer level exists.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..defaults import MAX_TILES, TILE_MPP, TILE_SIZE
from ..errors import HistostainError
from ..io.metadata import mpp_pair
from ..io.read_plan import check_region
from ..io.slide import read_level_region
from .tissue import TissueMask

#: Tiles may magnify the slide's pixels at most this much (a finer --tile-mpp is a mistake).
MAX_MAGNIFICATION = 4
#: Most lattice cells a grid is cut into (each is looked up in the tissue mask).
MAX_LATTICE_CELLS = 1 << 26


class TilingError(HistostainError):
    """The tile grid cannot be made (bad region, tile size or mpp)."""


@dataclass(frozen=True)
class TileLattice:
    """Where a regular tile lattice sits on the slide.

    `origin` is the level-0 (x, y) of the top-left corner of tile (row 0, col 0), `tile_px0` the tile
    side in level-0 px and `mpp` the slide's (mpp_x, mpp_y).
    """

    origin: tuple[float, float]
    tile_px0: float
    mpp: tuple[float, float]
    n_rows: int
    n_cols: int

    @property
    def shape(self) -> tuple[int, int]:
        return (self.n_rows, self.n_cols)

    @property
    def scale(self) -> tuple[float, float]:
        """(row, col) world size of one heatmap pixel (= one tile), um."""
        return (self.tile_px0 * self.mpp[1], self.tile_px0 * self.mpp[0])

    @property
    def translate(self) -> tuple[float, float]:
        """(row, col) world centre of tile (0, 0), um."""
        half = (self.tile_px0 - 1.0) / 2.0
        return ((self.origin[1] + half) * self.mpp[1], (self.origin[0] + half) * self.mpp[0])

    def tile_centre_um(self, row: Any, col: Any) -> np.ndarray:
        """World (row, col) centre of tile(s) (row, col), um."""
        t = np.asarray(self.translate)
        s = np.asarray(self.scale)
        return np.stack([t[0] + np.asarray(row) * s[0], t[1] + np.asarray(col) * s[1]], axis=-1)

    def world_to_rowcol(self, world_rc: Any) -> tuple[int, int]:
        """The (row, col) of the tile under a world point (may lie outside the grid)."""
        t = np.asarray(self.translate)
        s = np.asarray(self.scale)
        rc = np.floor((np.asarray(world_rc, float)[-2:] - t) / s + 0.5).astype(int)
        return int(rc[0]), int(rc[1])

    def world_box_to_px0(self, top_left: Any, bottom_right: Any) -> tuple[int, int, int, int]:
        """A world (row, col) box in um as a level-0 (x, y, w, h) box clipped at 0."""
        y0 = max(0.0, float(top_left[0]) / self.mpp[1])
        x0 = max(0.0, float(top_left[1]) / self.mpp[0])
        y1 = max(y0, float(bottom_right[0]) / self.mpp[1])
        x1 = max(x0, float(bottom_right[1]) / self.mpp[0])
        return int(x0), int(y0), int(np.ceil(x1 - int(x0))), int(np.ceil(y1 - int(y0)))

    def to_dict(self) -> dict:
        return {
            "origin": [float(v) for v in self.origin],
            "tile_px0": float(self.tile_px0),
            "mpp": [float(v) for v in self.mpp],
            "n_rows": int(self.n_rows),
            "n_cols": int(self.n_cols),
        }

    @classmethod
    def from_dict(cls, d: Mapping) -> TileLattice:
        return cls(
            origin=(float(d["origin"][0]), float(d["origin"][1])),
            tile_px0=float(d["tile_px0"]),
            mpp=mpp_pair(d["mpp"]),
            n_rows=int(d["n_rows"]),
            n_cols=int(d["n_cols"]),
        )


@dataclass
class TileGrid:
    """Tiles of `tile_size` px at `tile_mpp` um/px, as kept after tissue filtering.

    `coords` are level-0 (x, y) of each tile's top-left corner; a tile spans `tile_px0` level-0
    pixels (a float: tile_size * tile_mpp / slide_mpp) and is read as `read_size` px at `level`.
    """

    tile_size: int
    tile_mpp: float
    level: int
    read_size: int
    coords: np.ndarray  # (N, 2) int64 level-0 (x, y)
    tile_px0: float
    rowcol: np.ndarray  # (N, 2) int64 (row, col) in the global lattice
    tissue_fraction: np.ndarray  # (N,) float32
    n_rows: int
    n_cols: int
    slide_mpp: tuple[float, float]
    level_downsample: float = 1.0
    region: tuple[int, int, int, int] | None = None
    slide_dimensions: tuple[int, int] = (0, 0)
    extra: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.coords.shape[0])

    @property
    def lattice(self) -> TileLattice:
        """Where this grid's lattice lies on the slide (anchored at level-0 (0, 0))."""
        return TileLattice((0.0, 0.0), self.tile_px0, self.slide_mpp, self.n_rows, self.n_cols)

    def tiles_in_box(self, box: Sequence[float], *, centre_first: bool = False) -> np.ndarray:
        """Indices of the tiles that intersect a level-0 (x, y, w, h) box; with `centre_first`,
        ordered by distance from the box centre (what the viewer computes first)."""
        x, y, w, h = (float(v) for v in box)
        t = self.tile_px0
        c = self.coords.astype(np.float64)
        hit = (c[:, 0] < x + w) & (c[:, 0] + t > x) & (c[:, 1] < y + h) & (c[:, 1] + t > y)
        idx = np.flatnonzero(hit)
        if centre_first and len(idx):
            d = np.hypot(*(c[idx] + t / 2 - np.array([x + w / 2, y + h / 2])).T)
            idx = idx[np.argsort(d, kind="stable")]
        return idx

    @property
    def tile_size_px0(self) -> int:
        """Tile side as a whole number of level-0 pixels (what tables and overlays use)."""
        return int(round(self.tile_px0))

    def centres_um(self) -> np.ndarray:
        """(N, 2) world (row, col) micrometre coordinates of tile centres (napari convention)."""
        half = (self.tile_px0 - 1.0) / 2.0
        mx, my = self.slide_mpp
        return np.stack(
            [(self.coords[:, 1] + half) * my, (self.coords[:, 0] + half) * mx], axis=1
        ).astype(np.float64)

    def subset(self, indices: Sequence[int] | np.ndarray) -> TileGrid:
        """A grid holding only the given tiles (same lattice)."""
        idx = np.asarray(indices, np.int64)
        return TileGrid(
            self.tile_size,
            self.tile_mpp,
            self.level,
            self.read_size,
            self.coords[idx],
            self.tile_px0,
            self.rowcol[idx],
            self.tissue_fraction[idx],
            self.n_rows,
            self.n_cols,
            self.slide_mpp,
            self.level_downsample,
            self.region,
            self.slide_dimensions,
            dict(self.extra),
        )

    def index_of(self, rowcol: np.ndarray) -> np.ndarray:
        """Indices of tiles with the given (row, col) pairs in this grid; -1 where absent."""
        keys = self.rowcol[:, 0] * self.n_cols + self.rowcol[:, 1]
        rc = np.asarray(rowcol, np.int64).reshape(-1, 2)
        q = rc[:, 0] * self.n_cols + rc[:, 1]
        if len(keys) == 0:
            return np.full(len(q), -1, np.int64)
        order = np.argsort(keys, kind="stable")
        pos = np.clip(np.searchsorted(keys[order], q), 0, len(keys) - 1)
        return np.where(keys[order][pos] == q, order[pos], -1)

    def to_map(self, values: np.ndarray, fill: float = np.nan) -> np.ndarray:
        """Per-tile `values` (N,) as an (n_rows, n_cols) float32 image of the lattice; `fill` elsewhere."""
        out = np.full((self.n_rows, self.n_cols), fill, np.float32)
        out[self.rowcol[:, 0], self.rowcol[:, 1]] = values
        return out

    def to_dict(self) -> dict:
        """Grid parameters (not the per-tile arrays) as plain JSON types."""
        return {
            "tile_size": self.tile_size,
            "tile_mpp": self.tile_mpp,
            "tile_px0": self.tile_px0,
            "level": self.level,
            "level_downsample": self.level_downsample,
            "read_size": self.read_size,
            "n_rows": self.n_rows,
            "n_cols": self.n_cols,
            "n_tiles": len(self),
            "slide_mpp": list(self.slide_mpp),
            "slide_dimensions": list(self.slide_dimensions),
            "region": list(self.region) if self.region else None,
        }


def level_for_tiles(slide, tile_mpp: float, tile_size: int) -> tuple[int, int, float]:
    """(level, read_size, tile_px0): the closest pyramid level not coarser than `tile_mpp`."""
    mpp = float(slide.mpp[0])
    tile_px0 = tile_size * tile_mpp / mpp
    level = slide.best_level_for_downsample(max(tile_mpp / mpp, 1.0))
    read_size = max(int(round(tile_px0 / slide.level_downsamples[level])), 1)
    return level, read_size, tile_px0


def make_grid(
    slide,
    *,
    tile_mpp: float = TILE_MPP,
    tile_size: int = TILE_SIZE,
    tissue: TissueMask | None = None,
    min_tissue: float = 0.25,
    region: tuple[int, int, int, int] | None = None,
    max_tiles: int | None = MAX_TILES,
) -> TileGrid:
    """Tiles of `slide` with at least `min_tissue` tissue (detected when `tissue` is None).

    An image smaller than one tile is one tile, kept whatever its tissue (a field of view; the grid's
    `extra["note"]` says so). `region` is a level-0 (x, y, w, h) box; tiles intersecting it are
    kept. `min_tissue=0` keeps
    every tile of the lattice (tissue is then not detected unless given). More than `max_tiles`
    kept tiles (None: no cap), tiles much finer than the slide's pixels or a lattice of more than
    `MAX_LATTICE_CELLS` cells raise `TilingError` before any tile is read.
    """
    if tile_size <= 0 or tile_mpp <= 0:
        raise TilingError(
            f"tile size and mpp must be positive, got {tile_size} px at {tile_mpp} um/px"
        )
    W, H = slide.dimensions
    level, read_size, tile_px0 = level_for_tiles(slide, tile_mpp, tile_size)
    if tile_px0 > max(W, H) * 4:
        raise TilingError(
            f"one {tile_size} px tile at {tile_mpp} um/px spans {tile_px0:.0f} slide pixels, far more "
            f"than the slide ({W} x {H}); check the slide's mpp ({slide.mpp[0]:.3f} um/px)."
        )
    if tile_px0 * MAX_MAGNIFICATION < tile_size:
        raise TilingError(
            f"tiles at {tile_mpp:g} um/px are more than {MAX_MAGNIFICATION}x finer than the slide's "
            f"pixels ({slide.mpp[0]:.3g} um/px): each {tile_size} px tile would magnify "
            f"{tile_px0:.3g} slide pixels. Use a --tile-mpp of at least "
            f"{slide.mpp[0] / MAX_MAGNIFICATION:.3g}, or check the slide's pixel size (--mpp)."
        )
    info = getattr(slide, "info", None)
    if info is not None:  # one tile read must fit the read budget
        check_region(info, level, read_size, read_size)
    n_cols = max(int(np.ceil(W / tile_px0 - 1e-9)), 1)
    n_rows = max(int(np.ceil(H / tile_px0 - 1e-9)), 1)
    r0, r1, c0, c1 = 0, n_rows, 0, n_cols
    if region is not None:
        rx, ry, rw, rh = (float(v) for v in region)
        if rw <= 0 or rh <= 0:
            raise TilingError(
                f"region {tuple(region)} has no area; give (x, y, width, height) > 0."
            )
        if rx >= W or ry >= H or rx + rw <= 0 or ry + rh <= 0:
            raise TilingError(f"region {tuple(region)} lies outside the slide ({W} x {H} px).")
        c0 = max(int(np.floor(rx / tile_px0)), 0)
        r0 = max(int(np.floor(ry / tile_px0)), 0)
        c1 = min(int(np.ceil((rx + rw) / tile_px0)), n_cols)
        r1 = min(int(np.ceil((ry + rh) / tile_px0)), n_rows)
    cells = (r1 - r0) * (c1 - c0)
    small = n_rows == 1 and n_cols == 1 and (tile_px0 > W or tile_px0 > H)
    if cells > MAX_LATTICE_CELLS:
        raise TilingError(
            f"{tile_size} px tiles at {tile_mpp:g} um/px cut this slide ({W} x {H} px at "
            f"{slide.mpp[0]:.3g} um/px) into {cells:,} cells, more than {MAX_LATTICE_CELLS:,}; "
            "check the slide's pixel size and --tile-mpp, or predict a --region."
        )
    if min_tissue > 0 and tissue is None and not small:
        from .tissue import detect_tissue

        tissue = detect_tissue(slide)
    # row bands of at most ~1M cells keep the lattice's arrays small on any slide
    band = max(1, (1 << 20) // max(c1 - c0, 1))
    kept_coords, kept_rowcol, kept_frac = [], [], []
    n_kept = 0
    for b0 in range(r0, r1, band):
        rows, cols = np.meshgrid(
            np.arange(b0, min(b0 + band, r1)), np.arange(c0, c1), indexing="ij"
        )
        rowcol = np.stack([rows.ravel(), cols.ravel()], axis=1).astype(np.int64)
        coords = np.round(rowcol[:, ::-1] * tile_px0).astype(np.int64)  # (x, y)
        if tissue is not None:
            # an image smaller than one tile: its one tile's tissue is judged on the image only
            fw, fh = (W, H) if small else (tile_px0, tile_px0)
            frac = tissue.fractions_in(coords[:, 0], coords[:, 1], fw, fh).astype(np.float32)
        else:
            frac = np.ones(len(coords), np.float32)
        # an image smaller than one tile is a chosen field: its one tile is always analysed
        keep = frac >= min_tissue if min_tissue > 0 and not small else np.ones(len(coords), bool)
        n_kept += int(keep.sum())
        if max_tiles is not None and n_kept > max_tiles:
            raise TilingError(
                f"more than {max_tiles:,} tiles of {tile_size} px at {tile_mpp:g} um/px on this "
                f"slide ({W} x {H} px at {slide.mpp[0]:.3g} um/px); that many usually means a wrong "
                "pixel size or --tile-mpp. Check them, predict a --region, or raise the cap "
                "(--max-tiles N)."
            )
        kept_coords.append(coords[keep])
        kept_rowcol.append(rowcol[keep])
        kept_frac.append(frac[keep])
    return TileGrid(
        tile_size=int(tile_size),
        tile_mpp=float(tile_mpp),
        level=int(level),
        read_size=int(read_size),
        coords=_concat(kept_coords, (0, 2), np.int64),
        tile_px0=float(tile_px0),
        rowcol=_concat(kept_rowcol, (0, 2), np.int64),
        tissue_fraction=_concat(kept_frac, (0,), np.float32),
        n_rows=n_rows,
        n_cols=n_cols,
        slide_mpp=(float(slide.mpp[0]), float(slide.mpp[1])),
        level_downsample=float(slide.level_downsamples[level]),
        region=_box(region) if region is not None else None,
        slide_dimensions=(int(W), int(H)),
        extra={"note": small_image_note(W, H, slide.mpp, tile_px0)} if small else {},
    )


def small_image_note(W: int, H: int, mpp: Sequence[float], tile_px0: float) -> str:
    """The note of an image smaller than one tile (analysed as one tile padded with glass)."""
    return (
        f"the image ({W} x {H} px, {W * float(mpp[0]):.0f} x {H * float(mpp[1]):.0f} um) is smaller "
        f"than one tile ({tile_px0 * float(mpp[0]):.0f} um): it was analysed as one tile, the rest "
        "of the tile being background."
    )


def _concat(parts: list[np.ndarray], empty_shape: tuple[int, ...], dtype) -> np.ndarray:
    return np.concatenate(parts) if parts else np.zeros(empty_shape, dtype)


def _box(region: Sequence[float]) -> tuple[int, int, int, int]:
    x, y, w, h = (int(v) for v in region)
    return x, y, w, h


def read_tile(slide, grid: TileGrid, index: int) -> np.ndarray:
    """One tile as (tile_size, tile_size, 3) uint8, read at `grid.level` and resized if needed."""
    x, y = grid.coords[index]
    ds = grid.level_downsample
    n = grid.read_size
    rgb = read_level_region(slide, grid.level, round(int(x) / ds), round(int(y) / ds), n, n)
    if grid.read_size != grid.tile_size:
        from PIL import Image

        # BOX averages when shrinking (anti-aliased); BILINEAR when enlarging
        method = (
            Image.Resampling.BOX if grid.read_size > grid.tile_size else Image.Resampling.BILINEAR
        )
        rgb = np.asarray(Image.fromarray(rgb).resize((grid.tile_size, grid.tile_size), method))
    return rgb
