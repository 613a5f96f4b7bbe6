"""The demo's napari window: the sample slide (and its hidden IHC) with the prediction widget docked."""

from __future__ import annotations

from pathlib import Path

from qtpy.QtCore import QTimer

from ..plugin.reader import read_slide_layer
from .mode import WHOLE


def run_demo_window(he: Path, ihc: Path | None, screenshot: str | None) -> int:
    """napari with the H&E slide (and the hidden IHC) and the dock widget; blocks until closed."""
    import napari

    viewer = napari.Viewer(title="napari-histostain demo")
    for path, visible in ((he, True), (ihc, False)):
        if path is None:
            continue
        data, kwargs, _ = read_slide_layer(path)
        viewer.add_image(data, **dict(kwargs, visible=visible))
    viewer.layers.selection.active = viewer.layers[0]
    _, widget = viewer.window.add_plugin_dock_widget("napari-histostain", "HistoStain prediction")
    viewer.reset_view()
    if screenshot:
        _screenshot_after_whole_slide(viewer, widget, screenshot)
    napari.run()
    return 0


def _screenshot_after_whole_slide(viewer, widget, path: str) -> None:
    """Run a whole-slide prediction from the widget, then save a window screenshot and quit."""
    widget.set_mode(WHOLE)
    widget.run()
    timer = QTimer(widget)

    def finish() -> None:
        viewer.screenshot(path, canvas_only=False, flash=False)
        print(f"wrote {path}")
        viewer.close()

    def poll() -> None:
        # done when the whole-slide result is stored; finish outside the widget's own handlers
        if "whole_slide_s" in widget.timing.marks and not widget.busy:
            timer.stop()
            QTimer.singleShot(300, finish)

    timer.timeout.connect(poll)
    timer.start(500)
