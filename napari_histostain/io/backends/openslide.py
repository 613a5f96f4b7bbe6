"""OpenSlide 4: every vendor format (svs, ndpi, vms, mrxs, scn, bif, DICOM, ...)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import SlideError
from ..metadata import SlideInfo, hex_colour, resolve_mpp
from . import composite_rgba


class OpenSlideBackend:
    """Pixels through OpenSlide's C library (thread-safe; the ctypes call releases the GIL)."""

    name = "openslide"

    def __init__(self, handle, background: tuple[int, int, int]):
        self._h = handle
        self._bg = background

    def read_region(self, location, level, size) -> np.ndarray:
        img = self._h.read_region(location, level, size)
        return composite_rgba(np.asarray(img), self._bg)

    def associated_image(self, name: str) -> np.ndarray:
        return composite_rgba(np.asarray(self._h.associated_images[name].convert("RGBA")), self._bg)

    def close(self) -> None:
        self._h.close()


def _float(props: dict, key: str) -> float | None:
    v = props.get(key)
    try:
        return float(v) if v not in (None, "") else None
    except ValueError:
        return None


def open_openslide(p: Path, display: str) -> tuple[SlideInfo, OpenSlideBackend] | None:
    """Open `p` with OpenSlide; None when OpenSlide does not claim it (or it is an OME-TIFF)."""
    import openslide

    from .tifffile import is_ome_tiff

    try:
        vendor = openslide.OpenSlide.detect_format(str(p))
    except Exception:
        vendor = None
    if vendor is None:
        return None
    if vendor == "generic-tiff" and is_ome_tiff(p):
        return None  # OpenSlide ignores OME metadata (pixel size): let tifffile read it
    try:
        h = openslide.OpenSlide(str(p))
    except Exception as exc:
        raise SlideError(
            f"{display}: looks like a {vendor} slide but could not be opened ({exc}). The file is "
            "probably truncated or corrupt: copy it again from the scanner or archive."
        ) from exc
    props = dict(h.properties)
    bg = hex_colour(props.get(openslide.PROPERTY_NAME_BACKGROUND_COLOR))
    objective = _float(props, openslide.PROPERTY_NAME_OBJECTIVE_POWER)
    mpp, source = resolve_mpp(
        _float(props, openslide.PROPERTY_NAME_MPP_X),
        _float(props, openslide.PROPERTY_NAME_MPP_Y),
        objective,
        display,
    )
    tiles = []
    for i in range(h.level_count):
        tw = int(props.get(f"openslide.level[{i}].tile-width", 256) or 256)
        th = int(props.get(f"openslide.level[{i}].tile-height", 256) or 256)
        tiles.append((tw, th))
    info = SlideInfo(
        path=str(p),
        vendor=vendor,
        backend="openslide",
        level_dimensions=tuple((int(d[0]), int(d[1])) for d in h.level_dimensions),
        level_downsamples=tuple(float(d) for d in h.level_downsamples),
        tile_sizes=tuple(tiles),
        mpp=mpp,
        mpp_source=source,
        objective_power=objective,
        background=bg,
        associated_images=tuple(sorted(h.associated_images.keys())),
        properties=props,
    )
    return info, OpenSlideBackend(h, bg)
