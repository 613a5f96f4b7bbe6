"""Ki-67 as pathology reports it (International Ki67 in Breast Cancer Working Group, IKWG).

- Global score: the index of each field (tile) with counted tumour cells, averaged with the field's
  tissue area as its weight, over the tumour or over the tiles of an annotation.
- Hot-spot score: the circular field with the most positive tumour nuclei, of a given area
  (default 0.2 mm^2, a 40x high-power field) or holding a given number of tumour cells, searched
  over the whole slide from the counted nuclei's positions (a KD-tree queried at centres on a grid,
  then on a finer grid around the best one).
- `insufficient` when fewer than `MIN_CELLS` (500) tumour cells were counted, for the global
  score and for the hot spot; the WHO grade of neuroendocrine tumours on request (hot spot, >= 500
  cells; G1 < 3 %, G2 3-20 %, G3 > 20 %).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

from .errors import IHCError

#: tumour cells a score needs (IKWG; WHO grading of neuroendocrine tumours)
MIN_CELLS = 500
#: default hot-spot field area, mm^2 (a 40x high-power field)
HOTSPOT_AREA_MM2 = 0.2
#: WHO neuroendocrine grade cut-offs on the hot-spot Ki-67 index (%): G1 < 3, G2 3-20, G3 > 20
NET_CUTOFFS = (3.0, 20.0)


@dataclass(frozen=True)
class HotSpot:
    """The hot-spot field: centre (level-0 px and um), radius (um), cells counted in it."""

    x_px: float
    y_px: float
    x_um: float
    y_um: float
    radius_um: float
    area_mm2: float
    n_cells: int
    n_positive: int
    index: float  # % positive tumour nuclei in the field (NaN without cells)
    insufficient: bool  # fewer than MIN_CELLS tumour cells in the field


@dataclass(frozen=True)
class Ki67Report:
    """Global and hot-spot Ki-67 of a slide (or of an annotation's tiles)."""

    global_index: float  # area-weighted mean of the fields' indices (%)
    pooled_index: float  # all counted positive / all counted tumour nuclei (%)
    n_cells: int  # counted tumour cells in the fields scored
    n_positive: int
    n_fields: int  # fields (tiles) with counted tumour cells
    insufficient: bool  # n_cells < MIN_CELLS
    hotspot: HotSpot | None  # None without counted cells
    net_grade: str | None = None  # "G1" / "G2" / "G3"; "insufficient"; None when not asked

    def to_dict(self) -> dict:
        d = asdict(self)
        return _finite(d)


def net_grade(index: float, n_cells: int) -> str:
    """WHO grade of a neuroendocrine tumour from its hot-spot Ki-67 index (%) and cell count."""
    if n_cells < MIN_CELLS or not math.isfinite(index):
        return "insufficient"
    if index < NET_CUTOFFS[0]:
        return "G1"
    if index <= NET_CUTOFFS[1]:
        return "G2"
    return "G3"


def global_score(
    counts: np.ndarray, tissue_px: np.ndarray, tiles: np.ndarray | None = None
) -> tuple[float, float, int, int, int]:
    """(global index %, pooled index %, cells, positive, fields) from per-tile counted nuclei per
    class (N, 4) and per-tile tissue area (N,), over `tiles` (indices or mask; default all).

    Each field's index is weighted by its tissue area (IKWG global: fields across the tumour,
    weighted by how much of it they cover); fields without counted cells do not enter."""
    counts = np.asarray(counts, np.int64)
    area = np.asarray(tissue_px, np.float64)
    if tiles is not None:
        counts, area = counts[tiles], area[tiles]
    n = counts.sum(axis=1)
    pos = counts[:, 1:].sum(axis=1)
    has = n > 0
    total, positive = int(n.sum()), int(pos.sum())
    if not has.any():
        return float("nan"), float("nan"), 0, 0, 0
    w = np.where(area[has] > 0, area[has], 1.0)
    field_index = pos[has] / n[has] * 100.0
    return (
        float(np.sum(w * field_index) / np.sum(w)),
        positive / total * 100.0,
        total,
        positive,
        int(has.sum()),
    )


def find_hotspot(
    xy_um: np.ndarray,
    positive: np.ndarray,
    *,
    area_mm2: float | None = HOTSPOT_AREA_MM2,
    n_cells: int | None = None,
    max_centres: int = 40_000,
) -> HotSpot | None:
    """The circular field with the most positive cells among cells at `xy_um` (K, 2) um.

    With `area_mm2` the field has that area; with `n_cells` it is the smallest circle around its
    centre holding that many cells (ties: the higher index). Centres are searched on a grid over
    the cells' extent (at most `max_centres`; only those with a cell within one step, so in the
    tissue), then on a 4x finer grid around the best. Positions
    of the result are in um (`x_px`/`y_px` equal them: see `report_for_result`). None without cells.
    """
    xy = np.asarray(xy_um, np.float64).reshape(-1, 2)
    positive = np.asarray(positive, bool).reshape(-1)
    if len(xy) != len(positive):
        raise IHCError("positions and positive flags differ in length.")
    if len(xy) == 0:
        return None
    if n_cells is not None:
        if n_cells < 1:
            raise IHCError(f"the hot spot's cell count must be at least 1, got {n_cells}.")
        k = min(int(n_cells), len(xy))
        scale = math.sqrt(max(_extent_area(xy), 1.0) * k / len(xy) / math.pi)
    else:
        if area_mm2 is None or not area_mm2 > 0:
            raise IHCError(f"the hot spot's area must be > 0 mm^2, got {area_mm2}.")
        k = 0
        scale = math.sqrt(area_mm2 * 1e6 / math.pi)
    from scipy.spatial import cKDTree

    tree = cKDTree(xy)
    pos_tree = cKDTree(xy[positive]) if positive.any() else None
    lo, hi = xy.min(axis=0), xy.max(axis=0)
    step = max(scale / 4.0, math.sqrt(float(np.prod(hi - lo + 1.0)) / max_centres))
    if k:
        step = max(step, math.sqrt(float(np.prod(hi - lo + 1.0)) / 4000.0))  # k-NN is dearer

    def in_tissue(centres: np.ndarray, reach: float) -> np.ndarray:
        """Centres within the cells' extent with a counted cell within `reach` (in the tissue)."""
        centres = centres[((centres >= lo) & (centres <= hi)).all(axis=1)]
        near, _ = tree.query(centres, distance_upper_bound=reach)
        return centres[np.isfinite(near)]

    best = _best(in_tissue(_grid(lo, hi, step), step), tree, pos_tree, positive, scale, k)
    fine = in_tissue(_grid(best - step, best + step, step / 4.0), step)
    best = _best(np.vstack([fine, best[None]]), tree, pos_tree, positive, scale, k)
    if k:
        dist, idx = tree.query(best, k=k)
        idx = np.atleast_1d(idx)
        radius = float(np.max(dist))
        n, n_pos = len(idx), int(positive[idx].sum())
    else:
        radius = scale
        n = int(tree.query_ball_point(best, radius, return_length=True))
        n_pos = int(pos_tree.query_ball_point(best, radius, return_length=True)) if pos_tree else 0
    index = n_pos / n * 100.0 if n else float("nan")
    return HotSpot(
        x_px=float(best[0]),
        y_px=float(best[1]),
        x_um=float(best[0]),
        y_um=float(best[1]),
        radius_um=radius,
        area_mm2=math.pi * radius**2 / 1e6,
        n_cells=n,
        n_positive=n_pos,
        index=index,
        insufficient=n < MIN_CELLS,
    )


def _extent_area(xy: np.ndarray) -> float:
    return float(np.prod(xy.max(axis=0) - xy.min(axis=0) + 1.0))


def _grid(lo: np.ndarray, hi: np.ndarray, step: float) -> np.ndarray:
    xs = np.arange(lo[0], hi[0] + step / 2, step)
    ys = np.arange(lo[1], hi[1] + step / 2, step)
    gx, gy = np.meshgrid(xs, ys)
    return np.stack([gx.ravel(), gy.ravel()], axis=1)


def _best(centres, tree, pos_tree, positive, radius: float, k: int) -> np.ndarray:
    """The centre with the most positive cells (ties: the most cells for a fixed area, else the
    first), as an (x, y) array."""
    if k:
        _, idx = tree.query(centres, k=k)
        idx = idx.reshape(len(centres), -1)
        n_pos = positive[idx].sum(axis=1)
        return np.asarray(centres[int(np.argmax(n_pos))])
    n_pos = (
        pos_tree.query_ball_point(centres, radius, return_length=True)
        if pos_tree is not None
        else np.zeros(len(centres), int)
    )
    n_all = tree.query_ball_point(centres, radius, return_length=True)
    # most positive; among those, the highest index (fewest cells)
    order = np.lexsort((n_all, -np.asarray(n_pos)))
    return np.asarray(centres[int(order[0])])


def ki67_report(
    result,
    *,
    hotspot_area_mm2: float | None = HOTSPOT_AREA_MM2,
    hotspot_cells: int | None = None,
    grade: bool = False,
    tiles: np.ndarray | None = None,
) -> Ki67Report:
    """Global and hot-spot Ki-67 of an `IHCResult` (over `tiles`, e.g. an annotation's: indices or
    a mask, default the whole slide). The hot spot is searched among the counted nuclei of the same
    tiles; its centre is given in level-0 px and um from the slide's top-left corner."""
    g, pooled, n, n_pos, n_fields = global_score(result.counts, result.tissue_px, tiles)
    nuc = result.nuclei
    keep = nuc.counted
    if tiles is not None:
        in_tiles = np.zeros(len(result.counts), bool)
        in_tiles[tiles] = True
        keep = keep & in_tiles[nuc.tile]
    mpp = np.asarray(result.mpp, np.float64)
    xy_um = nuc.xy[keep].astype(np.float64) * mpp
    spot = find_hotspot(
        xy_um,
        nuc.cls[keep] > 0,
        area_mm2=None if hotspot_cells else hotspot_area_mm2,
        n_cells=hotspot_cells,
    )
    if spot is not None:
        from dataclasses import replace

        spot = replace(spot, x_px=spot.x_um / mpp[0], y_px=spot.y_um / mpp[1])
    grade_value = None
    if grade:
        grade_value = net_grade(spot.index, spot.n_cells) if spot else "insufficient"
    return Ki67Report(
        global_index=g,
        pooled_index=pooled,
        n_cells=n,
        n_positive=n_pos,
        n_fields=n_fields,
        insufficient=n < MIN_CELLS,
        hotspot=spot,
        net_grade=grade_value,
    )


def _finite(obj):
    """NaN -> None, recursively (JSON)."""
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj
