"""napari sample data: simulated cases generated once into the cache, then reused."""

from __future__ import annotations

import numpy as np
import pytest


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("NAPARI_HISTOSTAIN_CACHE", str(tmp_path))
    return tmp_path


def test_sample_layers_generated_once_and_reused(cache):
    from napari_histostain.plugin.sample_data import sample_case_paths, simulated_pdl1_case

    layers = simulated_pdl1_case()
    assert len(layers) == 2
    he_path, ihc_path = sample_case_paths("pdl1")
    mtime = he_path.stat().st_mtime_ns
    for (data, kwargs, kind), path in zip(layers, (he_path, ihc_path)):
        assert kind == "image"
        assert kwargs["rgb"] and kwargs["multiscale"]
        assert kwargs["scale"] == pytest.approx((0.5, 0.5), rel=1e-3)
        assert kwargs["metadata"]["slide_path"] == str(path)
        assert data[0].shape == (3072, 3072, 3)
        tile = np.asarray(data[0][1400:1528, 1400:1528])
        assert tile.dtype == np.uint8 and tile.std() > 3
    assert layers[0][1]["name"] != layers[1][1]["name"]
    again = simulated_pdl1_case()
    assert he_path.stat().st_mtime_ns == mtime  # reused, not simulated again
    assert again[1][1]["metadata"]["slide_path"] == str(ihc_path)


def test_open_sample_in_viewer(cache, make_napari_viewer):
    viewer = make_napari_viewer()
    viewer.open_sample("napari-histostain", "simulated_ki67")
    assert len(viewer.layers) == 2
    he, ihc = viewer.layers
    assert he.multiscale and he.rgb and he.metadata["slide_path"].endswith("_HE.tiff")
    assert ihc.metadata["slide_path"].endswith("_ki67.tiff")
    assert tuple(he.scale) == pytest.approx((0.5, 0.5), rel=1e-3)
