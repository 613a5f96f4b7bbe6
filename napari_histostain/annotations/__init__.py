"""Annotations: regions of a slide (QuPath GeoJSON in and out) and results per region.

Qt-free and napari-free: the CLI (`--annotations FILE`) and the widget call the same functions.
`model` (`Annotation`, include / exclude classes, napari world <-> level-0 px), `qupath` (import and
export of QuPath GeoJSON), `shapes` (napari Shapes-layer data <-> annotations, as plain arrays), `regions` (which tiles of a `TileGrid` fall in each region), `results`
(per-region slide calls pooled from the exact tile maps, and per-region IHC sums).
"""

from __future__ import annotations

from .errors import AnnotationError
from .model import EXCLUDE_CLASSES, Annotation, is_exclude
from .qupath import annotations_geojson, parse_annotations, read_annotations, write_annotations
from .regions import TILE_RULES, Region, region_column, regions_on_grid, tiles_in
from .shapes import from_shapes_data, to_shapes_data

__all__ = [
    "EXCLUDE_CLASSES",
    "TILE_RULES",
    "Annotation",
    "AnnotationError",
    "Region",
    "annotations_geojson",
    "from_shapes_data",
    "is_exclude",
    "parse_annotations",
    "read_annotations",
    "region_column",
    "regions_on_grid",
    "tiles_in",
    "to_shapes_data",
    "write_annotations",
]
