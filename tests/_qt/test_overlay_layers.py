"""Overlay layers made once and updated in place (real napari viewer); tiles out of the models'
domain drawn grey over the positivity."""

from __future__ import annotations

import warnings

import numpy as np

from napari_histostain._qt.overlay_layers import OverlayLayers
from napari_histostain.engine.tiling import make_grid
from napari_histostain.results.maps import PredictionMaps


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
    np.testing.assert_array_equal(again.data, second.heatmap("ki67", "positivity"))
    np.testing.assert_allclose(again.scale, second.lattice.scale)
    np.testing.assert_allclose(again.translate, second.lattice.translate)
    # what napari shows is the new data
    shown_now = np.asarray(again._slice.image.view)
    assert shown_now.shape == second.heatmap("ki67", "positivity").shape
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
    assert np.nansum(layer.data) == len(maps) and layer.visible
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
    assert (
        viewer.layers[OUT_OF_DOMAIN_LAYER] is layer and layer.data is second.out_of_domain_heatmap()
    )
    assert np.allclose(layer.translate, second.lattice.translate)
    assert not np.allclose(layer.translate, first.lattice.translate)
