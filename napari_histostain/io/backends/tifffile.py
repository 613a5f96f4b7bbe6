"""tifffile + zarr: pyramidal (OME-)TIFFs that OpenSlide declines, single-level OME-TIFFs and
TIFFs whose resolution tag gives a microscope's pixel size (um)."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import SlideError
from ..metadata import SlideInfo, microscopy_mpp, ome_mpp, resolve_mpp
from . import composite_rgba


class TiffBackend:
    """Pyramidal (OME-)TIFF through tifffile's zarr store; one zarr array per level."""

    name = "tifffile"

    def __init__(self, tif, levels, background, downsamples):
        self._tif = tif
        self._levels = levels  # zarr arrays, (H, W, C)
        self._bg = background
        self._ds = downsamples
        self._lock = threading.Lock()

    def read_region(self, location, level, size) -> np.ndarray:
        arr = self._levels[level]
        H, W = arr.shape[:2]
        ds = self._ds[level]
        x0 = int(location[0] // ds)
        y0 = int(location[1] // ds)
        w, h = size
        out = np.empty((h, w, 3), np.uint8)
        out[:] = self._bg
        xs, ys = max(x0, 0), max(y0, 0)
        xe, ye = min(x0 + w, W), min(y0 + h, H)
        if xe > xs and ye > ys:
            with self._lock:  # one file handle: serialise seeks
                block = np.asarray(arr[ys:ye, xs:xe])
            if block.ndim == 2:
                block = np.repeat(block[..., None], 3, axis=2)
            if block.shape[2] == 4:
                block = composite_rgba(block, self._bg)
            out[ys - y0 : ye - y0, xs - x0 : xe - x0] = block[..., :3]
        return out

    def associated_image(self, name: str) -> np.ndarray:
        raise KeyError(name)

    def close(self) -> None:
        self._tif.close()


def is_ome_tiff(p: Path) -> bool:
    """Whether `p` is a TIFF with OME-XML metadata."""
    import tifffile

    try:
        with tifffile.TiffFile(str(p)) as tif:
            return bool(tif.is_ome)
    except Exception:
        return False


def open_tifffile(p: Path, display: str) -> tuple[SlideInfo, TiffBackend] | None:
    """Open a pyramidal TIFF, an OME-TIFF or a TIFF with a microscope's pixel size; None for other
    files (plain images without a pixel size included)."""
    import tifffile
    import zarr

    try:
        tif = tifffile.TiffFile(str(p))
    except Exception:
        return None
    try:
        series = tif.series[0]
        levels = series.levels
        if len(levels) < 2 and not tif.is_ome and microscopy_mpp(levels[0].pages[0]) is None:
            tif.close()
            return None  # a plain image without a pixel size: `backends.image` reads it
        if _data_past_end(p, levels):
            tif.close()
            return None  # truncated: `open_slide` says so, with what to do
        shapes = []
        for lv in levels:
            if lv.axes not in ("YXS", "YX"):
                tif.close()
                return None
            shapes.append(lv.shape)
        mpp_x, mpp_y = ome_mpp(tif.ome_metadata) if tif.is_ome else (None, None)
        if mpp_x is None:  # a resolution tag of 72 dpi is a screen's, not the microscope's
            mpp_x, mpp_y = microscopy_mpp(levels[0].pages[0]) or (None, None)
        mpp, source = resolve_mpp(mpp_x, mpp_y, None, display)
        store = tif.aszarr()
        group: Any = zarr.open(store, mode="r")
        arrays: list[Any] = (
            [group[str(i)] for i in range(len(levels))] if len(levels) > 1 else [group]
        )
        W0 = shapes[0][1]
        dims = tuple((int(s[1]), int(s[0])) for s in shapes)
        downs = tuple(W0 / d[0] for d in dims)
        tiles = []
        for lv in levels:
            pg: Any = lv.pages[0]
            tiles.append(
                (int(pg.tilewidth or pg.imagewidth), int(pg.tilelength or pg.rowsperstrip))
            )
    except SlideError:
        raise
    except Exception as exc:
        tif.close()
        raise SlideError(f"{display}: a TIFF that could not be read as a slide ({exc}).") from exc
    bg = (255, 255, 255)
    info = SlideInfo(
        path=str(p),
        vendor="ome-tiff" if tif.is_ome else "tiff",
        backend="tifffile",
        level_dimensions=dims,
        level_downsamples=downs,
        tile_sizes=tuple(tiles),
        mpp=mpp,
        mpp_source=source,
        objective_power=None,
        background=bg,
        associated_images=(),
        properties={"tifffile.series": series.name or "", "tifffile.is_ome": str(tif.is_ome)},
    )
    return info, TiffBackend(tif, arrays, bg, downs)


def _data_past_end(p: Path, levels: Any) -> bool:
    """Whether any level's first page keeps pixel data beyond the end of the file (a truncated
    copy: its page chain may still give a readable-looking first level)."""
    size = p.stat().st_size
    for lv in levels:
        pg: Any = lv.pages[0]
        ends = [int(o) + int(n) for o, n in zip(pg.dataoffsets, pg.databytecounts) if n]
        if ends and max(ends) > size:
            return True
    return False


def is_microscopy_tiff(p: Path) -> bool:
    """Whether `p` is a TIFF `open_tifffile` reads as a slide: a pyramid, an OME-TIFF, or one
    image whose resolution tag gives a microscope's pixel size."""
    import tifffile

    try:
        with tifffile.TiffFile(str(p)) as tif:
            levels = tif.series[0].levels
            return len(levels) > 1 or tif.is_ome or microscopy_mpp(levels[0].pages[0]) is not None
    except Exception:
        return False
