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


def _bar_of(pbar):
    from napari._qt.widgets.qt_progress_bar import QtLabeledProgressBar
    from qtpy.QtWidgets import QApplication

    bars = [
        w
        for w in QApplication.allWidgets()
        if isinstance(w, QtLabeledProgressBar) and w.progress is pbar
    ]
    assert len(bars) == 1
    return bars[0]


def test_progress_falls_back_to_napari_when_its_private_bar_changes(
    qtbot, make_napari_viewer, monkeypatch
):
    """napari's private `_set_value` missing, not callable, or its disconnect refusing: nothing
    raises, napari's own update path stays connected and the bar still shows the count."""
    from napari._qt.widgets.qt_progress_bar import QtLabeledProgressBar
    from napari.utils import cancelable_progress
    from qtpy.QtWidgets import QApplication

    from napari_histostain._qt.throttle import ThrottledProgress, quiet_updates

    make_napari_viewer()
    for case in ("missing", "not callable", "disconnect raises"):
        pbar = cancelable_progress(total=10, desc=f"HistoStain {case}")
        try:
            bar = _bar_of(pbar)
            with monkeypatch.context() as mp:
                if case == "missing":
                    mp.delattr(QtLabeledProgressBar, "_set_value")
                elif case == "not callable":
                    mp.setattr(QtLabeledProgressBar, "_set_value", None)
                else:

                    def refuse(*a, **k):
                        raise TypeError("changed signature")

                    mp.setattr(pbar.events.value, "disconnect", refuse)
                assert quiet_updates(pbar) is False, case
                ticks = ThrottledProgress(pbar, interval=0.0)  # attaching does not raise
            calls: list = []
            monkeypatch.setattr(QApplication, "processEvents", lambda *a, c=calls: c.append(a))
            ticks.add(3)
            ticks.add(4)
            assert pbar.n == 7 and bar.qt_progress_bar.value() == 7, case
            assert calls, case  # napari's own path (it processes events) did the update
            monkeypatch.undo()
        finally:
            pbar.close()
