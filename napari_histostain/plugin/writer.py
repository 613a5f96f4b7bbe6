"""napari writer contributions for HistoStain overlay layers (heatmap OME-TIFF, QuPath GeoJSON).

The overlay layers carry what the writers need in `layer.metadata["histostain"]` (marker, kind,
grid lattice and the `PredictionMaps`); a plain image layer gets a heatmap OME-TIFF in its own
world units.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import HistostainError


def _ours(meta: dict) -> dict | None:
    from ..results.maps import META_KEY

    entry = (meta.get("metadata") or {}).get(META_KEY)
    return entry if isinstance(entry, dict) and "geometry" in entry else None


def _per_tile(data: Any, entry: dict) -> np.ndarray:
    """The per-tile heatmap of an overlay layer's data (drawn clipped to the slide, finer):
    its `PredictionMaps`' own when the layer carries them, else read back from the data."""
    from ..results.maps import KINDS, PredictionMaps
    from .clipped_maps import layer_tiles

    maps, marker, kind = entry.get("maps"), entry.get("marker"), entry.get("kind")
    if isinstance(maps, PredictionMaps) and kind in KINDS and marker in maps.markers:
        return maps.heatmap(marker, kind)
    return layer_tiles(data, entry)


def layer_maps(data: Any, meta: dict):
    """(PredictionMaps, marker, kind) of a HistoStain overlay layer; rebuilt from the data if needed."""
    from ..engine.tiling import TileLattice
    from ..results.maps import PredictionMaps

    entry = _ours(meta)
    if entry is None:
        raise HistostainError(
            f"layer {meta.get('name', '')!r} is not a HistoStain overlay; save HistoStain positivity "
            "or attention layers (made by the HistoStain widget) as GeoJSON."
        )
    marker, kind = entry.get("marker", "ki67"), entry.get("kind", "positivity")
    maps = entry.get("maps")
    if isinstance(maps, PredictionMaps):
        return maps, marker, kind
    lattice = TileLattice.from_dict(entry["geometry"])
    arr = _per_tile(data, entry)
    rows, cols = np.nonzero(np.isfinite(arr))
    rowcol = np.stack([rows, cols], axis=1)
    coords = np.round(np.asarray(lattice.origin) + rowcol[:, ::-1] * lattice.tile_px0)
    maps = PredictionMaps(
        lattice, coords, rowcol, np.ones(len(rowcol)), slide_path=entry.get("slide_path", "")
    )
    values = arr[rows, cols]
    if kind == "attention":
        maps.update(marker, np.arange(len(rowcol)), np.full(len(rowcol), np.nan), values)
    else:
        maps.update(marker, np.arange(len(rowcol)), values)
    return maps, marker, kind


def write_heatmap(path: str, data: Any, meta: dict) -> list[str]:
    """Save an image layer as a pyramidal float32 OME-TIFF aligned to the slide (um)."""
    from ..engine.tiling import TileLattice
    from ..results.heatmap_tiff import write_heatmap as _write

    arr = np.asarray(data, np.float32)
    if arr.ndim != 2:
        raise HistostainError(
            f"a heatmap layer must be 2-D; {meta.get('name')!r} has shape {arr.shape}."
        )
    entry = _ours(meta)
    if entry is not None:
        lattice = TileLattice.from_dict(entry["geometry"])
        arr = _per_tile(arr, entry)
        info = {k: entry.get(k) for k in ("marker", "kind", "slide_path")}
    else:  # a plain layer: world units are um, one "tile" per pixel, 1 um per level-0 px
        sy, sx = (float(v) for v in meta.get("scale", (1.0, 1.0))[-2:])
        ty, tx = (float(v) for v in meta.get("translate", (0.0, 0.0))[-2:])
        if not np.isclose(sx, sy):
            raise HistostainError(
                "the layer's pixels are not square; cannot write a heatmap OME-TIFF."
            )
        lattice = TileLattice((tx - (sx - 1) / 2, ty - (sy - 1) / 2), sx, (1.0, 1.0), *arr.shape)
        info = {}
    info["name"] = meta.get("name", "")
    return [str(_write(path, arr, lattice, info))]


def write_tiles_geojson(path: str, data: Any, meta: dict) -> list[str]:
    """Save a HistoStain overlay layer's tiles as a QuPath GeoJSON FeatureCollection."""
    from ..results.geojson import write_tiles_geojson as _write

    maps, marker, _ = layer_maps(data, meta)
    return [str(_write(path, maps, marker))]
