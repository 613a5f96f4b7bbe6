"""The field's own nucleus size (`nucleus_scale`): measured on drawn discs of known radius."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest
from skimage.draw import disk

from napari_histostain.ihc import IHCError, IHCParams
from napari_histostain.ihc.nucleus_scale import field_nucleus_radius, with_field_scale


def discs(radius: int, spacing: float = 3.0, size: int = 320, od: float = 0.6) -> np.ndarray:
    """A stain image of discs of `radius` px on a faint background, centres `spacing` radii apart
    with some jitter (a field of nuclei of one size)."""
    rng = np.random.default_rng(radius)
    image = np.full((size, size), 0.05)
    step = int(spacing * radius)
    for y in range(radius, size - radius, step):
        for x in range(radius, size - radius, step):
            jy, jx = rng.integers(-radius // 4, radius // 4 + 1, 2)
            image[disk((y + jy, x + jx), radius, shape=image.shape)] = od * rng.uniform(0.7, 1.0)
    return image


@pytest.mark.parametrize("radius", [6, 14])
def test_radius_of_drawn_discs(radius):
    """The median granulometry radius is the drawn discs' radius (within 20 %)."""
    found = field_nucleus_radius(discs(radius), max_radius_px=40)
    assert found == pytest.approx(radius, rel=0.2)


def test_two_sizes_and_a_flat_image():
    small, large = (field_nucleus_radius(discs(r), max_radius_px=40) for r in (6, 14))
    assert large > 1.8 * small
    assert math.isnan(field_nucleus_radius(np.full((64, 64), 0.3), max_radius_px=20))
    with pytest.raises(ValueError):
        field_nucleus_radius(discs(6), max_radius_px=0)


def test_detection_radius_follows_the_field():
    """With `nucleus_scale="field"` the detection radius follows the field's nuclei, within half
    and twice the preset; "fixed" (the default) leaves it alone."""
    mpp = 0.25
    params = replace(IHCParams(), nucleus_radius_um=3.5, nucleus_scale="field")
    small = with_field_scale(params, discs(10), mpp).nucleus_radius_um
    large = with_field_scale(params, discs(20, size=400), mpp).nucleus_radius_um
    assert small == pytest.approx(params.nucleus_scale_factor * 10 * mpp, rel=0.2)
    assert large == pytest.approx(params.nucleus_scale_factor * 20 * mpp, rel=0.2)
    assert with_field_scale(IHCParams(), discs(20), mpp) == IHCParams()
    tiny = with_field_scale(replace(params, nucleus_radius_um=8.0), discs(6), mpp)
    assert tiny.nucleus_radius_um == pytest.approx(4.0)  # clipped at half the preset
    with pytest.raises(IHCError, match="nucleus_scale"):
        with_field_scale(replace(params, nucleus_scale="tile"), discs(6), mpp)


def test_seeds_mode_and_large_nuclei_seeded_once():
    """A field of large round nuclei (radius 6 um) read with a preset made for nuclei a third that
    size (2 um): seeded at the field's own size ("field", "seeds"), each nucleus is found once; at
    the fixed radius each is split into several."""
    from napari_histostain.ihc.nuclei import quantify_tile
    from napari_histostain.ihc.params import with_detection

    mpp, radius = 0.25, 24
    od = discs(radius, spacing=3.2, size=360, od=0.9)
    n_drawn = len(range(radius, 360 - radius, int(3.2 * radius))) ** 2
    hema_rgb = np.array([0.65, 0.70, 0.29])  # standard hematoxylin OD direction
    rgb = (255 * 10 ** (-od[..., None] * hema_rgb / np.linalg.norm(hema_rgb))).astype(np.uint8)
    base = replace(with_detection(IHCParams(), "real-fields"), nucleus_radius_um=2.0, cells="all")
    found = {
        mode: len(quantify_tile(rgb, mpp, params=replace(base, nucleus_scale=mode)).nuclei)
        for mode in ("fixed", "field", "seeds")
    }
    assert found["field"] == n_drawn
    assert found["seeds"] == n_drawn
    assert found["fixed"] > 2 * n_drawn
