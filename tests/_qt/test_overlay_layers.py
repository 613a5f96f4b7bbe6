"""Overlay layers made once and updated in place (real napari viewer); tiles out of the models'
domain drawn grey over the positivity."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from napari_histostain._qt.overlay_layers import OverlayLayers
from napari_histostain.engine.tiling import make_grid
from napari_histostain.plugin.clipped_maps import display_grid, layer_tiles, tile_values
from napari_histostain.results.maps import META_KEY, OUT_OF_DOMAIN, PredictionMaps


def _maps(slide, tile_mpp: float, value: float) -> PredictionMaps:
    grid = make_grid(slide, tile_mpp=tile_mpp, tile_size=224, min_tissue=0.25)
    maps = PredictionMaps.from_grid(grid, ["ki67"], "x.tif")
    maps.update("ki67", np.arange(len(grid)), np.full(len(grid), value))
    return maps


def test_second_run_reuses_layers_with_new_data_and_placement(make_napari_viewer, synth_slide):
    viewer = make_napari_viewer()
    overlays = OverlayLayers(viewer)
    first = _maps(synth_slide, 1.0, 0.2)
    kw = {"opacity": 0.5, "colormap": "viridis", "shown": "ki67"}
    shown = overlays.make_one(first, "ki67", "positivity", **kw)
    hidden = overlays.make_one(first, "ki67", "attention", **kw)
    assert shown.visible and not hidden.visible
    n_layers = len(viewer.layers)

    second = _maps(synth_slide, 2.0, 0.9)  # another grid: other shape, scale and values
    again = overlays.make_one(second, "ki67", "positivity", **kw)
    again_hidden = overlays.make_one(second, "ki67", "attention", **kw)
    assert again is shown and again_hidden is hidden and len(viewer.layers) == n_layers
    tiles = layer_tiles(again.data, again.metadata[META_KEY])
    np.testing.assert_array_equal(tiles, second.heatmap("ki67", "positivity"))
    placed = display_grid(second.lattice, second.slide_dimensions)
    np.testing.assert_allclose(again.scale, placed.scale)
    np.testing.assert_allclose(again.translate, placed.translate)
    # what napari shows is the new data
    shown_now = np.asarray(again._slice.image.view)
    assert shown_now.shape == placed.shape
    assert np.nanmax(shown_now) > 0.5
    assert overlays.show_only("ki67", colorbar=False) is again
    assert again.visible and not again.colorbar.visible
    overlays.show_only("ki67")
    assert again.colorbar.visible


def _predicted_maps(slide):
    from napari_histostain.engine.predict import predict_slide
    from napari_histostain.results.maps import PredictionMaps

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return PredictionMaps.from_prediction(predict_slide(slide, ("ki67",)))


def test_out_of_domain_tiles_are_grey_over_the_positivity(make_napari_viewer, synthetic_slide):
    from napari_histostain._qt.overlay_layers import OverlayLayers
    from napari_histostain.plugin.layers import OUT_OF_DOMAIN_GREY, OUT_OF_DOMAIN_LAYER

    viewer = make_napari_viewer()
    overlays = OverlayLayers(viewer)
    maps = _predicted_maps(
        synthetic_slide
    )  # nothing like the training tissue: every tile out of domain
    overlays.make(maps, ["ki67"], opacity=0.6, colormap="inferno", shown="ki67")
    overlays.refresh(maps)
    layer = viewer.layers[OUT_OF_DOMAIN_LAYER]
    names = [ly.name for ly in viewer.layers]
    assert names.index(OUT_OF_DOMAIN_LAYER) > names.index("Ki-67 positivity")  # drawn over it
    display = layer.metadata[META_KEY].get("display")
    assert np.nansum(tile_values(layer.data, maps.lattice, display)) == len(maps) and layer.visible
    assert np.allclose(layer.colormap.map(np.array([1.0]))[0], OUT_OF_DOMAIN_GREY)
    # a new run whose tiles are all in domain reuses the layer, now empty
    maps.markers["ki67"].in_domain[:] = 1.0
    fresh = _predicted_maps(synthetic_slide)
    fresh.markers["ki67"].in_domain[:] = 1.0
    overlays2 = OverlayLayers(viewer)
    overlays2.refresh(fresh)
    assert viewer.layers[OUT_OF_DOMAIN_LAYER] is layer
    assert np.isnan(layer.data).all()


def test_out_of_domain_layer_follows_a_new_runs_grid(make_napari_viewer, synthetic_slide):
    import dataclasses

    from napari_histostain._qt.overlay_layers import OverlayLayers
    from napari_histostain.plugin.layers import OUT_OF_DOMAIN_LAYER

    viewer = make_napari_viewer()
    overlays = OverlayLayers(viewer)
    first = _predicted_maps(synthetic_slide)
    overlays.refresh(first)
    layer = viewer.layers[OUT_OF_DOMAIN_LAYER]
    second = _predicted_maps(synthetic_slide)  # another run on a grid placed elsewhere
    second.lattice = dataclasses.replace(second.lattice, origin=(500.0, 300.0))
    overlays.refresh(second)
    clip = overlays.clipped[OUT_OF_DOMAIN]
    assert viewer.layers[OUT_OF_DOMAIN_LAYER] is layer and layer.data is clip.data
    assert clip.source is second.out_of_domain_heatmap()
    placed = display_grid(second.lattice, second.slide_dimensions)
    assert np.allclose(layer.translate, placed.translate)
    first_placed = display_grid(first.lattice, first.slide_dimensions)
    assert not np.allclose(layer.translate, first_placed.translate)


def test_maps_stop_at_the_slide_edge_and_show_each_tile_in_place(
    make_napari_viewer, synthetic_slide, tmp_path
):
    """The positivity and out-of-domain layers end inside the slide layer's extent (the tile grid
    overhangs it), and napari reports each tile's value at points inside that tile."""
    from napari_histostain.io.slide import open_slide
    from napari_histostain.plugin.clipped_maps import EDGE_TOLERANCE
    from napari_histostain.plugin.layers import OUT_OF_DOMAIN_LAYER
    from napari_histostain.plugin.reader import read_slide_layer

    viewer = make_napari_viewer()
    data, kwargs, _ = read_slide_layer(synthetic_slide)
    slide_layer = viewer.add_image(data, **kwargs)
    with open_slide(synthetic_slide) as slide:
        grid = make_grid(slide, tile_mpp=1.0, tile_size=224, min_tissue=0)
    maps = PredictionMaps.from_grid(grid, ["ki67"], str(synthetic_slide))
    values = np.linspace(0.05, 0.95, len(grid))
    maps.update("ki67", np.arange(len(grid)), values)
    maps.set_in_domain("ki67", np.arange(len(grid)), np.arange(len(grid)) % 2 == 0)
    overlays = OverlayLayers(viewer)
    overlays.make(maps, ["ki67"], opacity=0.6, colormap="ihc", shown="ki67")
    overlays.refresh(maps)
    pos, ood = viewer.layers["Ki-67 positivity"], viewer.layers[OUT_OF_DOMAIN_LAYER]
    h, w = slide_layer.data[0].shape[:2]
    s_top = np.asarray(slide_layer.data_to_world((-0.5, -0.5)))
    s_bottom = np.asarray(slide_layer.data_to_world((h - 0.5, w - 0.5)))
    tile_um = np.asarray(grid.lattice.scale)
    # the tile grid overhangs the slide by more than a tenth of a tile (what is clipped)
    overhang = np.asarray(grid.lattice.tile_centre_um(grid.n_rows - 1, grid.n_cols - 1))
    assert ((overhang + tile_um / 2) - s_bottom > tile_um / 10).any()
    for layer in (pos, ood):
        top = np.asarray(layer.data_to_world((-0.5, -0.5)))
        bottom = np.asarray(layer.data_to_world(np.asarray(layer.data.shape) - 0.5))
        np.testing.assert_allclose(top, s_top, atol=1e-6)
        assert (bottom <= s_bottom + 1e-6).all()
        assert (bottom >= s_bottom - EDGE_TOLERANCE * tile_um - 1e-6).all()
    # each tile's value where napari draws it: centre and near its corners, inside the slide
    for i, (r, c) in enumerate(grid.rowcol):
        centre = np.asarray(grid.lattice.tile_centre_um(r, c))
        for frac in ((0.0, 0.0), (-0.45, -0.45), (0.45, -0.45), (-0.45, 0.45), (0.45, 0.45)):
            p = centre + np.asarray(frac) * tile_um
            if (p > s_bottom - EDGE_TOLERANCE * tile_um).any():
                # past the slide (the overhang): nothing drawn there
                if (p > s_bottom + 1e-3).any():
                    assert pos.get_value(p, world=True) is None
                continue
            assert pos.get_value(p, world=True) == pytest.approx(values[i], rel=1e-6), (r, c)
            expect_grey = i % 2 == 1
            got = ood.get_value(p, world=True)
            assert (got == 1.0) if expect_grey else np.isnan(got), (r, c)
    # saving the clipped layer writes one value per tile, with or without the maps at hand
    from napari_histostain.plugin.writer import write_heatmap
    from napari_histostain.results.heatmap_tiff import read_heatmap

    for keep_maps in (True, False):
        entry = dict(pos.metadata[META_KEY])
        if not keep_maps:
            entry.pop("maps")
        meta = {"name": pos.name, "metadata": {META_KEY: entry}}
        path = tmp_path / f"pos{keep_maps}.heatmap.ome.tif"
        (written,) = write_heatmap(str(path), pos.data, meta)
        back, lattice, _ = read_heatmap(written)
        np.testing.assert_allclose(back, maps.heatmap("ki67", "positivity"), rtol=1e-6)
        assert lattice.shape == grid.lattice.shape
