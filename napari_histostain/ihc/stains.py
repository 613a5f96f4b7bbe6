"""Stains of hematoxylin-DAB IHC: optical density, stain vectors (Macenko, standard fallback), and
the check that an image is IHC and not H&E. Optical densities are log10 units with unit-length stain
vectors (as QuPath reports them)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .errors import NotDabError
from .params import IHCParams

#: log10 optical density = skimage `separate_stains` output x this (skimage divides ln(I) by ln(1e-6)).
OD_SCALE = math.log(1e6) / math.log(10)


@dataclass(frozen=True)
class StainVectors:
    """Unit optical-density vectors of hematoxylin and DAB and where they came from."""

    hematoxylin: tuple[float, float, float]
    dab: tuple[float, float, float]
    source: str  # "macenko", "standard" or "macenko+standard" (one vector fell back)

    def matrix(self) -> np.ndarray:
        """3x3 stain-from-OD matrix (for skimage `separate_stains` or a product with OD)."""
        h, d = np.asarray(self.hematoxylin), np.asarray(self.dab)
        r = np.cross(h, d)
        rgb_from_stains = np.stack([h, d, r / np.linalg.norm(r)])
        return np.linalg.inv(rgb_from_stains).astype(np.float32)

    def to_dict(self) -> dict:
        return {
            "hematoxylin": [round(float(v), 4) for v in self.hematoxylin],
            "dab": [round(float(v), 4) for v in self.dab],
            "source": self.source,
        }


def standard_stains() -> StainVectors:
    """scikit-image's standard hematoxylin / DAB vectors (Ruifrok & Johnston)."""
    from skimage.color import rgb_from_hdx

    h, d = (rgb_from_hdx[i] / np.linalg.norm(rgb_from_hdx[i]) for i in (0, 1))
    return StainVectors(_vector(h), _vector(d), "standard")


def _vector(v: np.ndarray) -> tuple[float, float, float]:
    return float(v[0]), float(v[1]), float(v[2])


def optical_density(rgb: np.ndarray) -> np.ndarray:
    """log10 optical density per RGB channel, float32 (H, W, 3)."""
    from skimage.color import separate_stains

    return (separate_stains(rgb, np.eye(3)) * OD_SCALE).astype(np.float32)


def _angle(a: np.ndarray, b: np.ndarray) -> float:
    cos = abs(float(a @ b)) / (np.linalg.norm(a) * np.linalg.norm(b))
    return math.degrees(math.acos(min(1.0, cos)))


def estimate_stains(
    od_pixels: np.ndarray,
    *,
    alpha: float = 1.0,
    beta: float = 0.15,
    max_od: float = 2.0,
    max_angle_h: float = 25.0,
    max_angle_dab: float = 15.0,
) -> StainVectors:
    """Macenko estimate of the hematoxylin and DAB vectors from OD pixels (N, 3).

    Pixels with OD norm between `beta` and `max_od` are projected on the plane of their two main
    directions; the `alpha`/`100 - alpha` percentile angles give the two stains. A vector more than
    `max_angle_h` / `max_angle_dab` degrees from its standard (or both ends on the same stain, e.g. a Ki-67 slide with
    no positive cell) falls back to the standard vector.
    """
    std = standard_stains()
    std_h, std_d = np.asarray(std.hematoxylin), np.asarray(std.dab)
    od = np.asarray(od_pixels, np.float64).reshape(-1, 3)
    norm = np.linalg.norm(od, axis=1)
    # not per channel: pale blue has little blue OD; near-black pixels (saturated DAB, JPEG
    # blacks) have lost their colour and would tilt both vectors towards grey
    od = od[(norm > beta) & (norm < max_od)]
    if len(od) < 500:
        return std
    _, vecs = np.linalg.eigh(np.cov(od.T))
    plane = vecs[:, [2, 1]]
    for k in range(2):
        if (od @ plane[:, k]).mean() < 0:
            plane[:, k] *= -1
    proj = od @ plane
    phi = np.arctan2(proj[:, 1], proj[:, 0])
    lo, hi = np.percentile(phi, [alpha, 100 - alpha])
    ends = [plane @ [math.cos(a), math.sin(a)] for a in (lo, hi)]
    ends = [np.abs(v) / np.linalg.norm(v) for v in ends]
    # the end closer to standard DAB (relative to hematoxylin) is DAB
    d_score = [_angle(v, std_h) - _angle(v, std_d) for v in ends]
    est_d, est_h = (ends[0], ends[1]) if d_score[0] > d_score[1] else (ends[1], ends[0])
    h_ok = _angle(est_h, std_h) <= max_angle_h
    d_ok = _angle(est_d, std_d) <= max_angle_dab and _angle(est_d, est_h) >= 10.0
    h = est_h if h_ok else std_h
    d = est_d if d_ok else std_d
    source = "macenko" if h_ok and d_ok else "macenko+standard" if h_ok or d_ok else "standard"
    return StainVectors(_vector(h), _vector(d), source)


def eosin_fraction(od: np.ndarray, *, tissue_od: float = 0.15) -> tuple[float, int]:
    """Fraction of tissue OD pixels with eosin (skimage H-E-DAB deconvolution), and their count."""
    from skimage.color import hed_from_rgb

    od = np.asarray(od, np.float32).reshape(-1, 3)
    tissue = od.sum(axis=1) > tissue_od
    if not tissue.any():
        return 0.0, 0
    eosin = od[tissue] @ hed_from_rgb.astype(np.float32)[:, 1]
    return float((eosin > 0.05).mean()), int(tissue.sum())


def check_dab(od: np.ndarray, params: IHCParams = IHCParams(), name: str = "image") -> None:
    """Raise `NotDabError` when OD pixels look like H&E (eosin throughout, no DAB component)."""
    frac, n = eosin_fraction(od, tissue_od=params.tissue_od)
    if n >= 500 and frac > params.eosin_fraction_max:
        raise NotDabError(
            f"{name}: this looks like an H&E slide ({frac:.0%} of the tissue is eosin-stained), not "
            "a hematoxylin-DAB immunohistochemistry slide, so there is no DAB to quantify. Open the "
            "IHC slide (brown DAB with blue hematoxylin counterstain); to predict IHC from this H&E "
            "slide use `histostain predict`."
        )
