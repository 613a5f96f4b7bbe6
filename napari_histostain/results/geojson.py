"""Tile predictions as QuPath GeoJSON (one Polygon per tile, level-0 px), and back."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import numpy as np

from .. import __version__
from ..engine.tiling import TileLattice
from ..io.atomic import atomic_open
from ..markers import NEGATIVE_COLOUR, get_marker
from .errors import ExportError, check_marker, finite
from .maps import PredictionMaps

#: Top-level foreign member of our GeoJSON files (QuPath ignores it).
GEOJSON_KEY = "histostain"
#: Namespace of our feature UUIDs (uuid5 of slide, marker, row, col).
_ID_NAMESPACE = uuid.UUID("5b0d7c8e-3f6a-4e1b-9a57-1c2d3e4f5a6b")


def feature_id(*parts: object) -> str:
    """A UUID string for a GeoJSON feature (QuPath reads `id` as a UUID), stable for the same parts."""
    return str(uuid.uuid5(_ID_NAMESPACE, "|".join(str(p) for p in parts)))


def _measurements(**values: float | int) -> dict[str, float]:
    """QuPath's flat `measurements` object: name -> number, leaving out what was not computed."""
    return {k: float(v) for k, v in values.items() if v is not None and np.isfinite(v)}


def tiles_geojson(maps: PredictionMaps, marker: str, *, tile_threshold: float = 0.5) -> dict:
    """A QuPath-compatible FeatureCollection: one Polygon per computed tile, level-0 px.

    QuPath's conventions: each feature has a UUID `id`, properties `objectType` "tile",
    `classification` {name, color} ("<marker> positive" when the tile positivity >=
    `tile_threshold`, else "<marker> negative") and flat `measurements` (name -> number) holding
    every per-tile number: tile_id, row, col, tissue_fraction, positivity, attention. Tiles are
    clipped to the slide (`maps.slide_dimensions`, when known). Slide-level results (probability,
    call) appear once, in the collection's `histostain` member.
    """
    import shapely

    check_marker(maps, marker)
    mm = maps.markers[marker]
    t = maps.lattice.tile_px0
    name = mm.name
    idx = np.flatnonzero(np.isfinite(mm.positivity))
    xy = maps.coords[idx].astype(np.float64)
    boxes = shapely.box(xy[:, 0], xy[:, 1], xy[:, 0] + t, xy[:, 1] + t)
    w, h = maps.slide_dimensions
    if w > 0 and h > 0:
        boxes = shapely.clip_by_rect(boxes, 0.0, 0.0, float(w), float(h))
    geometries = shapely.to_geojson(boxes)
    features = []
    for i, geometry in zip(idx, geometries, strict=True):
        pos = float(mm.positivity[i])
        positive = pos >= tile_threshold
        colour = get_marker(marker).colour if positive else NEGATIVE_COLOUR
        features.append(
            {
                "type": "Feature",
                "id": feature_id(maps.slide_path, marker, *maps.rowcol[i]),
                "geometry": json.loads(geometry),
                "properties": {
                    "objectType": "tile",
                    "name": f"tile {int(i)}",
                    "classification": {
                        "name": f"{name} {'positive' if positive else 'negative'}",
                        "color": list(colour),
                    },
                    "measurements": _measurements(
                        tile_id=int(i),
                        row=int(maps.rowcol[i, 0]),
                        col=int(maps.rowcol[i, 1]),
                        tissue_fraction=float(maps.tissue_fraction[i]),
                        positivity=pos,
                        attention=float(mm.attention[i]),
                    ),
                },
            }
        )
    return {
        "type": "FeatureCollection",
        GEOJSON_KEY: {
            "version": __version__,
            "marker": marker,
            "marker_name": name,
            "probability": finite(mm.probability),
            "label": mm.label,
            "threshold": mm.threshold,
            "scope": mm.scope,
            "tile_threshold": tile_threshold,
            "geometry": maps.lattice.to_dict(),
            "slide_dimensions": [int(v) for v in maps.slide_dimensions],
            "slide_path": maps.slide_path,
        },
        "features": features,
    }


def write_tiles_geojson(
    path: str | Path, maps: PredictionMaps, marker: str, *, tile_threshold: float = 0.5
) -> Path:
    """Atomically write `tiles_geojson` to `path`."""
    obj = tiles_geojson(maps, marker, tile_threshold=tile_threshold)
    with atomic_open(path, "w", encoding="utf-8") as fh:
        json.dump(obj, fh)
    return Path(path)


def read_tiles_geojson(path: str | Path) -> PredictionMaps:
    """Rebuild `PredictionMaps` from a GeoJSON written by `write_tiles_geojson`.

    Raises `ExportError` if the file is not a HistoStain tile export.
    """
    try:
        obj = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ExportError(f"cannot read {path}: {exc}") from exc
    meta = obj.get(GEOJSON_KEY) if isinstance(obj, dict) else None
    if not isinstance(meta, dict) or obj.get("type") != "FeatureCollection":
        raise ExportError(f"{path} is not a HistoStain tile GeoJSON (no '{GEOJSON_KEY}' member).")
    lattice = TileLattice.from_dict(meta["geometry"])
    feats = [f for f in obj.get("features", []) if f["properties"].get("objectType") == "tile"]
    # per-tile numbers live in `measurements` (files before 0.x kept row/col beside them)
    meas = [{**f["properties"], **f["properties"].get("measurements", {})} for f in feats]
    rowcol = np.array([[m["row"], m["col"]] for m in meas], np.int64).reshape(-1, 2)
    coords = np.round(np.asarray(lattice.origin) + rowcol[:, ::-1] * lattice.tile_px0)
    tf = np.array([m.get("tissue_fraction", 1.0) for m in meas], np.float32)
    dims = meta.get("slide_dimensions") or (0, 0)
    maps = PredictionMaps(
        lattice,
        coords,
        rowcol,
        tf,
        slide_path=meta.get("slide_path", ""),
        slide_dimensions=(int(dims[0]), int(dims[1])),
    )
    marker = meta["marker"]
    pos = [m["positivity"] for m in meas]
    att = [m.get("attention", np.nan) for m in meas]
    maps.update(marker, np.arange(len(feats)), pos, att)
    prob = meta.get("probability")
    maps.set_slide_call(
        marker,
        np.nan if prob is None else prob,
        meta.get("label", ""),
        meta.get("threshold", 0.5),
        meta.get("scope", ""),
    )
    return maps
