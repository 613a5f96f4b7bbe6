"""Per-tile heatmaps drawn clipped to the slide: never past its edge, each tile's value in place."""

from __future__ import annotations

import numpy as np
import pytest

from napari_histostain.engine.tiling import TileLattice
from napari_histostain.plugin.clipped_maps import (
    EDGE_TOLERANCE,
    MAX_PIXELS,
    clipped_map,
    display_grid,
    pixels_per_tile,
    tile_values,
)

#: CMU-1-Small-Region: 2220 x 2967 px at 0.499 um/px, 224 um tiles (the map overhung by 88 um).
SMALL = ((2220, 2967), 0.499, 224.0)
#: CMU-1: 46000 x 32914 px at 0.499 um/px.
CMU1 = ((46000, 32914), 0.499, 224.0)


def _lattice(wh, mpp, tile_um):
    t = tile_um / mpp
    n_rows, n_cols = int(np.ceil(wh[1] / t)), int(np.ceil(wh[0] / t))
    return TileLattice((0.0, 0.0), t, (mpp, mpp), n_rows, n_cols)


def _slide_box_um(wh, mpp):
    """The slide's world box (napari pixel centres: level-0 pixel i spans [i - 0.5, i + 0.5])."""
    return (-0.5 * mpp, -0.5 * mpp), ((wh[1] - 0.5) * mpp, (wh[0] - 0.5) * mpp)


@pytest.mark.parametrize("inside", np.linspace(0.01, 0.999, 97))
def test_pixels_per_tile_never_pass_the_edge_and_end_within_the_tolerance(inside):
    k, kept = pixels_per_tile(float(inside), 32)
    assert kept / k <= inside + 1e-12
    assert inside - kept / k <= EDGE_TOLERANCE + 1e-12
    # the smallest such k: one fewer pixel per tile would end too far from the edge
    if k > 1:
        k1 = k - 1
        assert inside - np.floor(inside * k1 + 1e-9) / k1 > EDGE_TOLERANCE


@pytest.mark.parametrize("slide", [SMALL, CMU1], ids=["CMU-1-Small-Region", "CMU-1"])
def test_display_extent_stops_at_the_slide_edge(slide):
    wh, mpp, tile_um = slide
    lat = _lattice(wh, mpp, tile_um)
    (r0, c0), (r1, c1) = _slide_box_um(wh, mpp)
    # the per-tile heatmap overhangs the slide (what this fixes)
    assert lat.n_rows * tile_um + r0 > r1 + 10 or lat.n_cols * tile_um + c0 > c1 + 10
    g = display_grid(lat, wh)
    (top, left), (bottom, right) = g.extent_um()
    assert (top, left) == pytest.approx((r0, c0))
    tol_um = EDGE_TOLERANCE * tile_um
    assert r1 - tol_um - 1e-6 <= bottom <= r1 + 1e-6
    assert c1 - tol_um - 1e-6 <= right <= c1 + 1e-6
    assert g.shape[0] * g.shape[1] <= MAX_PIXELS


def test_a_huge_grid_gets_fewer_pixels_per_tile():
    lat = _lattice((200_000, 150_000), 0.25, 56.0)  # ~670 x 890 tiles
    g = display_grid(lat, (200_000, 150_000))
    assert g.shape[0] * g.shape[1] <= MAX_PIXELS
    (_, _), (bottom, right) = g.extent_um()
    (_, _), (r1, c1) = _slide_box_um((200_000, 150_000), 0.25)
    assert bottom <= r1 + 1e-6 and right <= c1 + 1e-6


def test_unknown_slide_size_or_a_grid_inside_the_slide_shows_the_heatmap_itself():
    lat = _lattice(*SMALL[:1], *SMALL[1:])
    src = np.full(lat.shape, np.nan, np.float32)
    assert clipped_map(src, lat, (0, 0)).data is src
    inside = TileLattice((0.0, 0.0), 100.0, (0.5, 0.5), 3, 4)
    clip = clipped_map(np.zeros((3, 4), np.float32), inside, (450, 320))
    assert clip.grid.identity and clip.grid.scale == inside.scale
    assert clip.grid.translate == pytest.approx(inside.translate)


def test_each_tile_value_shows_at_its_place_and_only_changed_tiles_are_rewritten():
    wh, mpp, tile_um = SMALL
    lat = _lattice(wh, mpp, tile_um)
    src = np.full(lat.shape, np.nan, np.float32)
    clip = clipped_map(src, lat, wh)
    assert np.isnan(clip.data).all() and not clip.sync()
    rng = np.random.default_rng(0)
    rc = np.array([(r, c) for r in range(lat.n_rows) for c in range(lat.n_cols)])
    src[rc[:, 0], rc[:, 1]] = rng.random(len(rc)).astype(np.float32)
    assert clip.sync()
    scale, translate = np.array(clip.grid.scale), np.array(clip.grid.translate)
    (_, _), (r1, c1) = _slide_box_um(wh, mpp)
    for r, c in rc:
        # world points inside tile (r, c) and inside the slide, as napari places the display array
        centre = np.asarray(lat.tile_centre_um(r, c))
        for frac in ((0.0, 0.0), (-0.45, -0.45), (0.45, 0.45), (0.3, -0.2)):
            p = centre + np.array(frac) * tile_um
            if p[0] > r1 - EDGE_TOLERANCE * tile_um or p[1] > c1 - EDGE_TOLERANCE * tile_um:
                continue
            i, j = np.floor((p - translate) / scale + 0.5).astype(int)
            assert clip.data[i, j] == src[r, c], (r, c, frac)
    before = clip.data.copy()
    src[2, 1] = 0.123
    assert clip.sync() and not clip.sync()
    diff = np.argwhere(clip.data != before)
    ks = clip.grid.k
    assert len(diff) and (diff // np.array(ks) == (2, 1)).all()  # only tile (2, 1)'s pixels
    back = tile_values(clip.data, lat, clip.grid.to_dict())
    np.testing.assert_array_equal(back, src)
