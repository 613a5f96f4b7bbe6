"""Make docs/images/gui_ihc_observed.png: predicted and observed Ki-67 one above the other (Xvfb).

    xvfb-run -a .venv/bin/python scripts/screenshots_ihc.py docs/images [--streaming]

The simulated Ki-67 sample case: the H&E with the positivity predicted by the bundled model (top)
and the consecutive IHC section with the observed positivity measured by the widget's "Observed
IHC" section and its nuclei (bottom), in napari's grid mode.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def main(out_dir: str = "docs/images", streaming: bool = False) -> Path:
    """Write the screenshot (and, with `streaming`, gui_ihc_streaming.png of a run half done)."""
    import napari
    import numpy as np
    from screenshots import _shot, _wait

    from napari_histostain._qt.widget import PredictionWidget
    from napari_histostain.plugin.sample_data import simulated_ki67_case

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    viewer = napari.Viewer(show=True)
    viewer.window._qt_window.resize(1500, 950)
    for data, kw, _ in simulated_ki67_case():
        viewer.add_image(data, **kw)
    he, ihc = viewer.layers[0], viewer.layers[1]
    viewer.layers.selection.active = he
    widget = PredictionWidget(viewer)
    viewer.window.add_dock_widget(widget, name="HistoStain prediction", area="right")
    widget.set_markers(["ki67"])
    widget.set_mode("whole")
    widget.run()
    _wait(lambda: widget.predictor is not None and not widget.busy)
    panel = widget.ihc_panel
    panel.set_expanded(True)
    panel.set_ihc_layer(ihc.name)
    panel.set_mode("whole")
    panel.run()
    if streaming:  # the observed map while tiles are still being measured
        name = "Ki-67 observed positivity"

        def part_done() -> bool:
            if name not in viewer.layers:
                return False
            finite = np.isfinite(viewer.layers[name].data)
            return finite.sum() >= 0.4 * np.isfinite(viewer.layers["Ki-67 positivity"].data).sum()

        _wait(part_done, settle=False)
        viewer.layers["Ki-67 positivity"].visible = he.visible = False
        ihc.visible = True
        viewer.layers.selection.active = viewer.layers[name]
        _scroll_to_bottom(widget)  # the panel's progress line
        _shot(viewer, out / "gui_ihc_streaming.png")
        viewer.layers["Ki-67 positivity"].visible = he.visible = True
    _wait(lambda: not panel.busy)
    # top viewbox: H&E + predicted (+ hidden attention); bottom: IHC + observed + nuclei
    order = [
        he.name,
        "Ki-67 positivity",
        "Ki-67 attention",
        ihc.name,
        "Ki-67 observed positivity",
        "Ki-67 nuclei",
    ]
    for i, name in enumerate(order):
        viewer.layers.move(viewer.layers.index(name), i)
    ihc.visible = True
    viewer.layers["Ki-67 attention"].visible = False
    grid = viewer.canvas.grid if hasattr(viewer, "canvas") else viewer.grid
    grid.stride, grid.spacing, grid.shape = 3, 0.02, (2, 1)
    grid.enabled = True
    viewer.reset_view()
    (viewer.scene if hasattr(viewer, "scene") else viewer).camera.zoom *= 1.1
    _wait(lambda: True)
    _scroll_to_bottom(widget)
    path = _shot(viewer, out / "gui_ihc_observed.png")
    widget.close_session()
    viewer.close()
    return path


def _scroll_to_bottom(widget) -> None:
    from qtpy.QtWidgets import QScrollArea
    from screenshots import _wait

    bar = widget.findChild(QScrollArea).verticalScrollBar()
    bar.setValue(bar.maximum())
    _wait(lambda: True)


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", nargs="?", default="docs/images", help="output folder (docs/images)")
    ap.add_argument("--streaming", action="store_true", help="the observed map while it streams")
    args = ap.parse_args()
    print(main(args.out, streaming=args.streaming))
