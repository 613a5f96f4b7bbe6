"""`Annotation`: a polygonal region of a slide in level-0 pixels, with a classification.

Coordinates follow QuPath: level-0 pixel (x, y) covers [x, x + 1) x [y, y + 1), so its centre is
(x + 0.5, y + 0.5). napari world coordinates are micrometres with level-0 pixel (x, y)'s centre at
(row, col) = (y * mpp_y, x * mpp_x) (docs/architecture.md), hence `from_world` / `to_world` shift by
half a pixel.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import shapely
from shapely.geometry.base import BaseGeometry

from .errors import AnnotationError

#: Classifications (case-insensitive) whose annotations are taken out of every other region.
#: QuPath's own "Ignore*" class is one of them.
EXCLUDE_CLASSES = ("exclude", "excluded", "ignore", "ignore*")


def is_exclude(
    classification: str | None, exclude_classes: Sequence[str] = EXCLUDE_CLASSES
) -> bool:
    """Whether a classification name marks a region to leave out."""
    return classification is not None and classification.strip().lower() in {
        c.lower() for c in exclude_classes
    }


def polygonal(geometry: BaseGeometry, what: str = "annotation") -> BaseGeometry:
    """`geometry` as a valid Polygon / MultiPolygon (repaired if self-intersecting).

    Raises `AnnotationError` when it has no area (a point, a line, an empty polygon)."""
    if geometry.is_empty:
        raise AnnotationError(f"{what} is empty; draw or export a polygon with an area.")
    if not geometry.is_valid:
        geometry = shapely.make_valid(geometry)
    parts = [
        g
        for g in getattr(geometry, "geoms", [geometry])
        if g.geom_type in ("Polygon", "MultiPolygon") and not g.is_empty
    ]
    merged = shapely.union_all(parts) if parts else None
    if merged is None or merged.is_empty or merged.area <= 0:
        raise AnnotationError(
            f"{what} is a {geometry.geom_type} without area; only polygons (with holes) and "
            "multipolygons can be regions."
        )
    return merged


@dataclass
class Annotation:
    """A region: Polygon (with holes) or MultiPolygon in level-0 px, and its classification.

    `classification` is a class name such as "Tumor", "Stroma" or "Exclude" (None: unclassified);
    annotations of an exclude class (`EXCLUDE_CLASSES`) are left out of every other region.
    """

    geometry: BaseGeometry
    classification: str | None = None
    name: str = ""
    id: str = field(default_factory=lambda: str(uuid.uuid4()))
    color: tuple[int, int, int] | None = None
    properties: dict = field(default_factory=dict)  # other properties, kept on export

    def __post_init__(self) -> None:
        self.geometry = polygonal(self.geometry, f"annotation {self.label!r}")

    @property
    def label(self) -> str:
        """The name shown for this annotation: its name, else its class, else "Annotation"."""
        return self.name or self.classification or "Annotation"

    @property
    def is_exclude(self) -> bool:
        return is_exclude(self.classification)

    def area_um2(self, mpp: Sequence[float]) -> float:
        """Area in square micrometres on a slide of (mpp_x, mpp_y)."""
        return float(self.geometry.area * float(mpp[0]) * float(mpp[1]))

    # -- napari world coordinates (um, (row, col)) ---------------------------------------------
    @classmethod
    def from_world(
        cls,
        vertices_rc_um: Any,
        mpp: Sequence[float],
        classification: str | None = None,
        *,
        name: str = "",
        holes: Sequence[Any] = (),
    ) -> Annotation:
        """An annotation from a napari polygon: (N, 2) world (row, col) um vertices (+ holes)."""

        def ring(v: Any) -> np.ndarray:
            a = np.asarray(v, np.float64)
            if a.ndim != 2 or a.shape[1] < 2 or len(a) < 3:
                raise AnnotationError(
                    f"a polygon needs at least 3 (row, col) vertices, got shape {a.shape}."
                )
            a = a[:, -2:]  # napari may prepend z / t
            return np.stack([a[:, 1] / mpp[0] + 0.5, a[:, 0] / mpp[1] + 0.5], axis=1)

        poly = shapely.Polygon(ring(vertices_rc_um), [ring(h) for h in holes])
        return cls(poly, classification, name=name)

    def to_world(self, mpp: Sequence[float]) -> list[np.ndarray]:
        """Exterior rings as napari (N, 2) world (row, col) um vertices, one per polygon part
        (holes are not drawn by napari's Shapes layer: see `geometry` for the full region)."""
        out = []
        for part in getattr(self.geometry, "geoms", [self.geometry]):
            xy = np.asarray(part.exterior.coords)[:-1]
            out.append(np.stack([(xy[:, 1] - 0.5) * mpp[1], (xy[:, 0] - 0.5) * mpp[0]], axis=1))
        return out
