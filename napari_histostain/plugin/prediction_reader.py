"""napari reader contribution: drop an exported tile GeoJSON or heatmap OME-TIFF back on a slide.

The layers come back in micrometres, so they sit in place on the slide they were computed on.
Files that are not HistoStain exports are left to other readers (None).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from ..results.geojson import GEOJSON_KEY
from ..results.heatmap_tiff import HEATMAP_SUFFIX


def _is_our_geojson(p: Path) -> bool:
    try:
        with open(p, encoding="utf-8", errors="replace") as fh:
            head = fh.read(65536)
    except OSError:
        return False
    return f'"{GEOJSON_KEY}"' in head and "FeatureCollection" in head


def _is_our_heatmap(p: Path) -> bool:
    try:
        import tifffile

        with tifffile.TiffFile(p) as tf:
            xml = tf.ome_metadata or ""
    except Exception:
        return False
    return "geometry" in xml and "tile_px0" in xml


def get_prediction_reader(path: str | list[str]) -> Callable | None:
    """A reader for HistoStain `.geojson` / `*.heatmap.ome.tif` exports, else None."""
    if isinstance(path, list):
        if len(path) != 1:
            return None
        path = path[0]
    p = Path(path)
    name = p.name.lower()
    if name.endswith(".geojson") and _is_our_geojson(p):
        return read_predictions
    if name.endswith((HEATMAP_SUFFIX, HEATMAP_SUFFIX + "f")) and _is_our_heatmap(p):
        return read_predictions
    return None


def read_predictions(path: str | list[str]) -> list[tuple]:
    """Layer data of an exported GeoJSON (positivity + attention) or heatmap OME-TIFF."""
    from ..results.geojson import read_tiles_geojson
    from ..results.heatmap_tiff import read_heatmap
    from ..results.maps import KINDS, PredictionMaps
    from .layers import overlay_layer_kwargs

    p = Path(path[0] if isinstance(path, list) else path)
    if p.name.lower().endswith(".geojson"):
        maps = read_tiles_geojson(p)
        layers = []
        for marker in maps.markers:
            for kind in KINDS:
                kw = overlay_layer_kwargs(maps, marker, kind)
                kw["visible"] = kind == "positivity"
                layers.append((maps.heatmap(marker, kind), kw, "image"))
        return layers
    array, lattice, info = read_heatmap(p)
    marker, kind = info.get("marker", "ki67"), info.get("kind", "positivity")
    maps = PredictionMaps(lattice, [], [], [], slide_path=info.get("slide_path", ""))
    maps.add_marker(marker)
    kw = overlay_layer_kwargs(maps, marker, kind if kind in KINDS else "positivity")
    entry = kw["metadata"]["histostain"]
    entry.pop("maps")  # the tiles are rebuilt from the data by the writers when needed
    if kind == "attention":
        from .layers import contrast_limits

        kw["contrast_limits"] = contrast_limits(array.ravel(), "attention")
    kw["name"] = info.get("name") or kw["name"]
    return [(array, kw, "image")]
