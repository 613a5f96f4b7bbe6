"""Benchmark the prediction widget under a real napari viewer (run with xvfb-run -a python ...).

Figures (each with a baseline measured in the same run, as a ratio; headless baselines run in a
plain thread with the GUI idle, as the widget's workers run off the GUI thread):
- visible region: time to the first tile result and to a full viewport (<= 40 tiles) after a pan
  to an uncached area (targets 1 s and 3 s); baseline: the same tiles predicted headless
  (`predict_slide(region=...)`, one call, no GUI);
- whole slide: the longest Qt event-loop stall (largest gap between ticks of a 10 ms QTimer, target
  100 ms); baseline: the largest gap with the viewer idle for as long; and the run time against
  headless `predict_slide` of the same slide.

Usage: xvfb-run -a python benchmarks/bench_widget.py [--size 8192] [--model ki67=PATH]
       [--refresh-interval S]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np


def spin(cond, timeout: float = 600.0) -> None:
    """Run the Qt event loop (in 10 ms slices, as pytest-qt does) until `cond()` is true."""
    from qtpy.QtTest import QTest

    t0 = time.perf_counter()
    while not cond():
        QTest.qWait(10)
        if time.perf_counter() - t0 > timeout:
            raise TimeoutError(f"benchmark step timed out after {timeout:.0f} s")


def in_thread(fn):
    """Run `fn()` in a plain thread (as the widget's workers do) with the GUI idle; its seconds."""
    import threading

    out = {}

    def run():
        t0 = time.perf_counter()
        fn()
        out["s"] = time.perf_counter() - t0

    t = threading.Thread(target=run)
    t.start()
    t.join()
    return out["s"]


class TickRecorder:
    """Largest gap between ticks of a 10 ms QTimer (event-loop stall)."""

    def __init__(self):
        from qtpy.QtCore import QTimer

        self.timer = QTimer()
        self.timer.setInterval(10)
        self.timer.timeout.connect(self._tick)
        self.ticks: list[float] = []

    def _tick(self):
        self.ticks.append(time.perf_counter())

    def start(self):
        self.ticks = [time.perf_counter()]
        self.timer.start()

    def stop(self) -> float:
        self.timer.stop()
        return float(np.max(np.diff(self.ticks))) if len(self.ticks) > 1 else float("nan")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=8192, help="synthetic slide side, px at 0.5 um/px")
    ap.add_argument(
        "--model", action="append", default=[], help="MARKER=PATH (default: bundled Ki-67)"
    )
    ap.add_argument(
        "--refresh-interval",
        type=float,
        default=None,
        help="overlay redraw throttle in s (default: the widget's)",
    )
    args = ap.parse_args()

    import napari

    from napari_histostain._qt.viewport import viewport_world_box
    from napari_histostain._qt.widget import PredictionWidget
    from napari_histostain.engine.model_files import (
        bundled_model_path,
        save_model_file,
        seeded_model,
    )
    from napari_histostain.engine.predict import PredictOptions, predict_slide
    from napari_histostain.io.synthetic import write_synthetic_slide
    from napari_histostain.plugin.reader import read_slide_layer

    tmp = Path(tempfile.mkdtemp(prefix="bench-widget-"))
    slide_path = write_synthetic_slide(tmp / "bench.tif", args.size, args.size, 0.5, seed=4)
    models = dict(m.split("=", 1) for m in args.model)
    if not models and bundled_model_path("ki67").is_file():
        models = {"ki67": str(bundled_model_path("ki67"))}
    elif not models:  # no bundled model installed: a seeded one of the same architecture
        net, cfg = seeded_model("ki67", seed=1)
        models = {"ki67": str(save_model_file(tmp / "ki67.pt", net, cfg))}

    viewer = napari.Viewer(show=True)
    viewer.window._qt_window.resize(1400, 900)
    data, kw, _ = read_slide_layer(slide_path)
    viewer.add_image(data, **kw)
    widget = PredictionWidget(viewer)
    viewer.window.add_dock_widget(widget)
    widget.set_model_files(list(models.values()))
    widget.set_markers(list(models))
    if args.refresh_interval is not None:
        widget.refresh_interval = args.refresh_interval
    spin(lambda: True)

    # ---- visible region ------------------------------------------------------------------------
    widget.set_mode("visible")
    t0 = time.perf_counter()
    widget.run()
    spin(lambda: widget.live and widget.predictor is not None)
    setup = time.perf_counter() - t0
    pred = widget.predictor
    g = pred.grid
    h, w = viewer.window._qt_viewer.canvas.size
    side_um = g.tile_px0 * g.slide_mpp[0]
    viewer.camera.zoom = min(h, w) / (5.2 * side_um)  # about 6 x 6 tiles in view
    centres = g.centres_um()

    def view_done():
        s = widget._live
        return s is not None and not s.pending and not s.in_flight and widget._t_view == 0.0

    results = []
    used: set[int] = set()
    for k in range(3):  # three views over uncached tissue
        far = [i for i in np.argsort(-np.hypot(*(centres - centres.mean(0)).T)) if i not in used]
        target = centres[far[len(far) // (k + 2)]]
        t_cam = time.perf_counter()
        viewer.camera.center = tuple(target)  # the widget reacts after its 120 ms debounce
        idx = widget.visible_tiles()
        todo = pred.pending_of(idx)
        if not todo:
            continue
        spin(lambda: widget._t_view != 0.0)
        spin(view_done)
        used.update(int(i) for i in idx)
        # from the camera move, so the debounce is included
        first = widget.timing.marks.get("first_tile_at", float("nan")) - t_cam
        full = widget.timing.marks.get("viewport_at", float("nan")) - t_cam
        # baseline: the same tiles predicted headless in one call
        box = pred.maps.lattice.world_box_to_px0(*viewport_world_box(viewer))
        ref: dict = {}

        def headless_region(box=box, ref=ref):
            options = PredictOptions(models=pred.models, encoder=pred.encoder)
            ref["p"] = predict_slide(
                pred.slide, list(models), options, region=box, tissue=pred.tissue
            )

        base = in_thread(headless_region)
        results.append((len(todo), len(ref["p"].grid), first, full, base))

    # ---- whole slide -----------------------------------------------------------------------------
    widget.stop()
    rec = TickRecorder()
    rec.start()
    spin(lambda: not time.perf_counter() - rec.ticks[0] < 3.0)
    idle_gap = rec.stop()

    def headless_whole(p) -> float:
        options = PredictOptions(models=p.models, encoder=p.encoder, batch_size=widget.batch_size)
        return in_thread(lambda: predict_slide(p.slide, list(models), options, tissue=p.tissue))

    headless_before = headless_whole(pred)
    widget._predictor_key = None  # fresh session: nothing cached
    widget.set_mode("whole")
    spin(lambda: True)
    t0 = time.perf_counter()
    widget.run()
    rec.start()
    spin(lambda: widget.predictor is not pred and not widget.busy)
    run_gap = rec.stop()
    ticks = np.asarray(rec.ticks)
    gaps = np.diff(ticks)
    worst = np.argsort(-gaps)[:5]
    handlers = sorted(widget.timing.log, key=lambda e: -e[2])[:6]
    whole = time.perf_counter() - t0
    n = len(widget.predictor.grid)
    # the same overlay updates as streamed batches, without any compute: cost of redraws alone
    rec.start()
    n_batches = max(widget.stream_updates, 1)
    t_next = time.perf_counter()
    for _ in range(min(n_batches, 20)):
        widget._refresh_layers()
        widget._update_panel()
        t_next += 0.15
        spin(lambda t=t_next: time.perf_counter() >= t)
    redraw_gap = rec.stop()
    headless = (
        headless_before + headless_whole(widget.predictor)
    ) / 2  # before and after: same cache state
    setup2 = widget.timing.marks.get("setup_s", float("nan"))

    print(
        f"slide {args.size}x{args.size} px at 0.5 um/px; grid {g.n_rows}x{g.n_cols}, "
        f"{len(g)} tissue tiles of {g.tile_size} px at {g.tile_mpp} um/px; markers {list(models)}"
    )
    print(f"visible region: session setup (models, tissue, grid, encoder warm-up) {setup:.2f} s")
    for n_todo, n_ref, first, full, base in results:
        print(
            f"  view of {n_todo} new tiles: first tile {first:.3f} s (target 1 s), full view "
            f"{full:.3f} s (target 3 s); headless predict_slide of the same {n_ref} tiles "
            f"{base:.3f} s -> full-view ratio {full / base:.2f}x"
        )
    print(
        f"whole slide: {n} tiles in {whole:.2f} s (incl. {setup2:.2f} s setup), headless "
        f"predict_slide {headless:.2f} s (mean of runs before and after) -> ratio {(whole - setup2) / headless:.2f}x"
    )
    print(
        f"longest event-loop stall during the whole-slide run {run_gap * 1000:.0f} ms (target 100 ms);"
        f" idle baseline {idle_gap * 1000:.0f} ms -> ratio {run_gap / idle_gap:.1f}x"
    )
    print(f"  overlay refreshes alone (no compute): longest stall {redraw_gap * 1000:.0f} ms")
    print(
        "  largest gaps (s after start, ms):",
        ", ".join(f"{ticks[i] - ticks[0]:.2f}: {gaps[i] * 1000:.0f}" for i in worst),
    )
    print(
        "  slowest GUI handlers (s after start, ms):",
        ", ".join(f"{lab} {t - ticks[0]:.2f}: {d * 1000:.0f}" for lab, t, d in handlers),
    )
    widget.close_session()
    viewer.close()


if __name__ == "__main__":
    main()
