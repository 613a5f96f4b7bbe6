"""Make docs/images/ihc_corrections.png: nuclei corrected by hand on a real Ki-67 slide (Xvfb).

    cd scripts && xvfb-run -a ../.venv/bin/python screenshot_corrections.py \
        ../../shared/data/slides/OS-2-Ki67-crop.tiff ../docs/images/ihc_corrections.png

The slide is measured by the widget's "Observed IHC" section over the whole slide; then the 1+
threshold is moved and a few nuclei are re-classed as a click would (the panel's `CorrectionsBox`):
negative nuclei made positive and a positive one not counted. The view zooms onto them (squares:
corrected by hand); the panel shows the re-scored values. Prints the values before and after and
the re-scoring time.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np


def main(slide: str, out: str) -> Path:
    import napari
    from screenshots import _shot, _wait
    from screenshots_ihc import _scroll_to_bottom

    from napari_histostain._qt.widget import PredictionWidget
    from napari_histostain.plugin.reader import read_slide_layer

    viewer = napari.Viewer(show=True)
    viewer.window._qt_window.resize(1500, 1000)
    data, kwargs, _ = read_slide_layer(slide)
    layer = viewer.add_image(data, **dict(kwargs, name="OS-2 Ki-67 IHC"))
    widget = PredictionWidget(viewer)
    viewer.window.add_dock_widget(widget, name="HistoStain", area="right")
    panel = widget.ihc_panel
    panel.set_expanded(True)
    panel.set_ihc_layer(layer.name)
    panel.set_marker("ki67")
    panel.set_mode("whole")
    panel.run()
    _wait(lambda: not panel.busy)
    before = dict(panel.rows)
    box = panel.corrections_box
    box.spins[0].setValue(0.18)  # 1+ from 0.20 to 0.18 OD
    ms = [box.last_ms]
    nuc = panel.result.nuclei
    points = viewer.layers["Ki-67 nuclei"]
    # near the centre of the crop: two counted negative nuclei made positive, a 3+ one not counted
    centre = np.asarray(points.data).mean(axis=0)
    near = np.argsort(np.linalg.norm(np.asarray(points.data) - centre, axis=1))
    negs = [int(i) for i in near if nuc.counted[i] and nuc.cls[i] == 0][:2]
    strong = [int(i) for i in near if nuc.counted[i] and nuc.cls[i] == 3][:1]
    for i in negs:
        box.click_combo.setCurrentText("positive")
        box.click(i)
        ms.append(box.last_ms)
    for i in strong:
        box.click_combo.setCurrentText("not counted")
        box.click(i)
        ms.append(box.last_ms)
    box.click_combo.setCurrentText("cycle")
    viewer.layers["Ki-67 observed positivity"].visible = False
    picked = np.asarray(points.data)[negs + strong]
    viewer.camera.center = tuple(picked.mean(axis=0))
    viewer.camera.zoom = 8.0
    viewer.layers.selection.active = points
    _wait(lambda: True)
    _scroll_to_bottom(widget)
    print("before:", before)
    print("after:", dict(panel.rows))
    print("corrected:", box.corrections.overrides, "thresholds", box.corrections.thresholds)
    print("re-score + redraw ms:", [round(m, 1) for m in ms], box.timings)
    path = _shot(viewer, Path(out))
    widget.close_session()
    viewer.close()
    return path


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("slide", help="Ki-67 IHC slide")
    ap.add_argument("out", nargs="?", default="docs/images/ihc_corrections.png")
    args = ap.parse_args()
    print(main(args.slide, args.out))
