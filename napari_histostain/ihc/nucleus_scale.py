"""The nucleus size of one field, measured from its own stain (a granulometry) before nuclei are found.

Tumour nuclei differ several-fold in size between fields (small pale nuclei of a low-grade tumour,
giant nuclei of a high-grade one), so a detection run at one fixed expected nucleus radius splits
large nuclei into several seeds and misses or merges small ones. `field_nucleus_radius` measures the
field's own nucleus size as the median of its grey-level granulometry (Matheron's pattern spectrum):
the stain image is opened (skimage `opening`) with discs of growing radius, and the radius that
removes half of the stain standing out at the largest radius tried is the size of the typical stained
object - nuclei, the objects that stand out of a Ki-67 field. `with_field_scale` sets the detection's
`nucleus_radius_um` (seeds, splitting, background and size limits) to it.
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import TYPE_CHECKING

import numpy as np

from .errors import IHCError

if TYPE_CHECKING:
    from .params import IHCParams

#: `IHCParams.nucleus_scale`: the preset radius, the field's for all of the detection, for its seeds
NUCLEUS_SCALES = ("fixed", "field", "seeds")


def field_nucleus_radius(image: np.ndarray, max_radius_px: float, *, steps: int = 16) -> float:
    """Median object radius (px) of a stain density `image`, by grey-level granulometry: `image`
    opened by discs of radius up to `max_radius_px` (in `steps` even steps), the radius at which the
    openings have taken away half of what the largest one takes away (linear interpolation). NaN
    when nothing stands out (a flat image).

    The image is shrunk first (block means, skimage `downscale_local_mean`) so that one step is one
    pixel: sizes are unchanged, and the openings by large discs take a fraction of the time; the discs
    are decomposed into a sequence of small footprints (skimage `disk(..., decomposition=
    "sequence")`, a close approximation of a disc) - about 7x quicker again."""
    from skimage.morphology import disk, opening
    from skimage.transform import downscale_local_mean

    if not max_radius_px > 0 or steps < 2:
        raise ValueError(f"need max_radius_px > 0 and steps >= 2, got {max_radius_px}, {steps}")
    factor = max(1, int(max_radius_px / steps))
    small = downscale_local_mean(np.asarray(image, np.float64), (factor, factor))
    radii = np.linspace(0.0, max_radius_px / factor, steps + 1)
    volume = np.array(
        [small.sum()]
        + [opening(small, disk(int(round(r)), decomposition="sequence")).sum() for r in radii[1:]]
    )
    removed = volume[0] - volume
    if not removed[-1] > 0:
        return math.nan
    return float(np.interp(0.5, removed / removed[-1], radii) * factor)


def with_field_scale(params: IHCParams, signal: np.ndarray, mpp: float) -> IHCParams:
    """`params` with `nucleus_radius_um` set from the field's own nucleus size when `nucleus_scale` is
    "field" or "seeds": `nucleus_scale_factor` x `field_nucleus_radius` of the log-compressed stain (as the
    blob seeds see it), searched up to `nucleus_scale_max` x the preset radius and kept within half
    and twice it; unchanged when nothing stands out."""
    if params.nucleus_scale not in NUCLEUS_SCALES:
        raise IHCError(f"nucleus_scale must be one of {', '.join(NUCLEUS_SCALES)}")
    if params.nucleus_scale == "fixed":
        return params
    preset_px = params.nucleus_radius_um / mpp
    compressed = np.log1p(np.minimum(signal, params.blob_max_od) / params.blob_od)
    radius_px = field_nucleus_radius(compressed, params.nucleus_scale_max * preset_px)
    if not math.isfinite(radius_px):
        return params
    radius_px = float(
        np.clip(params.nucleus_scale_factor * radius_px, preset_px / 2, preset_px * 2)
    )
    return replace(params, nucleus_radius_um=radius_px * mpp)
