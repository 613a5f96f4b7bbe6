"""PD-L1 membranes: is a cell's membrane stained all round?

A cell's membrane lies at the edge of its cytoplasm, at a distance from the nucleus that varies
from cell to cell (small nuclei sit in more cytoplasm), so it is searched over the whole cell, not
on a fixed-width ring: each nucleus' *territory* is the tissue nearer to it than to any other
nucleus, up to `membrane_reach_um` beyond its edge (`skimage.segmentation.expand_labels`: where
cells touch, territories meet half-way, as cell borders do).

Around each nucleus the territory is cut into `membrane_sectors` angular sectors; a sector is
stained when any pixel of it has DAB >= `membrane_od` (its membrane, wherever it lies; the outer
`membrane_nucleus_rim_um` of the nucleus' own region is searched too, as a nucleus' region can take
in stained cytoplasm up to the membrane). The cell's
*coverage* is its stained share of sectors (those the territory reaches). A positive cell's own
membrane is a closed ring, so it stains every sector; a negative cell between positive neighbours
sees their membranes only where it borders them (the membranes are shared), so its coverage is the
share of its border held by positive cells. Asking for most of the ring (`membrane_coverage`)
tells the two apart except for a negative cell walled in by positive ones on all sides.
"""

from __future__ import annotations

import math

import numpy as np

from .params import IHCParams


def membrane_coverage(
    labels: np.ndarray,
    dab: np.ndarray,
    centroid_yx: np.ndarray,
    mpp: float,
    params: IHCParams = IHCParams(),
    hema: np.ndarray | None = None,
) -> np.ndarray:
    """(n,) share of each nucleus' territory sectors holding a stained membrane pixel (0 with no
    territory); `labels` are nuclei 1..n, `centroid_yx` their (n, 2) centres in pixels."""
    from scipy import ndimage as ndi
    from skimage.segmentation import expand_labels

    n = len(centroid_yx)
    if n == 0:
        return np.zeros(0)
    territory = expand_labels(labels, distance=params.membrane_reach_um / mpp)
    # the outer rim of a nucleus' region is searched too: where the cytoplasm is stained, a
    # nucleus' region may have grown up to its membrane
    depth = ndi.distance_transform_edt(labels > 0)
    ring = (territory > 0) & (depth <= params.membrane_nucleus_rim_um / mpp)
    yy, xx = np.nonzero(ring)
    cell = territory[yy, xx] - 1
    centre = np.nan_to_num(np.asarray(centroid_yx, np.float64))
    angle = np.arctan2(yy - centre[cell, 0], xx - centre[cell, 1])
    k = int(params.membrane_sectors)
    sector = np.minimum(((angle + math.pi) / (2 * math.pi) * k).astype(np.int64), k - 1)
    flat = cell * k + sector
    present = np.bincount(flat, minlength=n * k).reshape(n, k) > 0
    stained = dab[yy, xx] >= params.membrane_od
    if hema is not None:  # on a nucleus' rim, only brown pixels: not hematoxylin seen as DAB
        stained &= (labels[yy, xx] == 0) | (dab[yy, xx] >= hema[yy, xx])
    hit = np.bincount(flat, stained.astype(np.float64), minlength=n * k).reshape(n, k) > 0
    n_present = present.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n_present > 0, hit.sum(axis=1) / np.maximum(n_present, 1), 0.0)
