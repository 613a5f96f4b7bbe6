"""napari reader contribution: a whole-slide image as one lazy multiscale RGB layer in micrometres.

`get_slide_reader` claims slide files, DICOM folders, OME-TIFFs and TIFFs with a pixel size in um,
never plain TIFFs without one (those go to napari's own readers). A file that looks like a slide but cannot be read gives one clear error
notification and no layer, instead of a traceback.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..io.naming import slide_name
from ..io.slide import SLIDE_SUFFIXES, MissingMppWarning, SlideError, open_slide

log = logging.getLogger(__name__)

LayerData = tuple[Any, dict, str]

#: Suffixes only ever used by slide scanners: always ours, even when the file is broken.
_VENDOR_SUFFIXES = tuple(s for s in SLIDE_SUFFIXES if s not in (".tif", ".tiff"))


def _is_slide_tiff(path: Path) -> bool:
    """Whether a .tif is a slide: OpenSlide recognises it, or it is a pyramid, an OME-TIFF or one
    image with a microscope's pixel size in its resolution tag (`io.backends.tifffile`)."""
    import openslide

    from ..io.backends.tifffile import is_microscopy_tiff

    try:
        if openslide.OpenSlide.detect_format(str(path)) is not None:
            return True
    except Exception:
        pass
    return is_microscopy_tiff(path)


def _claims(path: Path) -> bool:
    if path.is_dir():
        try:
            return any(f.suffix.lower() == ".dcm" for f in path.iterdir())
        except OSError:
            return False
    name = path.name.lower()
    if name.endswith(".heatmap.ome.tif"):
        return False  # our exported heatmaps have their own reader
    if path.suffix.lower() in _VENDOR_SUFFIXES:
        return True
    if path.suffix.lower() in (".tif", ".tiff"):
        return path.exists() and _is_slide_tiff(path)
    return False


def get_slide_reader(path: str | list[str]) -> Callable[[str | list[str]], list] | None:
    """npe2 reader hook: return `read_slides` for whole-slide files, None for anything else."""
    paths = [path] if isinstance(path, str | Path) else list(path)
    if not paths or not all(_claims(Path(p)) for p in paths):
        return None
    return read_slides


def read_slides(path: str | list[str]) -> list:
    """Read one or more slides; unreadable ones give one error notification each and no layer."""
    paths = [path] if isinstance(path, str | Path) else list(path)
    layers = []
    for p in paths:
        try:
            layers.append(read_slide_layer(p))
        except SlideError as exc:
            _notify_error(str(exc))
    return layers or [(None,)]  # napari's sentinel for "nothing to show, no error"


def read_slide_layer(path: str | Path, *, cache_bytes: int | None = None) -> LayerData:
    """A slide as napari layer data: multiscale lazy RGB pyramid, scale in micrometres per pixel.

    Raises `SlideError` for unreadable input. A missing pixel size is reported as a warning
    notification and the layer is shown in pixels (scale 1).
    """
    from ..io.pyramid import slide_pyramid
    from ..io.tile_cache import DEFAULT_CACHE_BYTES

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", MissingMppWarning)
        slide = open_slide(path)
    for w in caught:
        if issubclass(w.category, MissingMppWarning):
            _notify_warning(str(w.message))
    info = slide.info
    data = slide_pyramid(slide, DEFAULT_CACHE_BYTES if cache_bytes is None else cache_bytes)
    mpp_x, mpp_y = info.mpp
    p = Path(path)
    name = slide_name(p)
    meta = {
        "slide_path": str(p),
        "mpp": (mpp_x, mpp_y),
        "mpp_source": info.mpp_source,
        "slide_info": {k: v for k, v in info.__dict__.items() if k != "properties"},
        "slide_properties": dict(info.properties),
        "associated_images": list(info.associated_images),
    }
    kwargs = {
        "name": name,
        "multiscale": True,
        "rgb": True,
        "scale": (mpp_y, mpp_x),
        "units": ("um", "um") if info.mpp_known else ("pixel", "pixel"),
        "metadata": meta,
        "contrast_limits": (0, 255),
    }
    return (data, kwargs, "image")


def read_associated_layers(path: str | Path, names: list[str] | None = None) -> list[LayerData]:
    """Associated images (thumbnail, label, macro) of a slide as plain RGB layers, on request."""
    with open_slide(path) as slide:
        wanted = names if names is not None else list(slide.info.associated_images)
        stem = slide_name(path)
        return [
            (
                slide.associated_image(n),
                {"name": f"{stem} [{n}]", "rgb": True, "visible": False},
                "image",
            )
            for n in wanted
        ]


def _notify_error(message: str) -> None:
    log.error(message)
    try:
        from napari.utils.notifications import show_error

        show_error(message)
    except ImportError:  # pragma: no cover - headless use without napari
        pass


def _notify_warning(message: str) -> None:
    log.warning(message)
    try:
        from napari.utils.notifications import show_warning

        show_warning(message)
    except ImportError:  # pragma: no cover
        pass
