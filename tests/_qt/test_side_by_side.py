"""H&E and IHC side by side in napari's grid mode (real viewer)."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("pytestqt")
pytestmark = pytest.mark.gui


@pytest.fixture(scope="module")
def case(tmp_path_factory):
    """A simulated H&E and its Ki-67 IHC (consecutive sections)."""
    from napari_histostain.simulate import simulate_case

    out = tmp_path_factory.mktemp("case")
    simulate_case(out, ["ki67"], case_id="s", size_um=900.0, mpp=0.5, seed=3)
    return next(out.rglob("s_HE.tiff")), next(out.rglob("s_ki67.tiff"))


def test_side_by_side_puts_each_slide_with_its_maps_in_one_cell(
    qtbot, make_napari_viewer, case, tmp_path
):
    from napari_histostain._qt.side_by_side import grid_of
    from napari_histostain._qt.viewport import camera_of
    from napari_histostain._qt.widget import PredictionWidget
    from napari_histostain.engine.model_files import save_model_file, seeded_model
    from napari_histostain.plugin.reader import read_slide_layer

    viewer = make_napari_viewer()
    he_path, ihc_path = case
    layers = []
    for path, name, visible in ((he_path, "case: H&E", True), (ihc_path, "case: IHC", False)):
        data, kw, _ = read_slide_layer(path)
        layers.append(viewer.add_image(data, **dict(kw, name=name, visible=visible)))
    he, ihc = layers
    widget = PredictionWidget(viewer)
    viewer.window.add_dock_widget(widget, name="HistoStain")
    net, cfg = seeded_model("ki67", seed=3)
    widget.set_model_files([save_model_file(tmp_path / "k.pt", net, cfg)])
    widget.set_markers(["ki67"])
    widget.set_mode("whole")
    widget.run()
    qtbot.waitUntil(lambda: "Whole slide done" in widget.last_message, timeout=90_000)
    widget.select_tile(0)
    assert widget.ihc_panel.ihc_layer is ihc
    # an observed map on the IHC (as Measure IHC makes it) goes with the IHC slide
    from napari_histostain._qt.ihc_panel import OBSERVED_KEY
    from napari_histostain.plugin.layers import overlay_layer_kwargs

    maps = widget.predictor.maps
    kw = overlay_layer_kwargs(maps, "ki67", "positivity")
    kw["name"] = "Ki-67 observed positivity"
    kw["metadata"][OBSERVED_KEY] = {"marker": "ki67"}
    observed = viewer.add_image(maps.heatmap("ki67", "positivity").copy(), **kw)
    widget.side_box.setChecked(True)
    grid = grid_of(viewer)
    assert grid.enabled and ihc.visible
    ours = list(viewer.layers)

    def cell(layer):
        return grid.position(ours.index(layer), ours)

    assert cell(he) == (0, 0) and cell(ihc) == (0, 1)
    assert cell(viewer.layers["Ki-67 positivity"]) == (0, 0)
    assert cell(viewer.layers["Selected tile"]) == (0, 0)
    assert cell(observed) == (0, 1) and ours.index(ihc) < ours.index(observed)
    # each slide lies under its own maps in its cell
    assert ours.index(he) < ours.index(viewer.layers["Ki-67 positivity"])
    # one camera for both cells: navigation is linked, in um
    cam = camera_of(viewer)
    cam.center = (300.0, 400.0)
    assert tuple(cam.center[-2:]) == (300.0, 400.0)
    viewer.screenshot(str(tmp_path / "grid.png"), canvas_only=True)
    widget.side_box.setChecked(False)
    assert not grid.enabled
    assert not [ly for ly in viewer.layers if ly.name == "grid spacer"]
    widget.close_session()
    assert np.all(np.isfinite(cam.center))


def test_align_sections_sets_the_ihc_affine_in_a_worker(qtbot, make_napari_viewer, tmp_path):
    """A simulated IHC section rotated 30 deg and shifted: Align sections lays it on the H&E."""
    from engine.test_alignment import _moved

    from napari_histostain._qt.widget import PredictionWidget
    from napari_histostain.engine.alignment import _rot
    from napari_histostain.io.synthetic import tissue_renderer, write_slide
    from napari_histostain.plugin.reader import read_slide_layer

    mpp, h, w, angle = 4.0, 600, 800, 30.0
    he_rgb = tissue_renderer(h, w, seed=5, n_blobs=4)(0, 0, h, w)
    shift_px = np.array([20.0, -35.0])
    viewer = make_napari_viewer()
    layers = []
    for name, rgb in (("H&E", he_rgb), ("IHC", _moved(he_rgb, angle, shift_px))):
        path = write_slide(
            tmp_path / f"{name[:2]}.tiff",
            h,
            w,
            lambda y, x, hh, ww, a=rgb: a[y : y + hh, x : x + ww],
            mpp,
        )
        data, kw, _ = read_slide_layer(path)
        layers.append(viewer.add_image(data, **dict(kw, name=name, visible=name == "H&E")))
    he, ihc = layers
    widget = PredictionWidget(viewer)
    viewer.window.add_dock_widget(widget, name="HistoStain")
    widget.slide_combo.setCurrentText("H&E")
    widget.ihc_panel.set_ihc_layer("IHC")
    assert widget.slide_layer is he and widget.ihc_panel.ihc_layer is ihc
    widget.align_box.setChecked(True)
    assert "Aligning" in widget.last_message  # returns at once: the work runs in a worker
    qtbot.waitUntil(lambda: "IHC aligned" in widget.last_message, timeout=60_000)
    # an IHC pixel is drawn where the H&E shows the same tissue (within a quarter of a tile)
    c = np.array([h, w]) / 2
    for p in ([150.0, 200.0], [450.0, 600.0]):
        truth_um = ((np.array(p) - c) @ _rot(angle).T + c + shift_px) * mpp
        drawn_um = np.asarray(ihc.data_to_world(p))[-2:]
        assert np.linalg.norm(drawn_um - truth_um) < 56.0
    widget.align_box.setChecked(False)
    assert np.allclose(ihc.affine.affine_matrix, np.eye(3))
    widget.close_session()


def test_layer_overview_picks_the_coarsest_level_finer_than_the_target():
    from napari.layers import Image

    from napari_histostain._qt.side_by_side import layer_overview

    levels = [np.zeros((1024 // k, 1024 // k, 3), np.uint8) + k for k in (1, 2, 4, 8, 16)]
    layer = Image(levels, multiscale=True, rgb=True, scale=(2.0, 2.0))
    rgb, mpp = layer_overview(layer, target_mpp=16.0)
    assert mpp == 16.0 and rgb.shape == (128, 128, 3) and rgb[0, 0, 0] == 8
    rgb, mpp = layer_overview(Image(levels[0], rgb=True, scale=(2.0, 2.0)), target_mpp=16.0)
    assert mpp == 2.0 and rgb.shape == (1024, 1024, 3)
