"""Heatmaps as pyramidal float32 OME-TIFFs that lie exactly on the slide, and back."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np

from .. import __version__
from ..engine.tiling import TileLattice
from ..io.atomic import atomic_path
from .errors import ExportError

HEATMAP_SUFFIX = ".heatmap.ome.tif"


def _downsample_nan(a: np.ndarray) -> np.ndarray:
    h, w = a.shape
    p = np.pad(a, ((0, h % 2), (0, w % 2)), constant_values=np.nan)
    blocks = p.reshape(p.shape[0] // 2, 2, p.shape[1] // 2, 2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmean(blocks, axis=(1, 3)).astype(np.float32)


#: Side of the TIFF tiles of a heatmap (a multiple of 16, as TIFF requires).
HEATMAP_TILE = 64


def heatmap_pyramid(a: np.ndarray, min_size: int = HEATMAP_TILE) -> list[np.ndarray]:
    """The heatmap and its 2x NaN-aware mean reductions until the largest side <= `min_size`;
    at least one reduction when the heatmap is more than one pixel (so every file is a pyramid)."""
    levels = [np.asarray(a, np.float32)]
    while max(levels[-1].shape) > min_size or (len(levels) == 1 and max(levels[0].shape) > 1):
        levels.append(_downsample_nan(levels[-1]))
    return levels


def write_heatmap(
    path: str | Path, array: np.ndarray, lattice: TileLattice, meta: dict | None = None
) -> Path:
    """Atomically write a heatmap as a tiled, pyramidal (SubIFD) float32 OME-TIFF.

    Every level is stored in `HEATMAP_TILE` px tiles; the pyramid halves the heatmap (NaN-aware
    means) until its largest side is at most one tile (at least once).

    PhysicalSizeX/Y is the tile side in um; Plane PositionX/Y the slide position (um, pixel-corner
    convention: level-0 px x starts at x * mpp_x) of the heatmap's top-left corner; so the heatmap
    lies exactly on the slide. `meta` (marker, kind, ...) and the grid lattice are stored as JSON in
    the OME Image Description.
    """
    import tifffile

    array = np.asarray(array, np.float32)
    if array.ndim != 2:
        raise ExportError(f"a heatmap must be 2-D, got shape {array.shape}.")
    mx, my = lattice.mpp
    sy, sx = lattice.scale
    info = dict(meta or {})
    info["geometry"] = lattice.to_dict()
    info["histostain_version"] = __version__
    metadata = {
        "axes": "YX",
        "Name": str(info.get("name", Path(path).name)),
        "Description": json.dumps(info),
        "PhysicalSizeX": sx,
        "PhysicalSizeXUnit": "µm",
        "PhysicalSizeY": sy,
        "PhysicalSizeYUnit": "µm",
        "Plane": {
            "PositionX": lattice.origin[0] * mx,
            "PositionXUnit": "µm",
            "PositionY": lattice.origin[1] * my,
            "PositionYUnit": "µm",
        },
    }
    levels = heatmap_pyramid(array)
    tile = (HEATMAP_TILE, HEATMAP_TILE)
    with atomic_path(path) as tmp, tifffile.TiffWriter(tmp, ome=True) as tw:
        tw.write(
            levels[0],
            subifds=len(levels) - 1,
            tile=tile,
            metadata=metadata,
            resolution=(1e4 / sx, 1e4 / sy),
            resolutionunit="CENTIMETER",
        )
        for k, lev in enumerate(levels[1:], start=1):
            f = 2**k
            tw.write(
                lev,
                subfiletype=1,
                tile=tile,
                metadata=None,
                resolution=(1e4 / (sx * f), 1e4 / (sy * f)),
                resolutionunit="CENTIMETER",
            )
    return Path(path)


def read_heatmap(path: str | Path) -> tuple[np.ndarray, TileLattice, dict]:
    """(array, lattice, meta) of a heatmap written by `write_heatmap`; `ExportError` otherwise."""
    import tifffile

    try:
        with tifffile.TiffFile(path) as tf:
            xml = tf.ome_metadata
            array = tf.series[0].levels[0].asarray()
    except Exception as exc:
        raise ExportError(f"cannot read {path} as OME-TIFF: {exc}") from exc
    if not xml:
        raise ExportError(f"{path} has no OME metadata; it is not a HistoStain heatmap.")
    image = tifffile.xml2dict(xml).get("OME", {}).get("Image", {})
    if isinstance(image, list):
        image = image[0]
    try:
        info = json.loads(image.get("Description", ""))
        lattice = TileLattice.from_dict(info["geometry"])
    except (ValueError, KeyError, TypeError) as exc:
        raise ExportError(
            f"{path} is not a HistoStain heatmap (no lattice in its description)."
        ) from exc
    return np.asarray(array, np.float32), lattice, info


def physical_pixel_size(path: str | Path) -> tuple[float, float]:
    """(PhysicalSizeY, PhysicalSizeX) in um of an OME-TIFF, as tifffile reports it."""
    import tifffile

    with tifffile.TiffFile(path) as tf:
        pixels = tifffile.xml2dict(tf.ome_metadata)["OME"]["Image"]["Pixels"]
    return float(pixels["PhysicalSizeY"]), float(pixels["PhysicalSizeX"])
