"""Writer and drag-and-drop reader contributions: overlays saved and dropped back land in place."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import tifffile

from napari_histostain.engine.tiling import make_grid
from napari_histostain.io.slide import open_slide
from napari_histostain.plugin.layers import overlay_layer_kwargs
from napari_histostain.plugin.prediction_reader import get_prediction_reader
from napari_histostain.plugin.writer import layer_maps, write_heatmap, write_tiles_geojson
from napari_histostain.results.maps import PredictionMaps

PLUGIN = "napari-histostain"


@pytest.fixture(scope="module")
def maps(synthetic_slide):
    with open_slide(synthetic_slide) as s:
        grid = make_grid(s, tile_mpp=0.9, tile_size=224, min_tissue=0.25)
    m = PredictionMaps.from_grid(grid, ["pdl1"], str(synthetic_slide))
    rng = np.random.default_rng(2)
    att = rng.random(len(grid))
    m.update("pdl1", np.arange(len(grid)), rng.random(len(grid)), att / att.sum())
    m.set_slide_call("pdl1", 0.7, "positive", 0.5, "whole slide")
    return m


@pytest.mark.gui
def test_save_and_drop_back_in_place(make_napari_viewer, maps, tmp_path):
    import napari

    viewer = make_napari_viewer()
    layers = {
        k: viewer.add_image(maps.heatmap("pdl1", k), **overlay_layer_kwargs(maps, "pdl1", k))
        for k in ("positivity", "attention")
    }
    hm = tmp_path / "case.pdl1-positivity.heatmap.ome.tif"
    gj = tmp_path / "case.pdl1.tiles.geojson"
    assert napari.save_layers(str(hm), [layers["positivity"]], plugin=PLUGIN) == [str(hm)]
    assert napari.save_layers(str(gj), [layers["attention"]], plugin=PLUGIN) == [str(gj)]
    back = viewer.open(hm, plugin=PLUGIN)
    assert len(back) == 1 and back[0].name.startswith("PD-L1 positivity")
    np.testing.assert_array_equal(back[0].data, layers["positivity"].data)
    rc = maps.rowcol
    np.testing.assert_allclose(
        [back[0].data_to_world(r) for r in rc],
        [layers["positivity"].data_to_world(r) for r in rc],
        atol=1e-9,
    )
    dropped = viewer.open(gj, plugin=PLUGIN)
    assert {ly.name.split(" [")[0] for ly in dropped} == {"PD-L1 positivity", "PD-L1 attention"}
    for ly in dropped:
        kind = ly.name.split()[1]
        np.testing.assert_allclose(ly.data, layers[kind].data, rtol=1e-6)
        np.testing.assert_allclose(ly.scale, layers[kind].scale)
        np.testing.assert_allclose(ly.translate, layers[kind].translate)
    # a dropped-back heatmap can be saved again as GeoJSON (tiles rebuilt from the data)
    again = tmp_path / "again.geojson"
    napari.save_layers(str(again), [back[0]], plugin=PLUGIN)
    feats = json.loads(again.read_text())["features"]
    assert len(feats) == len(maps)


def test_writers_headless(maps, tmp_path):
    kw = overlay_layer_kwargs(maps, "pdl1", "positivity")
    meta = {
        "name": kw["name"],
        "scale": kw["scale"],
        "translate": kw["translate"],
        "metadata": kw["metadata"],
    }
    data = maps.heatmap("pdl1", "positivity")
    out = write_heatmap(str(tmp_path / "a.heatmap.ome.tif"), data, meta)
    with tifffile.TiffFile(out[0]) as tf:
        assert tf.is_ome
    gj = write_tiles_geojson(str(tmp_path / "a.geojson"), data, meta)
    fc = json.loads(Path(gj[0]).read_text())
    assert fc["features"][0]["properties"]["objectType"] == "tile"
    # a plain layer is written in its own units; GeoJSON needs a HistoStain overlay
    plain = write_heatmap(
        str(tmp_path / "p.ome.tif"),
        np.ones((3, 4)),
        {"name": "x", "scale": (2.0, 2.0), "translate": (1.0, 1.0), "metadata": {}},
    )
    with tifffile.TiffFile(plain[0]) as tf:
        px = tifffile.xml2dict(tf.ome_metadata)["OME"]["Image"]["Pixels"]
    assert float(px["PhysicalSizeX"]) == 2.0
    from napari_histostain.errors import HistostainError

    with pytest.raises(HistostainError, match="not a HistoStain overlay"):
        layer_maps(np.ones((2, 2)), {"name": "x", "metadata": {}})


def test_reader_ignores_foreign_files(tmp_path):
    other = tmp_path / "qupath.geojson"
    other.write_text(json.dumps({"type": "FeatureCollection", "features": []}))
    assert get_prediction_reader(str(other)) is None
    plain = tmp_path / "x.heatmap.ome.tif"
    tifffile.imwrite(plain, np.zeros((8, 8), np.float32), ome=True)
    assert get_prediction_reader(str(plain)) is None
    assert get_prediction_reader(str(tmp_path / "missing.geojson")) is None
    assert get_prediction_reader([str(other), str(plain)]) is None
