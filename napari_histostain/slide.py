"""Slide access: one `Slide` object over OpenSlide, or tifffile for plain pyramidal / OME-TIFFs.

Every format OpenSlide 4 reads (svs, tif, ndpi, vms, vmu, scn, mrxs, svslide, bif, DICOM files and
folders) goes through OpenSlide; pyramidal TIFFs that OpenSlide declines go through tifffile + zarr.
Region reads are thread-safe and always return RGB uint8, with transparent pixels composited on the
slide's background colour.
"""

from __future__ import annotations

import logging
import os
import threading
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .errors import HistostainError

if TYPE_CHECKING:
    from .native_tiles import TiffTiles

log = logging.getLogger(__name__)

#: File name suffixes that announce a whole-slide image.
SLIDE_SUFFIXES = (
    ".svs", ".tif", ".tiff", ".ndpi", ".vms", ".vmu", ".scn", ".mrxs", ".svslide", ".bif", ".dcm",
)

#: Vendors whose slides are tiled TIFFs: their tiles are decoded directly (`native_tiles.TiffTiles`).
#: Set HISTOSTAIN_DIRECT_TILES=0 to read every pixel through OpenSlide / tifffile+zarr instead.
DIRECT_TILE_VENDORS = ("aperio", "generic-tiff", "philips", "tiff", "ome-tiff")
_DIRECT_LOCK = threading.Lock()

#: Micrometres per pixel of a 10x objective; mpp is estimated as this / (objective / 10) when missing.
MPP_AT_10X = 1.0


class SlideError(HistostainError):
    """A slide could not be opened or read; the message says what to do."""


class MissingMppWarning(UserWarning):
    """The slide carries no pixel size; 1 px = 1 unit is assumed."""


@dataclass(frozen=True)
class SlideInfo:
    """Plain, picklable facts about a slide."""

    path: str
    vendor: str
    backend: str
    level_dimensions: tuple[tuple[int, int], ...]  # (width, height) per level
    level_downsamples: tuple[float, ...]
    tile_sizes: tuple[tuple[int, int], ...]  # native (tile_width, tile_height) per level
    mpp: tuple[float, float]  # (mpp_x, mpp_y) in micrometres per level-0 pixel
    mpp_source: str  # "metadata", "objective-power" or "assumed"
    objective_power: float | None
    background: tuple[int, int, int]
    associated_images: tuple[str, ...]
    properties: dict[str, str] = field(default_factory=dict, compare=False, repr=False)

    @property
    def level_count(self) -> int:
        return len(self.level_dimensions)

    @property
    def dimensions(self) -> tuple[int, int]:
        return self.level_dimensions[0]

    @property
    def mpp_known(self) -> bool:
        return self.mpp_source != "assumed"

    def summary(self) -> str:
        """Human-readable multi-line description (used by `histostain info`)."""
        lines = [
            f"file:        {self.path}",
            f"vendor:      {self.vendor} (read with {self.backend})",
            f"size:        {self.dimensions[0]} x {self.dimensions[1]} px",
            f"mpp:         {self.mpp[0]:.4f} x {self.mpp[1]:.4f} um/px ({self.mpp_source})",
            f"objective:   {self.objective_power or 'unknown'}",
            f"background:  #{''.join(f'{c:02x}' for c in self.background)}",
            "levels:",
        ]
        for i, ((w, h), ds, (tw, th)) in enumerate(
            zip(self.level_dimensions, self.level_downsamples, self.tile_sizes)
        ):
            lines.append(f"  {i}: {w} x {h} px, downsample {ds:.3f}, tile {tw} x {th}")
        lines.append(f"associated:  {', '.join(self.associated_images) or 'none'}")
        return "\n".join(lines)


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


def _hex_colour(value: str | None) -> tuple[int, int, int]:
    if not value:
        return (255, 255, 255)
    try:
        v = int(value.lstrip("#"), 16)
    except ValueError:
        return (255, 255, 255)
    return ((v >> 16) & 255, (v >> 8) & 255, v & 255)


def _mpp_from(mpp_x: float | None, mpp_y: float | None, objective: float | None, name: str):
    """Return ((mpp_x, mpp_y), source); warn when the pixel size has to be assumed."""
    if mpp_x and mpp_x > 0:
        return (float(mpp_x), float(mpp_y if mpp_y and mpp_y > 0 else mpp_x)), "metadata"
    if objective and objective > 0:
        est = MPP_AT_10X * 10.0 / objective
        warnings.warn(
            f"{name}: no pixel size in the file; estimated {est:.3f} um/px from the "
            f"{objective:g}x objective. Distances and the model's tile size may be off.",
            MissingMppWarning,
            stacklevel=3,
        )
        return (est, est), "objective-power"
    warnings.warn(
        f"{name}: no pixel size (mpp) and no objective power in the file; assuming 1 px = 1 um. "
        "Scale bars and measurements are in pixels; pass the true mpp (e.g. --mpp 0.25) for predictions.",
        MissingMppWarning,
        stacklevel=3,
    )
    return (1.0, 1.0), "assumed"


class Slide:
    """A whole-slide image opened for thread-safe region reads.

    Use `open_slide(path)` to make one. Coordinates follow OpenSlide: `location` is (x, y) in level-0
    pixels, `size` is (width, height) in pixels of the requested level.
    """

    def __init__(self, info: SlideInfo, backend: Any):
        self.info = info
        self._backend = backend

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
        import dataclasses

        mx, my = (mpp, mpp) if np.isscalar(mpp) else mpp
        if not (mx > 0 and my > 0):
            raise SlideError(f"mpp must be positive, got {mpp}")
        info = dataclasses.replace(self.info, mpp=(float(mx), float(my)), mpp_source="user")
        return Slide(info, self._backend)

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
    def read_region(self, location: tuple[int, int], level: int, size: tuple[int, int]) -> np.ndarray:
        """Read a (height, width, 3) uint8 RGB region; thread-safe.

        `location` is (x, y) in level-0 pixels, `size` (width, height) in pixels of `level`.
        Areas outside the slide or transparent in the file get the background colour.
        """
        if not 0 <= level < self.level_count:
            raise SlideError(f"{self.path.name}: level {level} does not exist (0..{self.level_count - 1}).")
        w, h = int(size[0]), int(size[1])
        if w <= 0 or h <= 0:
            raise ValueError(f"region size must be positive, got {size}")
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
        backend = self._backend
        if not hasattr(backend, "direct_tiles"):
            with _DIRECT_LOCK:
                if not hasattr(backend, "direct_tiles"):
                    tiles = None
                    if self.info.vendor in DIRECT_TILE_VENDORS and os.environ.get("HISTOSTAIN_DIRECT_TILES") != "0":
                        from .native_tiles import TiffTiles

                        tiles = TiffTiles.open(
                            self.info.path,
                            self.level_dimensions,
                            self.level_downsamples,
                            self.background,
                            reference=backend.read_region,
                        )
                    backend.direct_tiles = tiles
        return backend.direct_tiles

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
        w, h = self.dimensions
        ds = max(w, h) / max_size
        level = self.best_level_for_downsample(max(ds, 1.0))
        lw, lh = self.level_dimensions[level]
        img = self.read_region((0, 0), level, (lw, lh))
        if max(lw, lh) > max_size:
            from skimage.transform import resize

            scale = max_size / max(lw, lh)
            out_shape = (max(1, round(lh * scale)), max(1, round(lw * scale)))
            img = (resize(img, out_shape, anti_aliasing=True, preserve_range=True) + 0.5).astype(np.uint8)
        return img

    def close(self) -> None:
        tiles = getattr(self._backend, "direct_tiles", None)
        if tiles is not None:
            tiles.close()
        self._backend.close()

    def __enter__(self) -> Slide:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        w, h = self.dimensions
        return f"Slide({self.path.name!r}, {w}x{h}, {self.level_count} levels, mpp={self.mpp[0]:.3f})"

    def __reduce__(self):
        # Slides travel to dask workers as their path and reopen there.
        return (open_slide, (self.info.path,))


def read_level_region(source, level: int, x: int, y: int, w: int, h: int) -> np.ndarray:
    """`source.read_level_region(...)` (a `Slide`); for a slide-like object without it (an
    OpenSlide-style `read_region` and `level_downsamples`), `read_region` at the level-0 location."""
    if hasattr(source, "read_level_region"):
        return source.read_level_region(level, x, y, w, h)
    ds = source.level_downsamples[level]
    return source.read_region((round(x * ds), round(y * ds)), level, (w, h))


def composite_rgba(rgba: np.ndarray, background: tuple[int, int, int]) -> np.ndarray:
    """RGBA (non-premultiplied) -> RGB, blending transparent pixels onto `background`."""
    rgb = rgba[..., :3]
    alpha = rgba[..., 3]
    if alpha.min() == 255:
        return rgb  # a view: no copy on the hot path (callers that keep it may copy)
    a = alpha[..., None].astype(np.float32) / 255.0
    bg = np.asarray(background, np.float32)
    return (rgb.astype(np.float32) * a + bg * (1.0 - a) + 0.5).astype(np.uint8)


# ------------------------------------------------------------------------------------------------
# Backends
# ------------------------------------------------------------------------------------------------
class _OpenSlideBackend:
    name = "openslide"

    def __init__(self, handle, background):
        self._h = handle
        self._bg = background

    def read_region(self, location, level, size):
        # OpenSlide's C library is thread-safe; the ctypes call releases the GIL.
        img = self._h.read_region(location, level, size)
        return composite_rgba(np.asarray(img), self._bg)

    def associated_image(self, name):
        return composite_rgba(np.asarray(self._h.associated_images[name].convert("RGBA")), self._bg)

    def close(self):
        self._h.close()


class _TiffBackend:
    """Pyramidal (OME-)TIFF through tifffile's zarr store; one zarr array per level."""

    name = "tifffile"

    def __init__(self, tif, levels, background, downsamples):
        self._tif = tif
        self._levels = levels  # zarr arrays, (H, W, C)
        self._bg = background
        self._ds = downsamples
        self._lock = threading.Lock()

    def read_region(self, location, level, size):
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

    def associated_image(self, name):
        raise KeyError(name)

    def close(self):
        self._tif.close()


def _open_with_openslide(p: Path, display: str) -> Slide | None:
    import openslide

    try:
        vendor = openslide.OpenSlide.detect_format(str(p))
    except Exception:
        vendor = None
    if vendor is None:
        return None
    if vendor == "generic-tiff" and _is_ome_tiff(p):
        return None  # OpenSlide ignores OME metadata (pixel size): let tifffile read it
    try:
        h = openslide.OpenSlide(str(p))
    except Exception as exc:
        raise SlideError(
            f"{display}: looks like a {vendor} slide but could not be opened ({exc}). The file is "
            "probably truncated or corrupt: copy it again from the scanner or archive."
        ) from exc
    props = dict(h.properties)
    bg = _hex_colour(props.get(openslide.PROPERTY_NAME_BACKGROUND_COLOR))
    obj = props.get(openslide.PROPERTY_NAME_OBJECTIVE_POWER)
    objective = float(obj) if obj not in (None, "") else None

    def _f(key):
        v = props.get(key)
        try:
            return float(v) if v not in (None, "") else None
        except ValueError:
            return None

    mpp, source = _mpp_from(
        _f(openslide.PROPERTY_NAME_MPP_X), _f(openslide.PROPERTY_NAME_MPP_Y), objective, display
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
        level_dimensions=tuple(tuple(map(int, d)) for d in h.level_dimensions),
        level_downsamples=tuple(float(d) for d in h.level_downsamples),
        tile_sizes=tuple(tiles),
        mpp=mpp,
        mpp_source=source,
        objective_power=objective,
        background=bg,
        associated_images=tuple(sorted(h.associated_images.keys())),
        properties=props,
    )
    slide = Slide(info, _OpenSlideBackend(h, bg))
    _probe(slide, display)
    return slide


def _is_ome_tiff(p: Path) -> bool:
    import tifffile

    try:
        with tifffile.TiffFile(str(p)) as tif:
            return bool(tif.is_ome)
    except Exception:
        return False


def _open_with_tifffile(p: Path, display: str) -> Slide | None:
    import tifffile
    import zarr

    try:
        tif = tifffile.TiffFile(str(p))
    except Exception:
        return None
    try:
        series = tif.series[0]
        levels = series.levels
        if len(levels) < 2 and not tif.is_ome:
            tif.close()
            return None  # a plain image, not a slide: leave it to other readers
        shapes = []
        for lv in levels:
            axes = lv.axes
            if axes not in ("YXS", "YX"):
                tif.close()
                return None
            shapes.append(lv.shape)
        mpp_x = mpp_y = None
        if tif.is_ome and tif.ome_metadata:
            import xml.etree.ElementTree as ET

            root = ET.fromstring(tif.ome_metadata)
            for el in root.iter():
                if el.tag.endswith("Pixels"):
                    unit = el.get("PhysicalSizeXUnit", "µm")
                    factor = {"µm": 1.0, "um": 1.0, "nm": 1e-3, "mm": 1e3, "cm": 1e4}.get(unit, 1.0)
                    if el.get("PhysicalSizeX"):
                        mpp_x = float(el.get("PhysicalSizeX")) * factor
                        mpp_y = float(el.get("PhysicalSizeY", el.get("PhysicalSizeX"))) * factor
                    break
        if mpp_x is None:
            page = levels[0].pages[0]
            unit = page.tags.get("ResolutionUnit")
            xr = page.tags.get("XResolution")
            yr = page.tags.get("YResolution")
            if unit is not None and xr is not None and int(unit.value) in (2, 3):
                per_um = {2: 25400.0, 3: 10000.0}[int(unit.value)]
                num, den = xr.value
                if num:
                    mpp_x = per_um * den / num
                    num, den = yr.value if yr is not None else xr.value
                    mpp_y = per_um * den / num if num else mpp_x
        mpp, source = _mpp_from(mpp_x, mpp_y, None, display)
        store = tif.aszarr()
        group = zarr.open(store, mode="r")
        arrays = [group[str(i)] for i in range(len(levels))] if len(levels) > 1 else [group]
        W0 = shapes[0][1]
        dims = tuple((int(s[1]), int(s[0])) for s in shapes)
        downs = tuple(W0 / d[0] for d in dims)
        tiles = []
        for lv in levels:
            pg = lv.pages[0]
            tiles.append((int(pg.tilewidth or pg.imagewidth), int(pg.tilelength or pg.rowsperstrip)))
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
    slide = Slide(info, _TiffBackend(tif, arrays, bg, downs))
    _probe(slide, display)
    return slide


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
    slide = _open_with_openslide(p, display)
    if slide is None:
        slide = _open_with_tifffile(p, display)
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
            "DICOM WSI and pyramidal (OME-)TIFF."
        )
    log.debug("opened %s", slide)
    return slide


def _has_tiff_magic(p: Path) -> bool:
    with open(p, "rb") as fh:
        head = fh.read(4)
    return head in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")


def is_slide(path: str | Path) -> bool:
    """Cheap check: would `open_slide` try this path (right suffix or a folder of .dcm files)?"""
    p = Path(path)
    if p.is_dir():
        return any(f.suffix.lower() == ".dcm" for f in p.iterdir())
    return p.suffix.lower() in SLIDE_SUFFIXES
