"""Plain images (PNG, JPEG, BMP, a TIFF without a pixel size) as one-level slides.

Their pixel size is not in the file (a PNG's dpi is a screen's): it is assumed (1 um/px, with a
`MissingMppWarning`) until the user gives it (`Slide.with_mpp`, CLI `--mpp`). The image is decoded
once into memory, so it must be small enough for that.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import SlideError
from ..metadata import SlideInfo, resolve_mpp
from .array import WHITE, ArrayBackend

#: Suffixes of plain images read here.
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
#: Largest plain image decoded into memory (pixels); larger images must be pyramidal TIFFs.
MAX_IMAGE_PIXELS = 1 << 28


def _decode(p: Path) -> np.ndarray:
    if p.suffix.lower() in (".tif", ".tiff"):
        import tifffile

        with tifffile.TiffFile(str(p)) as tif:
            page = tif.series[0]
            if int(np.prod(page.shape[:2])) > MAX_IMAGE_PIXELS:
                raise _too_large(p, page.shape[1], page.shape[0])
            return np.asarray(tif.asarray())
    from PIL import Image

    Image.MAX_IMAGE_PIXELS = None  # our own cap below, with a message that says what to do
    with Image.open(p) as im:
        if im.width * im.height > MAX_IMAGE_PIXELS:
            raise _too_large(p, im.width, im.height)
        return np.asarray(im.convert("RGBA" if "A" in im.getbands() else "RGB"))


def _too_large(p: Path, w: int, h: int) -> SlideError:
    return SlideError(
        f"{p.name}: a plain image of {w} x {h} px is too large to read at once; save it as a "
        "tiled, pyramidal (OME-)TIFF (e.g. with QuPath or vips) and open that."
    )


def open_image(p: Path, display: str) -> tuple[SlideInfo, ArrayBackend] | None:
    """Open a plain RGB image as a one-level slide; None for files that are not plain images."""
    if p.suffix.lower() not in IMAGE_SUFFIXES:
        return None
    try:
        rgb = _decode(p)
    except SlideError:
        raise
    except Exception:
        return None  # not an image these readers know: `open_slide` says so
    if rgb.dtype != np.uint8 or rgb.ndim not in (2, 3) or (rgb.ndim == 3 and rgb.shape[2] > 4):
        raise SlideError(
            f"{display}: an image of shape {rgb.shape} and type {rgb.dtype}; only 8-bit RGB (or "
            "greyscale) images can be analysed. Export it as an 8-bit RGB PNG or TIFF."
        )
    if rgb.ndim == 2:
        rgb = np.repeat(rgb[..., None], 3, axis=2)
    if rgb.shape[2] == 4:
        from . import composite_rgba

        rgb = composite_rgba(rgb, WHITE)
    rgb = np.ascontiguousarray(rgb[..., :3])
    mpp, source = resolve_mpp(None, None, None, display)
    h, w = rgb.shape[:2]
    info = SlideInfo(
        path=str(p),
        vendor="image",
        backend="image",
        level_dimensions=((w, h),),
        level_downsamples=(1.0,),
        tile_sizes=((w, h),),
        mpp=mpp,
        mpp_source=source,
        objective_power=None,
        background=WHITE,
        associated_images=(),
    )
    return info, ArrayBackend(rgb)
