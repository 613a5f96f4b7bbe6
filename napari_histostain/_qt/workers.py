"""What the widget's napari thread workers run, and the state they share with the GUI thread.

No Qt widgets here: the generators run in worker threads and yield results for the GUI thread to
store; `LiveState` and `Stopper` are shared with the GUI thread under locks and events.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Generator
from typing import Any

import numpy as np

from ..engine.region_predictor import RegionPredictor

#: Seconds a closing worker waits for its helper thread (one batch at most).
JOIN_S = 10.0


def stream_from_thread(
    job: Callable[[Callable[[Any], None]], Any], name: str, stop: threading.Event | None = None
) -> Generator[Any, None, Any]:
    """Run `job(put)` in a helper thread; yield what it `put`s, return its result.

    For napari generator workers: the blocking call runs in its own thread so its callbacks can
    stream items back while the worker yields them; an exception of `job` is re-raised here.
    Closing the generator early (the worker quit) sets `stop` (which `job` should watch) and waits
    for the helper thread, so no thread outlives its worker.
    """
    q: queue.Queue = queue.Queue()
    out: dict[str, Any] = {}
    stop = stop if stop is not None else threading.Event()

    def run() -> None:
        try:
            out["result"] = job(q.put)
        except BaseException as exc:
            out["error"] = exc
        finally:
            q.put(None)

    thread = threading.Thread(target=run, name=name, daemon=True)
    thread.start()
    try:
        while (item := q.get()) is not None:
            yield item
    finally:
        if thread.is_alive():
            stop.set()
            thread.join(JOIN_S)
    if "error" in out:
        raise out["error"]
    return out["result"]


class Running:
    """Whether one worker function is still running (set when it returns or raises)."""

    def __init__(self):
        self.done = threading.Event()

    def is_alive(self) -> bool:
        return not self.done.is_set()


def tracked(fn: Callable, runs: list[Running]) -> Callable:
    """`fn` (a function or a generator function) that records in `runs` whether it still runs."""
    import inspect

    run = Running()
    runs[:] = [r for r in runs if r.is_alive()] + [run]
    if inspect.isgeneratorfunction(fn):

        def gen(*args, **kwargs):
            try:
                return (yield from fn(*args, **kwargs))
            finally:
                run.done.set()

        return gen

    def call(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        finally:
            run.done.set()

    return call


class LiveState:
    """Tiles waiting for the visible-region worker (shared with it under a lock)."""

    def __init__(self, batch_size: int = 4):
        self.lock = threading.Lock()
        self.pending: list[int] = []
        self.in_flight: set[int] = set()
        self.stop = threading.Event()
        self.wake = threading.Event()
        self.batch_size = batch_size
        self.dropped = 0

    def replace(self, indices: list[int]) -> None:
        with self.lock:
            keep = set(indices)
            self.dropped += sum(1 for i in self.pending if i not in keep)
            self.pending = [i for i in indices if i not in self.in_flight]
        self.wake.set()

    def take(self, k: int) -> list[int]:
        with self.lock:
            batch, self.pending = self.pending[:k], self.pending[k:]
            self.in_flight.update(batch)
        return batch

    def finished(self, batch: list[int]) -> None:
        with self.lock:
            self.in_flight.difference_update(batch)


class Stopper:
    """Stops the widget's workers without touching Qt objects (safe while Qt tears down).

    `closed` is set when the widget or its window goes away: from then on the widget's signal
    handlers do nothing (their Qt objects may already be deleted). `runs` are the worker functions
    started so far (`tracked`); `join` waits for them.
    """

    def __init__(self):
        self.live: LiveState | None = None
        self.cancels: list[threading.Event] = []
        self.closed = threading.Event()
        self.runs: list[Running] = []

    def new_cancel(self) -> threading.Event:
        """A cancel flag for one run (an abandoned run keeps its own, set)."""
        ev = threading.Event()
        self.cancels = [c for c in self.cancels if not c.is_set()] + [ev]
        return ev

    def stop(self, *args) -> None:
        if self.live is not None:
            self.live.stop.set()
            self.live.wake.set()
        for c in self.cancels:
            c.set()

    def close(self, *args) -> None:
        """The widget is going away: stop everything; handlers ignore what still arrives."""
        self.closed.set()
        self.stop()

    def join(self, timeout: float = JOIN_S) -> bool:
        """Wait (at most `timeout` s in all) until every worker function returned."""
        import time

        end = time.monotonic() + timeout
        for r in list(self.runs):
            r.done.wait(max(end - time.monotonic(), 0.0))
        return not any(r.is_alive() for r in self.runs)


def live_loop(predictor: RegionPredictor, state: LiveState):
    """Worker: compute pending tiles (nearest the view centre first), yield each batch."""
    predictor.warm_up()
    yield ("ready", None, None)
    first = True
    while not state.stop.is_set():
        batch = state.take(1 if first else state.batch_size)
        if not batch:
            state.wake.wait(0.05)
            state.wake.clear()
            first = True
            continue
        first = False
        yield ("tiles", batch, predictor.compute(batch))


def whole_slide(
    predictor: RegionPredictor,
    cancel: threading.Event,
    batch_size: int,
    extra=None,
    force_call: bool = False,
):
    """Worker: `predict_slide` in a helper thread; yield its streamed batches, return the result
    (`extra`: a second cancel check; `force_call`: call even when a no-call reason holds,
    `PredictOptions.force_call`)."""
    from ..engine.predict import PredictOptions, predict_slide

    options = PredictOptions(
        models=predictor.models,
        encoder=predictor.encoder,
        tile_mpp=predictor.tile_mpp,
        batch_size=batch_size,
        force_call=force_call,
    )

    def job(put):
        return predict_slide(
            predictor.slide,
            predictor.markers,
            options,
            tissue=predictor.tissue,
            cancel=lambda: cancel.is_set() or bool(extra and extra()),
            on_batch=lambda idx, part: put((idx, part)),
        )

    return (yield from stream_from_thread(job, "histostain-whole-slide", cancel))


def stain_of(predictor: RegionPredictor, n: int = 12) -> dict:
    """`StainCheck` result over up to `n` tissue tiles spread over the grid (H&E or IHC-looking)."""
    from ..engine.stain_check import StainCheck
    from ..engine.tiling import read_tile

    check = StainCheck()
    k = len(predictor.grid)
    for i in np.unique(np.linspace(0, k - 1, min(n, k)).astype(int)) if k else []:
        check.add(read_tile(predictor.slide, predictor.grid, int(i))[None])
    return check.result()


def prepare(
    key: tuple, cancel: threading.Event, source: Any = None
) -> tuple[RegionPredictor, dict] | None:
    """Worker: load models, open the slide, find tissue and check the stain (None if cancelled).

    `key` is (slide, markers, model files, tile mpp or 0, device); `source` the slide path or an
    open `Slide` (an image layer's pixels). The slow steps are checked for `cancel` in between.
    """
    from ..engine.region_predictor import load_models

    slide_path, markers, files, mpp, device = key
    slide_path = slide_path if source is None else source
    models = load_models(list(markers), dict(files))
    if cancel.is_set():
        return None
    pred = RegionPredictor(
        slide_path, list(markers), tile_mpp=mpp or None, models=models, device=device
    )
    if cancel.is_set():
        pred.close()
        return None
    stain = stain_of(pred)
    pred.warm_up()  # the encoder's lazy initialisation, off the first visible tile
    if cancel.is_set():
        pred.close()
        return None
    return pred, stain
