"""Progress-bar updates at a bounded rate: napari's bar processes Qt events (and repaints the canvas)
on every update, so updating it per tile freezes the GUI."""

from __future__ import annotations

import time
from typing import Any

#: Seconds between two updates of a progress bar.
PROGRESS_INTERVAL_S = 0.5


class ThrottledProgress:
    """Counts steps; passes them to the napari `progress` at most every `interval` seconds."""

    def __init__(self, pbar: Any, interval: float = PROGRESS_INTERVAL_S):
        self.pbar = pbar
        self.interval = interval
        self.pending = 0
        self.sent_at = 0.0

    def add(self, n: int) -> None:
        self.pending += int(n)
        now = time.perf_counter()
        if now - self.sent_at >= self.interval:
            self.flush(now)

    def flush(self, now: float | None = None) -> None:
        """Send what is counted now (the last update of a run)."""
        if self.pending and self.pbar is not None:
            n, self.pending = self.pending, 0
            self.sent_at = time.perf_counter() if now is None else now
            self.pbar.update(n)
