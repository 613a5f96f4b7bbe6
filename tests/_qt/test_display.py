"""Readable maps: one marker at a time, colour legend, tile outline, tile table (real viewer)."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("pytestqt")
pytestmark = pytest.mark.gui

TIMEOUT_MS = 90_000


@pytest.fixture(scope="module")
def model_files(tmp_path_factory):
    from napari_histostain.engine.model_files import save_model_file, seeded_model

    out = tmp_path_factory.mktemp("models")
    files = []
    for k, m in enumerate(("ki67", "p53")):
        net, cfg = seeded_model(m, seed=3 + k)
        files.append(save_model_file(out / f"{m}.pt", net, cfg))
    return files


@pytest.fixture(scope="module")
def he_slide(tmp_path_factory):
    """A simulated H&E section whose tissue reaches the slide's edges (1.1 x 1.1 mm)."""
    import tifffile

    from napari_histostain.io.synthetic import write_slide
    from napari_histostain.simulate import simulate_case

    out = tmp_path_factory.mktemp("case")
    simulate_case(out, ["ki67"], case_id="d", size_um=1100.0, mpp=0.5, seed=7)
    rgb = tifffile.imread(next(out.rglob("d_HE.tiff")))
    # cropped inside the section: tissue runs to the bottom and right edges, mid-tile
    crop = np.ascontiguousarray(rgb[200:1900, 200:1900])

    def render(y0, x0, h, w):
        return crop[y0 : y0 + h, x0 : x0 + w]

    return write_slide(out / "edge_HE.tif", *crop.shape[:2], render, 0.5)


@pytest.fixture()
def predicted(qtbot, make_napari_viewer, he_slide, model_files):
    """A whole-slide prediction of Ki-67 and P53 in a real viewer."""
    from napari_histostain._qt.widget import PredictionWidget
    from napari_histostain.plugin.reader import read_slide_layer

    viewer = make_napari_viewer()
    data, kwargs, _ = read_slide_layer(he_slide)
    viewer.add_image(data, **kwargs)
    widget = PredictionWidget(viewer)
    viewer.window.add_dock_widget(widget, name="HistoStain")
    widget.set_model_files(model_files)
    widget.set_markers(["ki67", "p53"])
    widget.set_mode("whole")
    widget.run()
    qtbot.waitUntil(lambda: "Whole slide done" in widget.last_message, timeout=TIMEOUT_MS)
    yield viewer, widget
    widget.close_session()


def test_one_marker_shown_at_a_time_with_legend_and_optional_colour_bar(predicted):
    viewer, widget = predicted
    first = widget.predictor.markers[0]  # the first marker is shown first
    other = "ki67" if first == "p53" else "p53"
    names = {"ki67": "Ki-67", "p53": "P53"}
    ki = viewer.layers[f"{names[first]} positivity"]
    p53 = viewer.layers[f"{names[other]} positivity"]
    assert widget.shown_marker == first
    assert ki.visible and not p53.visible
    # the range and meaning are in the widget's legend; napari's canvas colour bar (redrawn with
    # every frame) only when asked for
    assert not ki.colorbar.visible and not p53.colorbar.visible
    widget.colorbar_box.setChecked(True)
    assert ki.colorbar.visible and not p53.colorbar.visible
    assert f"{names[first]} positivity" in widget.legend.text and "negative" in widget.legend.text
    assert "0.50" in widget.legend.text  # the tile threshold
    widget.show_combo.setCurrentIndex(widget.show_combo.findData(other))
    assert widget.shown_marker == other
    assert p53.visible and not ki.visible and p53.colorbar.visible and not ki.colorbar.visible
    widget.colorbar_box.setChecked(False)
    assert not p53.colorbar.visible
    assert f"{names[other]} positivity" in widget.legend.text
    # the legend bar is drawn from the layer's colormap: its ends are the colormap's ends
    lo, hi = (np.asarray(p53.colormap.map(np.array([v]))[0][:3]) * 255 for v in (0.0, 1.0))
    got = [np.array([c.red(), c.green(), c.blue()]) for c in widget.legend.colours]
    np.testing.assert_allclose(got[0], lo, atol=1)
    np.testing.assert_allclose(got[1], hi, atol=1)
    widget.threshold_spin.setValue(0.7)
    assert "0.70" in widget.legend.text


def test_clicked_tile_is_outlined_and_clipped_to_the_slide(predicted):
    viewer, widget = predicted
    maps = widget.predictor.maps
    w, h = widget.predictor.slide.dimensions
    mx, my = maps.slide_mpp
    t = maps.tile_px0
    # the tile reaching furthest down: its square runs past the slide's bottom edge
    i = int(np.argmax(maps.coords[:, 1]))
    assert maps.coords[i, 1] + t > h
    centre = ((maps.coords[i, 1] + 5) * my, (maps.coords[i, 0] + t / 2) * mx)
    s = widget.show_tile_at(centre)
    assert s["tile"] == i
    layer = viewer.layers["Selected tile"]
    (rect,) = layer.data
    assert rect[:, 0].max() == pytest.approx((h - 0.5) * my)  # clipped at the slide's edge
    assert rect[:, 0].min() == pytest.approx((maps.coords[i, 1] - 0.5) * my)
    assert rect[:, 1].max() - rect[:, 1].min() == pytest.approx(min(t, w - maps.coords[i, 0]) * mx)
    # another click moves the same layer's outline
    j = int(np.argmin(maps.coords[:, 0]))
    widget.select_tile(j)
    assert len(viewer.layers["Selected tile"].data) == 1
    assert viewer.layers["Selected tile"].data[0][:, 1].min() == pytest.approx(
        (maps.coords[j, 0] - 0.5) * mx
    )


def test_tile_table_sorts_and_goes_to_the_clicked_row(qtbot, predicted):
    from qtpy.QtCore import Qt

    from napari_histostain._qt.viewport import camera_of

    viewer, widget = predicted
    table = widget.tile_table
    maps = widget.predictor.maps
    assert table.proxy.rowCount() == int(maps.done.sum()) == len(maps)
    col = table.model.columns.index("Ki-67 pos.")
    table.view.sortByColumn(col, Qt.DescendingOrder)
    shown = [table.tile_of_row(r) for r in range(table.proxy.rowCount())]
    pos = maps.markers["ki67"].positivity
    assert list(pos[shown]) == sorted(pos, reverse=True)
    # clicking the top row centres the view on that tile and outlines it
    top = shown[0]
    rect = table.view.visualRect(table.proxy.index(0, 0))
    qtbot.mouseClick(table.view.viewport(), Qt.LeftButton, pos=rect.center())
    half = (maps.tile_px0 - 1) / 2
    centre = (
        (maps.coords[top, 1] + half) * maps.slide_mpp[1],
        (maps.coords[top, 0] + half) * maps.slide_mpp[0],
    )
    np.testing.assert_allclose(camera_of(viewer).center[-2:], centre, atol=1e-6)
    assert widget.last_tile["tile"] == top
    assert "Selected tile" in viewer.layers
