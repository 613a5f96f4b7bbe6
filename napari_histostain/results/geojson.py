"""Tile predictions as QuPath GeoJSON (one Polygon per tile, level-0 px), and back."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .. import __version__
from ..engine.tiling import TileLattice
from ..io.atomic import atomic_open
from ..markers import NEGATIVE_COLOUR, get_marker
from .caveats import marker_file_caveats
from .errors import ExportError, check_marker, finite
from .maps import PredictionMaps

#: Top-level foreign member of our GeoJSON files (QuPath ignores it).
GEOJSON_KEY = "histostain"


def tiles_geojson(maps: PredictionMaps, marker: str, *, tile_threshold: float = 0.5) -> dict:
    """A QuPath-compatible FeatureCollection: one Polygon per computed tile, level-0 px.

    Each feature has properties objectType "tile", classification {name, color} ("<marker> positive"
    when the tile positivity >= `tile_threshold`, else "<marker> negative") and measurements
    {positivity, attention, probability}; probability is the slide- (or region-) level one.
    """
    check_marker(maps, marker)
    mm = maps.markers[marker]
    t = maps.lattice.tile_px0
    name = mm.name
    prob = finite(mm.probability)
    features = []
    for i in np.flatnonzero(np.isfinite(mm.positivity)):
        x, y = (float(v) for v in maps.coords[i])
        ring = [[x, y], [x + t, y], [x + t, y + t], [x, y + t], [x, y]]
        pos = float(mm.positivity[i])
        positive = pos >= tile_threshold
        colour = get_marker(marker).colour if positive else NEGATIVE_COLOUR
        features.append(
            {
                "type": "Feature",
                "id": f"tile-{int(i)}",
                "geometry": {"type": "Polygon", "coordinates": [ring]},
                "properties": {
                    "objectType": "tile",
                    "name": f"tile {int(i)}",
                    "classification": {
                        "name": f"{name} {'positive' if positive else 'negative'}",
                        "color": list(colour),
                    },
                    "measurements": {
                        "positivity": pos,
                        "attention": finite(mm.attention[i]),
                        "probability": prob,
                    },
                    "tile_id": int(i),
                    "row": int(maps.rowcol[i, 0]),
                    "col": int(maps.rowcol[i, 1]),
                    "tissue_fraction": float(maps.tissue_fraction[i]),
                },
            }
        )
    return {
        "type": "FeatureCollection",
        GEOJSON_KEY: {
            "version": __version__,
            "marker": marker,
            "marker_name": name,
            "probability": prob,
            "label": mm.label,
            "threshold": mm.threshold,
            "scope": mm.scope,
            "tile_threshold": tile_threshold,
            "geometry": maps.lattice.to_dict(),
            "slide_path": maps.slide_path,
            **marker_file_caveats(maps.caveats, marker),
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
    coords = np.array([f["geometry"]["coordinates"][0][0] for f in feats], dtype=float).reshape(
        -1, 2
    )
    rowcol = np.array([[f["properties"]["row"], f["properties"]["col"]] for f in feats]).reshape(
        -1, 2
    )
    tf = np.array([f["properties"].get("tissue_fraction", 1.0) for f in feats], np.float32)
    maps = PredictionMaps(
        lattice, np.round(coords), rowcol, tf, slide_path=meta.get("slide_path", "")
    )
    marker = meta["marker"]
    meas = [f["properties"]["measurements"] for f in feats]
    pos = [m["positivity"] for m in meas]
    att = [np.nan if m.get("attention") is None else m["attention"] for m in meas]
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
