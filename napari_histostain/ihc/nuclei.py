"""Nuclei of hematoxylin-DAB IHC: the `Nuclei` table, and their detection and measurement in one tile.

Per tile: colour deconvolution -> nuclei found where the stain stands out from its local background,
one seed per nucleus-sized blob of (log-compressed) stain (scale-normalised Laplacian of Gaussian at
one or more nucleus sizes: a dark nucleus beside stained cytoplasm and touching nuclei each peak at
their centre), grown by watershed -> each nucleus measured (area, shape, stain on its
body and core, its surroundings, a PD-L1 membrane ring) and scored negative / 1+ / 2+ / 3+.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from ..markers import get_marker
from .cell_rules import exclusion_codes, merged_lymphocyte_like
from .membrane import membrane_coverage
from .nucleus_scale import with_field_scale
from .params import AUTO_DETECTION_MARKERS, EXCLUSION_NAMES, IHCParams, resolve_detection
from .scores import summarise
from .stains import StainVectors, optical_density, standard_stains

BODY_FRACTION = 0.3  # a nucleus' stain is measured where its signal is >= this x its peak


@dataclass
class Nuclei:
    """One row per nucleus. Positions are (x, y) in the pixels of whatever holds the nuclei: a
    tile's read pixels in `TileQuantification`, level-0 pixels in `IHCResult`."""

    xy: np.ndarray  # (K, 2) float32 centroid (x, y)
    cls: np.ndarray  # (K,) int8: 0 negative, 1..3 = 1+..3+
    dab: np.ndarray  # (K,) float32 mean nuclear DAB OD (the lower of body and core)
    hema: np.ndarray  # (K,) float32 mean nuclear hematoxylin OD
    area_um2: np.ndarray  # (K,) float32
    elongation: np.ndarray  # (K,) float32 major / minor axis
    width_um: np.ndarray  # (K,) float32 minor axis
    inscribed_um: np.ndarray  # (K,) float32 largest inscribed circle's radius (NaN: not needed)
    context: np.ndarray  # (K,) float32 local background OD under the nucleus (cytoplasm / stroma)
    membrane: np.ndarray  # (K,) bool: DAB ring around the nucleus (PD-L1)
    tile: np.ndarray  # (K,) int32 tile index
    excluded: np.ndarray  # (K,) int8 why not counted (`EXCLUSION_NAMES`; 0: counted)

    #: dtype of each column
    DTYPES: ClassVar[dict[str, Any]] = {
        "xy": np.float32,
        "cls": np.int8,
        "dab": np.float32,
        "hema": np.float32,
        "area_um2": np.float32,
        "elongation": np.float32,
        "width_um": np.float32,
        "inscribed_um": np.float32,
        "context": np.float32,
        "membrane": bool,
        "tile": np.int32,
        "excluded": np.int8,
    }

    def __post_init__(self) -> None:
        for name, dtype in self.DTYPES.items():
            value = np.asarray(getattr(self, name), dtype)
            setattr(self, name, value.reshape(-1, 2) if name == "xy" else value.reshape(-1))

    def __len__(self) -> int:
        return len(self.cls)

    @property
    def counted(self) -> np.ndarray:
        """(K,) bool: the nucleus enters the indices."""
        return self.excluded == 0

    @property
    def exclusion_reasons(self) -> np.ndarray:
        """(K,) str: why each nucleus is not counted ("" when it is; `EXCLUSION_NAMES`)."""
        return np.asarray(EXCLUSION_NAMES)[self.excluded.astype(int)]

    @classmethod
    def empty(cls) -> Nuclei:
        return cls(**{name: np.zeros((0, 2) if name == "xy" else 0) for name in cls.DTYPES})

    @classmethod
    def concat(cls, parts: Sequence[Nuclei]) -> Nuclei:
        """All rows of `parts`, in order."""
        if not parts:
            return cls.empty()
        return cls(
            **{name: np.concatenate([getattr(p, name) for p in parts]) for name in cls.DTYPES}
        )

    def take(self, index: np.ndarray) -> Nuclei:
        """The rows at `index` (a boolean mask or indices)."""
        return Nuclei(**{name: getattr(self, name)[index] for name in self.DTYPES})

    def replace(self, **columns: np.ndarray) -> Nuclei:
        """A copy with some columns replaced."""
        return dataclasses.replace(self, **columns)

    def exclusions(self, params: IHCParams) -> np.ndarray:
        """`cell_rules.exclusion_codes` of these nuclei, judged among them (a slide or a tile)."""
        return exclusion_codes(
            self.area_um2,
            self.elongation,
            self.width_um,
            self.hema,
            self.dab,
            params,
            inscribed_um=self.inscribed_um,
            context=self.context,
            membrane=self.membrane,
        )


@dataclass
class TileQuantification:
    """The nuclei (positions in tile pixels) and pixel counts of one tile.

    With `IHCParams.cells == "tumour"`, small dense round nuclei (lymphocytes), elongated ones
    (fibroblasts) and those in pale surroundings (stroma, `stromal`) are not counted.
    """

    nuclei: Nuclei
    tissue_px: int
    positive_px: int  # tissue pixels with DAB OD >= thresholds[0]
    detection: str = "standard"  # the detection preset applied (`resolve_detection`: not "auto")

    @property
    def counts(self) -> np.ndarray:
        return np.bincount(self.nuclei.cls[self.nuclei.counted], minlength=4)[:4]

    @property
    def n_membrane_positive(self) -> int:
        return int((self.nuclei.membrane & self.nuclei.counted).sum())

    def summary(self, params: IHCParams = IHCParams()) -> dict:
        return summarise(
            self.counts, self.n_membrane_positive, self.tissue_px, self.positive_px, params
        )


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
    from skimage.segmentation import watershed

    get_marker(marker)
    rgb = np.asarray(rgb)[..., :3]
    stains = stains or standard_stains()
    od = optical_density(rgb)
    conc = od @ stains.matrix()  # = skimage separate_stains(rgb, matrix), without a second log
    hema, dab = np.maximum(conc[..., 0], 0), np.maximum(conc[..., 1], 0)
    tissue = gaussian(od.sum(axis=2), sigma=1.0) > params.tissue_od
    signal = hema if marker == "pdl1" else hema + dab  # membranes must not look like nuclei
    sharp = gaussian(signal, sigma=max(0.5, 0.4 / mpp))
    # nuclei stand out from their local background (cytoplasm, stroma): white top-hat
    backgrounds: dict[int, np.ndarray] = {}  # by opening size: "auto" and "standard" share one
    if params.detection == "auto" and marker in AUTO_DETECTION_MARKERS:
        size0 = _opening_size(IHCParams().nucleus_radius_um / mpp)
        backgrounds[size0] = ndi.grey_opening(sharp, size=(size0, size0))
        glass = ground_glass(
            rgb, signal, mpp, params, od=od, sharp=sharp, background=backgrounds[size0]
        )
        params = resolve_detection(params, marker, glass)
    # the field's own nucleus size: for all of the detection ("field") or its seeds ("seeds")
    scaled = with_field_scale(params, signal, mpp)
    params = scaled if params.nucleus_scale == "field" else params
    radius_px = params.nucleus_radius_um / mpp
    size = _opening_size(radius_px)
    if size not in backgrounds:
        backgrounds[size] = ndi.grey_opening(sharp, size=(size, size))
    background = backgrounds[size]
    # the surroundings of each nucleus, all stains (PD-L1's stained membranes and cytoplasm too:
    # `cell_rules.stromal` then judges membrane-stained and unstained cells each against their own
    # kind where the unstained sit in tumour)
    if marker == "pdl1":
        surround = ndi.grey_opening(
            gaussian(hema + dab, sigma=max(0.5, 0.4 / mpp)), size=(size, size)
        )
    elif params.context_stain == "hematoxylin":  # DAB spilt into cytoplasm is no context
        surround = ndi.grey_opening(gaussian(hema, sigma=max(0.5, 0.4 / mpp)), size=(size, size))
    elif params.context_stain == "capped":
        capped = hema + np.minimum(dab, params.context_dab_cap)
        surround = ndi.grey_opening(gaussian(capped, sigma=max(0.5, 0.4 / mpp)), size=(size, size))
    else:
        surround = background
    fg = ndi.binary_fill_holes(_stand_out(sharp, background, params) & tissue)
    fg = ndi.binary_opening(fg, structure=_disk(max(1, int(radius_px * 0.25))))
    # split touching nuclei: one seed per nucleus-sized blob of stain ("blob") or per maximum of
    # the (smoothed) distance to the background ("distance")
    dist = gaussian(ndi.distance_transform_edt(fg), sigma=max(0.5, radius_px / 5)) * fg
    blob = params.seeds in ("blob", "log")
    seed_px = scaled.nucleus_radius_um / mpp
    relief = _blob_relief(signal, dist, seed_px, params, hema=hema) if blob else dist
    if params.seeds == "log":
        seeds = _scale_space_seeds(signal, hema, fg, seed_px, params)
    else:
        seeds = peak_local_max(
            relief,
            min_distance=max(1, int(round(seed_px * params.seed_spacing))),
            threshold_abs=params.blob_min if blob else radius_px * 0.3,
            labels=fg.astype(np.int32) if blob else None,
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
    labels = watershed(-relief, markers, mask=fg)

    n = len(seeds)
    index = np.arange(1, n + 1)
    if n:
        yy, xx = np.indices(labels.shape, dtype=np.float64)
        with np.errstate(invalid="ignore", divide="ignore"):  # seeds whose region is empty
            area_px, (my, mx, myy, mxx, mxy, context) = label_means(
                labels, n, yy, xx, yy * yy, xx * xx, xx * yy, surround
            )
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
            if params.dab_baseline == "field":
                mean_dab = mean_dab - field_dab_baseline(dab, tissue & (labels == 0))
        half_tr, det = (vx + vy) / 2, np.sqrt(((vx - vy) / 2) ** 2 + cxy**2)
        elong = np.sqrt(np.maximum(half_tr + det, 1e-6) / np.maximum(half_tr - det, 1e-2))
        width = 4.0 * np.sqrt(np.maximum(half_tr - det, 0.0)) * mpp  # minor axis of the ellipse
        # largest inscribed circle, where the merged-lymphocyte rule may need it (the slide's
        # lymphocyte density is not known yet; it is at least `lymphocyte_od`)
        could_be_merged = merged_lymphocyte_like(
            area_px * mpp * mpp, mean_hema, mean_dab, params.lymphocyte_od, params
        )
        inscribed = inscribed_radii(labels, np.nonzero(could_be_merged)[0] + 1) * mpp
        centroid = np.nan_to_num(np.stack([my, mx], axis=1), nan=-1.0)
    else:
        area_px = elong = width = inscribed = mean_dab = mean_hema = context = np.zeros(0)
        centroid = np.zeros((0, 2))
    min_area = params.min_nucleus_area_um2 / (mpp * mpp)
    keep = (area_px > 0) & (area_px >= min(min_area, math.pi * radius_px**2 * 0.3))
    if n and (params.negative_min_hema > 0 or params.negative_min_hema_fraction > 0):
        # an unstained "nucleus" must carry hematoxylin: pale cytoplasm and background are not nuclei
        hem, dabv = np.nan_to_num(mean_hema), np.nan_to_num(mean_dab)
        faint = (hem < params.negative_min_hema) | (
            hem < params.negative_min_hema_fraction * (hem + dabv)
        )
        keep &= (dabv >= params.thresholds[0]) | ~faint
    area_um2 = np.asarray(area_px) * mpp * mpp
    if marker == "pdl1" and n:
        membrane = (
            membrane_coverage(labels, dab, centroid, mpp, params, hema) >= params.membrane_coverage
        )
    else:
        membrane = np.zeros(n, bool)

    if core is not None:
        cx, cy, cw, ch = core
        inside = (
            (centroid[:, 1] >= cx)
            & (centroid[:, 1] < cx + cw)
            & (centroid[:, 0] >= cy)
            & (centroid[:, 0] < cy + ch)
        )
        keep &= inside
        tissue_core = tissue[cy : cy + ch, cx : cx + cw]
        dab_core = dab[cy : cy + ch, cx : cx + cw]
    else:
        tissue_core, dab_core = tissue, dab
    dab_kept = np.asarray(mean_dab, np.float32)[keep]  # scored in float32, as stored
    nuclei = Nuclei(
        xy=centroid[keep][:, ::-1],
        cls=np.digitize(dab_kept, params.thresholds),
        dab=dab_kept,
        hema=np.asarray(mean_hema)[keep],
        area_um2=area_um2[keep],
        elongation=np.asarray(elong)[keep],
        width_um=np.asarray(width)[keep],
        inscribed_um=np.asarray(inscribed)[keep],
        context=np.asarray(context)[keep],
        membrane=membrane[keep],
        tile=np.zeros(int(keep.sum())),
        excluded=np.zeros(int(keep.sum())),
    )
    return TileQuantification(
        nuclei=nuclei.replace(excluded=nuclei.exclusions(params)),
        tissue_px=int(tissue_core.sum()),
        positive_px=int((tissue_core & (dab_core >= params.thresholds[0])).sum()),
        detection="standard" if params.detection == "auto" else params.detection,
    )


def _stand_out(sharp: np.ndarray, background: np.ndarray, params: IHCParams) -> np.ndarray:
    """Pixels whose stain stands out from the local background (white top-hat) or is dense."""
    return ((sharp - background > params.nucleus_contrast) & (sharp > params.nucleus_od)) | (
        sharp > params.nucleus_od_dense
    )


def ground_glass(
    rgb: np.ndarray,
    signal: np.ndarray,
    mpp: float,
    params: IHCParams,
    *,
    od: np.ndarray | None = None,
    sharp: np.ndarray | None = None,
    background: np.ndarray | None = None,
) -> float:
    """Share of the ground between nuclei that is glass (summed RGB OD below `tissue_od`; NaN when
    there is no ground): at most 0.02 in real fields, whose cytoplasm and stroma are counterstained
    or DAB-tinted (BCData), 0.4 and more where cells lie on near-white ground (the simulator's
    renders). Pure white pixels (255, 255, 255: the padding around a field smaller than a tile,
    saturated glass) are not counted. Nuclei are found as the "standard" detection finds them,
    widened by 2 px. `od`, `sharp` (smoothed `signal`) and `background` (its opening at the
    default nucleus size): when the caller has them already."""
    from scipy import ndimage as ndi
    from skimage.filters import gaussian

    if sharp is None:
        sharp = gaussian(signal, sigma=max(0.5, 0.4 / mpp))
    if background is None:
        size = _opening_size(IHCParams().nucleus_radius_um / mpp)
        background = ndi.grey_opening(sharp, size=(size, size))
    nuclei = ndi.binary_dilation(_stand_out(sharp, background, params), iterations=2)
    ground = ~nuclei & (rgb < 255).any(axis=2)
    if not ground.any():
        return math.nan
    ground_od = optical_density(rgb[ground]) if od is None else od[ground]
    return float((ground_od.sum(axis=-1) < params.tissue_od).mean())


def _opening_size(radius_px: float) -> int:
    """Side (px, odd) of the grey opening that takes nuclei of `radius_px` out of a stain image."""
    return max(3, int(round(radius_px * 3)) | 1)


def field_dab_baseline(dab: np.ndarray, outside: np.ndarray) -> float:
    """The DAB OD of a field's tissue outside nuclei (median; 0 when none): a stained background
    (DAB-tinted cytoplasm, a brownish scan) that a nucleus' own stain is judged above."""
    values = dab[outside]
    return float(np.median(values)) if values.size else 0.0


def label_means(
    labels: np.ndarray, n: int, *values: np.ndarray
) -> tuple[np.ndarray, list[np.ndarray]]:
    """Pixel counts of labels 1..n and the mean of each of `values` over them (NaN where a label
    has no pixels); one pass of `np.bincount` per array."""
    flat = labels.ravel()
    counts = np.bincount(flat, minlength=n + 1)[1 : n + 1].astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        return counts, [
            np.bincount(flat, v.ravel(), minlength=n + 1)[1 : n + 1] / counts for v in values
        ]


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


def _disk(r: int) -> np.ndarray:
    yy, xx = np.mgrid[-r : r + 1, -r : r + 1]
    return yy**2 + xx**2 <= r * r


def _blob_relief(
    signal: np.ndarray,
    dist: np.ndarray,
    radius_px: float,
    params: IHCParams,
    hema: np.ndarray | None = None,
) -> np.ndarray:
    """Where nuclei centres are: the nucleus-sized blob response (negative Laplacian of Gaussian) of
    the log-compressed stain, so a dark nucleus beside stained cytoplasm and two touching nuclei
    each peak at their centre, plus the distance to the background (round, evenly stained nuclei)."""
    from scipy import ndimage as ndi

    images = [signal]
    if params.blob_stains == "both" and hema is not None:
        images.append(
            hema
        )  # a pale negative nucleus in stained cytoplasm stands out in its own stain
    blob = np.zeros(signal.shape, np.float32)
    for image in images:
        compressed = np.log1p(np.minimum(image, params.blob_max_od) / params.blob_od)
        for scale in params.blob_scales:  # scale-normalised: the nucleus' own size responds most
            sigma = max(1.0, scale * radius_px / math.sqrt(2))
            blob = np.maximum(blob, -ndi.gaussian_laplace(compressed, sigma) * sigma * sigma)
    return (blob + params.blob_distance_weight * dist / max(radius_px, 1.0)) * (dist > 0)


def _scale_space_seeds(
    signal: np.ndarray, hema: np.ndarray, fg: np.ndarray, radius_px: float, params: IHCParams
) -> np.ndarray:
    """Nucleus centres (row, col) as scale-space maxima of the Laplacian of Gaussian of the
    log-compressed stain (skimage `blob_log`, sizes `blob_scales` x nucleus radius): each blob is
    found once at its own size, so a large dark nucleus is one seed, not several; with
    `blob_stains == "both"` hematoxylin alone is searched too (pale negative nuclei). A blob centred
    inside a larger one already found is the same nucleus."""
    from skimage.feature import blob_log

    images = [signal] + ([hema] if params.blob_stains == "both" else [])
    lo, hi = (
        s * radius_px / math.sqrt(2) for s in (min(params.blob_scales), max(params.blob_scales))
    )
    found = []
    for image in images:
        compressed = np.log1p(np.minimum(image, params.blob_max_od) / params.blob_od)
        found.append(
            blob_log(
                compressed,
                min_sigma=max(1.0, lo),
                max_sigma=max(1.0, hi),
                num_sigma=params.blob_num_sigma,
                threshold=params.blob_min,
                overlap=params.blob_overlap,
                exclude_border=False,
            ).reshape(-1, 3)
        )
    blobs = np.concatenate(found)
    blobs = blobs[np.argsort(-blobs[:, 2], kind="stable")]  # largest first
    kept: list[np.ndarray] = []
    for b in blobs:
        r, c = int(round(b[0])), int(round(b[1]))
        if not fg[min(r, fg.shape[0] - 1), min(c, fg.shape[1] - 1)]:
            continue
        if any(
            math.hypot(b[0] - k[0], b[1] - k[1]) < params.seed_spacing * math.sqrt(2) * k[2]
            for k in kept
        ):
            continue
        kept.append(b)
    return np.array([[int(round(k[0])), int(round(k[1]))] for k in kept], np.int64).reshape(-1, 2)
