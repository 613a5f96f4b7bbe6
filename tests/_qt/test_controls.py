"""The widget's controls do what they say: cancel, stop, close, mode, slide choice (real viewer)."""

from __future__ import annotations

import time

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
    from napari_histostain.engine.model_files import save_model_file, seeded_model

    net, cfg = seeded_model("ki67", seed=3)
    return save_model_file(tmp_path_factory.mktemp("models") / "ki67-seeded.pt", net, cfg)


@pytest.fixture(scope="module")
def ihc_slide(tmp_path_factory):
    """A small simulated IHC (DAB) slide, written by the simulator."""
    from napari_histostain.simulate import simulate_case

    out = tmp_path_factory.mktemp("case")
    simulate_case(out, ["ki67"], case_id="c", size_um=700.0, mpp=0.5, seed=5)
    return next(out.rglob("c_ki67.tiff"))


def _open(viewer, path, **kw):
    from napari_histostain.plugin.reader import read_slide_layer

    data, kwargs, _ = read_slide_layer(path)
    kwargs.update(kw)
    return viewer.add_image(data, **kwargs)


@pytest.fixture(scope="module")
def he_array(synthetic_slide):
    """The synthetic slide's pixels as a plain RGB array (as a PNG or JPEG would give)."""
    import tifffile

    return np.ascontiguousarray(tifffile.imread(synthetic_slide)[..., :3])


@pytest.fixture(scope="module")
def big_slide(tmp_path_factory):
    """A 6000 x 4000 px synthetic slide (about 100 tissue tiles: a run that takes a while)."""
    from napari_histostain.io.synthetic import write_synthetic_slide

    return write_synthetic_slide(
        tmp_path_factory.mktemp("big") / "big.tif", 6000, 4000, 0.5, seed=2
    )


@pytest.fixture()
def widget_on_slide(make_napari_viewer, big_slide, model_file):
    from napari_histostain._qt.widget import PredictionWidget

    viewer = make_napari_viewer()
    slide_layer = _open(viewer, big_slide)
    widget = PredictionWidget(viewer)
    viewer.window.add_dock_widget(widget, name="HistoStain")
    widget.set_model_files([model_file])
    widget.set_markers(["ki67"])
    yield viewer, widget, slide_layer
    widget.close_session()


def _progress_bar(widget):
    from napari._qt.widgets.qt_progress_bar import QtLabeledProgressBar
    from qtpy.QtWidgets import QApplication

    bars = [
        w
        for w in QApplication.allWidgets()
        if isinstance(w, QtLabeledProgressBar) and w.progress is widget._progress
    ]
    assert len(bars) == 1
    return bars[0]


def test_cancel_in_activity_dock_stops_within_a_second_and_counts_tiles(qtbot, widget_on_slide):
    viewer, widget, _ = widget_on_slide
    widget.set_mode("whole")
    widget.batch_size = 2
    widget.run()
    qtbot.waitUntil(lambda: widget.stream_updates >= 2, timeout=TIMEOUT_MS)
    bar = _progress_bar(widget)
    # the Cancel button is inside the activity dock's view (not pushed out of it)
    viewer.window._qt_window.resize(1200, 800)
    viewer.window._qt_window.show()
    viewer.window._status_bar._toggle_activity_dock(True)
    qtbot.wait(100)
    dialog = viewer.window._qt_window._activity_dialog
    port = dialog._scrollArea.viewport()
    right = bar.cancel_button.mapTo(port, bar.cancel_button.rect().bottomRight())
    assert bar.cancel_button.isVisible()
    assert 0 < right.x() <= port.width() and 0 < right.y() <= port.height()
    canvas = dialog.parent()  # ... and the canvas shows it
    box = bar.cancel_button.rect()
    tl = bar.cancel_button.mapTo(canvas, box.topLeft())
    br = bar.cancel_button.mapTo(canvas, box.bottomRight())
    assert tl.x() >= 0 and br.x() <= canvas.width() and tl.y() >= 0 and br.y() <= canvas.height()
    shown = int(widget.predictor.maps.done.sum())
    t0 = time.perf_counter()
    bar.cancel_button.click()
    qtbot.waitUntil(lambda: not widget.busy, timeout=5000)
    latency = time.perf_counter() - t0
    assert latency <= 1.0
    n = len(widget.predictor.grid)
    done = int(widget.predictor.maps.done.sum())
    assert shown <= done < n
    assert f"Cancelled after {done} of {n} tiles" in widget.last_message
    # nothing more arrives after the cancel: the maps stay as reported
    qtbot.wait(1500)
    assert int(widget.predictor.maps.done.sum()) == done
    assert np.isfinite(_tiles(viewer.layers["Ki-67 positivity"])).sum() == done


def test_stop_during_setup_is_immediate_and_clean(qtbot, widget_on_slide):
    _, widget, _ = widget_on_slide
    widget.set_mode("whole")
    widget.run()
    assert widget.busy and "Loading models" in widget.last_message
    t0 = time.perf_counter()
    widget.stop()
    assert time.perf_counter() - t0 < 1.0
    assert not widget.busy and widget.run_button.isEnabled()
    assert "Stopped" in widget.last_message
    qtbot.wait(3000)  # the abandoned setup finishes in the background: nothing starts
    assert widget._whole_worker is None and widget._progress is None
    assert "Stopped" in widget.last_message
    # and Predict works afterwards
    widget.run()
    qtbot.waitUntil(lambda: "Whole slide done" in widget.last_message, timeout=TIMEOUT_MS)


def test_closing_the_viewer_mid_run_is_clean(
    qtbot, make_napari_viewer, synthetic_slide, model_file
):
    from napari_histostain._qt.widget import PredictionWidget

    viewer = make_napari_viewer()
    _open(viewer, synthetic_slide)
    widget = PredictionWidget(viewer)
    viewer.window.add_dock_widget(widget, name="HistoStain")
    widget.set_model_files([model_file])
    widget.set_mode("whole")
    widget.batch_size = 2
    widget.run()
    qtbot.waitUntil(lambda: widget.stream_updates >= 1, timeout=TIMEOUT_MS)
    threads = widget.threads()
    assert threads
    viewer.close()  # errors in Qt slots fail the test (pytest-qt captures them)
    qtbot.wait(500)
    assert not any(t.is_alive() for t in threads)


def test_closing_the_dock_mid_run_stops_the_workers(qtbot, widget_on_slide):
    viewer, widget, _ = widget_on_slide
    widget.set_mode("visible")
    widget.run()
    qtbot.waitUntil(lambda: widget.live, timeout=TIMEOUT_MS)
    threads = widget.threads()
    viewer.window.remove_dock_widget(widget)
    qtbot.wait(500)
    assert not widget.live and not widget.busy
    assert not any(t.is_alive() for t in threads)


def test_mode_is_always_exactly_one(qtbot, widget_on_slide):
    from qtpy.QtCore import Qt

    _, widget, _ = widget_on_slide
    for radio in (widget.visible_radio, widget.whole_radio, widget.whole_radio):
        qtbot.mouseClick(radio, Qt.LeftButton)
        assert radio.isChecked()
        assert widget.visible_radio.isChecked() != widget.whole_radio.isChecked()
    for radio in (widget.ihc_panel.visible_radio, widget.ihc_panel.visible_radio):
        qtbot.mouseClick(radio, Qt.LeftButton)
        assert radio.isChecked() and not widget.ihc_panel.whole_radio.isChecked()
    assert widget.whole_radio.isChecked()  # the panels' modes are independent


def test_slide_box_prefers_the_visible_he_slide(
    qtbot, make_napari_viewer, synthetic_slide, ihc_slide, model_file
):
    from napari_histostain._qt.widget import PredictionWidget

    viewer = make_napari_viewer()
    # as File > Open Sample does: the H&E, then the hidden IHC, which ends up selected
    he = _open(viewer, synthetic_slide, name="case: H&E")
    ihc = _open(viewer, ihc_slide, name="case: IHC", visible=False)
    viewer.layers.selection.active = ihc
    widget = PredictionWidget(viewer)
    viewer.window.add_dock_widget(widget, name="HistoStain")
    assert widget.slide_combo.currentText() == he.name
    # a hidden or IHC-looking layer is never chosen silently; the user is asked first
    viewer.layers.remove(he)
    assert widget.slide_combo.currentText() == ihc.name
    widget.set_model_files([model_file])
    widget.run()
    assert not widget.busy and "IHC" in widget.last_message and "again" in widget.last_message
    widget.close_session()


def test_stain_check_runs_in_visible_mode(qtbot, make_napari_viewer, ihc_slide, model_file):
    from napari_histostain._qt.widget import PredictionWidget

    viewer = make_napari_viewer()
    _open(viewer, ihc_slide, name="slide")  # the name does not say IHC
    widget = PredictionWidget(viewer)
    viewer.window.add_dock_widget(widget, name="HistoStain")
    widget.set_model_files([model_file])
    widget.set_mode("visible")
    widget.run()  # its file name says ki67: asked first
    assert "again" in widget.last_message and not widget.busy
    widget.run()  # confirmed: the tiles themselves are checked too
    qtbot.waitUntil(lambda: widget.predictor is not None, timeout=TIMEOUT_MS)
    assert widget.stain["looks_like"] == "IHC"
    qtbot.waitUntil(lambda: "looks like an IHC" in widget.last_message, timeout=TIMEOUT_MS)
    widget.close_session()


def test_slide_is_prepared_in_the_background_when_opened(
    qtbot, make_napari_viewer, synthetic_slide, model_file
):
    """Models, tissue and grid are ready before Predict; the click goes straight to tiles."""
    from napari_histostain._qt.widget import PredictionWidget

    viewer = make_napari_viewer()
    widget = PredictionWidget(viewer)
    viewer.window.add_dock_widget(widget, name="HistoStain")
    widget.set_model_files([model_file])
    widget.set_markers(["ki67"])
    assert widget.predictor is None
    _open(viewer, synthetic_slide)  # opening the slide starts the preparation
    qtbot.waitUntil(lambda: widget.predictor is not None, timeout=TIMEOUT_MS)
    assert not widget.busy and widget.run_button.isEnabled()
    assert "Positivity" not in [ly.name for ly in viewer.layers]  # no layers before Predict
    widget.set_mode("visible")
    prepared = widget.predictor
    t0 = time.perf_counter()
    widget.run()
    assert widget.live and "Loading" not in widget.last_message  # no setup after the click
    qtbot.waitUntil(lambda: "first_tile_at" in widget.timing.marks, timeout=TIMEOUT_MS)
    assert widget.predictor is prepared
    assert widget.timing.marks["first_tile_at"] - t0 < 5.0  # the bench measures it precisely
    # the other overlays come one per event-loop turn, not all in the click's handler
    qtbot.waitUntil(lambda: "Ki-67 attention" in viewer.layers, timeout=5000)
    widget.close_session()


@pytest.mark.parametrize("in_um", [True, False])
def test_any_rgb_image_layer_can_be_predicted(
    qtbot, make_napari_viewer, he_array, model_file, in_um
):
    """A plain RGB layer (a PNG, a field of view): its scale when in um, else the given pixel size."""
    from napari_histostain._qt.widget import PredictionWidget
    from napari_histostain.engine.predict import PredictOptions, predict_slide
    from napari_histostain.io.slide import slide_from_array
    from napari_histostain.plugin.clipped_maps import tile_centre_px

    viewer = make_napari_viewer()
    kw = {"scale": (0.5, 0.5), "units": ("um", "um")} if in_um else {}
    layer = viewer.add_image(he_array, name="field", rgb=True, **kw)
    widget = PredictionWidget(viewer)
    viewer.window.add_dock_widget(widget, name="HistoStain")
    widget.set_model_files([model_file])
    widget.set_markers(["ki67"])
    widget.set_mode("whole")
    assert widget.slide_combo.currentText() == "field"
    if not in_um:
        widget.run()  # no pixel size: asked for
        assert "Pixel size" in widget.last_message and not widget.busy
        widget.pixel_spin.setValue(0.5)
    widget.run()
    qtbot.waitUntil(lambda: "Whole slide done" in widget.last_message, timeout=TIMEOUT_MS)
    assert tuple(layer.scale) == (0.5, 0.5)  # a layer in pixels is placed at its pixel size
    grid = widget.predictor.grid
    ref = predict_slide(
        slide_from_array(he_array, 0.5, "field"),
        ["ki67"],
        PredictOptions(models={"ki67": model_file}),
    )
    pos = viewer.layers["Ki-67 positivity"]
    np.testing.assert_allclose(
        _tiles(pos)[tuple(grid.rowcol.T)], ref.markers["ki67"].positivity, rtol=1e-5
    )
    # the overlay lines up with the image: tile centres in world um agree
    half = (grid.tile_px0 - 1) / 2
    y0, x0 = grid.coords[0, 1] + half, grid.coords[0, 0] + half
    np.testing.assert_allclose(
        layer.data_to_world((y0, x0)),
        pos.data_to_world(
            tile_centre_px(grid.rowcol[0], pos.metadata["histostain"].get("display"))[0]
        ),
        atol=1e-6,
    )
    widget.close_session()
