"""The widget's "Observed IHC" section with a real napari viewer, on a simulated case (xvfb-run)."""

from __future__ import annotations

import copy

import numpy as np
import pytest

pytest.importorskip("pytestqt")
pytestmark = pytest.mark.gui

TIMEOUT_MS = 60_000


def _tiles(layer):
    """The per-tile heatmap an overlay layer shows (drawn finer, clipped to the slide)."""
    from napari_histostain.plugin.clipped_maps import layer_tiles

    return layer_tiles(layer.data, layer.metadata["histostain"])


@pytest.fixture(scope="module")
def case(tmp_path_factory):
    """A ~1 x 1 mm simulated case (H&E + Ki-67 IHC, 0.5 um/px) and the headless IHC result."""
    from napari_histostain.ihc import quantify_slide
    from napari_histostain.simulate import simulate_case

    c = simulate_case(
        tmp_path_factory.mktemp("ihc_case"),
        ["ki67"],
        case_id="gui_ihc",
        size_um=1000,
        mpp=0.5,
        seed=2022,
    )
    return c.he_path, c.ihc_paths["ki67"], quantify_slide(c.ihc_paths["ki67"], "ki67")


@pytest.fixture()
def gui(make_napari_viewer, case):
    from napari_histostain._qt.widget import PredictionWidget
    from napari_histostain.plugin.reader import read_slide_layer

    he_path, ihc_path, _ = case
    viewer = make_napari_viewer()
    for path, name in ((he_path, "case H&E"), (ihc_path, "case Ki-67 IHC")):
        data, kwargs, _ = read_slide_layer(path)
        viewer.add_image(data, **dict(kwargs, name=name))
    viewer.layers.selection.active = viewer.layers["case H&E"]
    widget = PredictionWidget(viewer)
    viewer.window.add_dock_widget(widget, name="HistoStain")
    panel = widget.ihc_panel
    panel.set_expanded(True)
    yield viewer, widget, panel
    widget.close_session()


def _measure(qtbot, panel):
    panel.run()
    qtbot.waitUntil(lambda: not panel.busy, timeout=TIMEOUT_MS)


def test_whole_slide_observed_map_aligned_and_equal_to_headless(qtbot, gui, case, tmp_path):
    from napari_histostain.plugin.clipped_maps import display_grid, tile_centre_px

    viewer, _widget, panel = gui
    headless = case[2]
    # defaults: the IHC layer (named so) and its marker; no prediction yet -> default grid
    assert panel.ihc_combo.currentText() == "case Ki-67 IHC" and panel.marker == "ki67"
    assert "224 px tiles at 1 um/px (default" in panel.grid_label.text()
    _measure(qtbot, panel)
    assert "measured over the whole slide" in panel.last_message, panel.last_message
    assert panel.result.summary() == headless.summary()
    s = headless.summary()
    assert panel.rows["Ki-67 index"] == f"{s['ki67_index']:.1f} %"
    assert panel.rows["Label"] == ("high" if s["label"] else "low")
    assert f"{s['ki67_index']:.1f} %" in panel.results_label.text()

    heat = viewer.layers["Ki-67 observed positivity"]
    grid = panel.result.grid
    tiles = _tiles(heat)
    assert tiles.shape == (grid.n_rows, grid.n_cols)
    assert heat.data.shape == display_grid(grid.lattice, grid.slide_dimensions).shape
    # each tile's centre in the heatmap is its tile centre (um), on the IHC slide
    centres = grid.centres_um()
    display = heat.metadata["histostain"].get("display")
    for i in (0, len(centres) // 2, len(centres) - 1):
        r, c = grid.rowcol[i]
        p = tile_centre_px((r, c), display)[0]
        np.testing.assert_allclose(heat.data_to_world(p), centres[i], atol=1e-6)
        assert tiles[r, c] == pytest.approx(headless.positivity[i], nan_ok=True)
    finite = np.isfinite(tiles)
    assert finite.sum() == np.isfinite(headless.positivity).sum() > 0
    assert not finite.all()  # glass tiles stay transparent (NaN)
    assert heat.colormap.map(np.array([np.nan]))[0, 3] == 0

    # it saves like a predicted map (File > Save Selected Layers, the HistoStain writers)
    viewer.layers.selection = {heat}
    assert viewer.layers.save(str(tmp_path / "observed.heatmap.ome.tif"), selected=True)
    assert (tmp_path / "observed.heatmap.ome.tif").stat().st_size > 0

    pts = viewer.layers["Ki-67 nuclei"]
    assert len(pts.data) == len(headless.nuclei.xy) > 100
    mx, my = headless.mpp
    np.testing.assert_allclose(pts.data[:, 0], headless.nuclei.xy[:, 1] * my, atol=1e-3)
    np.testing.assert_allclose(pts.data[:, 1], headless.nuclei.xy[:, 0] * mx, atol=1e-3)
    k = int(np.flatnonzero(headless.nuclei.counted & (headless.nuclei.cls == 3))[0])
    np.testing.assert_allclose(
        pts.border_color[k, :3], [0xD6 / 255, 0x27 / 255, 0x28 / 255], atol=0.01
    )
    names = np.asarray(["negative", "1+", "2+", "3+"])[headless.nuclei.cls]
    assert list(pts.features["class"]) == list(names)
    assert list(pts.features["excluded_as"]) == list(headless.nuclei.exclusion_reasons)
    assert set(headless.nuclei.exclusion_reasons[~headless.nuclei.counted]) - {""}  # reasons given


def test_count_stroma_box_turns_the_stroma_rule_off(qtbot, gui, case):
    """Ticked, the panel's result equals the headless one with the stroma rule off."""
    from napari_histostain.ihc import IHCParams, quantify_slide

    _viewer, _widget, panel = gui
    assert not panel.stroma_box.isChecked()
    panel.stroma_box.setChecked(True)
    _measure(qtbot, panel)
    off = quantify_slide(case[1], "ki67", params=IHCParams(context_min_nuclei=0))
    assert panel.result.summary() == off.summary()
    assert "stroma" not in set(panel.result.nuclei.exclusion_reasons)
    assert "stroma" in set(case[2].nuclei.exclusion_reasons)  # the default run left some out
    assert off.summary()["n_nuclei"] > case[2].summary()["n_nuclei"]


def test_visible_region_measures_only_the_view(qtbot, gui, case):
    viewer, _widget, panel = gui
    camera = (viewer.scene if hasattr(viewer, "scene") else viewer).camera
    camera.center = (300.0, 300.0)
    camera.zoom = 2.0
    panel.set_mode("visible")
    _measure(qtbot, panel)
    assert "visible region" in panel.last_message, panel.last_message
    box = panel.visible_box(viewer.layers["case Ki-67 IHC"])
    grid = panel.result.grid
    done = np.flatnonzero(np.isfinite(panel.result.positivity))
    assert 0 < len(done) < len(grid.coords)
    t = grid.tile_px0
    x, y, w, h = box
    c = grid.coords[done]
    assert ((c[:, 0] < x + w) & (c[:, 0] + t > x) & (c[:, 1] < y + h) & (c[:, 1] + t > y)).all()
    assert np.isfinite(_tiles(viewer.layers["Ki-67 observed positivity"])).sum() == len(done)
    assert "(visible region)" in panel.results_label.text()


def test_cancel_leaves_consistent_state(qtbot, gui):
    viewer, _widget, panel = gui
    panel.nuclei_box.setChecked(False)
    panel.run()
    panel.cancel()  # before the first tile: nothing is measured
    qtbot.waitUntil(lambda: not panel.busy, timeout=TIMEOUT_MS)
    assert "Cancelled; nothing was added" in panel.last_message
    assert "Ki-67 observed positivity" not in viewer.layers and panel.result is None
    assert panel.measure_button.isEnabled() and not panel.cancel_button.isEnabled()
    assert panel._progress is None
    _measure(qtbot, panel)  # runs again after a cancel
    before = viewer.layers["Ki-67 observed positivity"].data.copy()
    panel.run()
    panel.cancel()
    qtbot.waitUntil(lambda: not panel.busy, timeout=TIMEOUT_MS)
    assert "previous observed map is kept" in panel.last_message
    np.testing.assert_array_equal(viewer.layers["Ki-67 observed positivity"].data, before)
    assert "Ki-67 nuclei" not in viewer.layers


def test_he_slide_is_refused_with_a_message(qtbot, gui):
    viewer, _widget, panel = gui
    n_layers = len(viewer.layers)
    panel.set_ihc_layer("case H&E")
    _measure(qtbot, panel)
    assert "looks like an H&E slide" in panel.last_message
    assert "Traceback" not in panel.last_message
    assert "d9534f" in panel.status.styleSheet()
    assert len(viewer.layers) == n_layers and panel.result is None


def test_observed_grid_follows_the_prediction(qtbot, gui, tmp_path):
    from napari_histostain.engine.model_files import save_model_file, seeded_model

    viewer, widget, panel = gui
    net, cfg = seeded_model("ki67", seed=3)
    widget.set_model_files([save_model_file(tmp_path / "ki67.pt", net, cfg)])
    widget.set_markers(["ki67"])
    widget.mpp_spin.setValue(2.0)  # 448 um tiles: not the default grid
    widget.set_mode("whole")
    widget.run()
    qtbot.waitUntil(lambda: widget.predictor is not None and not widget.busy, timeout=TIMEOUT_MS)
    assert "224 px tiles at 2 um/px (as the prediction)" in panel.grid_label.text()
    _measure(qtbot, panel)
    pred, obs = viewer.layers["Ki-67 positivity"], viewer.layers["Ki-67 observed positivity"]
    # same lattice (the simulated sections share size and mpp), computed on the IHC slide
    np.testing.assert_allclose(obs.scale, pred.scale)
    np.testing.assert_allclose(obs.translate, pred.translate)
    assert obs.data.shape == pred.data.shape
    assert panel.result.source_path.endswith("_ki67.tiff")
    assert "Predicted (H&E)" in panel.rows


def test_observed_map_streams_while_measuring(qtbot, gui):
    """The observed map appears at the first measured tile and fills in before the run ends."""
    viewer, _widget, panel = gui
    panel.nuclei_box.setChecked(False)
    panel_stream = panel._stream_map
    seen = []

    def recording(state, marker, scope):
        panel_stream(state, marker, scope)
        layer = viewer.layers["Ki-67 observed positivity"]
        meta = copy.deepcopy(dict(layer.metadata))  # the layer is updated in place at the end
        seen.append((panel.busy, int(np.isfinite(_tiles(layer)).sum()), meta))

    panel._stream_map = recording
    _measure(qtbot, panel)
    assert len(seen) == panel.result.grid.coords.shape[0]  # one call per measured tile
    assert all(busy for busy, _, _ in seen)
    counts = [n for _, n, _ in seen]
    assert counts == sorted(counts) and counts[0] <= 1 < counts[-1]
    assert "measuring" in seen[0][2]["histostain_observed"]["scope"]
    final = viewer.layers["Ki-67 observed positivity"]
    assert len([ly for ly in viewer.layers if ly.name == final.name]) == 1
    assert np.isfinite(_tiles(final)).sum() >= counts[-1]
    assert final.metadata["histostain_observed"]["summary"] == panel.result.summary()


@pytest.mark.parametrize("marker", ["ki67", "p53", "pdl1"])
def test_panel_lists_only_the_chosen_markers_score(marker):
    from napari_histostain._qt.ihc_panel import format_summary

    summary = {
        "ki67_index": 12.5,
        "h_score": 40.0,
        "pdl1_tps": 3.0,
        "p53_pattern": "wild-type",
        "n_nuclei": 100,
        "label": 0,
        "counts": {"negative": 80, "1+": 10, "2+": 5, "3+": 5},
        "positive_pixel_fraction": 0.1,
    }
    labels = [k for k, _ in format_summary(summary, marker)]
    own = {"ki67": "Ki-67 index", "p53": "p53 pattern", "pdl1": "PD-L1 TPS"}
    assert labels[0] == own[marker]
    assert not {v for m, v in own.items() if m != marker} & set(labels)


def test_hotspot_circle_and_reported_scores(qtbot, gui, case):
    """The Ki-67 hot spot is drawn where the headless report finds it; global, hot-spot and
    `insufficient` appear in the panel's table."""
    from napari_histostain._qt.ihc_report_view import hotspot_name
    from napari_histostain.ihc.ki67_report import ki67_report

    viewer, _widget, panel = gui
    _measure(qtbot, panel)
    rep = ki67_report(case[2])
    spot = rep.hotspot
    layer = viewer.layers[hotspot_name("ki67")]
    assert list(layer.shape_type) == ["ellipse"]
    box = layer.data[0]
    np.testing.assert_allclose(box.mean(axis=0), [spot.y_um, spot.x_um], atol=1e-6)
    np.testing.assert_allclose(np.ptp(box, axis=0), [2 * spot.radius_um] * 2, atol=1e-6)
    assert panel.rows["Ki-67 global"].startswith(f"{rep.global_index:.1f} %, {rep.n_cells} cells")
    assert ("insufficient" in panel.rows["Ki-67 global"]) == rep.insufficient
    hot = panel.rows["Ki-67 hot spot"]
    assert hot.startswith(f"{spot.index:.1f} %, {spot.n_positive}/{spot.n_cells} cells")
    assert ("insufficient" in hot) == spot.insufficient
    assert "Ki-67 hot spot" in panel.results_label.text()
    # a second run replaces the circle, it does not add another
    _measure(qtbot, panel)
    assert len([x for x in viewer.layers if x.name.startswith(hotspot_name("ki67"))]) == 1
