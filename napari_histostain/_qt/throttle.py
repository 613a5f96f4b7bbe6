"""Progress in napari's activity dock without freezing the GUI: updates at a bounded rate, and
shown without the event processing napari's Qt bar does on every value."""

from __future__ import annotations

import contextlib
import time
from typing import Any

#: Seconds between two updates of a progress bar.
PROGRESS_INTERVAL_S = 0.5


def quiet_updates(pbar: Any) -> bool:
    """Show `pbar`'s values in its activity-dock bar without processing Qt events.

    napari's Qt progress bar calls `QApplication.processEvents()` on every value: inside the handler
    that counts tiles this runs a nested canvas redraw (with software OpenGL about as long as a
    100 ms frame) and whatever else is queued, so that handler's stall is its own work plus a redraw.
    The bar's value is set directly instead; the redraw then comes in its own event-loop turn.

    This reaches into napari's private `QtLabeledProgressBar` (its `progress`, `qt_progress_bar`
    and `_set_value`). When those are missing or changed, napari's own (public) update path is
    left in place: the bar still moves, only with napari's event processing.
    Returns whether the quiet path was installed.
    """
    try:
        from napari._qt.widgets.qt_progress_bar import QtLabeledProgressBar
        from qtpy.QtWidgets import QApplication
    except ImportError:  # pragma: no cover - napari without Qt
        return False
    app = QApplication.instance()
    if pbar is None or app is None:
        return False
    for w in app.allWidgets():
        try:
            if not (isinstance(w, QtLabeledProgressBar) and w.progress is pbar):
                continue
            bar = w.qt_progress_bar
            own = w._set_value
            set_value = bar.setValue
        except (AttributeError, TypeError):  # napari's private widget changed
            return False
        if not callable(own) or not callable(set_value):
            return False  # (disconnecting a non-callable could drop napari's other callbacks)

        def show(event, bar=bar) -> None:
            with contextlib.suppress(RuntimeError):  # the bar was deleted (viewer closed)
                bar.setValue(event.value)

        try:
            pbar.events.value.disconnect(own)
        except (AttributeError, TypeError, ValueError):  # napari's own path stays connected
            return False
        pbar.events.value.connect(show)
        return True
    return False


class ThrottledProgress:
    """Counts steps; passes them to the napari `progress` at most every `interval` seconds.

    `pbar` may come later (`attach`): steps counted before are sent with the next update.
    """

    def __init__(self, pbar: Any = None, interval: float = PROGRESS_INTERVAL_S):
        self.pbar: Any = None
        self.interval = interval
        self.pending = 0
        self.sent_at = 0.0
        self.attach(pbar)

    def attach(self, pbar: Any) -> None:
        """Update `pbar` from now on (its activity-dock bar without event processing)."""
        self.pbar = pbar
        if pbar is not None:
            quiet_updates(pbar)

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
