"""Cells of one section: where they are, what they look like, and (IHC) which are positive."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from .params import CaseLatents, Morphology
from .tissue import FIBRE_TURN, LYMPH, NECROSIS, STROMA, TUMOUR, CaseLayout, SectionTransform

COARSE = 8  # section coarse grid: one sample per COARSE x COARSE pixels

TUMOUR_CELL, FIBROBLAST, LYMPHOCYTE, DEBRIS = range(4)
CELL_KINDS = ("tumour", "fibroblast", "lymphocyte", "debris")

# nuclei per mm^2 (tumour cells sit on a jittered lattice instead)
DENSITY = {"fibroblast": 1400.0, "lymphoid": 15000.0, "debris": 8000.0}


@dataclass
class Cells:
    """Per-cell arrays in section level-0 pixels, sorted by y."""

    x: np.ndarray
    y: np.ndarray
    a: np.ndarray  # nucleus semi-axes (px), a >= b
    b: np.ndarray
    theta: np.ndarray
    h: np.ndarray  # hematoxylin concentration (before stain scaling)
    chrom: np.ndarray  # chromatin texture contrast
    kind: np.ndarray  # uint8 TUMOUR_CELL ...
    mitosis: np.ndarray  # bool
    cell_r: np.ndarray  # cell (membrane) radius, px
    dab: np.ndarray = field(default=None)  # nuclear DAB concentration (IHC)
    membrane: np.ndarray = field(default=None)  # membrane DAB concentration (IHC)
    positive: np.ndarray = field(default=None)  # bool, IHC truth

    def __len__(self) -> int:
        return int(self.x.size)

    def take(self, idx: np.ndarray) -> Cells:
        kw = {k: (None if v is None else v[idx]) for k, v in self.__dict__.items()}
        return Cells(**kw)


class Section:
    """One section of a case: its transform, coarse compartment map and cells."""

    def __init__(
        self,
        layout: CaseLayout,
        transform: SectionTransform,
        morph: Morphology,
        rng: np.random.Generator,
    ):
        self.layout = layout
        self.transform = transform
        self.height, self.width, self.mpp = transform.height, transform.width, transform.mpp
        hc = -(-self.height // COARSE)
        wc = -(-self.width // COARSE)
        yc = (np.arange(hc) + 0.5) * COARSE - 0.5
        xc = (np.arange(wc) + 0.5) * COARSE - 0.5
        v, u = transform.to_case(yc[:, None], xc[None, :])
        self.labels = layout.sample(layout.labels, v, u, 0).astype(np.uint8)
        til = layout.sample(layout.til, v, u, 1).astype(np.float32)
        self.fibre_blend = layout.sample(layout.fibre_blend, v, u, 1).astype(np.float32)
        del v, u
        self.cells = _make_cells(
            self.labels, til, morph, layout.fibre_angle - transform.angle, rng, self
        )

    def label_at(self, y_px: np.ndarray, x_px: np.ndarray) -> np.ndarray:
        ly = np.clip((np.asarray(y_px) // COARSE).astype(np.int64), 0, self.labels.shape[0] - 1)
        lx = np.clip((np.asarray(x_px) // COARSE).astype(np.int64), 0, self.labels.shape[1] - 1)
        return self.labels[ly, lx]

    def hetero_at_cells(self, marker: str) -> np.ndarray:
        v, u = self.transform.to_case(self.cells.y, self.cells.x)
        return self.layout.sample(self.layout.hetero(marker), v, u, 1).astype(np.float32)


def _poisson_points(rng, lam: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Poisson points with intensity `lam` (expected count per coarse cell)."""
    counts = rng.poisson(lam.ravel())
    idx = np.repeat(np.arange(counts.size), counts)
    cy, cx = np.divmod(idx, lam.shape[1])
    y = (cy + rng.uniform(0, 1, idx.size)) * COARSE - 0.5
    x = (cx + rng.uniform(0, 1, idx.size)) * COARSE - 0.5
    return y, x


def _make_cells(labels, til, morph: Morphology, fibre_angle: float, rng, section: Section) -> Cells:
    mpp = section.mpp
    h, w = section.height, section.width
    cell_area_mm2 = (COARSE * mpp) ** 2 / 1e6
    parts: list[dict] = []

    # tumour cells: jittered hexagonal lattice over the section, kept inside tumour
    r_nuc = morph.nucleus_radius_um
    spacing = (2.0 * r_nuc * 1.25 + 3.0) / mpp
    dy = spacing * math.sqrt(3) / 2
    rows = np.arange(-1, int(h / dy) + 2)
    cols = np.arange(-1, int(w / spacing) + 2)
    ly = np.repeat(rows * dy, cols.size)
    lx = (cols[None, :] * spacing + (rows[:, None] % 2) * spacing / 2).ravel()
    ly = ly + rng.uniform(-0.28, 0.28, ly.size) * spacing
    lx = lx + rng.uniform(-0.28, 0.28, lx.size) * spacing
    keep = (ly >= 0) & (ly < h) & (lx >= 0) & (lx < w)
    ly, lx = ly[keep], lx[keep]
    keep = section.label_at(ly, lx) == TUMOUR
    ty, tx = ly[keep], lx[keep]
    n = ty.size
    r = r_nuc / mpp * np.exp(morph.pleomorphism * rng.standard_normal(n))
    aspect = 1.08 + np.abs(morph.shape_irregularity * rng.standard_normal(n)) * 2.0
    mit = rng.uniform(0, 1, n) < morph.mitotic_fraction
    a = r * np.sqrt(aspect)
    b = r / np.sqrt(aspect)
    a[mit] = r[mit] * 1.15
    b[mit] = r[mit] * 0.42
    hh = 1.0 * morph.hyperchromasia * np.exp(0.12 * rng.standard_normal(n))
    hh[mit] *= 1.8
    parts.append(
        dict(
            y=ty,
            x=tx,
            a=a,
            b=b,
            theta=rng.uniform(0, np.pi, n),
            h=hh,
            chrom=np.full(n, 0.12 + 0.45 * morph.chromatin_contrast),
            kind=TUMOUR_CELL,
            mitosis=mit,
            cell_r=np.maximum(spacing / 2 * rng.uniform(0.9, 1.05, n), a + 1.5),
        )
    )

    # fibroblasts (elongated, along the fibres) and stromal lymphocytes
    is_stroma = labels == STROMA
    y, x = _poisson_points(rng, is_stroma * (DENSITY["fibroblast"] * cell_area_mm2))
    n = y.size
    a = rng.uniform(4.0, 8.0, n) / mpp
    b = rng.uniform(1.1, 1.8, n) / mpp
    blend = section.fibre_blend[
        np.clip((y // COARSE).astype(np.int64), 0, labels.shape[0] - 1),
        np.clip((x // COARSE).astype(np.int64), 0, labels.shape[1] - 1),
    ]
    parts.append(
        dict(
            y=y,
            x=x,
            a=a,
            b=b,
            theta=fibre_angle + FIBRE_TURN * blend + 0.2 * rng.standard_normal(n),
            h=0.9 * np.exp(0.1 * rng.standard_normal(n)),
            chrom=np.full(n, 0.15),
            kind=FIBROBLAST,
            mitosis=np.zeros(n, bool),
            cell_r=a + 1.5,
        )
    )
    lam = (
        is_stroma * (morph.til_density * til)
        + (labels == TUMOUR) * (0.3 * morph.til_density * til)
        + (labels == LYMPH) * DENSITY["lymphoid"]
    ) * cell_area_mm2
    y, x = _poisson_points(rng, lam)
    n = y.size
    r = rng.uniform(2.4, 3.0, n) / mpp
    asp = 1.0 + 0.12 * rng.uniform(0, 1, n)
    parts.append(
        dict(
            y=y,
            x=x,
            a=r * np.sqrt(asp),
            b=r / np.sqrt(asp),
            theta=rng.uniform(0, np.pi, n),
            h=1.5 * np.exp(0.08 * rng.standard_normal(n)),
            chrom=np.full(n, 0.08),
            kind=LYMPHOCYTE,
            mitosis=np.zeros(n, bool),
            cell_r=r * 1.35,
        )
    )
    # necrotic debris (karyorrhexis)
    y, x = _poisson_points(rng, (labels == NECROSIS) * (DENSITY["debris"] * cell_area_mm2))
    n = y.size
    r = rng.uniform(0.6, 1.8, n) / mpp
    parts.append(
        dict(
            y=y,
            x=x,
            a=r * 1.3,
            b=r / 1.3,
            theta=rng.uniform(0, np.pi, n),
            h=1.2 * np.exp(0.2 * rng.standard_normal(n)),
            chrom=np.full(n, 0.05),
            kind=DEBRIS,
            mitosis=np.zeros(n, bool),
            cell_r=r * 1.3,
        )
    )

    cols_out: dict[str, list] = {k: [] for k in parts[0]}
    for p in parts:
        m = p["y"].size
        for k in cols_out:
            v = p[k]
            cols_out[k].append(np.full(m, v) if np.isscalar(v) else v)
    arr = {k: np.concatenate(v) for k, v in cols_out.items()}
    inside = (arr["y"] >= 0) & (arr["y"] < h) & (arr["x"] >= 0) & (arr["x"] < w)
    order = np.argsort(arr["y"][inside], kind="stable")
    out = {}
    for k, v in arr.items():
        v = v[inside][order]
        if k == "kind":
            v = v.astype(np.uint8)
        elif k == "mitosis":
            v = v.astype(bool)
        else:
            v = v.astype(np.float32)
        out[k] = v
    return Cells(**out)


def assign_marker(
    cells: Cells, marker: str, latents: CaseLatents, hetero: np.ndarray, rng: np.random.Generator
) -> dict:
    """Set `dab`, `membrane` and `positive` of an IHC section's cells; return the section truth."""
    n = len(cells)
    tum = cells.kind == TUMOUR_CELL
    imm = cells.kind == LYMPHOCYTE
    fib = cells.kind == FIBROBLAST
    dab = np.zeros(n, np.float32)
    mem = np.zeros(n, np.float32)
    pos = np.zeros(n, bool)
    lat = latents.markers[marker]
    n_t = int(tum.sum())
    tum_idx = np.flatnonzero(tum)

    def quota(frac: float, weights: np.ndarray) -> np.ndarray:
        """Exactly round(frac * n_tumour) tumour cells, chosen with probability ~ weights."""
        k = int(round(frac * n_t))
        if k <= 0 or n_t == 0:
            return np.zeros(0, np.int64)
        keys = np.log(rng.uniform(1e-12, 1.0, n_t)) / np.maximum(weights, 1e-6)
        return tum_idx[np.argsort(-keys, kind="stable")[:k]]

    truth: dict = {"marker": marker, "n_tumour_cells": n_t}
    if marker == "ki67":
        w = hetero[tum] * np.where(cells.mitosis[tum], 50.0, 1.0)
        sel = quota(lat.latent, w)
        pos[sel] = True
        dab[sel] = rng.uniform(0.55, 1.25, sel.size)
        # a few proliferating immune / stromal cells (not counted in the index)
        extra = (imm & (rng.uniform(0, 1, n) < 0.08)) | (fib & (rng.uniform(0, 1, n) < 0.02))
        dab[extra] = rng.uniform(0.5, 1.1, int(extra.sum()))
        truth["true_index"] = float(pos[tum].mean()) if n_t else 0.0
    elif marker == "p53":
        pattern = lat.pattern
        if pattern == "overexpression":
            frac = rng.uniform(0.85, 0.97)
            sel = quota(frac, np.ones(n_t))
            dab[sel] = rng.uniform(0.8, 1.5, sel.size)
        elif pattern == "null":
            sel = np.zeros(0, np.int64)
        else:
            frac = rng.uniform(0.08, 0.45)
            sel = quota(frac, hetero[tum])
            dab[sel] = np.clip(rng.gamma(2.0, 0.16, sel.size) + 0.18, 0.18, 1.1)
        pos[sel] = True
        # wild-type-like internal control in stroma / immune cells, whatever the pattern
        ctrl = (imm | fib) & (rng.uniform(0, 1, n) < 0.12)
        dab[ctrl] = rng.uniform(0.2, 0.6, int(ctrl.sum()))
        truth["pattern"] = pattern
        truth["true_index"] = float(pos[tum].mean()) if n_t else 0.0
    elif marker == "pdl1":
        sel = quota(lat.latent, hetero[tum])
        pos[sel] = True
        mem[sel] = rng.uniform(0.45, 1.1, sel.size)
        ipos = imm & (rng.uniform(0, 1, n) < 0.08 + 0.4 * lat.latent)
        mem[ipos] = rng.uniform(0.3, 0.8, int(ipos.sum()))
        truth["true_index"] = float(pos[tum].mean()) if n_t else 0.0  # TPS
        truth["immune_positive_fraction"] = float(ipos[imm].mean()) if imm.any() else 0.0
        # CPS: (positive tumour + positive immune cells) / tumour cells x 100, capped at 100
        truth["true_cps"] = (
            min(100.0, (int(pos[tum].sum()) + int(ipos.sum())) / n_t * 100.0) if n_t else 0.0
        )
    cells.dab, cells.membrane, cells.positive = dab, mem, pos
    truth["n_positive_tumour_cells"] = int(pos[tum].sum())
    return truth
