"""Benchmark the prediction widget under a real napari viewer (run with xvfb-run -a python ...).

Per phase, the longest GUI stall (the largest gap between ticks of a 10 ms QTimer; target 100 ms):
- open: adding the slide layer and the dock widget (and whatever the widget starts then);
- first Predict: from the click (visible region) to the first visible tile, which is also timed
  (target 1.5 s after the click, setup included);
- streaming: three pans over uncached tissue, each to a full view;
- whole slide: a whole-slide run to the end (its time against headless `predict_slide`);
- cancel: a whole-slide run cancelled after two batches; the time from Cancel until the widget is
  idle (target 1 s) and the tiles it reports;
- open again: opening a second slide (the simulated IHC slide), its modules already imported;
- IHC measure: measuring that slide in the Observed IHC panel.
Baselines: the largest gap with the viewer idle for 3 s; while panning with nothing running (canvas
redraws alone); while napari adds and removes one small image layer (what each overlay layer costs).

Where a stall went: a watchdog thread samples the GUI thread's stack every 10 ms once the timer
has not ticked for 50 ms; each stall over 100 ms is listed with its most frequent innermost frames
and a split (imports, napari's unit registry, reading pixels, this project's code, napari adding a
layer, napari's progress bar, painting); `--profile-stalls` lists every stall with its most
frequent stack. On a 2-core machine with software OpenGL (Xvfb + llvmpipe) the GUI thread paints
the canvas itself: one redraw costs about as much as the 100 ms target, adding a layer more, and
building napari's activity-dock progress bar processes events (a redraw), so phases that change
what is shown stall for those calls (napari / vispy, named in the output), not for this project's
code (listed separately). The widget sets the bar's value without napari's event processing
(`_qt/throttle.py`). The machine is shared: compare versions in alternating runs and note the load
(`uptime`).

Usage: xvfb-run -a python benchmarks/bench_widget.py [--size 6144] [--model ki67=PATH]
       [--profile-stalls]  (NAPARI_ASYNC=1 for napari's experimental async slicing)
"""

from __future__ import annotations

import argparse
import tempfile
import threading
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


def wait(seconds: float) -> None:
    t = time.perf_counter() + seconds
    spin(lambda: time.perf_counter() >= t)


class TickRecorder:
    """Largest gap between ticks of a 10 ms QTimer (event-loop stall), with where the GUI thread was.

    A watchdog thread samples the GUI thread's stack (`sys._current_frames`) every 10 ms while the
    timer has not ticked for over 50 ms. After `stop()`, `stalls` lists each gap over `threshold`
    seconds as (start s after `start()`, seconds, samples); a sample is the stack (outermost first)
    as "file:line function" strings.
    """

    def __init__(self, threshold: float = 0.1):
        from qtpy.QtCore import QTimer

        self.threshold = threshold
        self.timer = QTimer()
        self.timer.setInterval(10)
        self.timer.timeout.connect(self._tick)
        self.ticks: list[float] = []
        self.gui = threading.get_ident()
        self.samples: list[tuple[float, tuple[str, ...]]] = []
        self.stalls: list[tuple[float, float, list[tuple[str, ...]]]] = []
        self._watch = threading.Event()
        threading.Thread(target=self._watchdog, daemon=True, name="stall-watchdog").start()

    def _tick(self):
        self.ticks.append(time.perf_counter())

    def _watchdog(self):
        import sys

        while True:
            time.sleep(0.01)
            if not self._watch.is_set() or not self.ticks:
                continue
            now = time.perf_counter()
            if now - self.ticks[-1] < 0.05:
                continue
            frame = sys._current_frames().get(self.gui)
            # walk the frames by hand: no source lines read (file I/O would let the GUI thread
            # run on while its stack is being read)
            stack = []
            while frame is not None:
                code = frame.f_code
                stack.append(f"{_short(code.co_filename)}:{frame.f_lineno} {code.co_name}")
                frame = frame.f_back
            del frame
            if stack:
                self.samples.append((now, tuple(reversed(stack))))

    def start(self):
        self.samples = []
        self.ticks = [time.perf_counter()]
        self._watch.set()
        self.timer.start()

    def stop(self) -> float:
        self.ticks.append(time.perf_counter())
        self._watch.clear()
        self.timer.stop()
        t = np.asarray(self.ticks)
        gaps = np.diff(t)
        self.stalls = []
        for i in np.flatnonzero(gaps > self.threshold):
            inside = [s for when, s in self.samples if t[i] < when <= t[i + 1] + 0.005]
            self.stalls.append((t[i] - t[0], gaps[i], inside))
        return float(gaps.max())


def _short(filename: str) -> str:
    """A frame's file, from its package down (site-packages and the repository stripped)."""
    f = filename.replace("\\", "/")
    for marker in ("site-packages/", "/napari_histostain/", "/benchmarks/"):
        if marker in f:
            tail = f.split(marker, 1)[1]
            return tail if marker == "site-packages/" else marker.strip("/") + "/" + tail
    return Path(f).name


def _culprit(stack: tuple[str, ...]) -> str:
    """Innermost frame of this project and innermost frame of napari / vispy / dask in a stack."""
    ours = [f for f in stack if f.startswith("napari_histostain/")]
    lib = [f for f in stack if f.split("/", 1)[0] in ("napari", "vispy", "dask", "pint")]
    parts = []
    if ours:
        parts.append(ours[-1])
    if lib:
        parts.append(lib[-1])
    return " > ".join(parts) or stack[-1]


def ours_on_top(samples: list[tuple[str, ...]]) -> float:
    """Share of a stall's samples where this project's code, not napari / vispy / Qt, was running
    (its innermost frame below no napari, vispy or dask frame)."""
    if not samples:
        return 0.0
    n = 0
    for s in samples:
        for f in reversed(s):
            if f.startswith("napari_histostain/"):
                n += 1
                break
            if f.split("/", 1)[0] in ("napari", "vispy", "dask", "pint", "qtpy", "superqt"):
                break
    return n / len(samples)


#: What a stall's samples were doing, first match wins: (label, test on the stack).
CATEGORIES = [
    ("importing modules", lambda s: any("<frozen importlib" in f for f in s)),
    ("napari's unit registry (pint)", lambda s: any(f.startswith("pint/") for f in s)),
    ("reading slide pixels", lambda s: any(f.startswith("napari_histostain/io/") for f in s)),
    ("this project's code", lambda s: ours_on_top([s]) > 0),
    ("napari adding a layer", lambda s: any(" add_image" in f or "_add_layer" in f for f in s)),
    ("napari progress bar", lambda s: any("progress" in f for f in s)),
    (
        "painting (vispy canvas; Qt widgets: no Python frame below Qt's event)",
        lambda s: (
            s[-1].endswith((" event", " eventFilter"))
            or any(f.startswith("vispy/") or " paint" in f for f in s)
        ),
    ),
]


def breakdown(length: float, samples: list[tuple[str, ...]]) -> str:
    """A stall's length split by what its samples were doing (shares of the samples)."""
    if not samples:
        return ""
    counts: dict[str, int] = {}
    for smp in samples:
        label = next((lab for lab, test in CATEGORIES if test(smp)), "other")
        counts[label] = counts.get(label, 0) + 1
    parts = sorted(counts.items(), key=lambda kv: -kv[1])
    return ", ".join(f"{lab} ~{length * n / len(samples) * 1000:.0f} ms" for lab, n in parts)


def describe(samples: list[tuple[str, ...]]) -> str:
    """The most frequent culprit among a stall's stack samples (10 ms apart), with its share."""
    if not samples:
        return "no sample (shorter than the watchdog's 50 ms delay)"
    counts: dict[str, int] = {}
    for s in samples:
        k = _culprit(s)
        counts[k] = counts.get(k, 0) + 1
    top = sorted(counts.items(), key=lambda kv: -kv[1])[:2]
    return "; ".join(f"{k} ({n}/{len(samples)})" for k, n in top)


def print_stack(samples: list[tuple[str, ...]], indent: str = "      ") -> None:
    """The most frequent stack of a stall, innermost last, frames of the event loop dropped."""
    if not samples:
        return
    counts: dict[tuple[str, ...], int] = {}
    for s in samples:
        counts[s] = counts.get(s, 0) + 1
    stack, n = max(counts.items(), key=lambda kv: kv[1])
    keep = [f for f in stack if not f.startswith(("bench_widget", "benchmarks/", "qtpy/"))]
    print(f"{indent}most frequent stack ({n}/{len(samples)} samples):")
    for f in keep[-14:]:
        print(f"{indent}  {f}")


def camera(viewer):
    scene = getattr(viewer, "scene", None)
    return getattr(scene, "camera", None) or viewer.camera


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=6144, help="synthetic slide side, px at 0.5 um/px")
    ap.add_argument(
        "--model", action="append", default=[], help="MARKER=PATH (default: bundled Ki-67)"
    )
    ap.add_argument(
        "--profile-stalls",
        action="store_true",
        help="list every stall over 100 ms with the GUI thread's most frequent stack",
    )
    args = ap.parse_args()

    import napari

    import napari_histostain
    from napari_histostain._qt.widget import PredictionWidget
    from napari_histostain.engine.model_files import (
        bundled_model_path,
        save_model_file,
        seeded_model,
    )
    from napari_histostain.engine.predict import PredictOptions, predict_slide
    from napari_histostain.io.synthetic import write_synthetic_slide
    from napari_histostain.plugin.reader import read_slide_layer
    from napari_histostain.simulate import simulate_case

    print(f"package: {napari_histostain.__file__}")
    tmp = Path(tempfile.mkdtemp(prefix="bench-widget-"))
    slide_path = write_synthetic_slide(tmp / "bench.tif", args.size, args.size, 0.5, seed=4)
    simulate_case(tmp, ["ki67"], case_id="ihc", size_um=1024.0, mpp=0.5, seed=5)
    ihc_path = next(tmp.rglob("ihc_ki67.tiff"))
    models = dict(m.split("=", 1) for m in args.model)
    if not models and bundled_model_path("ki67").is_file():
        models = {"ki67": str(bundled_model_path("ki67"))}
    elif not models:  # no bundled model installed: a seeded one of the same architecture
        net, cfg = seeded_model("ki67", seed=1)
        models = {"ki67": str(save_model_file(tmp / "ki67.pt", net, cfg))}

    viewer = napari.Viewer(show=True)
    viewer.window._qt_window.resize(1400, 900)
    rec = TickRecorder()
    stalls: dict[str, float] = {}
    found: dict[str, list] = {}  # phase: its stalls over 100 ms
    wait(0.5)
    rec.start()
    wait(3.0)
    idle = rec.stop()

    # ---- open ------------------------------------------------------------------------------------
    rec.start()
    steps = [time.perf_counter()]
    data, kw, _ = read_slide_layer(slide_path)
    steps.append(time.perf_counter())
    slide_layer = viewer.add_image(data, **kw)
    steps.append(time.perf_counter())
    widget = PredictionWidget(viewer)
    viewer.window.add_dock_widget(widget)
    steps.append(time.perf_counter())
    open_steps = np.diff(steps)
    widget.set_model_files(list(models.values()))
    widget.set_markers(list(models))
    widget.set_mode("visible")
    wait(3.0)  # the user looks at the slide before pressing Predict
    stalls["open"] = rec.stop()
    found["open"] = rec.stalls

    # ---- first Predict: the click to the first visible tile ----------------------------------------
    cam = camera(viewer)
    h, w = viewer.window._qt_viewer.canvas.size
    side_um = 224.0
    cam.zoom = min(h, w) / (5.2 * side_um)  # about 6 x 6 tiles in view
    cam.center = (args.size * 0.5 * 0.3, args.size * 0.5 * 0.3)
    wait(0.3)
    rec.start()
    t_click = time.perf_counter()
    widget.run()
    spin(lambda: "first_tile_at" in widget.timing.marks)
    first_tile = widget.timing.marks["first_tile_at"] - t_click
    spin(lambda: widget._t_view == 0.0)
    stalls["first Predict"] = rec.stop()
    found["first Predict"] = rec.stalls
    pred = widget.predictor
    g = pred.grid

    # ---- streaming: pans over uncached tissue ------------------------------------------------------
    def view_done():
        s = widget._live
        return s is not None and not s.pending and not s.in_flight and widget._t_view == 0.0

    centres = g.centres_um()
    pans = []
    rec.start()
    for k in range(3):
        far = np.argsort(-np.hypot(*(centres - centres.mean(0)).T))
        target = centres[far[len(far) // (k + 2)]]
        t_cam = time.perf_counter()
        cam.center = tuple(target)
        wait(0.2)
        spin(view_done)
        pans.append(widget.timing.marks.get("viewport_at", float("nan")) - t_cam)
    stalls["streaming"] = rec.stop()
    found["streaming"] = rec.stalls
    widget.stop()
    wait(0.3)

    # ---- whole slide ---------------------------------------------------------------------------------
    options = PredictOptions(models=pred.models, encoder=pred.encoder, batch_size=widget.batch_size)
    out = {}

    def headless():
        t0 = time.perf_counter()
        predict_slide(pred.slide, list(models), options, tissue=pred.tissue)
        out["s"] = time.perf_counter() - t0

    t = threading.Thread(target=headless)
    t.start()
    t.join()
    widget.set_mode("whole")
    widget._predictor_key = None  # fresh session: nothing cached (setup included)
    wait(0.2)
    rec.start()
    t0 = time.perf_counter()
    widget.run()
    spin(lambda: widget.predictor is not pred and not widget.busy)
    whole = time.perf_counter() - t0
    stalls["whole slide"] = rec.stop()
    found["whole slide"] = rec.stalls
    ticks = np.asarray(rec.ticks)
    handlers = sorted((e for e in widget.timing.log if e[1] >= t0), key=lambda e: -e[2])[:6]

    # ---- cancel --------------------------------------------------------------------------------------
    widget._predictor_key = None
    widget.batch_size = 8
    rec.start()
    widget.run()
    spin(lambda: widget._whole_worker is not None)
    n0 = widget.stream_updates
    spin(lambda: widget.stream_updates >= n0 + 2)
    shown = int(widget.predictor.maps.done.sum())
    t_cancel = time.perf_counter()
    widget.cancel()
    spin(lambda: not widget.busy)
    cancel_s = time.perf_counter() - t_cancel
    cancel_msg = widget.last_message
    wait(2.0)
    later = int(widget.predictor.maps.done.sum())
    stalls["cancel"] = rec.stop()
    found["cancel"] = rec.stalls

    # ---- IHC measure ---------------------------------------------------------------------------------
    # opening a second slide (what "open" costs once the modules it needs are imported)
    rec.start()
    steps = [time.perf_counter()]
    data, kw, _ = read_slide_layer(ihc_path)
    steps.append(time.perf_counter())
    ihc_layer = viewer.add_image(data, **kw)
    steps.append(time.perf_counter())
    wait(1.0)
    stalls["open again"] = rec.stop()
    found["open again"] = rec.stalls
    again_steps = np.diff(steps)
    ihc_layer.visible = False  # the IHC slide is measured, not looked at, here
    viewer.layers.selection.active = slide_layer
    panel = widget.ihc_panel
    panel.set_ihc_layer(kw["name"])
    panel.set_marker("ki67")
    panel.set_mode("whole")
    wait(0.3)
    rec.start()
    t0 = time.perf_counter()
    panel.run()
    spin(lambda: not panel.busy)
    ihc_s = time.perf_counter() - t0
    wait(0.3)
    stalls["IHC measure"] = rec.stop()
    found["IHC measure"] = rec.stalls

    # ---- baseline: canvas redraws alone (pans with nothing running) ---------------------------------
    wait(1.0)
    rec.start()
    for k in range(6):
        cam.center = tuple(centres[(k * 17) % len(centres)])
        wait(0.4)
    redraw = rec.stop()
    found["redraw baseline"] = rec.stalls

    # ---- baseline: napari adding a small image layer (what each overlay layer costs napari) -------
    wait(0.5)
    rec.start()
    small = viewer.add_image(np.random.default_rng(0).random((g.n_rows, g.n_cols)), name="tmp")
    wait(0.5)
    viewer.layers.remove(small)
    wait(0.5)
    add_layer = rec.stop()
    found["add-layer baseline"] = rec.stalls

    print(
        f"slide {args.size}x{args.size} px at 0.5 um/px; grid {g.n_rows}x{g.n_cols}, "
        f"{len(g)} tissue tiles of {g.tile_size} px at {g.tile_mpp} um/px; markers {list(models)}"
    )
    print(f"idle baseline: longest gap {idle * 1000:.0f} ms")
    print(f"canvas redraw baseline (pans, nothing running): longest gap {redraw * 1000:.0f} ms")
    print(
        "napari add-layer baseline (a small image layer added and removed, nothing running): "
        f"longest gap {add_layer * 1000:.0f} ms"
    )
    for k, v in stalls.items():
        print(f"longest GUI stall, {k}: {v * 1000:.0f} ms (target 100 ms)")
    print(
        "  open: reader {:.0f} ms, add_image {:.0f} ms (napari), widget + dock {:.0f} ms".format(
            *(open_steps * 1000)
        )
    )
    print(
        "  open again (second slide, modules imported): reader {:.0f} ms, add_image {:.0f} ms".format(
            *(again_steps * 1000)
        )
    )
    print(f"first visible tile after the Predict click: {first_tile:.2f} s (target 1.5 s)")
    print("streaming: full view after each pan: " + ", ".join(f"{p:.2f} s" for p in pans))
    print(
        f"whole slide: {len(widget.predictor.grid)} tiles in {whole:.2f} s incl. setup; headless "
        f"predict_slide {out['s']:.2f} s"
    )
    print(
        f"cancel: idle {cancel_s * 1000:.0f} ms after Cancel (target 1 s); tiles shown at the "
        f"click {shown}, 2 s later {later}; message: {cancel_msg[:60]!r}"
    )
    print(f"IHC measure: {ihc_s:.2f} s")
    print(
        "  slowest GUI handlers of the whole-slide run (s after start, ms): "
        + ", ".join(f"{lab} {t - ticks[0]:.2f}: {d * 1000:.0f}" for lab, t, d in handlers)
    )
    print("stalls over 100 ms with this project's code running in most of their samples:")
    mine = [
        (phase, at, length, ours_on_top(smp))
        for phase, stalls_ in found.items()
        for at, length, smp in stalls_
        if ours_on_top(smp) > 0.5
    ]
    for phase, at, length, share in sorted(mine, key=lambda m: -m[2]):
        print(f"  {phase} {at:.2f} s: {length * 1000:.0f} ms ({share:.0%} of samples ours)")
    if not mine:
        print("  none")
    print("stalls over 100 ms per phase (s into the phase, length; where the GUI thread was):")
    for phase, stalls_ in found.items():
        worst = sorted(stalls_, key=lambda st: -st[1])
        shown_ = worst if args.profile_stalls else worst[:3]
        print(f"  {phase}: {len(stalls_)} stall(s)")
        for at, length, samples in shown_:
            print(f"    {at:6.2f} s {length * 1000:5.0f} ms: {describe(samples)}")
            if samples:
                print(f"      split: {breakdown(length, samples)}")
            if args.profile_stalls:
                print_stack(samples)
    widget.close_session()
    viewer.close()


if __name__ == "__main__":
    main()
