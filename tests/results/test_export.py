"""Export round-trips: QuPath GeoJSON, CSV tile table, heatmap OME-TIFF, slide report."""

from __future__ import annotations

import csv
import json
import os
import uuid
from pathlib import Path

import numpy as np
import pytest
import shapely.geometry
import tifffile

from napari_histostain.engine.tiling import make_grid
from napari_histostain.io.atomic import OutputError
from napari_histostain.results.errors import ExportError
from napari_histostain.results.export import export_predictions
from napari_histostain.results.geojson import read_tiles_geojson, tiles_geojson
from napari_histostain.results.heatmap_tiff import physical_pixel_size, read_heatmap, write_heatmap
from napari_histostain.results.maps import PredictionMaps


@pytest.fixture()
def maps(synth_slide):
    grid = make_grid(synth_slide, tile_mpp=1.0, tile_size=224, min_tissue=0.25)
    m = PredictionMaps.from_grid(grid, ["ki67", "p53"], str(synth_slide.path))
    rng = np.random.default_rng(0)
    n = len(grid)
    for key in ("ki67", "p53"):
        att = rng.random(n).astype(np.float32)
        m.update(key, np.arange(n), rng.random(n), att / att.sum())
    m.set_slide_call("ki67", 0.83, "positive", 0.5, "whole slide")
    m.set_slide_call("p53", 0.12, "negative", 0.5, "whole slide")
    return m


def test_geojson_matches_tile_table(tmp_path, maps, synth_slide):
    paths = export_predictions(tmp_path, maps, slide=synth_slide)
    names = sorted(p.name for p in paths)
    assert "synthetic.ki67.tiles.geojson" in names and "synthetic.tiles.csv" in names
    assert "synthetic.ki67-positivity.heatmap.ome.tif" in names
    assert not list(tmp_path.glob(".*.part"))
    fc = json.loads((tmp_path / "synthetic.ki67.tiles.geojson").read_text())
    assert fc["type"] == "FeatureCollection"
    with open(tmp_path / "synthetic.tiles.csv", newline="") as fh:
        table = {int(r["tile"]): r for r in csv.DictReader(fh)}
    assert len(fc["features"]) == len(table) == len(maps)
    for f in fc["features"]:
        props = f["properties"]
        assert props["objectType"] == "tile"
        assert props["classification"]["name"] in ("Ki-67 positive", "Ki-67 negative")
        assert len(props["classification"]["color"]) == 3
        poly = shapely.geometry.shape(f["geometry"])
        assert poly.is_valid
        assert str(uuid.UUID(f["id"])) == f["id"]  # QuPath reads ids as UUIDs
        m = props["measurements"]
        assert set(props) == {"objectType", "name", "classification", "measurements"}
        assert all(isinstance(v, float) for v in m.values())  # QuPath: flat name -> number
        assert "probability" not in m  # slide-level numbers appear once, not per tile
        row = table[int(m["tile_id"])]
        assert (m["row"], m["col"]) == (float(row["row"]), float(row["col"]))
        assert m["tissue_fraction"] == pytest.approx(float(row["tissue"]), abs=1e-4)
        x, y = float(row["x"]), float(row["y"])
        assert poly.bounds[:2] == (x, y)
        w, h = synth_slide.dimensions
        t = maps.tile_px0
        clipped = (min(x + t, w) - x) * (min(y + t, h) - y)  # tiles end at the slide's edge
        assert poly.area == pytest.approx(clipped, rel=1e-9)
        assert poly.bounds[2] <= w and poly.bounds[3] <= h
        if x + t <= w and y + t <= h:
            # polygon centre (level-0 px) times mpp == tile centre in um (napari convention)
            cx, cy = poly.centroid.x - 0.5, poly.centroid.y - 0.5
            assert cx * synth_slide.mpp[0] == pytest.approx(float(row["x_um"]), abs=1e-3)
            assert cy * synth_slide.mpp[1] == pytest.approx(float(row["y_um"]), abs=1e-3)
        assert m["positivity"] == pytest.approx(float(row["ki67_positivity"]), rel=1e-5)
        assert m["attention"] == pytest.approx(float(row["ki67_attention"]), rel=1e-5)
    assert len({f["id"] for f in fc["features"]}) == len(fc["features"])
    assert fc["histostain"]["probability"] == pytest.approx(0.83)
    rep = json.loads((tmp_path / "synthetic.report.json").read_text())
    assert rep["markers"]["ki67"]["label"] == "positive"
    assert rep["tile_mpp"] == 1.0 and rep["tile_size"] == 224  # um/px of a tile, its side in px
    assert rep["tile_side_um"] == pytest.approx(224 * 1.0, rel=1e-9)
    assert 0 <= rep["markers"]["ki67"]["positive_fraction"] <= 1
    png = tmp_path / "synthetic.report.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_geojson_tiles_are_clipped_to_the_slide(synth_slide):
    grid = make_grid(synth_slide, tile_mpp=1.0, tile_size=224, min_tissue=0)
    w, h = synth_slide.dimensions
    assert grid.n_cols * grid.tile_px0 > w and grid.n_rows * grid.tile_px0 > h  # the grid overhangs
    m = PredictionMaps.from_grid(grid, ["ki67"], str(synth_slide.path))
    m.update("ki67", np.arange(len(grid)), np.full(len(grid), 0.7))
    polys = [shapely.geometry.shape(f["geometry"]) for f in tiles_geojson(m, "ki67")["features"]]
    union = shapely.union_all(polys)
    assert union.bounds == (0.0, 0.0, float(w), float(h))
    assert union.area == pytest.approx(w * h, rel=1e-9)  # the tiles cover the slide exactly
    assert sum(p.area for p in polys) == pytest.approx(w * h, rel=1e-9)  # without overlaps


def test_geojson_round_trip(tmp_path, maps):
    export_predictions(tmp_path, maps, what=["geojson"], markers=["ki67"])
    back = read_tiles_geojson(tmp_path / "synthetic.ki67.tiles.geojson")
    np.testing.assert_array_equal(
        back.heatmap("ki67", "positivity"), maps.heatmap("ki67", "positivity")
    )
    assert back.lattice == maps.lattice
    assert back.markers["ki67"].probability == pytest.approx(0.83)
    assert back.slide_dimensions == maps.slide_dimensions
    # every measurement is read back intact (bit for bit: float32 values survive JSON)
    np.testing.assert_array_equal(back.rowcol, maps.rowcol)
    np.testing.assert_array_equal(back.coords, maps.coords)
    np.testing.assert_array_equal(back.tissue_fraction, maps.tissue_fraction)
    for kind in ("positivity", "attention"):
        np.testing.assert_array_equal(back.values("ki67", kind), maps.values("ki67", kind))


def test_heatmap_ome_tiff_physical_size_and_round_trip(tmp_path, maps, synth_slide):
    path = tmp_path / "h.heatmap.ome.tif"
    write_heatmap(path, maps.heatmap("ki67", "positivity"), maps.lattice, {"marker": "ki67"})
    tile_um = maps.lattice.tile_px0 * synth_slide.mpp[0]
    assert physical_pixel_size(path) == pytest.approx((tile_um, tile_um))
    with tifffile.TiffFile(path) as tf:
        assert tf.is_ome
        page = tf.pages[0]
        assert page.dtype == np.float32
        assert page.is_tiled  # even a small heatmap is tiled ...
        levels = tf.series[0].levels  # ... and pyramidal
        h, w = page.shape
        assert [lev.shape for lev in levels] == [(h, w), ((h + 1) // 2, (w + 1) // 2)]
        xml = tifffile.xml2dict(tf.ome_metadata)["OME"]["Image"]["Pixels"]
        assert xml["PhysicalSizeXUnit"] == "µm" and xml["PhysicalSizeYUnit"] == "µm"
    arr, lattice, info = read_heatmap(path)
    assert lattice == maps.lattice and info["marker"] == "ki67"
    np.testing.assert_array_equal(arr, maps.heatmap("ki67", "positivity"))


def test_big_heatmap_is_pyramidal(tmp_path, maps):
    from napari_histostain.results.maps import TileLattice

    g = TileLattice((0.0, 0.0), 448.0, (0.25, 0.25), 700, 600)
    arr = np.random.default_rng(1).random((700, 600)).astype(np.float32)
    arr[:10] = np.nan
    path = write_heatmap(tmp_path / "big.heatmap.ome.tif", arr, g)
    with tifffile.TiffFile(path) as tf:
        levels = tf.series[0].levels
        assert [lev.shape for lev in levels] == [
            (700, 600),
            (350, 300),
            (175, 150),
            (88, 75),
            (44, 38),
        ]  # halved until one 64 px tile holds the level
        assert all(lev.keyframe.is_tiled for lev in levels)
        assert np.isnan(levels[1].asarray()[:5]).all()


def test_not_ours_and_nothing_to_export(tmp_path, synth_slide):
    (tmp_path / "a.geojson").write_text(json.dumps({"type": "FeatureCollection", "features": []}))
    with pytest.raises(ExportError, match="not a HistoStain"):
        read_tiles_geojson(tmp_path / "a.geojson")
    tifffile.imwrite(tmp_path / "b.ome.tif", np.zeros((4, 4), np.uint8), ome=True)
    with pytest.raises(ExportError, match="not a HistoStain"):
        read_heatmap(tmp_path / "b.ome.tif")
    grid = make_grid(synth_slide, tile_mpp=1.0, min_tissue=0.25)
    empty = PredictionMaps.from_grid(grid, ["ki67"])
    with pytest.raises(ExportError, match="run a prediction first"):
        export_predictions(tmp_path, empty)
    with pytest.raises(ExportError, match="no predictions for marker"):
        tiles_geojson(empty, "pdl1")


def test_read_only_destination_writes_nothing(tmp_path, maps, synth_slide):
    if hasattr(os, "geteuid") and os.geteuid() == 0:  # root ignores permissions: use sysfs
        out = Path("/sys/kernel")
        if not out.is_dir():
            pytest.skip("no read-only folder available as root")
        before = set(os.listdir(out))
        with pytest.raises(OutputError, match="read-only"):
            export_predictions(out, maps, slide=synth_slide)
        assert set(os.listdir(out)) == before
        return
    out = tmp_path / "ro"
    out.mkdir()
    out.chmod(0o555)
    try:
        with pytest.raises(OutputError, match="read-only"):
            export_predictions(out, maps, slide=synth_slide)
        assert list(out.iterdir()) == []
    finally:
        out.chmod(0o755)


def test_failure_midway_rolls_back(tmp_path, maps, synth_slide):
    # the report JSON path is a folder: the last write fails, earlier files must be removed
    (tmp_path / "synthetic.report.json").mkdir()
    with pytest.raises(OutputError, match="Nothing was written"):
        export_predictions(tmp_path, maps, slide=synth_slide)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["synthetic.report.json"]


def test_export_a_real_prediction(tmp_path, synth_slide):
    from napari_histostain.engine.model_files import seeded_model
    from napari_histostain.engine.predict import PredictOptions, predict_slide
    from napari_histostain.results.export import export_prediction
    from napari_histostain.results.tile_table import prediction_values, tile_rows

    options = PredictOptions(models={"p53": seeded_model("p53", seed=5)})
    pred = predict_slide(synth_slide, ["p53"], options, region=(0, 0, 1400, 1000))
    paths = export_prediction(tmp_path, pred, slide=synth_slide, what=["geojson", "csv", "report"])
    fc = json.loads((tmp_path / "synthetic.p53.tiles.geojson").read_text())
    assert len(fc["features"]) == len(pred.grid)
    by_id = {int(f["properties"]["measurements"]["tile_id"]): f for f in fc["features"]}
    for i, row in enumerate(tile_rows(pred.grid, prediction_values(pred.markers))):
        f = by_id[i]
        assert shapely.geometry.shape(f["geometry"]).bounds[:2] == (row["x"], row["y"])
        assert f["properties"]["measurements"]["positivity"] == pytest.approx(row["p53_positivity"])
        assert f["properties"]["measurements"]["attention"] == pytest.approx(row["p53_attention"])
    rep = json.loads((tmp_path / "synthetic.report.json").read_text())
    assert rep["markers"]["p53"]["probability"] == pytest.approx(pred.markers["p53"].probability)
    assert rep["markers"]["p53"]["scope"] == "region"
    assert len(paths) == 4
