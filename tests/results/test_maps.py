"""Heatmap lattice and the per-tile result accumulator (headless)."""

from __future__ import annotations

import numpy as np
import pytest

from napari_histostain.engine.tiling import make_grid
from napari_histostain.plugin.layers import contrast_limits, overlay_layer_kwargs, tissue_mask_layer
from napari_histostain.results.colours import colour_ramp
from napari_histostain.results.maps import PredictionMaps, heatmap, softmax_over_finite


@pytest.mark.parametrize("tile_mpp", [1.0, 0.9, 2.3])
def test_heatmap_pixel_centres_are_tile_centres(synth_slide, tile_mpp):
    grid = make_grid(synth_slide, tile_mpp=tile_mpp, tile_size=224, min_tissue=0.25)
    assert len(grid) > 0
    g = grid.lattice
    assert g.origin == (0.0, 0.0)
    # napari: world = translate + index * scale for pixel centres
    world = np.asarray(g.translate) + grid.rowcol * np.asarray(g.scale)
    # tiles coords are rounded to whole level-0 px: at most half a level-0 pixel off
    np.testing.assert_allclose(world, grid.centres_um(), atol=0.5 * synth_slide.mpp[0] + 1e-9)
    if float(grid.tile_px0).is_integer():
        np.testing.assert_allclose(world, grid.centres_um(), atol=1e-9)
    mpp_x, mpp_y = synth_slide.mpp
    np.testing.assert_allclose(g.scale, (grid.tile_px0 * mpp_y, grid.tile_px0 * mpp_x))


def test_world_to_rowcol_inverts_centres(synth_slide):
    grid = make_grid(synth_slide, tile_mpp=1.0, min_tissue=0.25)
    g = grid.lattice
    for i in range(len(grid)):
        c = grid.centres_um()[i]
        # a point a third of a tile away from the centre still lands on the tile
        assert g.world_to_rowcol(c + np.asarray(g.scale) / 3) == tuple(grid.rowcol[i])
    maps = PredictionMaps.from_grid(grid, ["ki67"], "x.tif")
    assert maps.tile_at(grid.centres_um()[3]) == 3
    assert maps.tile_at((-1e6, -1e6)) is None


def test_maps_stream_updates_in_place(synth_slide):
    grid = make_grid(synth_slide, tile_mpp=1.0, min_tissue=0.25)
    maps = PredictionMaps.from_grid(grid, ["ki67", "p53"], "x.tif")
    hm = maps.heatmap("ki67", "positivity")
    assert hm.shape == (grid.n_rows, grid.n_cols) and np.isnan(hm).all()
    maps.update("ki67", [0, 2], [0.2, 0.9], [0.4, 0.6])
    assert maps.heatmap("ki67", "positivity") is hm  # same array object, updated in place
    r, c = grid.rowcol[2]
    assert hm[r, c] == pytest.approx(0.9)
    assert np.isfinite(hm).sum() == 2
    # outside tissue / not computed stays NaN (transparent)
    assert maps.done.sum() == 2
    assert maps.summary()["ki67"]["tiles_computed"] == 2
    assert np.isnan(maps.summary()["p53"]["positive_fraction"])
    w = grid.tissue_fraction[[0, 2]]
    assert maps.positive_fraction("ki67", 0.5) == pytest.approx(w[1] / w.sum())


def test_attention_normalised_over_tiles_seen(synth_slide):
    grid = make_grid(synth_slide, tile_mpp=1.0, min_tissue=0.25)
    maps = PredictionMaps.from_grid(grid, ["ki67"])
    maps.update("ki67", [0, 1], [0.1, 0.2], attention_logit=[0.0, 0.0])
    att = maps.markers["ki67"].attention
    assert np.nansum(att) == pytest.approx(1.0) and att[0] == pytest.approx(0.5)
    maps.update("ki67", [2, 3], [0.1, 0.2], attention_logit=[0.0, np.log(2.0)])
    assert np.nansum(att) == pytest.approx(1.0) and att[3] == pytest.approx(0.4)
    assert np.isnan(softmax_over_finite(np.array([np.nan], np.float32))).all()


def test_layer_kwargs_and_colours(synth_slide):
    grid = make_grid(synth_slide, tile_mpp=1.0, min_tissue=0.25)
    maps = PredictionMaps.from_grid(grid, ["pdl1"], "x.tif")
    maps.update("pdl1", [0, 1], [0.3, 0.7], [0.02, 0.05])
    kw = overlay_layer_kwargs(maps, "pdl1", "attention")
    assert kw["name"] == "PD-L1 attention"
    assert kw["contrast_limits"] == [0.0, pytest.approx(0.05)]
    assert kw["metadata"]["histostain"]["maps"] is maps
    cmap = kw["colormap"]
    assert np.asarray(cmap.nan_color)[3] == 0  # NaN (no tile) is transparent
    assert contrast_limits(np.array([np.nan]), "attention") == [0.0, 1.0]
    rgb = colour_ramp(np.array([0.0, 1.0]))
    assert rgb.shape == (2, 3) and rgb[0, 2] > rgb[0, 0] and rgb[1, 0] > rgb[1, 2]
    assert (
        np.isnan(heatmap(maps.lattice, grid.rowcol[:1], [0.5])).sum()
        == grid.n_rows * grid.n_cols - 1
    )


def test_tissue_mask_layer_alignment():
    mask = np.zeros((4, 5), bool)
    mask[1, 2] = True
    data, kw = tissue_mask_layer(mask, 16.0, (0.5, 0.5))
    # mask px (1, 2) covers level-0 px rows [16, 32): centre 23.5 px -> 11.75 um
    centre = np.asarray(kw["translate"]) + np.array([1, 2]) * np.asarray(kw["scale"])
    np.testing.assert_allclose(centre, [23.5 * 0.5, 39.5 * 0.5])
    assert data.dtype == np.uint8
