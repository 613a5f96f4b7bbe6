"""Slide access: the `Slide` facade and `open_slide`, over the backends in `io.backends`.

Every format OpenSlide 4 reads (svs, tif, ndpi, vms, vmu, scn, mrxs, svslide, bif, DICOM files and
folders) goes through OpenSlide; pyramidal TIFFs that OpenSlide declines, single-level OME-TIFFs and
TIFFs with a pixel size go through tifffile + zarr; plain PNG / JPEG / BMP / TIFF images are decoded
into memory (their pixel size is assumed until given: `Slide.with_mpp`).
Region reads are thread-safe and always return RGB uint8, with transparent pixels composited on the
slide's background colour.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import threading
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .errors import SlideError
from .metadata import MissingMppWarning, SlideInfo, mpp_pair
from .overview import read_level_region, thumbnail
from .read_plan import check_chunks, check_region

if TYPE_CHECKING:
    from .backends import SlideBackend
    from .native_tiles import TiffTiles

__all__ = [
    "SLIDE_SUFFIXES",
    "MissingMppWarning",
    "Slide",
    "SlideError",
    "SlideInfo",
    "open_slide",
    "read_level_region",
    "slide_from_array",
]

log = logging.getLogger(__name__)

#: File name suffixes that announce a whole-slide image.
SLIDE_SUFFIXES = (
    ".svs",
    ".tif",
    ".tiff",
    ".ndpi",
    ".vms",
    ".vmu",
    ".scn",
    ".mrxs",
    ".svslide",
    ".bif",
    ".dcm",
)

#: Vendors whose slides are tiled TIFFs: their tiles are decoded directly (`native_tiles.TiffTiles`).
#: Set HISTOSTAIN_DIRECT_TILES=0 to read every pixel through OpenSlide / tifffile+zarr instead.
DIRECT_TILE_VENDORS = ("aperio", "generic-tiff", "philips", "tiff", "ome-tiff")


class _LazyTiles:
    """A slide's direct tile decoder, opened on first use and shared by views of the slide."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.opened = False
        self.tiles: TiffTiles | None = None


def _resolve_path(path: str | Path) -> Path:
    """Check the path exists and is not empty; a DICOM folder resolves to one of its files."""
    p = Path(path).expanduser()
    if not p.exists():
        raise SlideError(f"{p}: no such file or folder. Check the path.")
    if p.is_dir():
        files = sorted(f for f in p.iterdir() if f.is_file() and f.suffix.lower() == ".dcm")
        if not files:
            raise SlideError(
                f"{p}: this folder holds no DICOM (.dcm) files. Open a whole-slide file, or a folder "
                "holding the .dcm files of one DICOM whole-slide image."
            )
        return files[0]
    if p.stat().st_size == 0:
        raise SlideError(f"{p}: the file is empty (0 bytes). Copy the slide again from its source.")
    return p


class Slide:
    """A whole-slide image opened for thread-safe region reads.

    Use `open_slide(path)` to make one. Coordinates follow OpenSlide: `location` is (x, y) in level-0
    pixels, `size` is (width, height) in pixels of the requested level.
    """

    def __init__(self, info: SlideInfo, backend: SlideBackend, direct: _LazyTiles | None = None):
        self.info = info
        self._backend = backend
        self._direct = direct or _LazyTiles()

    # -- facts ---------------------------------------------------------------------------------
    @property
    def path(self) -> Path:
        return Path(self.info.path)

    @property
    def level_count(self) -> int:
        return self.info.level_count

    @property
    def level_dimensions(self) -> tuple[tuple[int, int], ...]:
        return self.info.level_dimensions

    @property
    def level_downsamples(self) -> tuple[float, ...]:
        return self.info.level_downsamples

    @property
    def dimensions(self) -> tuple[int, int]:
        return self.info.dimensions

    @property
    def mpp(self) -> tuple[float, float]:
        return self.info.mpp

    @property
    def background(self) -> tuple[int, int, int]:
        return self.info.background

    @property
    def properties(self) -> dict[str, str]:
        return self.info.properties

    def with_mpp(self, mpp: float | tuple[float, float]) -> Slide:
        """A view of this slide with a user-given pixel size (the file handle is shared)."""
        mx, my = mpp_pair(mpp)
        if not (mx > 0 and my > 0):
            raise SlideError(f"mpp must be positive, got {mpp}")
        info = dataclasses.replace(self.info, mpp=(mx, my), mpp_source="user")
        return Slide(info, self._backend, self._direct)

    def level_mpp(self, level: int) -> tuple[float, float]:
        """(mpp_x, mpp_y) of a pyramid level."""
        ds = self.level_downsamples[level]
        return (self.mpp[0] * ds, self.mpp[1] * ds)

    def best_level_for_downsample(self, downsample: float) -> int:
        """The highest-resolution-cost-saving level whose downsample is <= the request (+1% slack)."""
        best = 0
        for i, ds in enumerate(self.level_downsamples):
            if ds <= downsample * 1.01:
                best = i
        return best

    # -- pixels --------------------------------------------------------------------------------
    def read_region(
        self, location: tuple[int, int], level: int, size: tuple[int, int]
    ) -> np.ndarray:
        """Read a (height, width, 3) uint8 RGB region; thread-safe.

        `location` is (x, y) in level-0 pixels, `size` (width, height) in pixels of `level`.
        Areas outside the slide or transparent in the file get the background colour.
        """
        if not 0 <= level < self.level_count:
            raise SlideError(
                f"{self.path.name}: level {level} does not exist (0..{self.level_count - 1})."
            )
        w, h = int(size[0]), int(size[1])
        if w <= 0 or h <= 0:
            raise ValueError(f"region size must be positive, got {size}")
        check_region(self.info, level, w, h)
        location = (int(location[0]), int(location[1]))
        try:
            tiles = self._direct_tiles()
            if tiles is not None:
                region = tiles.read_region(location, level, (w, h))
                if region is not None:
                    return region
            return self._backend.read_region(location, level, (w, h))
        except SlideError:
            raise
        except Exception as exc:  # openslide.OpenSlideError, tifffile/zarr decode errors
            raise SlideError(
                f"{self.path.name}: could not read pixels at {location} (level {level}): {exc}. "
                "The file may be truncated or corrupt; copy it again from its source."
            ) from exc

    def read_level_region(self, level: int, x: int, y: int, w: int, h: int) -> np.ndarray:
        """Read (h, w, 3) uint8 RGB pixels of `level` from level pixel (x, y); thread-safe.

        Unlike `read_region`, the origin is in the level's own pixels, and a TIFF-family slide
        returns the level's pixels even when its downsample is not an integer (OpenSlide would
        shift them by a fraction of a pixel and interpolate). Use it to read at a pyramid level.
        """
        if 0 <= level < self.level_count and w > 0 and h > 0:
            check_region(self.info, level, int(w), int(h))
        tiles = self._direct_tiles()
        if tiles is not None and 0 <= level < self.level_count and w > 0 and h > 0:
            try:
                region = tiles.read_level(level, int(x), int(y), int(w), int(h))
            except Exception as exc:
                raise SlideError(
                    f"{self.path.name}: could not decode pixels at level {level} ({x}, {y}): {exc}. "
                    "The file may be truncated or corrupt; copy it again from its source."
                ) from exc
            if region is not None:
                return region
        ds = self.level_downsamples[level] if 0 <= level < self.level_count else 1.0
        return self.read_region((round(x * ds), round(y * ds)), level, (w, h))

    def _direct_tiles(self) -> TiffTiles | None:
        """The direct tile decoder of a TIFF-family slide, opened on first use (None: not used)."""
        lazy = self._direct
        if not lazy.opened:
            with lazy.lock:
                if not lazy.opened:
                    if (
                        self.info.vendor in DIRECT_TILE_VENDORS
                        and os.environ.get("HISTOSTAIN_DIRECT_TILES") != "0"
                    ):
                        from .native_tiles import TiffTiles

                        lazy.tiles = TiffTiles.open(
                            self.info.path,
                            self.level_dimensions,
                            self.level_downsamples,
                            self.background,
                            reference=self._backend.read_region,
                        )
                    lazy.opened = True
        return lazy.tiles

    def associated_image(self, name: str) -> np.ndarray:
        """An associated image (e.g. 'thumbnail', 'label', 'macro') as RGB uint8."""
        if name not in self.info.associated_images:
            raise KeyError(
                f"{self.path.name} has no associated image {name!r}; it has: "
                f"{', '.join(self.info.associated_images) or 'none'}"
            )
        return self._backend.associated_image(name)

    def thumbnail(self, max_size: int = 1024) -> np.ndarray:
        """An RGB overview no larger than `max_size` on its longer side, from the best level."""
        return thumbnail(self, max_size)

    def close(self) -> None:
        if self._direct.tiles is not None:
            self._direct.tiles.close()
        self._backend.close()

    def __enter__(self) -> Slide:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        w, h = self.dimensions
        return (
            f"Slide({self.path.name!r}, {w}x{h}, {self.level_count} levels, mpp={self.mpp[0]:.3f})"
        )

    def __reduce__(self):
        # Slides travel to dask workers as their path (and a user-given pixel size) and reopen there.
        user_mpp = self.info.mpp if self.info.mpp_source == "user" else None
        return (_reopen, (self.info.path, user_mpp))


def _probe(slide: Slide, display: str) -> None:
    """Decode one small region of the smallest level so a truncated file fails at open, not later."""
    level = slide.level_count - 1
    w, h = slide.level_dimensions[level]
    try:
        slide._backend.read_region((0, 0), level, (min(w, 64), min(h, 64)))
    except Exception as exc:
        slide.close()
        raise SlideError(
            f"{display}: the file opened but its pixels cannot be decoded ({exc.__cause__ or exc}). "
            "It is probably truncated or corrupt: copy it again from the scanner or archive."
        ) from exc


def open_slide(path: str | Path) -> Slide:
    """Open a whole-slide image; raise `SlideError` with a message that says what to do."""
    p = _resolve_path(path)
    display = Path(path).name or str(path)
    from .backends.image import open_image
    from .backends.openslide import open_openslide
    from .backends.tifffile import open_tifffile

    slide = None
    for opener in (open_openslide, open_tifffile, open_image):
        opened = opener(p, display)
        if opened is not None:
            slide = Slide(*opened)
            try:
                check_chunks(slide.info)  # before decoding anything: can any level be read?
            except SlideError:
                slide.close()
                raise
            _probe(slide, display)
            break
    if slide is None and (
        (p.suffix.lower() in SLIDE_SUFFIXES and p.suffix.lower() not in (".tif", ".tiff"))
        or _has_tiff_magic(p)
    ):
        raise SlideError(
            f"{display}: the name says {p.suffix} slide, but neither OpenSlide nor tifffile can read it: "
            "the file is corrupt, truncated or not a slide. Copy it again from the scanner or archive."
        )
    if slide is None:
        raise SlideError(
            f"{display}: not a whole-slide image that OpenSlide or tifffile can read. Supported: "
            "Aperio .svs, Hamamatsu .ndpi/.vms/.vmu, Leica .scn, MIRAX .mrxs, Philips/Sakura/Ventana, "
            "DICOM WSI, (OME-)TIFF, and PNG / JPEG / BMP images (give their pixel size)."
        )
    log.debug("opened %s", slide)
    return slide


def _reopen(path: str, mpp: tuple[float, float] | None) -> Slide:
    if mpp is None:
        return open_slide(path)
    import warnings

    with warnings.catch_warnings():  # the pixel size the file lacks is given
        warnings.simplefilter("ignore", MissingMppWarning)
        return open_slide(path).with_mpp(mpp)


def slide_from_array(
    rgb: np.ndarray, mpp: float | tuple[float, float], name: str = "image"
) -> Slide:
    """An RGB uint8 array (a field of view, a PNG/JPEG image) as a one-level `Slide` at `mpp`."""
    from .backends.array import array_slide_parts

    return Slide(*array_slide_parts(rgb, mpp, name))


def _has_tiff_magic(p: Path) -> bool:
    with open(p, "rb") as fh:
        head = fh.read(4)
    return head in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")
