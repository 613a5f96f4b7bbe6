"""Tile statistics used to compare simulated and real slides (same measure on both).

Per tile: mean hematoxylin / eosin / DAB optical density over tissue pixels (Ruifrok colour
deconvolution, scikit-image `rgb2hed`), tissue fraction, and nuclei per mm^2 of tissue (dark
hematoxylin blobs of nuclear size).
"""

from __future__ import annotations

import numpy as np


def tile_stats(rgb: np.ndarray, mpp: float) -> dict[str, float]:
    """Stain optical densities, tissue fraction and nuclei density of one RGB uint8 tile."""
    from scipy import ndimage
    from skimage.color import rgb2hed

    rgb = np.asarray(rgb)[..., :3]
    od_sum = -np.log(np.maximum(rgb.astype(np.float32), 1.0) / 255.0).sum(-1)
    tissue = ndimage.binary_opening(od_sum > 0.25, iterations=1)
    frac = float(tissue.mean())
    hed = rgb2hed(rgb)
    out = {"tissue_fraction": frac}
    if frac < 0.05:
        out.update(h_od=np.nan, e_od=np.nan, dab_od=np.nan, nuclei_per_mm2=np.nan)
        return out
    out["h_od"] = float(hed[..., 0][tissue].mean())
    out["e_od"] = float(hed[..., 1][tissue].mean())
    out["dab_od"] = float(hed[..., 2][tissue].mean())
    out["nuclei_per_mm2"] = count_nuclei(rgb, mpp) / (
        frac * rgb.shape[0] * rgb.shape[1] * mpp**2 / 1e6
    )
    return out


def nuclei_mask(rgb: np.ndarray, mpp: float) -> np.ndarray:
    """Dark, blue-to-brown blobs (nuclei of H&E or IHC): low brightness relative to the tile."""
    from scipy import ndimage

    grey = np.asarray(rgb)[..., :3].astype(np.float32).mean(-1)
    grey = ndimage.gaussian_filter(grey, 0.6 * 0.5 / mpp)
    red = np.asarray(rgb)[..., 0].astype(np.float32)
    blue = np.asarray(rgb)[..., 2].astype(np.float32)
    # nuclei are darker than cytoplasm / stroma around them and not red-dominant (eosin)
    local = ndimage.uniform_filter(grey, int(round(24 * 0.5 / mpp)) | 1)
    return (grey < local - 18) & (grey < 175) & (blue + 10 > red * 0.85)


def count_nuclei(rgb: np.ndarray, mpp: float) -> int:
    """Number of nucleus-sized dark blobs (area 8 .. 400 um^2)."""
    from scipy import ndimage

    mask = nuclei_mask(rgb, mpp)
    lab, n = ndimage.label(mask)
    if n == 0:
        return 0
    areas = np.bincount(lab.ravel())[1:] * mpp * mpp
    return int(np.sum((areas >= 8.0) & (areas <= 400.0)))


def slide_tile_stats(
    slide, mpp: float = 0.5, tile_um: float = 128.0, max_tiles: int = 400
) -> list[dict]:
    """`tile_stats` of tissue tiles of an open `Slide`, read at (about) `mpp`."""
    smpp = slide.mpp[0] if slide.mpp and slide.mpp[0] else mpp
    ds = mpp / smpp
    level = slide.best_level_for_downsample(max(ds, 1.0))
    lds = slide.level_downsamples[level]
    side = int(round(tile_um / mpp))
    read = int(round(side * ds / lds))
    step0 = int(round(side * ds))
    w, h = slide.dimensions
    out = []
    for y in range(0, h - step0 + 1, step0):
        for x in range(0, w - step0 + 1, step0):
            rgb = slide.read_region((x, y), level, (read, read))
            if read != side:
                from skimage.transform import resize

                rgb = (resize(rgb, (side, side), anti_aliasing=True) * 255).astype(np.uint8)
            s = tile_stats(rgb, mpp)
            if s["tissue_fraction"] >= 0.6:
                out.append(s)
            if len(out) >= max_tiles:
                return out
    return out
