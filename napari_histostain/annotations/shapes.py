"""Annotations <-> napari Shapes-layer data, without importing napari (plain arrays in, out).

napari's Shapes layer holds, per shape, an (N, 2) array of world (row, col) vertices (here in um:
pass `layer.data` transformed to world coordinates, or with the layer's scale applied) and a
`shape_type`: "polygon", "rectangle" (4 corners), "ellipse" (the 4 corners of its bounding box,
possibly rotated), "path" and "line" (no area: skipped). Holes cannot be drawn in a Shapes layer, so
`to_shapes_data` gives exterior rings only; keep the `Annotation`s for the full regions.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from .errors import AnnotationError
from .model import Annotation

#: Vertices of the polygon an ellipse becomes.
ELLIPSE_VERTICES = 64
#: Shape types with an area.
AREA_SHAPES = ("polygon", "rectangle", "ellipse")


def _ellipse_ring(corners: np.ndarray, n: int = ELLIPSE_VERTICES) -> np.ndarray:
    """The ellipse inscribed in a (possibly rotated) box given by its 4 corners, as n vertices."""
    c = corners.mean(axis=0)
    u = (corners[1] - corners[0]) / 2.0
    v = (corners[3] - corners[0]) / 2.0
    t = np.linspace(0.0, 2.0 * np.pi, n, endpoint=False)[:, None]
    return c + np.cos(t) * u + np.sin(t) * v


def from_shapes_data(
    data: Sequence[Any],
    shape_types: Sequence[str] | str,
    mpp: Sequence[float],
    classifications: Sequence[str | None] | None = None,
    names: Sequence[str] | None = None,
) -> tuple[list[Annotation], list[str]]:
    """(annotations, notes) from Shapes-layer data in world um; lines and paths are skipped."""
    n = len(data)
    types = [shape_types] * n if isinstance(shape_types, str) else list(shape_types)
    if len(types) != n:
        raise AnnotationError(f"{n} shapes but {len(types)} shape types.")
    classes = list(classifications) if classifications is not None else [None] * n
    labels = list(names) if names is not None else [""] * n
    out, skipped = [], 0
    for k, (verts, kind) in enumerate(zip(data, types, strict=True)):
        if kind not in AREA_SHAPES:
            skipped += 1
            continue
        v = np.asarray(verts, np.float64)[:, -2:]
        if kind == "ellipse":
            if len(v) != 4:
                raise AnnotationError(f"shape {k}: an ellipse needs its 4 box corners.")
            v = _ellipse_ring(v)
        cls = classes[k] if classes[k] not in ("", None) else None
        out.append(Annotation.from_world(v, mpp, cls, name=str(labels[k] or "")))
    notes = [f"skipped {skipped} line / path shapes (no area)"] if skipped else []
    return out, notes


def to_shapes_data(
    annotations: Sequence[Annotation], mpp: Sequence[float]
) -> tuple[list[np.ndarray], list[str], dict[str, list]]:
    """(data, shape_types, properties) for a Shapes layer in world um: one polygon per part of
    each annotation (exterior ring), properties "class", "name" and "id" per shape."""
    data: list[np.ndarray] = []
    props: dict[str, list] = {"class": [], "name": [], "id": []}
    for a in annotations:
        for ring in a.to_world(mpp):
            data.append(ring)
            props["class"].append(a.classification or "")
            props["name"].append(a.name)
            props["id"].append(a.id)
    return data, ["polygon"] * len(data), props
