"""The activity-dock progress bar shows the run's progress without processing Qt events."""

from __future__ import annotations


def test_progress_shown_in_activity_dock_without_processing_events(
    qtbot, make_napari_viewer, monkeypatch
):
    from napari._qt.widgets.qt_progress_bar import QtLabeledProgressBar
    from napari.utils import cancelable_progress
    from qtpy.QtWidgets import QApplication

    from napari_histostain._qt.throttle import ThrottledProgress

    make_napari_viewer()
    pbar = cancelable_progress(total=10, desc="HistoStain")
    try:
        ticks = ThrottledProgress(pbar, interval=0.0)
        bars = [
            w
            for w in QApplication.allWidgets()
            if isinstance(w, QtLabeledProgressBar) and w.progress is pbar
        ]
        assert len(bars) == 1
        calls = []
        monkeypatch.setattr(QApplication, "processEvents", lambda *a: calls.append(a))
        ticks.add(3)
        ticks.add(4)
        # napari's own bar would process events (a nested canvas redraw) on each value
        assert calls == []
        assert pbar.n == 7 and bars[0].qt_progress_bar.value() == 7
    finally:
        pbar.close()
