"""`histostain demo`: napari with the plugin and a sample slide, or the same job headless.

Without a slide, it uses the simulated Ki-67 sample case (rendered once into the user cache). The
GUI variant opens the H&E (and the hidden IHC of the same case) and docks the prediction widget; the
headless variant runs the whole-slide prediction for all markers and writes JSON + CSV.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "demo",
        help="open napari with the plugin and a sample slide (or --headless: predict it)",
        description=__doc__,
    )
    p.add_argument("slide", nargs="?", help="an H&E slide (default: the simulated Ki-67 sample case)")
    p.add_argument("--headless", action="store_true", help="no GUI: predict and write results")
    p.add_argument("--out", default="histostain-demo", help="output folder for --headless")
    p.add_argument("--screenshot", metavar="PNG", help="GUI: run a whole-slide prediction, save a "
                   "screenshot of the window and quit (for docs and smoke tests)")
    p.set_defaults(func=run)


def _sample_paths(slide: str | None) -> tuple[Path, Path | None]:
    if slide:
        return Path(slide), None
    from ..plugin.sample_data import sample_case_paths

    print("preparing the simulated Ki-67 sample case (first time only: a few seconds) ...")
    he, ihc = sample_case_paths("ki67")
    return he, ihc


def run(args: argparse.Namespace) -> int:
    he, ihc = _sample_paths(args.slide)
    if args.headless:
        from . import predict

        parser = argparse.ArgumentParser(prog="histostain")
        predict.register(parser.add_subparsers())
        ns = parser.parse_args(["predict", str(he), "--out", args.out])
        return ns.func(ns)
    return _run_gui(he, ihc, args.screenshot)


def _run_gui(he: Path, ihc: Path | None, screenshot: str | None) -> int:
    import napari

    from ..plugin.reader import read_slide_layer

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
    from qtpy.QtCore import QTimer

    from .._qt._common import WHOLE

    widget.set_mode(WHOLE)
    widget.run()
    timer = QTimer(widget)

    def finish() -> None:
        viewer.screenshot(path, canvas_only=False, flash=False)
        print(f"wrote {path}")
        viewer.close()

    def poll() -> None:
        # done when the whole-slide result is stored; finish outside the widget's own handlers
        if "whole_slide_s" in widget.timings and not widget.busy:
            timer.stop()
            QTimer.singleShot(300, finish)

    timer.timeout.connect(poll)
    timer.start(500)
