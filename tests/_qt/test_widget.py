"""The prediction dock widget with a real napari viewer (run under xvfb-run)."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

pytest.importorskip("pytestqt")
pytestmark = pytest.mark.gui

TIMEOUT_MS = 90_000


def _tiles(layer):
    """The per-tile heatmap an overlay layer shows (drawn finer, clipped to the slide)."""
    from napari_histostain.plugin.clipped_maps import layer_tiles

    return layer_tiles(layer.data, layer.metadata["histostain"])


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    """A Ki-67 model file written with ENGINE's save function from a seeded SlideEncoder."""
    from napari_histostain.engine.model_files import save_model_file, seeded_model

    net, cfg = seeded_model("ki67", seed=3)
    return save_model_file(tmp_path_factory.mktemp("models") / "ki67-seeded.pt", net, cfg)


@pytest.fixture()
def widget_on_slide(make_napari_viewer, synthetic_slide, model_file):
    from napari_histostain._qt.widget import PredictionWidget
    from napari_histostain.plugin.reader import read_slide_layer

    viewer = make_napari_viewer()
    data, kwargs, _ = read_slide_layer(synthetic_slide)
    slide_layer = viewer.add_image(data, **kwargs)
    widget = PredictionWidget(viewer)
    viewer.window.add_dock_widget(widget, name="HistoStain")
    widget.set_model_files([model_file])
    widget.set_markers(["ki67"])
    yield viewer, widget, slide_layer
    widget.close_session()


def _wait_idle(qtbot, widget):
    qtbot.waitUntil(lambda: not widget.busy, timeout=TIMEOUT_MS)


def _wait_view_done(qtbot, widget):
    def done():
        s = widget._live
        return s is not None and not s.pending and not s.in_flight and widget._t_view == 0.0

    qtbot.waitUntil(done, timeout=TIMEOUT_MS)


def test_widget_defaults_to_active_slide_layer(widget_on_slide):
    _viewer, widget, slide_layer = widget_on_slide
    assert widget.slide_combo.currentText() == slide_layer.name
    assert widget.markers == ["ki67"]
    assert "Ki-67" in widget.model_label.text()


def test_whole_slide_streams_aligned_overlays(qtbot, widget_on_slide, model_file, tmp_path):
    from napari_histostain.engine.predict import PredictOptions, predict_slide
    from napari_histostain.plugin.clipped_maps import tile_centre_px

    viewer, widget, slide_layer = widget_on_slide
    widget.set_mode("whole")
    widget.batch_size = 4
    log = []
    widget.run()
    qtbot.waitUntil(
        lambda: widget.predictor is not None and widget._whole_worker is not None,
        timeout=TIMEOUT_MS,
    )
    widget._whole_worker.yielded.connect(
        lambda _: log.append(int(np.isfinite(_tiles(viewer.layers["Ki-67 positivity"])).sum()))
    )
    _wait_idle(qtbot, widget)
    grid = widget.predictor.grid
    n = len(grid)
    assert "Whole slide done" in widget.last_message
    # streamed: the overlay filled up batch by batch
    assert len(log) >= 2 and log == sorted(log) and log[0] < n and log[-1] == n
    pos_layer = viewer.layers["Ki-67 positivity"]
    att_layer = viewer.layers["Ki-67 attention"]
    pos, att = _tiles(pos_layer), _tiles(att_layer)
    assert np.isfinite(pos).sum() == n  # NaN (transparent) outside tissue tiles
    assert np.isnan(pos).sum() == grid.n_rows * grid.n_cols - n
    # alignment: world coordinate of each tile's heatmap centre == tile centre in um
    display = pos_layer.metadata["histostain"].get("display")
    world = np.array([pos_layer.data_to_world(p) for p in tile_centre_px(grid.rowcol, display)])
    np.testing.assert_allclose(world, grid.centres_um(), atol=1e-6)
    # ... and the slide layer puts the tile's centre level-0 pixel at the same world point
    half = (grid.tile_px0 - 1) / 2
    y0, x0 = grid.coords[0, 1] + half, grid.coords[0, 0] + half
    np.testing.assert_allclose(slide_layer.data_to_world((y0, x0)), world[0], atol=1e-6)
    # same numbers as the headless engine
    ref = predict_slide(
        str(widget.predictor.slide.path), ["ki67"], PredictOptions(models={"ki67": model_file})
    )
    np.testing.assert_allclose(pos[tuple(grid.rowcol.T)], ref.markers["ki67"].positivity, rtol=1e-5)
    np.testing.assert_allclose(att[tuple(grid.rowcol.T)], ref.markers["ki67"].attention, rtol=1e-4)
    assert att_layer.contrast_limits[1] == pytest.approx(np.nanmax(att), rel=1e-5)
    # results panel
    assert widget.results.table.rowCount() == 1
    assert widget.results.table.item(0, 2).text() == f"{ref.markers['ki67'].probability:.3f}"
    assert widget.results.table.item(0, 4).text() == f"{n}/{n}"
    assert "whole slide" in widget.results.scope_label.text()
    # clicking a tile shows its scores
    i = n // 2
    s = widget.show_tile_at(grid.centres_um()[i])
    assert s["tile"] == i
    assert s["markers"]["ki67"]["positivity"] == pytest.approx(
        ref.markers["ki67"].positivity[i], rel=1e-5
    )
    assert f"Tile {i}" in widget.results.tile_label.text()
    # display controls
    widget.opacity_slider.setValue(30)
    assert pos_layer.opacity == pytest.approx(0.3)
    widget.cmap_combo.setCurrentText("magma")
    assert "magma" in pos_layer.colormap.name
    widget.tissue_box.setChecked(True)
    assert "Tissue mask" in viewer.layers

    # export from the widget round-trips
    import shapely.geometry
    import tifffile

    paths = widget.export_to(tmp_path)
    gj = next(p for p in paths if p.name.endswith(".ki67.tiles.geojson"))
    fc = json.loads(gj.read_text())
    with open(next(p for p in paths if p.suffix == ".csv"), newline="") as fh:
        rows = {int(r["tile"]): r for r in csv.DictReader(fh)}
    assert len(fc["features"]) == len(rows) == n
    for f in fc["features"]:
        poly = shapely.geometry.shape(f["geometry"])
        r = rows[int(f["properties"]["measurements"]["tile_id"])]
        assert poly.bounds[:2] == (float(r["x"]), float(r["y"]))
        assert f["properties"]["measurements"]["positivity"] == pytest.approx(
            float(r["ki67_positivity"])
        )
    tif = next(p for p in paths if p.name.endswith("ki67-positivity.heatmap.ome.tif"))
    with tifffile.TiffFile(tif) as t:
        px = tifffile.xml2dict(t.ome_metadata)["OME"]["Image"]["Pixels"]
    assert float(px["PhysicalSizeX"]) == pytest.approx(grid.tile_px0 * grid.slide_mpp[0])
    assert px["PhysicalSizeXUnit"] == "µm"
    # a destination that cannot be written: a clear message in the widget, no exception
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("x")
    assert widget.export_safely(blocker / "out") == []
    assert "could not write" in widget.last_message


def test_cancel_mid_run_leaves_consistent_state(qtbot, widget_on_slide):
    viewer, widget, _ = widget_on_slide
    widget.set_mode("whole")
    widget.batch_size = 1
    widget.run()
    qtbot.waitUntil(lambda: widget.stream_updates >= 2, timeout=TIMEOUT_MS)
    # press Cancel on the progress bar in napari's activity dock
    from napari._qt.widgets.qt_progress_bar import QtLabeledProgressBar
    from qtpy.QtWidgets import QApplication

    bars = [
        w
        for w in QApplication.allWidgets()
        if isinstance(w, QtLabeledProgressBar) and w.progress is widget._progress
    ]
    assert len(bars) == 1
    bars[0].cancel_button.click()
    _wait_idle(qtbot, widget)
    n = len(widget.predictor.grid)
    done = int(widget.predictor.maps.done.sum())
    assert "Cancelled" in widget.last_message
    assert 2 <= done < n
    assert widget._progress is None and widget.run_button.isEnabled()
    # overlays show exactly the finished tiles; no half-filled marker state
    assert np.isfinite(_tiles(viewer.layers["Ki-67 positivity"])).sum() == done
    assert np.isfinite(_tiles(viewer.layers["Ki-67 attention"])).sum() == done
    assert np.nansum(_tiles(viewer.layers["Ki-67 attention"])) == pytest.approx(1.0, rel=1e-5)
    assert widget.results.table.item(0, 4).text() == f"{done}/{n}"
    # and a new run completes
    widget.run()
    _wait_idle(qtbot, widget)
    assert int(widget.predictor.maps.done.sum()) == n
    assert "Whole slide done" in widget.last_message


def _expected_visible(viewer, widget):
    """Tissue tiles whose level-0 box intersects the canvas (computed independently here)."""
    g = widget.predictor.grid
    h, w = viewer.window._qt_viewer.canvas.size
    cy, cx = viewer.camera.center[-2:]
    z = viewer.camera.zoom
    y0, y1 = (cy - h / 2 / z) / g.slide_mpp[1], (cy + h / 2 / z) / g.slide_mpp[1]
    x0, x1 = (cx - w / 2 / z) / g.slide_mpp[0], (cx + w / 2 / z) / g.slide_mpp[0]
    t = g.tile_px0
    c = g.coords
    hit = (c[:, 0] < x1) & (c[:, 0] + t > x0) & (c[:, 1] < y1) & (c[:, 1] + t > y0)
    return set(np.flatnonzero(hit).tolist())


def test_visible_region_computes_view_and_caches(qtbot, widget_on_slide):
    viewer, widget, _ = widget_on_slide
    widget.set_mode("visible")
    widget.run()
    qtbot.waitUntil(lambda: widget.live and widget.predictor is not None, timeout=TIMEOUT_MS)
    g = widget.predictor.grid
    # look at a corner of the tissue: about 2 x 2 tiles
    centre = g.centres_um()[len(g) // 2]
    h, w = viewer.window._qt_viewer.canvas.size
    viewer.camera.zoom = min(h, w) / (2.2 * g.tile_px0 * g.slide_mpp[0])
    viewer.camera.center = tuple(centre)
    widget.update_visible()  # what the debounced camera callback does
    _wait_view_done(qtbot, widget)
    first = _expected_visible(viewer, widget)
    assert 0 < len(first) < len(g)
    done = set(np.flatnonzero(widget.predictor.maps.done).tolist())
    assert done == first  # only the tiles intersecting the view
    assert widget.predictor.computed_count == len(first)
    assert "first_tile_s" in widget.timing.marks
    assert np.isfinite(_tiles(viewer.layers["Ki-67 positivity"])).sum() == len(first)
    att = _tiles(viewer.layers["Ki-67 attention"])
    assert np.nansum(att) == pytest.approx(1.0, rel=1e-5)  # normalised over tiles seen
    assert "tiles seen" in widget.results.scope_label.text()
    # pan to an overlapping view with new tiles: only those are computed, the rest is cached
    for c in g.centres_um():
        viewer.camera.center = tuple(c)  # the event loop does not run here: nothing is queued
        view = _expected_visible(viewer, widget)
        if view - first and view & first:
            break
    widget.update_visible()
    _wait_view_done(qtbot, widget)
    second = _expected_visible(viewer, widget)
    assert second - first  # the pan revealed new tiles
    done = set(np.flatnonzero(widget.predictor.maps.done).tolist())
    assert done == first | second
    assert widget.predictor.computed_count == len(first | second)  # nothing recomputed
    # too zoomed out for the budget: a clear message, nothing queued
    widget.budget_spin.setValue(2)
    viewer.camera.zoom = viewer.camera.zoom / 8
    qtbot.waitUntil(lambda: "too zoomed out" in widget.last_message, timeout=5000)
    assert not widget._live.pending
    widget.stop()
    assert not widget.live


def test_live_state_drops_tiles_that_left_the_view():
    from napari_histostain._qt.workers import LiveState

    s = LiveState(batch_size=2)
    s.replace([5, 6, 7, 8])
    assert s.take(1) == [5]
    s.replace([5, 8, 9])  # 6 and 7 left the view; 5 is in flight
    assert s.pending == [8, 9] and s.dropped == 2
    s.finished([5])
    assert not s.in_flight


def test_errors_are_shown_not_raised(widget_on_slide, make_napari_viewer, tmp_path):
    from napari_histostain._qt.widget import PredictionWidget

    _, widget, _ = widget_on_slide
    assert widget.export_safely(tmp_path) == []
    assert "run a prediction first" in widget.last_message
    widget.set_markers([])
    widget.run()
    assert "choose at least one marker" in widget.last_message
    empty = PredictionWidget(make_napari_viewer())
    empty.run()
    assert "no slide layer" in empty.last_message


def test_bundled_models_predict_tiles_headless(synthetic_slide):
    from napari_histostain.engine.model_files import bundled_model_path
    from napari_histostain.engine.region_predictor import RegionPredictor

    if not bundled_model_path("ki67").is_file():
        pytest.skip("no bundled Ki-67 model installed")
    pred = RegionPredictor(synthetic_slide, ["ki67"])  # the widget's default: bundled
    try:
        idx = pred.tiles_in_box((0, 0, *pred.slide.dimensions))[:2]
        pred.store(idx, pred.compute(idx))
        assert pred.computed_count == 2
        pos = pred.maps.markers["ki67"].positivity[idx]
        assert np.all((pos >= 0) & (pos <= 1))
        assert pred.maps.markers["ki67"].scope == "tiles seen (2)"
    finally:
        pred.close()


def test_device_setting_reaches_the_encoder(qtbot, widget_on_slide, tmp_path):
    import torch

    viewer, widget, _ = widget_on_slide
    assert widget.device_combo.currentText() == "auto"
    if not torch.cuda.is_available():
        widget.device_combo.setCurrentText("cuda")
        widget.run()
        _wait_idle(qtbot, widget)
        assert "no CUDA GPU" in widget.last_message and widget.predictor is None
    widget.device_combo.setCurrentText("cpu")
    widget.run()
    _wait_idle(qtbot, widget)
    assert widget.predictor is not None and widget.predictor.encoder.device.type == "cpu"
    widget.stop()
    viewer.screenshot(str(tmp_path / "device.png"), canvas_only=False)
