"""Quantify DAB immunohistochemistry (Ki-67, p53, PD-L1) on slides and plain RGB images.

Pipeline per tile: hematoxylin-DAB colour deconvolution (scikit-image, stain vectors estimated per
slide Macenko-style, standard vectors as fallback) -> tissue mask -> nuclei found as local maxima of
the smoothed optical density and grown by watershed -> each nucleus scored negative / 1+ / 2+ / 3+ by
its mean DAB optical density -> PD-L1 membranes as a ring around each nucleus. Tiles follow the same
grid as predictions, so observed and predicted positivity line up tile for tile.

Optical densities are log10 units with unit-length stain vectors (as QuPath reports them).
"""

from __future__ import annotations

import csv
import math
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from . import MARKERS
from .errors import HistostainError
from .slide import read_level_region

#: log10 optical density = skimage `separate_stains` output x this (skimage divides ln(I) by ln(1e-6)).
OD_SCALE = math.log(1e6) / math.log(10)
#: Nucleus classes by mean DAB optical density.
CLASS_NAMES = ("negative", "1+", "2+", "3+")
P53_PATTERNS = ("wild-type", "overexpression", "null")
#: why a nucleus is left out of the indices (`exclusion_codes`; code 0: it is counted)
EXCLUSION_NAMES = ("", "fibroblast", "lymphocyte", "debris", "merged lymphocytes", "stroma")
BODY_FRACTION = 0.3  # a nucleus' stain is measured where its signal is >= this x its peak


class IHCError(HistostainError):
    """The image cannot be quantified as hematoxylin-DAB IHC; the message says why and what to do."""


class NotDabError(IHCError):
    """The image has no DAB component (for example an H&E slide)."""


# ------------------------------------------------------------------------------------------------
# Parameters and stain vectors
# ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class IHCParams:
    """Settings of the quantification; lengths in micrometres, densities in log10 OD units."""

    thresholds: tuple[float, float, float] = (0.2, 0.4, 0.6)  # mean nuclear DAB OD for 1+/2+/3+
    nucleus_radius_um: float = 3.5  # typical nucleus radius: sets smoothing and seed spacing
    min_nucleus_area_um2: float = 8.0
    nucleus_od: float = 0.08  # hematoxylin(+DAB) OD a nucleus pixel exceeds at least
    nucleus_contrast: float = 0.05  # ... and by this much its local background (white top-hat)
    nucleus_od_dense: float = 0.5  # OD above which a pixel is nucleus whatever its surroundings
    cells: str = "tumour"  # "tumour": leave lymphocyte/fibroblast-like and stromal nuclei out; "all"
    lymphocyte_area_um2: float = 38.0  # nuclei smaller than this and ...
    lymphocyte_od: float = 0.28  # ... denser (mean hematoxylin + DAB OD) than this: lymphocytes
    lymphocyte_fibroblast_ratio: float = 1.1  # ... and than this x the slide's fibroblast density
    lymphocyte_max_elongation: float = 1.3  # ... and rounder than this (major / minor axis),
    fragment_area_um2: float = 19.0  # ... or, whatever the shape, smaller than this: debris
    merged_lymphocyte_inscribed_um: float = 3.4  # larger negative nuclei thinner than this ...
    merged_lymphocyte_density_ratio: float = 1.8  # ... and this x denser: merged lymphocytes
    stroma_context_ratio: float = 0.85  # nuclei in a background this x paler than usual: stroma
    stroma_keep_area_ratio: float = 1.5  # ... unless this x larger than the usual tumour nucleus
    context_min_nuclei: int = 20  # ... judged when at least this many nuclei are counted (0: off)
    nucleus_core_fraction: float = 0.6  # DAB also measured where depth >= this x the deepest
    calibration_fibroblasts: int = 20  # fibroblast-like nuclei needed for that calibration
    max_elongation: float = 2.0  # nuclei longer than this x their width and ...
    fibroblast_width_um: float = 5.0  # ... thinner than this are fibroblasts, unless
    mitosis_class: int = 3  # ... of this class or above: mitotic figures (4: no such exception)
    tissue_od: float = 0.15  # summed RGB OD above which a pixel is tissue (not glass)
    membrane_ring_um: float = 2.5  # width of the ring around a nucleus scored for PD-L1
    membrane_od: float = 0.2  # DAB OD of a stained membrane pixel
    membrane_coverage: float = 0.2  # fraction of ring pixels stained for a membrane-positive cell
    p53_strong_class: int = 2  # nuclei of this class or above count as "strongly positive"
    p53_overexpression: float = 0.8  # strongly positive fraction for "overexpression"
    p53_null: float = 0.025  # positive fraction below which p53 is "null" (stray controls)
    ki67_cutoff: float = 20.0  # Ki-67 index (%) at and above which the weak label is 1
    pdl1_cutoff: float = 1.0  # PD-L1 TPS (%) at and above which the weak label is 1
    eosin_fraction_max: float = 0.2  # tissue fraction with eosin above which an image is H&E
    analysis_mpp: float = 0.5  # read the coarsest pyramid level not coarser than this


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
    return StainVectors(tuple(map(float, h)), tuple(map(float, d)), "standard")


def optical_density(rgb: np.ndarray) -> np.ndarray:
    """log10 optical density per RGB channel, float32 (H, W, 3)."""
    from skimage.color import separate_stains

    return (separate_stains(rgb, np.eye(3)) * OD_SCALE).astype(np.float32)


def _angle(a: np.ndarray, b: np.ndarray) -> float:
    cos = abs(float(a @ b)) / (np.linalg.norm(a) * np.linalg.norm(b))
    return math.degrees(math.acos(min(1.0, cos)))


def estimate_stains(
    od_pixels: np.ndarray, *, alpha: float = 1.0, beta: float = 0.15, max_angle_h: float = 25.0,
    max_angle_dab: float = 15.0,
) -> StainVectors:
    """Macenko estimate of the hematoxylin and DAB vectors from OD pixels (N, 3).

    Pixels with OD norm above `beta` are projected on the plane of their two main
    directions; the `alpha`/`100 - alpha` percentile angles give the two stains. A vector more than
    `max_angle_h` / `max_angle_dab` degrees from its standard (or both ends on the same stain, e.g. a Ki-67 slide with
    no positive cell) falls back to the standard vector.
    """
    std = standard_stains()
    std_h, std_d = np.asarray(std.hematoxylin), np.asarray(std.dab)
    od = np.asarray(od_pixels, np.float64).reshape(-1, 3)
    od = od[np.linalg.norm(od, axis=1) > beta]  # not per channel: pale blue has little blue OD
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
    return StainVectors(tuple(map(float, h)), tuple(map(float, d)), source)


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


# ------------------------------------------------------------------------------------------------
# One tile
# ------------------------------------------------------------------------------------------------
@dataclass
class TileQuantification:
    """Nuclei and pixel counts of one tile (positions in tile pixels).

    `nuclei_counted` marks the nuclei that enter the indices: with `IHCParams.cells == "tumour"`
    small dense round nuclei (lymphocytes), elongated ones (fibroblasts) and those in pale
    surroundings (stroma, `stromal`) are left out.
    """

    nuclei_yx: np.ndarray  # (K, 2) float centroid (row, col), tile px
    nuclei_class: np.ndarray  # (K,) int8: 0 negative, 1..3 = 1+..3+
    nuclei_dab: np.ndarray  # (K,) mean nuclear DAB OD
    nuclei_hema: np.ndarray  # (K,) mean nuclear hematoxylin OD
    nuclei_area_um2: np.ndarray  # (K,)
    nuclei_elongation: np.ndarray  # (K,) major / minor axis
    nuclei_width_um: np.ndarray  # (K,) minor axis
    nuclei_inscribed_um: np.ndarray  # (K,) largest inscribed circle's radius (NaN: not needed)
    nuclei_context: np.ndarray  # (K,) local background OD under the nucleus (cytoplasm / stroma)
    nuclei_counted: np.ndarray  # (K,) bool
    membrane_positive: np.ndarray  # (K,) bool: DAB ring around the nucleus
    tissue_px: int
    positive_px: int  # tissue pixels with DAB OD >= thresholds[0]

    @property
    def counts(self) -> np.ndarray:
        return np.bincount(self.nuclei_class[self.nuclei_counted], minlength=4)[:4]

    @property
    def n_membrane_positive(self) -> int:
        return int((self.membrane_positive & self.nuclei_counted).sum())

    def summary(self, params: IHCParams = IHCParams()) -> dict:
        return summarise(self.counts, self.n_membrane_positive, self.tissue_px, self.positive_px,
                         params)


def quantify_tile(
    rgb: np.ndarray,
    mpp: float,
    *,
    marker: str = "ki67",
    stains: StainVectors | None = None,
    params: IHCParams = IHCParams(),
    core: tuple[int, int, int, int] | None = None,
) -> TileQuantification:
    """Detect and score the nuclei of one RGB tile at `mpp` micrometres per pixel.

    `core` = (x, y, w, h) in tile pixels keeps only nuclei centred inside it and counts pixels there
    (tiles are read with a margin so nuclei on tile borders are counted once, whole).
    """
    from scipy import ndimage as ndi
    from skimage.feature import peak_local_max
    from skimage.filters import gaussian
    from skimage.segmentation import expand_labels, watershed

    _check_marker(marker)
    rgb = np.asarray(rgb)[..., :3]
    stains = stains or standard_stains()
    od = optical_density(rgb)
    conc = od @ stains.matrix()  # = skimage separate_stains(rgb, matrix), without a second log
    hema, dab = np.maximum(conc[..., 0], 0), np.maximum(conc[..., 1], 0)
    tissue = gaussian(od.sum(axis=2), sigma=1.0) > params.tissue_od

    radius_px = params.nucleus_radius_um / mpp
    signal = hema if marker == "pdl1" else hema + dab  # membranes must not look like nuclei
    sharp = gaussian(signal, sigma=max(0.5, 0.4 / mpp))
    # nuclei stand out from their local background (cytoplasm, stroma): white top-hat
    size = max(3, int(round(radius_px * 3)) | 1)
    background = ndi.grey_opening(sharp, size=(size, size))
    # the surroundings of each nucleus, all stains (PD-L1's stained membranes and cytoplasm too)
    surround = background if marker != "pdl1" else ndi.grey_opening(
        gaussian(hema + dab, sigma=max(0.5, 0.4 / mpp)), size=(size, size))
    fg = ((sharp - background > params.nucleus_contrast) & (sharp > params.nucleus_od)) | (
        sharp > params.nucleus_od_dense
    )
    fg = ndi.binary_fill_holes(fg & tissue)
    fg = ndi.binary_opening(fg, structure=_disk(max(1, int(radius_px * 0.25))))
    # split touching nuclei: one seed per maximum of the (smoothed) distance to the background
    dist = gaussian(ndi.distance_transform_edt(fg), sigma=max(0.5, radius_px / 5)) * fg
    seeds = peak_local_max(
        dist, min_distance=max(1, int(round(radius_px * 0.7))), threshold_abs=radius_px * 0.3,
        exclude_border=False,
    )
    # a blob whose peak was suppressed by a bigger neighbour still gets its own seed
    blobs, n_blobs = ndi.label(fg)
    seeded = np.zeros(n_blobs + 1, bool)
    seeded[blobs[tuple(seeds.T)]] = True
    missing = np.nonzero(~seeded[1:])[0] + 1
    if len(missing):
        extra = np.array(ndi.maximum_position(dist, blobs, missing), np.int64).reshape(-1, 2)
        extra = extra[dist[tuple(extra.T)] >= radius_px * 0.3]
        seeds = np.concatenate([seeds.reshape(-1, 2), extra])
    markers = np.zeros(fg.shape, np.int32)
    markers[tuple(seeds.T)] = np.arange(1, len(seeds) + 1)
    labels = watershed(-dist, markers, mask=fg)

    n = len(seeds)
    index = np.arange(1, n + 1)
    if n:
        yy, xx = np.indices(labels.shape, dtype=np.float64)
        with np.errstate(invalid="ignore", divide="ignore"):  # seeds whose region is empty
            area_px, (my, mx, myy, mxx, mxy, context) = label_means(
                labels, n, yy, xx, yy * yy, xx * xx, xx * yy, surround)
            vy, vx, cxy = myy - my * my, mxx - mx * mx, mxy - mx * my
            # stain is measured on each nucleus' body, not on its blurred rim
            peak = np.concatenate([[np.inf], ndi.maximum(sharp, labels, index)])
            body = np.where(sharp >= BODY_FRACTION * peak[labels], labels, 0)
            _, (mean_hema, body_dab) = label_means(body, n, hema, dab)
            # ... and DAB also on its core (around the seed it grew from, its deepest point): a
            # region that took in part of a stained neighbour has a stained body but an unstained
            # core; the lower counts
            depth = np.concatenate([[np.inf], dist[tuple(seeds.T)]])
            core_px = np.where(dist >= params.nucleus_core_fraction * depth[labels], labels, 0)
            mean_dab = np.fmin(body_dab, label_means(core_px, n, dab)[1][0])
        half_tr, det = (vx + vy) / 2, np.sqrt(((vx - vy) / 2) ** 2 + cxy**2)
        elong = np.sqrt(np.maximum(half_tr + det, 1e-6) / np.maximum(half_tr - det, 1e-2))
        width = 4.0 * np.sqrt(np.maximum(half_tr - det, 0.0)) * mpp  # minor axis of the ellipse
        # largest inscribed circle, where the merged-lymphocyte rule may need it (the slide's
        # lymphocyte density is not known yet; it is at least `lymphocyte_od`)
        could_be_merged = merged_lymphocyte_like(area_px * mpp * mpp, mean_hema, mean_dab,
                                                 params.lymphocyte_od, params)
        inscribed = inscribed_radii(labels, np.nonzero(could_be_merged)[0] + 1) * mpp
        centroid = np.nan_to_num(np.stack([my, mx], axis=1), nan=-1.0)
    else:
        area_px = elong = width = inscribed = mean_dab = mean_hema = context = np.zeros(0)
        centroid = np.zeros((0, 2))
    min_area = params.min_nucleus_area_um2 / (mpp * mpp)
    keep = (area_px > 0) & (area_px >= min(min_area, math.pi * radius_px**2 * 0.3))
    area_um2 = np.asarray(area_px) * mpp * mpp
    if marker == "pdl1" and n:
        grown = expand_labels(labels, distance=params.membrane_ring_um / mpp)
        ring = np.where(labels == 0, grown, 0)
        stained = (dab >= params.membrane_od).astype(np.float32)
        ring_frac = np.nan_to_num(label_means(ring, n, stained)[1][0])
        membrane = ring_frac >= params.membrane_coverage
    else:
        membrane = np.zeros(n, bool)

    if core is not None:
        cx, cy, cw, ch = core
        inside = (
            (centroid[:, 1] >= cx) & (centroid[:, 1] < cx + cw)
            & (centroid[:, 0] >= cy) & (centroid[:, 0] < cy + ch)
        )
        keep &= inside
        tissue_core = tissue[cy : cy + ch, cx : cx + cw]
        dab_core = dab[cy : cy + ch, cx : cx + cw]
    else:
        tissue_core, dab_core = tissue, dab
    mean_dab = np.asarray(mean_dab, np.float32)[keep]
    mean_hema = np.asarray(mean_hema, np.float32)[keep]
    area_um2, elong = area_um2[keep].astype(np.float32), np.asarray(elong, np.float32)[keep]
    width = np.asarray(width, np.float32)[keep]
    inscribed = np.asarray(inscribed, np.float32)[keep]
    context = np.asarray(context, np.float32)[keep]
    return TileQuantification(
        nuclei_yx=centroid[keep].astype(np.float32),
        nuclei_class=np.digitize(mean_dab, params.thresholds).astype(np.int8),
        nuclei_dab=mean_dab,
        nuclei_hema=mean_hema,
        nuclei_area_um2=area_um2,
        nuclei_elongation=elong,
        nuclei_width_um=width,
        nuclei_inscribed_um=inscribed,
        nuclei_context=context,
        nuclei_counted=counted_cells(area_um2, elong, width, mean_hema, mean_dab, params,
                                     inscribed_um=inscribed, context=context),
        membrane_positive=membrane[keep],
        tissue_px=int(tissue_core.sum()),
        positive_px=int((tissue_core & (dab_core >= params.thresholds[0])).sum()),
    )


def label_means(labels: np.ndarray, n: int, *values: np.ndarray) -> tuple[np.ndarray, list[np.ndarray]]:
    """Pixel counts of labels 1..n and the mean of each of `values` over them (NaN where a label
    has no pixels); one pass of `np.bincount` per array."""
    flat = labels.ravel()
    counts = np.bincount(flat, minlength=n + 1)[1 : n + 1].astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        return counts, [np.bincount(flat, v.ravel(), minlength=n + 1)[1 : n + 1] / counts
                        for v in values]


def inscribed_radii(labels: np.ndarray, which: np.ndarray) -> np.ndarray:
    """Radius in pixels of the largest circle inside each labelled region in `which` (label
    values), touching regions kept apart; NaN for the other labels 1..max."""
    from scipy import ndimage as ndi
    from skimage.segmentation import find_boundaries

    n = int(labels.max()) if labels.size else 0
    out = np.full(n, np.nan)
    if len(which) == 0:
        return out
    edge = find_boundaries(labels, mode="inner")  # pixels with a 4-neighbour of another label
    boxes = ndi.find_objects(labels)
    for k in which:
        box = boxes[k - 1]
        if box is None:
            continue
        # one pixel of context around the box (none past the image edge, as a whole-image EDT)
        box = tuple(slice(max(sl.start - 1, 0), sl.stop + 1) for sl in box)
        out[k - 1] = ndi.distance_transform_edt((labels[box] == k) & ~edge[box]).max()
    return out


def merged_lymphocyte_like(area_um2: np.ndarray, hema: np.ndarray, dab: np.ndarray,
                           lymphocyte_od: float, params: IHCParams = IHCParams()) -> np.ndarray:
    """Nuclei that look like overlapping lymphocytes merged into one blob, but for thinness:
    negative, at least the lymphocyte area, `merged_lymphocyte_density_ratio` x denser than a
    lymphocyte (`lymphocyte_od`: see `lymphocyte_density`)."""
    return ((area_um2 >= params.lymphocyte_area_um2) & (dab < params.thresholds[0])
            & (hema + dab > params.merged_lymphocyte_density_ratio * lymphocyte_od))


def counted_cells(area_um2: np.ndarray, elongation: np.ndarray, width_um: np.ndarray,
                  hema: np.ndarray, dab: np.ndarray, params: IHCParams = IHCParams(),
                  inscribed_um: np.ndarray | None = None,
                  context: np.ndarray | None = None) -> np.ndarray:
    """Which nuclei enter the indices (`exclusion_codes` == 0)."""
    return exclusion_codes(area_um2, elongation, width_um, hema, dab, params, inscribed_um,
                           context) == 0


def exclusion_codes(area_um2: np.ndarray, elongation: np.ndarray, width_um: np.ndarray,
                    hema: np.ndarray, dab: np.ndarray, params: IHCParams = IHCParams(),
                    inscribed_um: np.ndarray | None = None,
                    context: np.ndarray | None = None) -> np.ndarray:
    """Why each nucleus is left out of the indices (int8 index into `EXCLUSION_NAMES`; 0: counted).
    All count with `cells="all"`; with `cells="tumour"` lymphocyte-, fibroblast-like and stromal
    nuclei and debris do not.

    Lymphocytes: small, dense and round (`lymphocyte_max_elongation`: a small elongated nucleus is
    a tumour nucleus, whatever its stain); dense fragments smaller than `fragment_area_um2`
    (karyorrhectic debris of necrosis, apoptotic bodies) go with them whatever their shape.
    Fibroblasts: long and thin, unless strongly DAB-stained (>= 2+): those are mitotic figures
    (Ki-67 positive by definition), which count. The counterstain's strength varies from slide
    to slide, so "dense" is also relative: denser than
    `lymphocyte_fibroblast_ratio` x the median density of the negative fibroblasts among the nuclei
    given (the slide's own stroma calibrates it), when there are enough of them. Overlapping
    lymphocytes merge into one larger blob: a negative nucleus above the lymphocyte area whose
    largest inscribed circle is thinner than `merged_lymphocyte_inscribed_um` and whose density is
    `merged_lymphocyte_density_ratio` x the lymphocyte density is taken for one (with `inscribed_um`).
    Indices are scored in the tumour, not in the stroma: with `context` (each nucleus' local
    background OD), nuclei in surroundings paler than `stroma_context_ratio` x those of the median
    counted nucleus are left out unless large (`stromal`).
    """
    codes = np.zeros(len(area_um2), np.int8)
    if params.cells == "all":
        return codes
    density = hema + dab
    cls = np.digitize(dab, params.thresholds)
    fibroblast = (elongation > params.max_elongation) & (width_um < params.fibroblast_width_um)
    fibroblast &= cls < params.mitosis_class
    small = area_um2 < params.lymphocyte_area_um2
    dense = lymphocyte_density(density, fibroblast & (cls == 0), params)
    small_dense = small & (density > dense)
    fragment = small_dense & (area_um2 < params.fragment_area_um2)
    lymphocyte = small_dense & (elongation < params.lymphocyte_max_elongation) & ~fragment
    merged = np.zeros(len(area_um2), bool)
    if inscribed_um is not None:
        merged = (merged_lymphocyte_like(area_um2, hema, dab, dense, params)
                  & (inscribed_um < params.merged_lymphocyte_inscribed_um))
    others = fibroblast | lymphocyte | fragment | merged
    # stroma is judged among the nuclei that no other rule leaves out
    stroma = (stromal(context, area_um2, ~others, params) if context is not None
              else np.zeros(len(area_um2), bool))
    # one reason per nucleus: the first in EXCLUSION_NAMES that applies
    for name, mask in (("stroma", stroma), ("merged lymphocytes", merged), ("debris", fragment),
                       ("lymphocyte", lymphocyte), ("fibroblast", fibroblast)):
        codes[mask] = EXCLUSION_NAMES.index(name)
    return codes


def stromal(context: np.ndarray, area_um2: np.ndarray, counted: np.ndarray,
            params: IHCParams = IHCParams()) -> np.ndarray:
    """Nuclei in the stroma: their surroundings (`context`, the local background OD under the
    nucleus: cytoplasm or stroma) are paler than `stroma_context_ratio` x the median of the
    `counted` ones (tumour cytoplasm carries stain, stroma less), and they are smaller than
    `stroma_keep_area_ratio` x the median counted nucleus in the tumour (a large nucleus is a
    tumour nucleus wherever it lies). Judged only when at least `context_min_nuclei` are counted
    (0 turns it off)."""
    none = np.zeros(len(context), bool)
    if params.context_min_nuclei <= 0 or int(counted.sum()) < params.context_min_nuclei:
        return none
    pale = context < params.stroma_context_ratio * float(np.median(context[counted]))
    tumour = counted & ~pale
    if not tumour.any():
        return none
    return pale & (area_um2 < params.stroma_keep_area_ratio * float(np.median(area_um2[tumour])))


def lymphocyte_density(density: np.ndarray, negative_fibroblasts: np.ndarray,
                       params: IHCParams = IHCParams()) -> float:
    """The density above which a small nucleus is a lymphocyte: `lymphocyte_od`, raised to
    `lymphocyte_fibroblast_ratio` x the median density of the negative fibroblasts when there are
    at least `calibration_fibroblasts` of them (a strongly counterstained slide)."""
    if int(negative_fibroblasts.sum()) < params.calibration_fibroblasts:
        return params.lymphocyte_od
    reference = float(np.median(density[negative_fibroblasts]))
    return max(params.lymphocyte_od, params.lymphocyte_fibroblast_ratio * reference)


def _disk(r: int) -> np.ndarray:
    yy, xx = np.mgrid[-r : r + 1, -r : r + 1]
    return yy**2 + xx**2 <= r * r


def _check_marker(marker: str) -> None:
    if marker not in MARKERS:
        raise IHCError(f"unknown marker {marker!r}; use one of {', '.join(MARKERS)}.")


def p53_pattern(counts: np.ndarray, params: IHCParams = IHCParams()) -> str:
    """'overexpression' (>= 80 % strongly positive nuclei), 'null' (essentially none), or 'wild-type'."""
    total = int(np.sum(counts))
    if total == 0:
        return "null"
    strong = float(np.sum(counts[params.p53_strong_class :])) / total
    positive = float(np.sum(counts[1:])) / total
    if strong >= params.p53_overexpression:
        return "overexpression"
    if positive < params.p53_null:
        return "null"
    return "wild-type"


def summarise(
    counts: np.ndarray, membrane_positive: int, tissue_px: int, positive_px: int,
    params: IHCParams = IHCParams(),
) -> dict:
    """Index values from nucleus class counts (negative, 1+, 2+, 3+) and pixel counts."""
    counts = np.asarray(counts, np.int64)
    total = int(counts.sum())
    pct = counts / total * 100 if total else np.zeros(4)
    return {
        "n_nuclei": total,
        "counts": {name: int(c) for name, c in zip(CLASS_NAMES, counts)},
        "ki67_index": float(pct[1:].sum()) if total else float("nan"),
        "h_score": float(pct[1] + 2 * pct[2] + 3 * pct[3]) if total else float("nan"),
        "strong_fraction": float(pct[params.p53_strong_class :].sum() / 100) if total else float("nan"),
        "pdl1_tps": float(membrane_positive / total * 100) if total else float("nan"),
        "positive_pixel_fraction": float(positive_px / tissue_px) if tissue_px else 0.0,
        "p53_pattern": p53_pattern(counts, params),
    }


# ------------------------------------------------------------------------------------------------
# Tile grids and sources
# ------------------------------------------------------------------------------------------------
@dataclass
class SimpleGrid:
    """A regular tile grid with the fields of `tiling.TileGrid` that quantification uses."""

    coords: np.ndarray  # (N, 2) level-0 (x, y) of tile top-left
    tile_px0: float
    rowcol: np.ndarray
    n_rows: int
    n_cols: int
    slide_mpp: tuple[float, float]
    tile_mpp: float = 1.0
    tile_size: int = 224
    tissue_fraction: np.ndarray | None = None

    def centres_um(self) -> np.ndarray:
        c = self.coords + (self.tile_px0 - 1) / 2
        return np.stack([c[:, 1] * self.slide_mpp[1], c[:, 0] * self.slide_mpp[0]], axis=1)


def simple_grid(width: int, height: int, mpp: float, *, tile_mpp: float = 1.0,
                tile_size: int = 224) -> SimpleGrid:
    """All tiles of `tile_size` px at `tile_mpp` covering a width x height level-0 image."""
    tile_px0 = tile_size * tile_mpp / mpp
    n_cols, n_rows = max(1, math.ceil(width / tile_px0)), max(1, math.ceil(height / tile_px0))
    rr, cc = np.mgrid[0:n_rows, 0:n_cols]
    rowcol = np.stack([rr.ravel(), cc.ravel()], axis=1)
    coords = np.floor(rowcol[:, ::-1] * tile_px0).astype(np.int64)
    return SimpleGrid(coords, float(tile_px0), rowcol, n_rows, n_cols, (mpp, mpp), tile_mpp,
                      tile_size, np.ones(len(coords)))


class ArraySource:
    """An RGB array with the `read_region` of a one-level slide (white outside the image)."""

    def __init__(self, rgb: np.ndarray, mpp: float, name: str = "image"):
        rgb = np.asarray(rgb)
        if rgb.ndim != 3 or rgb.shape[2] not in (3, 4):
            raise IHCError(f"{name}: expected an RGB image (height, width, 3), got shape {rgb.shape}.")
        if rgb.dtype != np.uint8:
            raise IHCError(f"{name}: expected 8-bit RGB (uint8), got {rgb.dtype}. Convert it first.")
        if not mpp or mpp <= 0:
            raise IHCError(f"{name}: give the pixel size in micrometres per pixel (e.g. mpp=0.5).")
        self.rgb = rgb[..., :3]
        self.mpp = (float(mpp), float(mpp))
        self.dimensions = (rgb.shape[1], rgb.shape[0])
        self.level_downsamples = (1.0,)
        self.name = name

    def read_region(self, location, level, size) -> np.ndarray:
        x, y = location
        w, h = size
        out = np.full((h, w, 3), 255, np.uint8)
        H, W = self.rgb.shape[:2]
        x0, y0, x1, y1 = max(x, 0), max(y, 0), min(x + w, W), min(y + h, H)
        if x1 > x0 and y1 > y0:
            out[y0 - y : y1 - y, x0 - x : x1 - x] = self.rgb[y0:y1, x0:x1]
        return out

    def thumbnail(self, max_size: int = 1024) -> np.ndarray:
        step = max(1, math.ceil(max(self.rgb.shape[:2]) / max_size))
        return self.rgb[::step, ::step]


def _analysis_level(source, params: IHCParams) -> int:
    """Coarsest pyramid level whose pixels are no coarser than `params.analysis_mpp`."""
    mpp0 = float(source.mpp[0])
    best = 0
    for level, ds in enumerate(source.level_downsamples):
        if mpp0 * ds <= params.analysis_mpp * 1.1:
            best = level
    return best


# ------------------------------------------------------------------------------------------------
# Whole slide / whole image
# ------------------------------------------------------------------------------------------------
@dataclass
class IHCResult:
    """Observed IHC positivity on a tile grid (aligned to `grid.coords`) plus the nuclei.

    Per-tile arrays have one row per grid tile; they are NaN where a tile has no nuclei.
    `positivity` is the marker's observed positive fraction in [0, 1] (Ki-67: labelling index,
    p53: strongly positive fraction, PD-L1: membrane-positive fraction), for the overlay beside the
    predicted map. Nuclei positions are level-0 pixels (x, y).
    """

    marker: str
    source_path: str
    grid: Any
    mpp: tuple[float, float]
    level: int
    stains: StainVectors
    params: IHCParams
    counts: np.ndarray  # (N, 4) nuclei per class per tile
    membrane_positive: np.ndarray  # (N,) membrane-positive cells per tile
    tissue_px: np.ndarray  # (N,) tissue pixels (at the analysis level) per tile
    positive_px: np.ndarray  # (N,)
    nuclei_xy: np.ndarray  # (M, 2) float level-0 px
    nuclei_class: np.ndarray  # (M,) int8 0..3
    nuclei_dab: np.ndarray  # (M,)
    nuclei_membrane: np.ndarray  # (M,) bool
    nuclei_tile: np.ndarray  # (M,) tile index
    nuclei_counted: np.ndarray  # (M,) bool: enters the indices (see `IHCParams.cells`)
    nuclei_area_um2: np.ndarray  # (M,)
    nuclei_excluded: np.ndarray  # (M,) int8: why not counted (EXCLUSION_NAMES; 0: counted)
    messages: list[str] = field(default_factory=list)

    @property
    def exclusion_reasons(self) -> np.ndarray:
        """(M,) str: why each nucleus is not counted ("" when it is; `EXCLUSION_NAMES`)."""
        return np.asarray(EXCLUSION_NAMES)[self.nuclei_excluded.astype(int)]

    # -- per tile --------------------------------------------------------------------------------
    @property
    def n_nuclei(self) -> np.ndarray:
        return self.counts.sum(axis=1)

    def _per_tile(self, num: np.ndarray) -> np.ndarray:
        n = self.n_nuclei.astype(np.float64)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(n > 0, num / n, np.nan)

    @property
    def labelling_index(self) -> np.ndarray:
        """Per-tile % positive nuclei (Ki-67 index)."""
        return self._per_tile(self.counts[:, 1:].sum(axis=1) * 100.0)

    @property
    def h_score(self) -> np.ndarray:
        return self._per_tile((self.counts[:, 1:] * [100.0, 200.0, 300.0]).sum(axis=1))

    @property
    def membrane_fraction(self) -> np.ndarray:
        return self._per_tile(self.membrane_positive.astype(np.float64))

    @property
    def strong_fraction(self) -> np.ndarray:
        return self._per_tile(self.counts[:, self.params.p53_strong_class :].sum(axis=1) * 1.0)

    @property
    def positive_pixel_fraction(self) -> np.ndarray:
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(self.tissue_px > 0, self.positive_px / np.maximum(self.tissue_px, 1), 0.0)

    @property
    def positivity(self) -> np.ndarray:
        """Observed positivity per tile in [0, 1] for the marker (NaN: no nuclei in the tile)."""
        return tile_positivity(self.marker, self.counts, self.membrane_positive, self.params)

    # -- whole slide -----------------------------------------------------------------------------
    def summary(self) -> dict:
        s = summarise(self.counts.sum(axis=0), int(self.membrane_positive.sum()),
                      int(self.tissue_px.sum()), int(self.positive_px.sum()), self.params)
        s["marker"] = self.marker
        s["label"] = weak_label(self.marker, s, self.params)
        return s

    def to_dict(self) -> dict:
        return {
            "source": self.source_path,
            "marker": self.marker,
            "mpp": list(self.mpp),
            "analysis_level": self.level,
            "tile_px0": float(self.grid.tile_px0),
            "n_tiles": int(len(self.grid.coords)),
            "stains": self.stains.to_dict(),
            "thresholds": list(self.params.thresholds),
            "params": asdict(self.params),
            "summary": _json_safe(self.summary()),
            "not_counted": {name: int(n) for name, n in zip(*np.unique(
                self.exclusion_reasons[~self.nuclei_counted], return_counts=True))},
            "messages": list(self.messages),
        }

    def tile_table(self) -> list[dict]:
        rows = []
        size = float(self.grid.tile_px0)
        centres = self.grid.centres_um()
        li, hs, mf, ppf, pos = (self.labelling_index, self.h_score, self.membrane_fraction,
                                self.positive_pixel_fraction, self.positivity)
        for i, (x, y) in enumerate(np.asarray(self.grid.coords)):
            rows.append({
                "tile": i, "x": int(x), "y": int(y), "width": round(size, 2), "height": round(size, 2),
                "x_um": round(float(centres[i, 1]), 2), "y_um": round(float(centres[i, 0]), 2),
                "n_nuclei": int(self.counts[i].sum()),
                **{f"n_{name}": int(c) for name, c in zip(CLASS_NAMES, self.counts[i])},
                "ki67_index": _r(li[i]), "h_score": _r(hs[i]), "pdl1_tps": _r(mf[i] * 100),
                "positive_pixel_fraction": _r(ppf[i]), "positivity": _r(pos[i]),
            })
        return rows

    def save(self, out_dir: str | Path, stem: str | None = None) -> list[Path]:
        """Write `<stem>.ihc.json`, `<stem>.ihc_tiles.csv` and `<stem>.ihc_nuclei.csv` atomically."""
        from ._io import atomic_open, ensure_dir, write_json

        out = ensure_dir(out_dir)
        stem = stem or f"{Path(self.source_path).stem}.{self.marker}"
        paths = [write_json(out / f"{stem}.ihc.json", self.to_dict())]
        rows = self.tile_table()
        paths.append(_write_csv(out / f"{stem}.ihc_tiles.csv", rows, atomic_open))
        nuclei = [
            {"x": round(float(x), 1), "y": round(float(y), 1), "class": CLASS_NAMES[c],
             "dab_od": round(float(d), 4), "membrane": int(m), "tile": int(t), "counted": int(k),
             "excluded_as": reason, "area_um2": round(float(a), 1)}
            for (x, y), c, d, m, t, k, reason, a in zip(
                self.nuclei_xy, self.nuclei_class, self.nuclei_dab, self.nuclei_membrane,
                self.nuclei_tile, self.nuclei_counted, self.exclusion_reasons, self.nuclei_area_um2)
        ]
        paths.append(_write_csv(out / f"{stem}.ihc_nuclei.csv", nuclei, atomic_open,
                                ["x", "y", "class", "dab_od", "membrane", "tile", "counted",
                                 "excluded_as", "area_um2"]))
        return paths


def weak_label(marker: str, summary: dict, params: IHCParams = IHCParams()) -> int:
    """Binary label from measured values: Ki-67 index >= cutoff, PD-L1 TPS >= cutoff, p53 abnormal."""
    if summary["n_nuclei"] == 0:
        return 0
    if marker == "ki67":
        return int(summary["ki67_index"] >= params.ki67_cutoff)
    if marker == "pdl1":
        return int(summary["pdl1_tps"] >= params.pdl1_cutoff)
    return int(summary["p53_pattern"] != "wild-type")


def _r(v: float, nd: int = 4):
    return None if v is None or not np.isfinite(v) else round(float(v), nd)


def _json_safe(obj):
    if isinstance(obj, dict):
        return {k: _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def _write_csv(path: Path, rows: list[dict], atomic_open, fieldnames=None) -> Path:
    fieldnames = fieldnames or (list(rows[0]) if rows else ["tile"])
    with atomic_open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=fieldnames)
        writer.writeheader()
        writer.writerows(rows)
    return path


def _sample_tissue_od(source, grid, level: int, indices: np.ndarray, params: IHCParams,
                      n_tiles: int = 12, max_pixels: int = 200_000) -> np.ndarray:
    """OD of tissue pixels from up to `n_tiles` tiles spread over the grid (for stain estimation)."""
    if len(indices) == 0:
        return np.zeros((0, 3), np.float32)
    pick = indices[np.linspace(0, len(indices) - 1, min(n_tiles, len(indices))).astype(int)]
    ds = float(source.level_downsamples[level])
    size = max(1, int(round(grid.tile_px0 / ds)))
    chunks = []
    for i in pick:
        x, y = (int(v) for v in grid.coords[i])
        od = optical_density(source.read_region((x, y), level, (size, size))).reshape(-1, 3)
        chunks.append(od[od.sum(axis=1) > params.tissue_od])
    od = np.concatenate(chunks)
    if len(od) > max_pixels:
        od = od[np.random.default_rng(0).choice(len(od), max_pixels, replace=False)]
    return od


def _read_tiles(source, grid, indices, level: int, margin0: float, threads: int
                ) -> Iterator[tuple[int, np.ndarray, tuple[int, int, int, int], float]]:
    """Yield (index, rgb with margin, core box in read px, downsample) in order, read ahead."""
    ds = float(source.level_downsamples[level])
    core = max(1, int(round(grid.tile_px0 / ds)))
    m = int(math.ceil(margin0 / ds))

    def read(i: int):
        x, y = (round(int(v) / ds) - m for v in grid.coords[i])
        return i, read_level_region(source, level, x, y, core + 2 * m, core + 2 * m), (m, m, core, core), ds

    if threads <= 0:
        for i in indices:
            yield read(int(i))
        return
    from .tiling import read_ahead

    yield from read_ahead(read, (int(i) for i in indices), threads=threads,
                          queue_size=max(2, threads * 2), reader_nice=0)


def quantify_source(
    source,
    marker: str,
    *,
    grid=None,
    indices=None,
    params: IHCParams = IHCParams(),
    stains: StainVectors | None = None,
    threads: int = 2,
    progress: Callable[[int, int], None] | None = None,
    cancel: Callable[[], bool] | None = None,
    name: str | None = None,
    on_tile: Callable[[int, float], None] | None = None,
) -> IHCResult:
    """Quantify an opened slide (or `ArraySource`) tile by tile on `grid` (default: a full grid).

    `on_tile(index, positivity)` streams each tile's observed positivity as soon as it is measured,
    e.g. to paint a map while the rest runs. The result recomputes which nuclei count with the
    whole slide's fibroblasts as the density reference (`lymphocyte_density`) and the whole
    slide's nuclei as the reference of the surroundings (`stromal`), so a streamed value can differ
    slightly from the tile's final `IHCResult.positivity`.
    """
    _check_marker(marker)
    if params.cells not in ("tumour", "all"):
        raise IHCError(f"cells must be 'tumour' or 'all', got {params.cells!r}.")
    name = name or str(getattr(source, "path", getattr(source, "name", "image")))
    mpp = tuple(float(v) for v in source.mpp)
    if grid is None:
        grid = simple_grid(*source.dimensions, mpp[0])
    n_tiles = len(grid.coords)
    indices = np.arange(n_tiles) if indices is None else np.asarray(indices, int)
    level = _analysis_level(source, params)
    level_mpp = mpp[0] * float(source.level_downsamples[level])
    messages = []
    if level_mpp > 1.0:
        messages.append(
            f"pixels of {level_mpp:.2f} um are too coarse to resolve nuclei (need <= 1 um/px); "
            "nucleus counts and indices are unreliable, the positive-pixel fraction is still valid."
        )

    sample = _sample_tissue_od(source, grid, level, indices, params)
    check_dab(sample, params, name)
    if stains is None:
        stains = estimate_stains(sample)
        if stains.source != "macenko":
            messages.append(f"stain vectors: {stains.source} (too little of one stain to estimate it)")

    tissue_px = np.zeros(n_tiles, np.int64)
    positive_px = np.zeros(n_tiles, np.int64)
    parts: dict[str, list[np.ndarray]] = {k: [] for k in (
        "xy", "cls", "dab", "hema", "area", "elong", "width", "inscribed", "context", "mem",
        "tile")}
    margin0 = 2.0 * params.nucleus_radius_um / mpp[0]
    for done, (i, rgb, core, ds) in enumerate(
        _read_tiles(source, grid, indices, level, margin0, threads), start=1
    ):
        if cancel is not None and cancel():
            raise IHCCancelled("quantification cancelled; nothing was written.")
        q = quantify_tile(rgb, level_mpp, marker=marker, stains=stains, params=params, core=core)
        tissue_px[i], positive_px[i] = q.tissue_px, q.positive_px
        x0, y0 = grid.coords[i]
        # read px -> level-0 px: the read started `core[0]` read px before the tile's corner
        xy = np.stack([x0 + (q.nuclei_yx[:, 1] - core[0] + 0.5) * ds - 0.5,
                       y0 + (q.nuclei_yx[:, 0] - core[1] + 0.5) * ds - 0.5], axis=1)
        for key, value in (("xy", xy), ("cls", q.nuclei_class), ("dab", q.nuclei_dab),
                           ("hema", q.nuclei_hema), ("area", q.nuclei_area_um2),
                           ("elong", q.nuclei_elongation), ("width", q.nuclei_width_um),
                           ("inscribed", q.nuclei_inscribed_um), ("context", q.nuclei_context),
                           ("mem", q.membrane_positive),
                           ("tile", np.full(len(xy), i, np.int32))):
            parts[key].append(value)
        if on_tile is not None:
            c = q.nuclei_counted
            counts = np.bincount(q.nuclei_class[c].astype(np.int64), minlength=4)
            on_tile(int(i), float(tile_positivity(marker, counts, (q.membrane_positive & c).sum(), params)))
        if progress is not None:
            progress(done, len(indices))

    def cat(key, shape, dtype):
        return np.concatenate(parts[key]).astype(dtype) if parts[key] else np.zeros(shape, dtype)

    nuc = {k: cat(k, (0, 2) if k == "xy" else (0,), dt) for k, dt in (
        ("xy", np.float32), ("cls", np.int8), ("dab", np.float32), ("hema", np.float32),
        ("area", np.float32), ("elong", np.float32), ("width", np.float32),
        ("inscribed", np.float32), ("context", np.float32), ("mem", bool),
        ("tile", np.int32))}
    excluded = exclusion_codes(nuc["area"], nuc["elong"], nuc["width"], nuc["hema"], nuc["dab"],
                               params, inscribed_um=nuc["inscribed"], context=nuc["context"])
    counted = excluded == 0
    counts = np.bincount(nuc["tile"][counted] * 4 + nuc["cls"][counted],
                         minlength=n_tiles * 4).reshape(n_tiles, 4).astype(np.int64)
    membrane = np.bincount(nuc["tile"][counted & nuc["mem"]], minlength=n_tiles).astype(np.int64)
    result = IHCResult(
        marker=marker, source_path=name, grid=grid, mpp=mpp, level=level, stains=stains,
        params=params, counts=counts, membrane_positive=membrane, tissue_px=tissue_px,
        positive_px=positive_px, nuclei_xy=nuc["xy"], nuclei_class=nuc["cls"],
        nuclei_dab=nuc["dab"], nuclei_membrane=nuc["mem"], nuclei_tile=nuc["tile"],
        nuclei_counted=counted, nuclei_area_um2=nuc["area"], nuclei_excluded=excluded,
        messages=messages,
    )
    if result.n_nuclei.sum() == 0:
        result.messages.append("no nuclei were found; check the pixel size (mpp) and the stain.")
    return result


def tile_positivity(marker: str, counts: np.ndarray, membrane: np.ndarray,
                    params: IHCParams = IHCParams()) -> np.ndarray:
    """Observed positivity in [0, 1] from per-tile counted nuclei per class (..., 4) and membrane
    positives (...): Ki-67 positive, p53 strong or PD-L1 membrane fraction; NaN without nuclei."""
    counts = np.asarray(counts, np.float64)
    if marker == "pdl1":
        num = np.asarray(membrane, np.float64)
    elif marker == "p53":
        num = counts[..., params.p53_strong_class :].sum(-1)
    else:
        num = counts[..., 1:].sum(-1)
    n = counts.sum(-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n > 0, num / n, np.nan)


class IHCCancelled(HistostainError):
    """Quantification was cancelled by the user."""


def quantify_image(
    rgb: np.ndarray,
    mpp: float,
    marker: str = "ki67",
    *,
    params: IHCParams = IHCParams(),
    stains: StainVectors | None = None,
    name: str = "image",
    tile_mpp: float = 1.0,
    tile_size: int = 224,
) -> IHCResult:
    """Quantify a plain RGB array (PNG/JPEG IHC image) at `mpp` micrometres per pixel.

    Same result as for a slide, on a grid of `tile_size` px tiles at `tile_mpp` covering the image.
    """
    source = ArraySource(rgb, mpp, name)
    grid = simple_grid(*source.dimensions, source.mpp[0], tile_mpp=tile_mpp, tile_size=tile_size)
    return quantify_source(source, marker, grid=grid, params=params, stains=stains, threads=0,
                           name=name)


def ihc_tissue_mask(slide, *, target_mpp: float = 8.0, params: IHCParams = IHCParams()):
    """Tissue of an IHC slide: the shared detector `tissue.detect_tissue`, which finds pale
    hematoxylin-only tissue by optical density and keeps blue counterstain (`params` is unused)."""
    from .tissue import detect_tissue

    return detect_tissue(slide, target_mpp=target_mpp)


def slide_grid(slide, *, tile_mpp: float = 1.0, tile_size: int = 224, region=None,
               min_tissue: float = 0.05):
    """The prediction tile grid of a slide (ENGINE's `tiling.make_grid`; a full grid without it)."""
    try:
        from .tiling import make_grid
    except ImportError:
        make_grid = None
    if make_grid is not None:
        tissue = ihc_tissue_mask(slide) if min_tissue > 0 else None
        return make_grid(slide, tile_mpp=tile_mpp, tile_size=tile_size, region=region,
                         min_tissue=min_tissue, tissue=tissue)
    w, h = slide.dimensions
    return simple_grid(w, h, float(slide.mpp[0]), tile_mpp=tile_mpp, tile_size=tile_size)


def quantify_slide(
    slide,
    marker: str = "ki67",
    *,
    grid=None,
    region: tuple[int, int, int, int] | None = None,
    params: IHCParams = IHCParams(),
    stains: StainVectors | None = None,
    threads: int = 2,
    progress: Callable[[int, int], None] | None = None,
    cancel: Callable[[], bool] | None = None,
    on_tile: Callable[[int, float], None] | None = None,
) -> IHCResult:
    """Quantify an IHC slide (a path or an open `Slide`) over its tissue tiles, or over `region`.

    Pass the prediction's `grid` to get results aligned tile for tile with the predicted maps.
    Raises `NotDabError` for an H&E slide.
    """
    from .slide import open_slide

    owned = not hasattr(slide, "read_region")
    s = open_slide(slide) if owned else slide
    try:
        if grid is None:
            grid = slide_grid(s, region=region)
        indices = None
        if region is not None and not hasattr(grid, "tile_px0"):
            raise IHCError("grid has no tile_px0; pass a grid from tiling.make_grid.")
        if region is not None:
            rx, ry, rw, rh = region
            c = np.asarray(grid.coords)
            t = float(grid.tile_px0)
            indices = np.nonzero((c[:, 0] + t > rx) & (c[:, 0] < rx + rw)
                                 & (c[:, 1] + t > ry) & (c[:, 1] < ry + rh))[0]
        return quantify_source(s, marker, grid=grid, indices=indices, params=params,
                               stains=stains, threads=threads, progress=progress, cancel=cancel,
                               name=str(s.path), on_tile=on_tile)
    finally:
        if owned:
            s.close()


def with_thresholds(params: IHCParams, thresholds: tuple[float, float, float]) -> IHCParams:
    """`params` with other 1+/2+/3+ thresholds (checked to increase)."""
    t = tuple(float(v) for v in thresholds)
    if len(t) != 3 or not (0 < t[0] < t[1] < t[2]):
        raise IHCError(f"thresholds must be three increasing positive OD values, got {thresholds}.")
    return replace(params, thresholds=t)


#: Colours of nucleus classes in figures and points layers (negative cyan, 1+ yellow, 2+ orange, 3+ red).
CLASS_COLOURS = ("#00d5ff", "#f2d027", "#f28e2b", "#d62728")


def save_overlay_figure(
    rgb: np.ndarray,
    result: IHCResult,
    path: str | Path,
    *,
    origin: tuple[float, float] = (0.0, 0.0),
    downsample: float = 1.0,
    title: str | None = None,
    marker_size: float | None = None,
) -> Path:
    """A PNG of `rgb` (a view of the source from level-0 `origin`, at `downsample`) with nuclei
    coloured by class; written atomically."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    from ._io import atomic_path

    h, w = rgb.shape[:2]
    x = (result.nuclei_xy[:, 0] - origin[0] + 0.5) / downsample - 0.5
    y = (result.nuclei_xy[:, 1] - origin[1] + 0.5) / downsample - 0.5
    inside = (x >= 0) & (x < w) & (y >= 0) & (y < h)
    fig, ax = plt.subplots(figsize=(8, 8 * h / w + 0.4), dpi=100)
    ax.imshow(rgb, interpolation="nearest")
    size = marker_size or max(4.0, 2.0 * result.params.nucleus_radius_um / result.mpp[0] / downsample)
    counted = result.nuclei_counted
    if result.marker == "pdl1":  # PD-L1 is scored on membranes, not on nuclear DAB
        groups = [(counted & ~result.nuclei_membrane, CLASS_COLOURS[0], "membrane negative"),
                  (counted & result.nuclei_membrane, CLASS_COLOURS[3], "membrane positive")]
    else:
        groups = [(counted & (result.nuclei_class == c), CLASS_COLOURS[c], CLASS_NAMES[c])
                  for c in range(4)]
    groups.append((~counted, "#9a9a9a", "not counted (stroma, lymphocyte- / fibroblast-like)"))
    for k, (mask, colour, name) in enumerate(groups):
        sel = inside & mask
        style = {"marker": "x", "c": colour} if k == len(groups) - 1 else {
            "facecolors": "none", "edgecolors": colour}
        ax.scatter(x[sel], y[sel], s=size, linewidths=1.4, label=f"{name} ({int(sel.sum())})",
                   **style)
    ax.set_axis_off()
    ax.legend(loc="lower right", fontsize=8, framealpha=0.8)
    if title:
        ax.set_title(title, fontsize=10)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
    return Path(path)
