"""Corrections in the observed-IHC panel with a real napari viewer (xvfb-run): thresholds re-score
at once, a click re-classes a nucleus, corrections are saved and loaded again."""

from __future__ import annotations

import json

import numpy as np
import pytest

from napari_histostain.plugin.clipped_maps import layer_tiles

pytest.importorskip("pytestqt")
pytestmark = pytest.mark.gui

TIMEOUT_MS = 60_000


@pytest.fixture(scope="module")
def ihc_path(tmp_path_factory):
    from napari_histostain.simulate import simulate_case

    c = simulate_case(
        tmp_path_factory.mktemp("corr_case"), ["ki67"], case_id="corr", size_um=600, mpp=0.5, seed=7
    )
    return c.ihc_paths["ki67"]


@pytest.fixture()
def measured(make_napari_viewer, ihc_path, qtbot):
    from napari_histostain._qt.ihc_panel import ObservedIHCPanel
    from napari_histostain.plugin.reader import read_slide_layer

    viewer = make_napari_viewer()
    data, kwargs, _ = read_slide_layer(ihc_path)
    viewer.add_image(data, **dict(kwargs, name="case Ki-67 IHC"))
    panel = ObservedIHCPanel(viewer, expanded=True)
    viewer.window.add_dock_widget(panel)
    panel.run()
    qtbot.waitUntil(lambda: not panel.busy, timeout=TIMEOUT_MS)
    assert panel.result is not None, panel.last_message
    yield viewer, panel
    panel.close_session()


def _canvas_pos(viewer, world_yx) -> tuple[float, float]:
    """Canvas pixel (x, y) of world point (y, x), through napari's own view transform."""
    qcanvas = viewer.window._qt_viewer.canvas
    tr = qcanvas.view.transform * qcanvas.view.scene.transform
    x, y = tr.map([float(world_yx[1]), float(world_yx[0])])[:2]
    return float(x), float(y)


def _click(viewer, world_yx, drag_px: float = 0.0) -> None:
    """A real left click (press, release) on the canvas at `world_yx` (um), zoomed in there;
    with `drag_px` the mouse moves that far before the release (a pan)."""
    viewer.camera.center = tuple(world_yx)
    viewer.camera.zoom = 4.0
    canvas = viewer.window._qt_viewer.canvas._scene_canvas
    x, y = _canvas_pos(viewer, world_yx)
    press = canvas.events.mouse_press(pos=(x, y), modifiers=(), button=0)
    if drag_px:
        canvas.events.mouse_move(pos=(x + drag_px, y), modifiers=(), button=0, press_event=press)
    canvas.events.mouse_release(pos=(x + drag_px, y), modifiers=(), button=0)


def test_thresholds_rescore_at_once_like_a_new_measurement(measured, ihc_path):
    from napari_histostain import ihc

    viewer, panel = measured
    box = panel.corrections_box
    assert box.isEnabled() and box.thresholds == panel.result.params.thresholds
    before = dict(panel.rows)
    new = (0.15, 0.5, 0.8)
    for spin, t in zip(box.spins, new):
        spin.setValue(t)
    fresh = ihc.quantify_slide(ihc_path, "ki67", params=ihc.with_thresholds(ihc.IHCParams(), new))
    s = panel.result.summary()
    assert {k: s[k] for k in ("counts", "ki67_index", "h_score")} == {
        k: fresh.summary()[k] for k in ("counts", "ki67_index", "h_score")
    }
    assert panel.rows["H-score"] == f"{s['h_score']:.0f}" != before["H-score"]
    assert panel.rows["Nuclei counted"] != before["Nuclei counted"]
    # re-scored and redrawn on the GUI thread: the scoring itself well under 100 ms, the redraw
    # too on an idle machine (bound loosened for shared CI cores)
    assert box.timings["score"] < 100 and box.last_ms < 250, box.timings
    points = viewer.layers["Ki-67 nuclei"]
    assert list(points.features["class"]) == [ihc.CLASS_NAMES[c] for c in fresh.nuclei.cls]
    heat = viewer.layers["Ki-67 observed positivity"]
    r, c = panel.result.grid.rowcol[0]
    tiles = layer_tiles(heat.data, heat.metadata["histostain"])
    assert tiles[r, c] == pytest.approx(fresh.positivity[0], nan_ok=True)
    # not increasing: refused with a message, the scores stay
    box.spins[1].setValue(0.1)
    assert "must increase" in box.info.text() and panel.result.summary() == s


def test_click_reclasses_a_nucleus_and_corrections_round_trip(measured, qtbot, tmp_path):
    viewer, panel = measured
    box = panel.corrections_box
    nuc = panel.result.nuclei
    i = int(np.flatnonzero(nuc.counted & (nuc.cls == 0))[0])
    points = viewer.layers["Ki-67 nuclei"]
    assert viewer.layers.selection.active is points
    n0 = panel.result.summary()["counts"]
    index0 = panel.result.summary()["ki67_index"]
    _click(viewer, points.data[i])
    assert box.corrections.overrides == {i: "positive"}
    s = panel.result.summary()
    assert s["counts"]["negative"] == n0["negative"] - 1 and s["counts"]["1+"] == n0["1+"] + 1
    assert s["ki67_index"] > index0
    assert panel.rows["Ki-67 index"] == f"{s['ki67_index']:.1f} %"
    assert points.features["class"][i] == "1+" and points.symbol[i].value == "square"
    assert box.timings["score"] < 100 and box.last_ms < 250, box.timings
    _click(viewer, points.data[i])  # cycle: positive -> negative -> not counted
    _click(viewer, points.data[i])
    assert box.corrections.overrides == {i: "not counted"}
    assert panel.result.summary()["n_nuclei"] == sum(n0.values()) - 1
    assert not points.features["counted"][i]
    # a drag (panning) does not re-class
    _click(viewer, points.data[i], drag_px=30)
    assert box.corrections.overrides == {i: "not counted"}
    # saved and loaded again after a reset
    path = box.save(tmp_path / "case.ki67.ihc_corrections.json")
    assert json.loads(path.read_text())["overrides"][0]["as"] == "not counted"
    corrected = panel.result.summary()
    box.reset()
    assert panel.result.summary()["counts"] == n0
    assert box.load(path)
    assert panel.result.summary() == corrected
    assert not box.load(tmp_path / "missing.json") and "cannot read" in box.info.text()
