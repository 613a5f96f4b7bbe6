"""Make the user-guide screenshots (docs/images/gui_*.png) under a display or Xvfb.

    xvfb-run -a .venv/bin/python scripts/screenshots.py docs/images

Uses the simulated Ki-67 sample case. Where no bundled models are installed, seeded (untrained)
models are used and the pictures say so in the model line of the widget.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path


def _wait(cond, timeout: float = 300.0, settle: bool = True) -> None:
    from qtpy.QtWidgets import QApplication

    t0 = time.perf_counter()
    while not cond():
        QApplication.processEvents()
        time.sleep(0.02)
        if time.perf_counter() - t0 > timeout:
            raise TimeoutError("screenshot step timed out")
    for _ in range(20 if settle else 0):
        QApplication.processEvents()
        time.sleep(0.01)


def _dismiss_notifications() -> None:
    from napari._qt.dialogs.qt_notification import NapariQtNotification
    from qtpy.QtWidgets import QApplication

    for w in QApplication.allWidgets():
        if isinstance(w, NapariQtNotification):
            w.close()
    QApplication.processEvents()


def _shot(viewer, path: Path) -> Path:
    _dismiss_notifications()
    viewer.screenshot(str(path), canvas_only=False)
    return path


def _model_files(markers, folder: Path) -> list[Path]:
    from napari_histostain.engine.model_files import (
        bundled_model_path,
        save_model_file,
        seeded_model,
    )

    out = []
    for k, m in enumerate(markers):
        if not bundled_model_path(m).is_file():
            net, cfg = seeded_model(m, seed=7 + k)
            out.append(save_model_file(folder / f"{m}-seeded.pt", net, cfg))
    return out


def main(out_dir: str = "docs/images") -> list[Path]:
    import napari

    from napari_histostain._qt.viewport import camera_of
    from napari_histostain._qt.widget import PredictionWidget
    from napari_histostain.plugin.sample_data import simulated_ki67_case

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="histostain-shots-"))
    shots = []
    viewer = napari.Viewer(show=True)
    viewer.window._qt_window.resize(1500, 950)
    for data, kw, _ in simulated_ki67_case():
        viewer.add_image(data, **kw)
    viewer.layers.selection.active = viewer.layers[0]
    widget = PredictionWidget(viewer)
    viewer.window.add_dock_widget(widget, name="HistoStain prediction", area="right")
    markers = ["p53", "pdl1", "ki67"]
    widget.set_markers(markers)
    files = _model_files(markers, tmp)
    if files:
        widget.set_model_files(files)
    # 1. visible region, streaming in while the viewer is zoomed in
    viewer.reset_view()
    camera_of(viewer).zoom *= 1.6
    widget.set_mode("visible")
    widget.visible_batch_size = 1
    widget.refresh_interval = 0.0  # draw every tile as it arrives, so status and overlay agree
    widget.run()
    _wait(
        lambda: widget.live and widget.predictor is not None and widget.stream_updates >= 4,
        settle=False,
    )
    shots.append(_shot(viewer, out / "gui_visible_region.png"))
    _wait(
        lambda: widget._live is not None and not widget._live.pending and not widget._live.in_flight
    )
    widget.stop()
    widget.refresh_interval = 0.25
    # 2. whole slide, positivity overlay and results panel
    viewer.reset_view()
    widget.set_mode("whole")
    widget.run()
    _wait(lambda: not widget.busy)
    widget.set_shown_marker("ki67")  # one marker at a time, with its colour bar
    widget.colorbar_box.setChecked(True)  # napari's colour bar on the canvas (off by default)
    g = widget.predictor.grid
    widget.show_tile_at(g.centres_um()[len(g) // 2])
    _wait(lambda: True)
    shots.append(_shot(viewer, out / "gui_whole_slide.png"))
    # 2b. the display section: marker selector, legend; the tile table sorted, a row clicked
    from qtpy.QtCore import Qt
    from qtpy.QtWidgets import QScrollArea

    scroll = widget.findChild(QScrollArea)
    scroll.ensureWidgetVisible(widget.legend, 0, 200)
    _wait(lambda: True)
    viewer.layers.selection.active = viewer.layers["Ki-67 positivity"]
    shots.append(_shot(viewer, out / "gui_one_marker.png"))
    table = widget.tile_table
    table.view.sortByColumn(table.model.columns.index("Ki-67 pos."), Qt.DescendingOrder)
    camera_of(viewer).zoom *= 2.5
    widget.go_to_tile(table.tile_of_row(0))
    table.view.selectRow(0)
    scroll.ensureWidgetVisible(table, 0, 0)
    _wait(lambda: True)
    shots.append(_shot(viewer, out / "gui_tile_table.png"))
    viewer.reset_view()
    # 2c. side by side: the predicted map on the H&E, the observed map on the IHC (grid mode)
    panel = widget.ihc_panel
    panel.nuclei_box.setChecked(False)
    panel.set_mode("whole")
    panel.run()
    _wait(lambda: not panel.busy)
    widget.side_box.setChecked(True)
    viewer.reset_view()
    _wait(lambda: True)
    shots.append(_shot(viewer, out / "gui_side_by_side.png"))
    widget.side_box.setChecked(False)
    viewer.layers["simulated ki67 case: IHC"].visible = False
    viewer.layers["Ki-67 observed positivity"].visible = False
    viewer.reset_view()
    # 2d. annotations: a tumour region and an excluded area drawn in a Shapes layer
    import numpy as np

    he = viewer.layers["simulated ki67 case: H&E"]
    h_um, w_um = (np.asarray(he.data[0].shape[:2]) * np.asarray(he.scale[-2:])).tolist()
    tumour = np.array([[0.25, 0.2], [0.2, 0.55], [0.45, 0.8], [0.8, 0.7], [0.75, 0.3]]) * (
        h_um,
        w_um,
    )
    necrosis = np.array([[0.45, 0.45], [0.45, 0.6], [0.6, 0.6], [0.6, 0.45]]) * (h_um, w_um)
    shapes = viewer.add_shapes(
        [tumour, necrosis],
        shape_type=["polygon", "rectangle"],
        name="Regions",
        features={"class": ["Tumor", "Ignore*"], "name": ["tumour", "necrosis"]},
        edge_color=["#ffd400", "#ff3030"],
        face_color="transparent",
        edge_width=6,
        units=("um", "um"),
    )
    widget.annotations.layer_combo.setCurrentText(shapes.name)
    for name in ("Ki-67 positivity", "Selected tile"):
        viewer.layers[name].visible = False
    widget.annotations.predict_inside()  # (the whole slide is computed: results at once)
    widget._refresh_now()
    widget.stop()
    viewer.layers["Ki-67 positivity"].visible = True
    scroll.horizontalScrollBar().setValue(0)
    scroll.ensureWidgetVisible(widget.annotations.table, 0, 0)
    viewer.reset_view()
    _wait(lambda: True)
    shots.append(_shot(viewer, out / "gui_annotations.png"))
    viewer.layers["Regions"].visible = False
    # 3. attention map
    viewer.layers["Ki-67 positivity"].visible = False
    viewer.layers["Selected tile"].visible = False
    viewer.layers["Ki-67 attention"].visible = True
    _wait(lambda: True)
    shots.append(_shot(viewer, out / "gui_attention.png"))
    # 4. the exported report thumbnail
    paths = widget.export_to(tmp / "export")
    png = next(p for p in paths if p.name.endswith(".report.png"))
    shots.append(out / "gui_report.png")
    from PIL import Image

    with Image.open(png) as im:  # half size is plenty for the guide
        im.resize((im.width // 2, im.height // 2), Image.Resampling.LANCZOS).save(shots[-1])
    widget.close_session()
    viewer.close()
    shutil.rmtree(tmp, ignore_errors=True)
    return shots


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", nargs="?", default="docs/images", help="output folder (docs/images)")
    for p in main(ap.parse_args().out):
        print(p)
