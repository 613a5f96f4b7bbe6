"""Overlay layers in a real viewer: tiles out of the models' domain are drawn grey, over the
positivity, and a later run without such tiles clears them."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

pytest.importorskip("pytestqt")
pytestmark = pytest.mark.gui


def _maps(slide):
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
    maps = _maps(synthetic_slide)  # nothing like the training tissue: every tile out of domain
    overlays.make(maps, ["ki67"], opacity=0.6, colormap="inferno", shown="ki67")
    overlays.refresh(maps)
    layer = viewer.layers[OUT_OF_DOMAIN_LAYER]
    names = [ly.name for ly in viewer.layers]
    assert names.index(OUT_OF_DOMAIN_LAYER) > names.index("Ki-67 positivity")  # drawn over it
    assert np.nansum(layer.data) == len(maps) and layer.visible
    assert np.allclose(layer.colormap.map(np.array([1.0]))[0], OUT_OF_DOMAIN_GREY)
    # a new run whose tiles are all in domain reuses the layer, now empty
    maps.markers["ki67"].in_domain[:] = 1.0
    fresh = _maps(synthetic_slide)
    fresh.markers["ki67"].in_domain[:] = 1.0
    overlays2 = OverlayLayers(viewer)
    overlays2.refresh(fresh)
    assert viewer.layers[OUT_OF_DOMAIN_LAYER] is layer
    assert np.isnan(layer.data).all()
