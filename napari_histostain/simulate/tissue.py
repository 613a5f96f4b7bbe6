"""Tissue model of a case: compartments on a micrometre grid shared by all sections of the case.

A case's layout (tissue outline with holes, tumour nests or glands with lumens, stroma, lymphoid
aggregates, optional necrosis) lives in *case coordinates* (micrometres, origin at the slide centre).
Each section (the H&E and every IHC) sees it through its own rigid + mild elastic transform, so
consecutive sections share layout and composition but are not registered.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .fields import smooth_field
from .params import MARKER_STREAM, Morphology

GLASS, STROMA, TUMOUR, LUMEN, LYMPH, NECROSIS, FAT = range(7)
COMPARTMENTS = ("glass", "stroma", "tumour", "lumen", "lymphoid", "necrosis", "fat")
GRID_UM = 4.0  # case grid step
FIBRE_TURN = 0.6  # radians between the two collagen orientations


def _stream(seed: int, *ids: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([seed, *ids]))


class CaseLayout:
    """Compartment labels and smooth fields of one case on a `GRID_UM` grid (case coordinates)."""

    def __init__(self, seed: int, size_um: tuple[float, float], morph: Morphology):
        from scipy import ndimage

        self.seed = seed
        self.size_um = size_um
        h_um, w_um = size_um
        g = GRID_UM
        self.extent_um = (h_um * 1.3 + 8 * g, w_um * 1.3 + 8 * g)
        shape = (int(math.ceil(self.extent_um[0] / g)), int(math.ceil(self.extent_um[1] / g)))
        self.shape = shape
        self.origin_um = (-shape[0] * g / 2.0, -shape[1] * g / 2.0)  # (v, u) of grid cell 0 centre
        rng = _stream(seed, 11)
        self.params: dict = {}

        vv = (self.origin_um[0] + g * np.arange(shape[0], dtype=np.float32))[:, None]
        uu = (self.origin_um[1] + g * np.arange(shape[1], dtype=np.float32))[None, :]
        # tissue outline: a wobbly, rotated ellipse with a few holes (fat / tears)
        ay = h_um / 2 * rng.uniform(0.66, 0.86)
        ax = w_um / 2 * rng.uniform(0.66, 0.86)
        phi = rng.uniform(0, np.pi)
        cu, sv = np.cos(phi), np.sin(phi)
        ru = (uu * cu + vv * sv) / ax
        rv = (-uu * sv + vv * cu) / ay
        wobble = smooth_field(rng, shape, min(350.0, 0.25 * min(h_um, w_um)) / g)
        tissue = np.sqrt(ru**2 + rv**2) + 0.16 * wobble < 1.0
        del ru, rv, wobble
        holes = smooth_field(rng, shape, 45.0 / g) > rng.uniform(2.4, 2.9)
        labels = np.where(tissue, STROMA, GLASS).astype(np.uint8)

        # tumour nests: thresholded small-scale noise plus a large-scale trend
        nest_um = float(rng.uniform(35.0, 90.0))
        tumour_fraction = float(rng.uniform(0.3, 0.6))
        t = smooth_field(rng, shape, nest_um / g)
        t += 0.7 * smooth_field(rng, shape, 500.0 / g)
        thr = np.quantile(t[tissue], 1.0 - tumour_fraction) if tissue.any() else np.inf
        tumour = tissue & (t > thr)
        del t
        glandular = bool(rng.uniform() < 0.5)
        necrotic = bool(rng.uniform() < 0.35)
        epi_um = float(rng.uniform(12.0, 20.0))
        dist = ndimage.distance_transform_edt(tumour) * g
        labels[tumour] = TUMOUR
        if necrotic:
            labels[tumour & (dist > 70.0)] = NECROSIS
        if glandular:  # several lumens per nest, separated by epithelial bridges (cribriform)
            holes_field = smooth_field(rng, shape, 22.0 / g)
            lum = tumour & (dist > epi_um) & (holes_field > 0.3) & (labels != NECROSIS)
            labels[lum] = LUMEN
        del dist
        # lymphoid aggregates in stroma
        area_mm2 = float(tissue.sum()) * g * g / 1e6
        n_agg = int(rng.poisson(morph.aggregates_per_mm2 * area_mm2))
        stroma_idx = np.flatnonzero(labels.ravel() == STROMA)
        if n_agg and stroma_idx.size:
            centres = rng.choice(stroma_idx, size=n_agg)
            radii = rng.uniform(30.0, 90.0, n_agg) / g
            for c, r in zip(centres, radii):
                cy, cx = divmod(int(c), shape[1])
                y0, y1 = max(0, int(cy - r - 1)), min(shape[0], int(cy + r + 2))
                x0, x1 = max(0, int(cx - r - 1)), min(shape[1], int(cx + r + 2))
                yy, xx = np.ogrid[y0:y1, x0:x1]
                disc = (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r
                sub = labels[y0:y1, x0:x1]
                sub[disc & (sub == STROMA)] = LYMPH
        labels[holes & tissue] = FAT
        self.labels = labels
        self.til = np.exp(0.5 * smooth_field(rng, shape, 200.0 / g)).astype(np.float32)
        self.fibre_angle = float(rng.uniform(0, np.pi))
        # where the collagen runs at fibre_angle (0) or at fibre_angle + FIBRE_TURN (1)
        self.fibre_blend = np.clip(0.5 + 1.2 * smooth_field(rng, shape, 100.0 / g), 0, 1)
        self.params = {
            "nest_um": round(nest_um, 3),
            "tumour_fraction_target": round(tumour_fraction, 4),
            "glandular": glandular,
            "necrotic": necrotic,
            "epithelium_um": round(epi_um, 3),
            "lymphoid_aggregates": n_agg,
            "tissue_area_mm2": round(area_mm2, 4),
        }
        self._hetero: dict[str, np.ndarray] = {}

    def hetero(self, marker: str) -> np.ndarray:
        """Spatial heterogeneity weight of a marker's positivity (mean ~1; hot spots > 1)."""
        if marker not in self._hetero:
            rng = _stream(self.seed, 13, MARKER_STREAM[marker])
            self._hetero[marker] = np.exp(
                0.55 * smooth_field(rng, self.shape, 250.0 / GRID_UM)
            ).astype(np.float32)
        return self._hetero[marker]

    def sample(
        self, field: np.ndarray, v_um: np.ndarray, u_um: np.ndarray, order: int
    ) -> np.ndarray:
        """Values of a grid field at case coordinates (nearest for labels, linear for fields)."""
        from scipy import ndimage

        gy = (v_um - self.origin_um[0]) / GRID_UM
        gx = (u_um - self.origin_um[1]) / GRID_UM
        cval = GLASS if field.dtype == np.uint8 else 0.0
        return ndimage.map_coordinates(field, [gy, gx], order=order, mode="constant", cval=cval)


@dataclass
class SectionTransform:
    """Section pixel -> case micrometres: rotation about the centre, shift, smooth elastic warp."""

    height: int
    width: int
    mpp: float
    angle: float  # radians
    shift_um: tuple[float, float]  # (dv, du)
    warp_amp_um: float
    warp_k: tuple[tuple[float, float, float], ...]  # (kv, ku, phase) per sinusoid

    @classmethod
    def random(
        cls, rng: np.random.Generator, height: int, width: int, mpp: float, *, reference: bool
    ):
        size_um = min(height, width) * mpp
        if reference:  # the H&E: close to the case frame
            angle, shift, amp = rng.uniform(-0.05, 0.05), rng.uniform(-0.01, 0.01, 2), 0.0
        else:
            angle = rng.uniform(-0.35, 0.35)
            shift = rng.uniform(-0.04, 0.04, 2)
            amp = rng.uniform(4.0, 12.0)
        ks = []
        for _ in range(3):
            wl = rng.uniform(0.4, 1.2) * max(size_um, 200.0)
            th = rng.uniform(0, 2 * np.pi)
            ks.append(
                (
                    2 * np.pi / wl * np.sin(th),
                    2 * np.pi / wl * np.cos(th),
                    rng.uniform(0, 2 * np.pi),
                )
            )
        return cls(
            height,
            width,
            mpp,
            float(angle),
            (float(shift[0] * size_um), float(shift[1] * size_um)),
            float(amp),
            tuple(ks),
        )

    def to_case(self, y_px: np.ndarray, x_px: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Case (v, u) micrometres of section pixel centres (y_px, x_px) (broadcasting)."""
        v = (np.asarray(y_px, np.float64) - (self.height - 1) / 2.0) * self.mpp
        u = (np.asarray(x_px, np.float64) - (self.width - 1) / 2.0) * self.mpp
        ca, sa = math.cos(self.angle), math.sin(self.angle)
        cv = sa * u + ca * v + self.shift_um[0]
        cu = ca * u - sa * v + self.shift_um[1]
        if self.warp_amp_um:
            dv = np.zeros(np.broadcast(cv, cu).shape)
            du = np.zeros_like(dv)
            for i, (kv, ku, ph) in enumerate(self.warp_k):
                s = np.sin(kv * cv + ku * cu + ph)
                if i % 2:
                    dv = dv + s
                else:
                    du = du + s
            cv = cv + self.warp_amp_um / 2 * dv
            cu = cu + self.warp_amp_um / 2 * du
        return cv, cu

    def to_dict(self) -> dict:
        return {
            "angle_deg": round(math.degrees(self.angle), 4),
            "shift_um": [round(s, 3) for s in self.shift_um],
            "elastic_amplitude_um": round(self.warp_amp_um, 3),
        }
