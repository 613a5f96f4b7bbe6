"""What the widget's napari thread workers run, and the state they share with the GUI thread.

No Qt widgets here: the generators run in worker threads and yield results for the GUI thread to
store; `LiveState` and `Stopper` are shared with the GUI thread under locks and events.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Generator
from typing import Any

from ..engine.region_predictor import RegionPredictor


def stream_from_thread(
    job: Callable[[Callable[[Any], None]], Any], name: str
) -> Generator[Any, None, Any]:
    """Run `job(put)` in a helper thread; yield what it `put`s, return its result.

    For napari generator workers: the blocking call runs in its own thread so its callbacks can
    stream items back while the worker yields them; an exception of `job` is re-raised here.
    """
    q: queue.Queue = queue.Queue()
    out: dict[str, Any] = {}

    def run() -> None:
        try:
            out["result"] = job(q.put)
        except BaseException as exc:
            out["error"] = exc
        finally:
            q.put(None)

    thread = threading.Thread(target=run, name=name, daemon=True)
    thread.start()
    while (item := q.get()) is not None:
        yield item
    thread.join()
    if "error" in out:
        raise out["error"]
    return out["result"]


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
    """Stops the widget's workers without touching Qt objects (safe while Qt tears down)."""

    def __init__(self):
        self.live: LiveState | None = None
        self.cancel = threading.Event()

    def stop(self, *args) -> None:
        if self.live is not None:
            self.live.stop.set()
            self.live.wake.set()
        self.cancel.set()


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


def whole_slide(predictor: RegionPredictor, cancel, batch_size: int, force_call: bool = False):
    """Worker: `predict_slide` in a helper thread; yield its streamed batches, return the result
    (`force_call`: call even when a no-call reason holds, `PredictOptions.force_call`)."""
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
            cancel=cancel,
            on_batch=lambda idx, part: put((idx, part)),
        )

    return (yield from stream_from_thread(job, "histostain-whole-slide"))
