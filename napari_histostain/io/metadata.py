"""What a slide file says about itself: `SlideInfo`, and the pixel size (mpp) rules.

mpp comes from the file's metadata, else from the objective power (10x = 1 um/px), else it is
assumed (1 um/px) with a `MissingMppWarning`.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np

#: Micrometres per pixel of a 10x objective; mpp is estimated as this / (objective / 10) when missing.
MPP_AT_10X = 1.0
#: TIFF ResolutionUnit -> micrometres per unit (2: inch, 3: centimetre).
TIFF_UNIT_UM = {2: 25400.0, 3: 10000.0}
#: OME PhysicalSize units -> micrometres.
OME_UNIT_UM = {"µm": 1.0, "um": 1.0, "nm": 1e-3, "mm": 1e3, "cm": 1e4}


#: Pixel sizes (um/px) a microscope image can have; a TIFF resolution outside them (72 dpi = 353
#: um/px: a screen image) is not taken as the pixel size.
MICROSCOPY_MPP = (0.01, 50.0)


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
    mpp_source: str  # "metadata", "objective-power", "user" or "assumed"
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


def mpp_pair(mpp: float | tuple[float, float] | list[float] | Any) -> tuple[float, float]:
    """(mpp_x, mpp_y) from one number (square pixels) or a pair."""
    values = [float(v) for v in np.asarray(mpp, dtype=float).ravel()]
    if len(values) not in (1, 2):
        raise ValueError(f"mpp is one number or a pair, got {mpp!r}")
    return values[0], values[-1]


def hex_colour(value: str | None) -> tuple[int, int, int]:
    """An 'RRGGBB' colour (OpenSlide's background property) as RGB; white when absent or bad."""
    if not value:
        return (255, 255, 255)
    try:
        v = int(value.lstrip("#"), 16)
    except ValueError:
        return (255, 255, 255)
    return ((v >> 16) & 255, (v >> 8) & 255, v & 255)


def resolve_mpp(
    mpp_x: float | None, mpp_y: float | None, objective: float | None, name: str
) -> tuple[tuple[float, float], str]:
    """Return ((mpp_x, mpp_y), source); warn when the pixel size has to be estimated or assumed."""
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


def ome_mpp(ome_xml: str | None) -> tuple[float | None, float | None]:
    """(mpp_x, mpp_y) from the first OME `Pixels` element's PhysicalSizeX/Y; None when absent."""
    if not ome_xml:
        return None, None
    import xml.etree.ElementTree as ET

    root = ET.fromstring(ome_xml)
    for el in root.iter():
        if el.tag.endswith("Pixels"):
            factor = OME_UNIT_UM.get(el.get("PhysicalSizeXUnit", "µm"), 1.0)
            size_x = el.get("PhysicalSizeX")
            if size_x:
                return float(size_x) * factor, float(el.get("PhysicalSizeY", size_x)) * factor
            break
    return None, None


def tiff_resolution_mpp(page) -> tuple[float | None, float | None]:
    """(mpp_x, mpp_y) from a tifffile page's X/YResolution and ResolutionUnit; None when absent."""
    unit = page.tags.get("ResolutionUnit")
    xr = page.tags.get("XResolution")
    yr = page.tags.get("YResolution")
    if unit is None or xr is None or int(unit.value) not in TIFF_UNIT_UM:
        return None, None
    per_um = TIFF_UNIT_UM[int(unit.value)]
    num, den = xr.value
    if not num:
        return None, None
    mpp_x = per_um * den / num
    num, den = yr.value if yr is not None else xr.value
    return mpp_x, (per_um * den / num if num else mpp_x)


def microscopy_mpp(page) -> tuple[float, float] | None:
    """A TIFF page's resolution as (mpp_x, mpp_y) when it is a microscope's pixel size, else None."""
    mx, my = tiff_resolution_mpp(page)
    lo, hi = MICROSCOPY_MPP
    if mx is None or my is None or not (lo <= mx <= hi and lo <= my <= hi):
        return None
    return mx, my
