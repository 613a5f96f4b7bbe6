"""How long the widget's GUI-thread handlers run, and when results appear (benchmarks read it)."""

from __future__ import annotations

import contextlib
import time
from collections import deque
from collections.abc import Iterator


class GuiTiming:
    """`log`: (label, start, seconds) of each timed GUI-thread handler; `marks`: named moments and
    durations of a run (setup_s, first_tile_s, viewport_s, whole_slide_s, ...)."""

    def __init__(self, max_log: int = 2000):
        self.log: deque[tuple[str, float, float]] = deque(maxlen=max_log)
        self.marks: dict[str, float] = {}

    @contextlib.contextmanager
    def timed(self, label: str) -> Iterator[None]:
        """Record how long the block ran under `label`."""
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.log.append((label, t0, time.perf_counter() - t0))
