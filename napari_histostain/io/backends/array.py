"""An RGB image in memory as a one-level slide (plain PNG/JPEG images, fields of view, tests)."""

from __future__ import annotations

import numpy as np

from ..errors import SlideError
from ..metadata import SlideInfo, mpp_pair

WHITE = (255, 255, 255)


class ArrayBackend:
    """Region reads of an (H, W, 3) uint8 array; outside the image is the background colour."""

    name = "array"

    def __init__(self, rgb: np.ndarray, background: tuple[int, int, int] = WHITE):
        self._rgb = rgb
        self._bg = background

    def read_region(self, location, level, size) -> np.ndarray:  # noqa: ARG002 - one level
        x, y = (int(v) for v in location)
        w, h = (int(v) for v in size)
        out = np.empty((h, w, 3), np.uint8)
        out[:] = self._bg
        H, W = self._rgb.shape[:2]
        x0, y0, x1, y1 = max(x, 0), max(y, 0), min(x + w, W), min(y + h, H)
        if x1 > x0 and y1 > y0:
            out[y0 - y : y1 - y, x0 - x : x1 - x] = self._rgb[y0:y1, x0:x1]
        return out

    def associated_image(self, name: str) -> np.ndarray:
        raise KeyError(name)

    def close(self) -> None:
        pass


def array_slide_parts(
    rgb: np.ndarray, mpp: float | tuple[float, float], name: str = "image"
) -> tuple[SlideInfo, ArrayBackend]:
    """(SlideInfo, backend) of an RGB uint8 array with a known pixel size (um/px)."""
    rgb = np.asarray(rgb)
    if rgb.ndim != 3 or rgb.shape[2] not in (3, 4):
        raise SlideError(
            f"{name}: expected an RGB image (height, width, 3), got shape {rgb.shape}."
        )
    if rgb.dtype != np.uint8:
        raise SlideError(f"{name}: expected 8-bit RGB (uint8), got {rgb.dtype}. Convert it first.")
    mx, my = mpp_pair(mpp)
    if not (mx > 0 and my > 0):
        raise SlideError(f"{name}: give the pixel size in micrometres per pixel (e.g. mpp=0.5).")
    h, w = rgb.shape[:2]
    info = SlideInfo(
        path=str(name),
        vendor="image",
        backend="array",
        level_dimensions=((w, h),),
        level_downsamples=(1.0,),
        tile_sizes=((w, h),),
        mpp=(float(mx), float(my)),
        mpp_source="user",
        objective_power=None,
        background=WHITE,
        associated_images=(),
    )
    return info, ArrayBackend(np.ascontiguousarray(rgb[..., :3]))
