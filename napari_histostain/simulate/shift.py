"""Another lab: a shift of stain protocol and scanner applied to every slide of a simulated case.

A `LabShift` changes how a section looks, not the biology: the stain vectors (rotated about the
grey axis, i.e. another hue of hematoxylin / eosin or DAB), each stain's intensity, the section
thickness (optical density scales with it; thicker sections also blur a little), the scanner's
focus (Gaussian blur) and white point (the glass colour). JPEG quality is `simulate_*(quality=)`.

The neutral shift (all defaults) changes nothing: renderers are returned as they are, so default
outputs stay byte-identical. A shifted render is still deterministic and independent of how a
slide is cut into strips (the blur reads a margin around each region, clamped at the slide edges).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from .params import SimulationError

#: extra blur (um, Gaussian sigma) per unit of section thickness above nominal
THICKNESS_BLUR_UM = 0.4


@dataclass(frozen=True)
class LabShift:
    """How another lab's slides differ from the simulator's default ones (all neutral by default)."""

    stain_rotation_deg: float = 0.0  # rotate both stain OD vectors about the grey axis
    hematoxylin_gain: float = 1.0  # hematoxylin intensity (x)
    eosin_gain: float = 1.0  # eosin (H&E) / DAB (IHC) intensity (x)
    thickness: float = 1.0  # section thickness relative to nominal (OD x thickness)
    blur_um: float = 0.0  # scanner defocus: Gaussian sigma in um
    white_point: tuple[float, float, float] | None = None  # glass RGB (scanner white balance)

    def __post_init__(self) -> None:
        for name in ("hematoxylin_gain", "eosin_gain", "thickness"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and math.isfinite(v) and 0 < v <= 5):
                raise SimulationError(f"{name} must be a number in (0, 5], got {v!r}")
        if not (isinstance(self.blur_um, (int, float)) and 0 <= self.blur_um <= 10):
            raise SimulationError(f"blur_um must be in [0, 10] um, got {self.blur_um!r}")
        if not (
            isinstance(self.stain_rotation_deg, (int, float)) and abs(self.stain_rotation_deg) <= 90
        ):
            raise SimulationError(
                f"stain_rotation_deg must be in [-90, 90], got {self.stain_rotation_deg!r}"
            )
        if self.white_point is not None:
            wp = tuple(self.white_point)
            if len(wp) != 3 or not all(isinstance(v, (int, float)) and 50 <= v <= 255 for v in wp):
                raise SimulationError(
                    f"white_point must be three numbers in [50, 255] (R G B), got {self.white_point!r}"
                )
            object.__setattr__(self, "white_point", tuple(float(v) for v in wp))

    @property
    def is_neutral(self) -> bool:
        return self == LabShift()

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["white_point"] = list(self.white_point) if self.white_point else None
        return d

    @classmethod
    def from_dict(cls, d: dict | None) -> LabShift:
        if not d:
            return cls()
        known = {f.name for f in dataclasses.fields(cls)}
        kw = {k: v for k, v in d.items() if k in known}
        if kw.get("white_point") is not None:
            kw["white_point"] = tuple(kw["white_point"])
        return cls(**kw)

    def sigma_px(self, mpp: float) -> float:
        """The total blur (Gaussian sigma, px at `mpp`): scanner focus plus thick-section blur."""
        extra = THICKNESS_BLUR_UM * max(0.0, self.thickness - 1.0)
        return math.hypot(self.blur_um, extra) / mpp

    def apply(self, renderer: Any, height: int, width: int, mpp: float) -> Any:
        """`renderer` (a `SectionRenderer`) as this lab would show it: its stain changed in place
        and, with blur, wrapped in a `BlurredRenderer`. The neutral shift returns it unchanged."""
        if self.is_neutral:
            return renderer
        st = renderer.stain
        rot = rotation_about_grey(math.radians(self.stain_rotation_deg))
        renderer.stain = dataclasses.replace(
            st,
            v_h=_unit(np.clip(rot @ st.v_h, 1e-3, None)),
            v_x=_unit(np.clip(rot @ st.v_x, 1e-3, None)),
            scale_h=st.scale_h * self.hematoxylin_gain * self.thickness,
            scale_x=st.scale_x * self.eosin_gain * self.thickness,
            background=np.asarray(self.white_point, float)
            if self.white_point is not None
            else st.background,
        )
        sigma = self.sigma_px(mpp)
        return BlurredRenderer(renderer, sigma, height, width) if sigma > 0 else renderer


PRESETS = {
    # another lab's stain protocol and scanner: bluer hematoxylin and paler eosin, thicker sections,
    # a softer focus and a warm white balance (use with a lower JPEG quality, e.g. 60)
    "another-lab": LabShift(
        stain_rotation_deg=12.0,
        hematoxylin_gain=1.3,
        eosin_gain=0.7,
        thickness=1.3,
        blur_um=0.6,
        white_point=(246.0, 234.0, 218.0),
    ),
    # half of it: a neighbouring lab (use with JPEG quality 75)
    "mild": LabShift(
        stain_rotation_deg=6.0,
        hematoxylin_gain=1.15,
        eosin_gain=0.85,
        thickness=1.15,
        blur_um=0.3,
        white_point=(243.0, 237.0, 229.0),
    ),
}
#: the JPEG quality that goes with each preset (`simulate_*(quality=)`)
PRESET_QUALITY = {"another-lab": 60, "mild": 75}


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v)


def rotation_about_grey(angle: float) -> np.ndarray:
    """3x3 rotation by `angle` (radians) about the grey axis (1, 1, 1)/sqrt(3) (Rodrigues)."""
    k = np.ones(3) / math.sqrt(3.0)
    kx = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
    return np.eye(3) + math.sin(angle) * kx + (1 - math.cos(angle)) * (kx @ kx)


class BlurredRenderer:
    """A renderer seen through a defocused scanner: each region is rendered with a margin of
    4 sigma (clamped at the slide edges) and Gaussian-blurred, so strips join seamlessly."""

    def __init__(self, renderer: Any, sigma_px: float, height: int, width: int):
        self.inner, self.sigma = renderer, float(sigma_px)
        self.height, self.width = int(height), int(width)
        self.margin = int(math.ceil(4 * self.sigma))

    def __getattr__(self, name: str) -> Any:  # stain, release, cell_ids, ... of the inner one
        return getattr(self.inner, name)

    def __call__(self, y0: int, x0: int, h: int, w: int) -> np.ndarray:
        from scipy import ndimage

        m = self.margin
        ya, xa = max(0, y0 - m), max(0, x0 - m)
        yb, xb = min(self.height, y0 + h + m), min(self.width, x0 + w + m)
        big = self.inner(ya, xa, yb - ya, xb - xa).astype(np.float32)
        # pad to the full margin as a slide edge would (nearest), so every strip sees the same
        big = np.pad(
            big,
            ((ya - (y0 - m), (y0 + h + m) - yb), (xa - (x0 - m), (x0 + w + m) - xb), (0, 0)),
            mode="edge",
        )
        out = ndimage.gaussian_filter(
            big, (self.sigma, self.sigma, 0), mode="nearest", truncate=4.0
        )
        out = out[m : m + h, m : m + w]
        return np.clip(np.round(out), 0, 255).astype(np.uint8)
