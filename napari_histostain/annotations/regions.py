"""Which tiles of a tile grid lie in each annotated region.

Regions: every included annotation (minus the exclude annotations), every class (the union of its
annotations, minus exclusions) and "all" (every included annotation, minus exclusions; when a file
has only exclusions, the whole slide minus them). Tile rules:

- `"centre"` (default): a tile belongs to a region when its centre lies inside it (holes and
  exclusions included), so each tile of a partition lands in exactly one region;
- `"area"`: when at least `min_fraction` of the tile's square lies inside it.

A tile overhanging the slide's edge counts by its part on the slide (its centre, its area), as the
GeoJSON exports draw it, so an annotation covering the whole slide holds every tile.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import shapely
from shapely.geometry.base import BaseGeometry

from .errors import AnnotationError
from .model import EXCLUDE_CLASSES, Annotation, is_exclude

#: Tile rules of `tiles_in`.
TILE_RULES = ("centre", "area")


@dataclass
class Region:
    """A region of the slide and the indices of the grid tiles in it."""

    key: str  # "all", "class:<name>" or the annotation's id
    kind: str  # "all", "class" or "annotation"
    name: str
    classification: str | None
    geometry: BaseGeometry  # level-0 px, exclusions removed
    indices: np.ndarray  # tiles of the grid in the region (tile rule applied)

    def describe(self, mpp: Sequence[float]) -> dict:
        """Plain-JSON facts of the region (its results are added by `annotations.results`)."""
        return {
            "key": self.key,
            "kind": self.kind,
            "name": self.name,
            "classification": self.classification,
            "area_um2": round(float(self.geometry.area * mpp[0] * mpp[1]), 3),
            "n_tiles": len(self.indices),
        }


def tiles_in(
    grid: Any, region: BaseGeometry, *, rule: str = "centre", min_fraction: float = 0.5
) -> np.ndarray:
    """Indices of the tiles of `grid` (`coords` (N, 2) level-0 x, y; `tile_px0`) in `region`."""
    if rule not in TILE_RULES:
        raise AnnotationError(f"unknown tile rule {rule!r}; use one of {TILE_RULES}.")
    if not 0 < min_fraction <= 1:
        raise AnnotationError(f"min_fraction must be in (0, 1], got {min_fraction}.")
    xy = np.asarray(grid.coords, np.float64).reshape(-1, 2)
    t = float(grid.tile_px0)
    if region.is_empty or not len(xy):
        return np.zeros(0, np.int64)
    # a tile overhanging the slide's edge counts by its part on the slide (as the exports draw it)
    x1, y1 = xy[:, 0] + t, xy[:, 1] + t
    w, h = getattr(grid, "slide_dimensions", (0, 0))
    if w > 0 and h > 0:
        x1, y1 = np.minimum(x1, w), np.minimum(y1, h)
    shapely.prepare(region)
    if rule == "centre":
        inside = shapely.contains_xy(region, (xy[:, 0] + x1) / 2, (xy[:, 1] + y1) / 2)
    else:
        boxes = shapely.box(xy[:, 0], xy[:, 1], x1, y1)
        with np.errstate(invalid="ignore", divide="ignore"):
            frac = shapely.area(shapely.intersection(boxes, region)) / shapely.area(boxes)
        inside = frac >= min_fraction - 1e-12
    return np.flatnonzero(inside).astype(np.int64)


def _whole(grid: Any) -> BaseGeometry:
    """Every tile of the grid, as one box (tiles at the slide's edge may overhang it)."""
    xy = np.asarray(grid.coords, np.float64).reshape(-1, 2)
    if not len(xy):
        return shapely.Polygon()
    t = float(grid.tile_px0)
    return shapely.box(xy[:, 0].min(), xy[:, 1].min(), xy[:, 0].max() + t, xy[:, 1].max() + t)


def regions_on_grid(
    annotations: Sequence[Annotation],
    grid: Any,
    *,
    rule: str = "centre",
    min_fraction: float = 0.5,
    exclude_classes: Sequence[str] = EXCLUDE_CLASSES,
) -> list[Region]:
    """The regions of `annotations` ("all", then each class, then each annotation) with their
    tiles of `grid` (a `TileGrid` or `PredictionMaps`)."""
    if not annotations:
        raise AnnotationError("no annotations given; draw or import at least one region.")
    excl = [a for a in annotations if is_exclude(a.classification, exclude_classes)]
    incl = [a for a in annotations if not is_exclude(a.classification, exclude_classes)]
    removed = shapely.union_all([a.geometry for a in excl]) if excl else None

    def minus(g: BaseGeometry) -> BaseGeometry:
        return g.difference(removed) if removed is not None else g

    def region(key: str, kind: str, name: str, cls: str | None, geom: BaseGeometry) -> Region:
        g = minus(geom)
        return Region(
            key, kind, name, cls, g, tiles_in(grid, g, rule=rule, min_fraction=min_fraction)
        )

    everything = shapely.union_all([a.geometry for a in incl]) if incl else _whole(grid)
    out = [
        region("all", "all", "all included" if incl else "slide minus exclusions", None, everything)
    ]
    classes = sorted({a.classification or "" for a in incl})
    for c in classes:
        geoms = [a.geometry for a in incl if (a.classification or "") == c]
        out.append(
            region(f"class:{c}", "class", c or "Unclassified", c or None, shapely.union_all(geoms))
        )
    for a in incl:
        out.append(region(a.id, "annotation", a.label, a.classification, a.geometry))
    return out


def region_column(regions: Sequence[Region], n_tiles: int) -> list[str]:
    """Per tile, the names of the annotations it lies in ("; "-joined; "" outside every one)."""
    names: list[list[str]] = [[] for _ in range(n_tiles)]
    for r in regions:
        if r.kind == "annotation":
            for i in r.indices:
                names[int(i)].append(r.name)
    return ["; ".join(n) for n in names]


def placement_notes(
    annotations: Sequence[Annotation], slide_dimensions: Sequence[int]
) -> list[str]:
    """Notes for annotations that lie (partly) outside a slide of level-0 (width, height): most
    often a file from another slide, or coordinates that are not level-0 pixels."""
    w, h = (float(v) for v in slide_dimensions)
    if w <= 0 or h <= 0:
        return []
    slide = shapely.box(0, 0, w, h)
    notes = []
    for a in annotations:
        inside = a.geometry.intersection(slide).area / a.geometry.area
        if inside == 0:
            notes.append(
                f"annotation {a.label!r} lies outside the slide ({w:.0f} x {h:.0f} px); check that "
                "the file belongs to this slide and that its coordinates are level-0 pixels."
            )
        elif inside < 0.999:
            notes.append(f"annotation {a.label!r}: {1 - inside:.0%} of it lies outside the slide.")
    return notes
