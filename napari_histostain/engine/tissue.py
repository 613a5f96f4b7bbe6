"""Tissue detection on a low-resolution view of a slide, for H&E and IHC alike.

Pixels are tissue when their summed optical density against the glass colour is over a bounded Otsu
threshold (pale stroma, hematoxylin-only IHC tissue) or when they are coloured (HSV saturation over a
bounded Otsu threshold) and not glass-bright. Pen ink is rejected only where it is far from the
stains' hues (green; strongly saturated blue; large black areas), so blue-grey counterstain stays
tissue. The mask is cleaned up by a closing, removal of specks smaller than `min_object_um2` and
filling of holes (fat, lumina) smaller than `max_hole_um2`. The result is a `TissueMask` in slide
coordinates."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..io.overview import read_overview, reduce_blocks

#: Bounds on the saturation threshold: Otsu is used between them (a blank slide has no real split).
SATURATION_BOUNDS = (0.07, 0.15)
#: Pixels brighter than this (HSV value) and barely coloured are glass.
GLASS_VALUE = 0.9
#: Bounds on the Otsu threshold of summed log10 optical density against the glass colour.
OD_BOUNDS = (0.04, 0.05)
#: The glass colour is never taken darker than this (an image filled with tissue has no glass).
MIN_BACKGROUND = 0.8
#: Optical density is averaged over OD_SMOOTH x OD_SMOOTH overview pixels before thresholding.
OD_SMOOTH = 3
#: Pen inks: green hues (degrees) and their saturation; blue hues up to this, when saturated.
PEN_GREEN_HUE = (75.0, 190.0)
PEN_GREEN_SATURATION = 0.2
PEN_BLUE_HUE_MAX = 250.0
PEN_BLUE_SATURATION = 0.45
#: Darker than this (HSV value) is black ink, dust or the slide edge.
BLACK_VALUE = 0.16
#: Smallest ink area (um^2): smaller dark or blue specks are stained cells, not pen marks.
MIN_INK_UM2 = 5_000.0


@dataclass
class TissueMask:
    """A boolean tissue mask over the whole slide.

    `mask[r, c]` covers level-0 pixels [c * downsample, (c + 1) * downsample) x
    [r * downsample, (r + 1) * downsample). `mpp` is the mask pixel size in micrometres.
    """

    mask: np.ndarray
    downsample: float
    mpp: float | None = None
    threshold: float = float("nan")
    _integral: np.ndarray | None = field(default=None, init=False, repr=False, compare=False)

    @property
    def shape(self) -> tuple[int, int]:
        return self.mask.shape

    @property
    def fraction(self) -> float:
        """Fraction of the slide area that is tissue."""
        return float(self.mask.mean()) if self.mask.size else 0.0

    @property
    def is_empty(self) -> bool:
        return not bool(self.mask.any())

    def _ii(self) -> np.ndarray:
        if self._integral is None:
            ii = np.zeros((self.mask.shape[0] + 1, self.mask.shape[1] + 1), np.int64)
            ii[1:, 1:] = np.cumsum(np.cumsum(self.mask, 0, dtype=np.int64), 1)
            self._integral = ii
        return self._integral

    def fractions_in(self, x0, y0, w, h) -> np.ndarray:
        """Vectorised `fraction_in` for arrays of level-0 boxes (areas outside the slide count as glass)."""
        ii = self._ii()
        H, W = self.mask.shape
        x0 = np.asarray(x0, np.float64)
        y0 = np.asarray(y0, np.float64)
        c0 = np.floor(x0 / self.downsample).astype(np.int64)
        r0 = np.floor(y0 / self.downsample).astype(np.int64)
        c1 = np.ceil((x0 + w) / self.downsample).astype(np.int64)
        r1 = np.ceil((y0 + h) / self.downsample).astype(np.int64)
        area = np.maximum((c1 - c0) * (r1 - r0), 1)
        c0, c1 = np.clip(c0, 0, W), np.clip(c1, 0, W)
        r0, r1 = np.clip(r0, 0, H), np.clip(r1, 0, H)
        total = ii[r1, c1] - ii[r0, c1] - ii[r1, c0] + ii[r0, c0]
        return total / area

    def fraction_in(self, x0: float, y0: float, w: float, h: float) -> float:
        """Fraction of the level-0 box (x0, y0, w, h) that is tissue."""
        return float(self.fractions_in([x0], [y0], w, h)[0])

    def to_dict(self) -> dict:
        return {
            "downsample": self.downsample,
            "mpp": self.mpp,
            "shape": list(self.mask.shape),
            "fraction": self.fraction,
            "threshold": self.threshold,
        }


def background_rgb(img: np.ndarray) -> np.ndarray:
    """Glass colour (float RGB in 0-1) of an image: the median of its brightest 5% of pixels.

    Kept at or above `MIN_BACKGROUND`, so an image filled with tissue is measured against white.
    """
    flat = img.reshape(-1, 3)
    if not flat.size:
        return np.ones(3, np.float32)
    bright = flat.mean(1)
    bg = np.median(flat[bright >= np.percentile(bright, 95)], axis=0)
    return np.clip(bg, MIN_BACKGROUND, 1.0).astype(np.float32)


def optical_density_sum(img: np.ndarray, background: np.ndarray | None = None) -> np.ndarray:
    """Summed log10 optical density -log10(I / I_background) over R, G, B of a float RGB image."""
    bg = background_rgb(img) if background is None else background
    return -np.log10(np.clip(img / bg, 1e-3, 1.0)).sum(-1)


def _hue_degrees(r, g, b, vmax, delta) -> np.ndarray:
    """HSV hue in degrees (0-360) of pixels with delta = max - min > 0, as skimage's rgb2hsv."""
    d = np.maximum(delta, 1e-12)
    hue = np.where(
        b == vmax, 4.0 + (r - g) / d, np.where(g == vmax, 2.0 + (b - r) / d, (g - b) / d)
    )
    return (hue * 60.0) % 360.0


def pen_ink(img: np.ndarray, *, min_px: int = 1) -> np.ndarray:
    """Pen marks on a float RGB image: black ink, and inks far from every stain's hue.

    Green inks (no stain is green) are rejected when slightly saturated; blue inks only when
    strongly saturated, so blue-grey hematoxylin counterstain (IHC) is kept. Only areas of at
    least `min_px` connected pixels count as ink (single dark or blue pixels are stained cells).
    """
    from skimage import morphology

    r, g, b = img[..., 0], img[..., 1], img[..., 2]
    val = np.maximum(np.maximum(r, g), b)
    delta = val - np.minimum(np.minimum(r, g), b)
    sat = np.where(val > 0, delta / np.maximum(val, 1e-6), 0.0)
    hue = np.full(val.shape, -1.0, np.float32)  # only coloured enough pixels can be ink: hue there
    cand = sat > min(PEN_GREEN_SATURATION, PEN_BLUE_SATURATION)
    hue[cand] = _hue_degrees(r[cand], g[cand], b[cand], val[cand], delta[cand])
    green = (hue >= PEN_GREEN_HUE[0]) & (hue < PEN_GREEN_HUE[1]) & (sat > PEN_GREEN_SATURATION)
    blue = (hue >= PEN_GREEN_HUE[1]) & (hue < PEN_BLUE_HUE_MAX) & (sat > PEN_BLUE_SATURATION)
    pen = green | blue | (val < BLACK_VALUE)
    if min_px > 1:
        pen = morphology.remove_small_objects(pen, max_size=min_px - 1)
    return pen


def tissue_mask_from_rgb(
    rgb: np.ndarray,
    *,
    mpp: float | None = None,
    min_object_um2: float = 20_000.0,
    max_hole_um2: float = 100_000.0,
    reject_pen: bool = True,
) -> tuple[np.ndarray, float]:
    """Tissue mask (bool, same height/width) of an RGB uint8 image and the OD threshold used.

    A pixel is tissue when its optical density against the glass colour is over a bounded Otsu
    threshold (finds pale stroma and hematoxylin-only IHC tissue) or when it is coloured (HSV
    saturation over a bounded Otsu threshold) and not glass-bright; pen ink is excluded.
    `mpp` is the image's pixel size; without it the area limits are taken as pixel counts at 8 um/px.
    """
    from scipy import ndimage as ndi
    from skimage import morphology
    from skimage.filters import threshold_otsu

    rgb = np.asarray(rgb)
    if rgb.ndim != 3 or rgb.shape[2] < 3:
        raise ValueError(f"expected an (H, W, 3) RGB image, got shape {rgb.shape}")
    img = rgb[..., :3].astype(np.float32) / 255.0
    vmax = np.maximum(np.maximum(img[..., 0], img[..., 1]), img[..., 2])  # faster than max(-1)
    vmin = np.minimum(np.minimum(img[..., 0], img[..., 1]), img[..., 2])
    sat = np.where(vmax > 0, (vmax - vmin) / np.maximum(vmax, 1e-6), 0.0)
    od = optical_density_sum(img)
    if OD_SMOOTH > 1:
        od = ndi.uniform_filter(od, size=OD_SMOOTH)
    px_area = (mpp if mpp else 8.0) ** 2
    pen = np.zeros(sat.shape, bool)
    if reject_pen:
        pen = pen_ink(img, min_px=max(int(MIN_INK_UM2 / px_area), 1))

    def bounded_otsu(values: np.ndarray, bounds: tuple[float, float]) -> float:
        if values.size and values.max() > values.min():
            return float(np.clip(threshold_otsu(values), *bounds))
        return bounds[0]

    sat_thr = bounded_otsu(sat[~pen], SATURATION_BOUNDS)
    thr = bounded_otsu(od[~pen], OD_BOUNDS)
    coloured = (sat > sat_thr) & ~((vmax > GLASS_VALUE) & (sat < sat_thr * 1.5))
    tissue = (coloured | (od > thr)) & ~pen
    tissue = ndi.binary_closing(tissue, structure=np.ones((3, 3), bool), iterations=1)
    tissue = ndi.binary_opening(tissue, structure=np.ones((2, 2), bool))
    min_px = max(int(min_object_um2 / px_area), 1)
    tissue = morphology.remove_small_objects(tissue, max_size=min_px)
    hole_px = max(int(max_hole_um2 / px_area), 1)
    holes = ndi.binary_fill_holes(tissue) & ~tissue  # glass enclosed by tissue, not the border
    tissue |= holes & ~morphology.remove_small_objects(holes, max_size=hole_px)
    if pen.any():
        tissue &= ~ndi.binary_dilation(pen, iterations=1)
    return tissue.astype(bool), thr


def detect_tissue(slide, *, target_mpp: float = 8.0, **kwargs) -> TissueMask:
    """Detect tissue on a ~`target_mpp` um/px overview of `slide` (a `Slide` or an RGB array).

    For an array, pass `mpp=` (its pixel size) among `kwargs` when known; its downsample is 1.
    Other `kwargs` go to `tissue_mask_from_rgb` (area limits, pen rejection).
    """
    if isinstance(slide, np.ndarray):
        rgb, mpp, k = slide[..., :3], kwargs.pop("mpp", None), 1
        if mpp:
            k = max(int(round(target_mpp / mpp)), 1)
            if k > 1:
                h, w = rgb.shape[:2]
                pad = ((0, -h % k), (0, -w % k), (0, 0))
                rgb = reduce_blocks(np.pad(rgb, pad, mode="edge"), k)
                mpp = mpp * k
        mask, thr = tissue_mask_from_rgb(rgb, mpp=mpp, **kwargs)
        return TissueMask(mask, float(k), mpp, thr)
    overview, ds = read_overview(slide, target_mpp)
    mpp = float(slide.mpp[0]) * ds
    mask, thr = tissue_mask_from_rgb(overview, mpp=mpp, **kwargs)
    return TissueMask(mask, ds, mpp, thr)
