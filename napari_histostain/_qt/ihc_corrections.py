"""The observed-IHC panel's corrections: 1+/2+/3+ DAB thresholds and nuclei re-classed by clicking.

A threshold change or a click re-scores the measured nuclei at once (`ihc.corrections`: nothing is
detected again), then updates the panel's table, the observed map, the nuclei's colours and the
hot spot. A click on a nucleus of the points layer (without dragging) sets its class: it cycles
positive -> negative -> not counted -> automatic, or sets the class chosen in the panel. "Save
corrections" writes `<slide>.<marker>.ihc_corrections.json` (beside the results); "Load" applies
saved ones to the same measurement.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
from qtpy.QtWidgets import (
    QAbstractSpinBox,
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QWidget,
)

from ..errors import HistostainError
from ..ihc.corrections import (
    OVERRIDE_CLASSES,
    Corrections,
    apply_corrections,
    corrections_for,
    corrections_path,
    load_corrections,
    save_corrections,
)

NOT_COUNTED_COLOUR = "#9a9a9a"
#: what a click does: cycle, or set one class ("automatic": drop the correction)
CLICK_CHOICES = ("cycle", *OVERRIDE_CLASSES, "automatic")
#: the cycle of a clicked nucleus' correction (None: automatic)
CYCLE: tuple[str | None, ...] = ("positive", "negative", "not counted", None)
#: the colour of a nucleus corrected by hand (its border stays its class' colour)
CORRECTED_SYMBOL, AUTO_SYMBOL = "square", "disc"


def point_style(result) -> tuple[np.ndarray, np.ndarray]:
    """(border colours, class names) of `result`'s nuclei for the points layer."""
    from ..ihc import CLASS_COLOURS, CLASS_NAMES

    nuc = result.nuclei
    if result.marker == "pdl1":  # PD-L1 is scored on membranes, not on nuclear DAB
        colours = np.where(nuc.membrane, CLASS_COLOURS[3], CLASS_COLOURS[0])
        classes = np.where(nuc.membrane, "membrane positive", "membrane negative")
    else:
        colours = np.asarray(CLASS_COLOURS)[nuc.cls.astype(int)]
        classes = np.asarray(CLASS_NAMES)[nuc.cls.astype(int)]
    return np.where(nuc.counted, colours, NOT_COUNTED_COLOUR), classes


def point_features(result) -> dict[str, np.ndarray]:
    """The points layer's features of `result`'s nuclei."""
    return {
        "class": point_style(result)[1],
        "counted": np.asarray(result.nuclei.counted, bool),
        "excluded_as": result.nuclei.exclusion_reasons,
        "dab_od": np.asarray(result.nuclei.dab, float),
    }


class CorrectionsBox(QWidget):
    """Thresholds, click mode and save/load of corrections for `panel` (an `ObservedIHCPanel`)."""

    def __init__(self, panel, key: str):
        super().__init__()
        self.panel = panel
        self.key = key  # metadata key of the panel's layers
        self.base: Any = None  # the measured IHCResult, uncorrected
        self.corrections: Corrections | None = None
        self.points: Any = None  # the nuclei points layer clicks go to
        self.last_ms = float("nan")  # time of the last re-scoring and redraw
        self.timings: dict[str, float] = {}
        form = QFormLayout(self)
        form.setContentsMargins(0, 0, 0, 0)
        row = QHBoxLayout()
        self.spins = []
        for name in ("1+", "2+", "3+"):
            spin = QDoubleSpinBox()
            spin.setRange(0.01, 3.0)
            spin.setSingleStep(0.02)
            spin.setDecimals(2)
            spin.setButtonSymbols(QAbstractSpinBox.NoButtons)  # narrow: arrow keys, wheel
            spin.setStyleSheet("min-width: 40px; max-width: 52px")  # napari QSS: 90 px
            spin.setToolTip(f"Mean nuclear DAB optical density from which a nucleus is {name}.")
            spin.valueChanged.connect(self._on_thresholds)
            row.addWidget(QLabel(name))
            row.addWidget(spin)
            self.spins.append(spin)
        row.addStretch(1)
        form.addRow(QLabel("Classes from mean nuclear DAB OD:"))
        form.addRow(row)
        self.click_combo = QComboBox()
        self.click_combo.addItems(CLICK_CHOICES)
        self.click_combo.setSizeAdjustPolicy(QComboBox.AdjustToMinimumContentsLengthWithIcon)
        self.click_combo.setMinimumContentsLength(8)
        self.click_combo.setToolTip(
            "What a click on a nucleus (in the nuclei layer) makes it: 'cycle' goes\n"
            "positive -> negative -> not counted -> automatic."
        )
        form.addRow("Click sets", self.click_combo)
        buttons = QHBoxLayout()
        self.save_button = QPushButton("Save…")
        self.save_button.setToolTip("Save the corrections as JSON (beside the results).")
        self.save_button.clicked.connect(lambda: self.save())
        self.load_button = QPushButton("Load…")
        self.load_button.setToolTip("Apply corrections saved for this slide and marker.")
        self.load_button.clicked.connect(lambda: self.load())
        self.reset_button = QPushButton("Reset")
        self.reset_button.clicked.connect(self.reset)
        for b in (self.save_button, self.load_button, self.reset_button):
            buttons.addWidget(b)
        form.addRow("Corrections", buttons)
        self.info = QLabel("")
        self.info.setStyleSheet("color: gray")
        self.info.setWordWrap(True)
        self.info.setMinimumWidth(1)
        form.addRow("", self.info)
        self.setEnabled(False)

    # -- a new measurement -----------------------------------------------------------------------
    def attach(self, result, points=None) -> None:
        """Start correcting `result` (just measured); clicks go to `points` (its nuclei layer)."""
        self.base, self.corrections = result, corrections_for(result)
        self._set_spins(result.params.thresholds)
        self.points = points
        if points is not None and self._on_click not in points.mouse_drag_callbacks:
            points.mouse_drag_callbacks.append(self._on_click)
        self.setEnabled(True)
        self.info.setText("Click a nucleus in the nuclei layer to re-class it.")

    def _set_spins(self, thresholds) -> None:
        for spin, t in zip(self.spins, thresholds):
            spin.blockSignals(True)
            spin.setValue(float(t))
            spin.blockSignals(False)

    @property
    def thresholds(self) -> tuple[float, float, float]:
        a, b, c = (round(s.value(), 4) for s in self.spins)
        return (a, b, c)

    # -- corrections -----------------------------------------------------------------------------
    def _on_thresholds(self, _value=None) -> None:
        if self.corrections is None:
            return
        t = self.thresholds
        if not (t[0] < t[1] < t[2]):
            self.info.setText("The thresholds must increase (1+ < 2+ < 3+).")
            return
        self.corrections.thresholds = None if t == tuple(self.base.params.thresholds) else t
        self.apply()

    def set_class(self, index: int, value: str | None) -> None:
        """Correct nucleus `index` to `value` (`OVERRIDE_CLASSES`; None: automatic) and re-score."""
        if self.corrections is None:
            return
        self.corrections.set(index, value)
        self.apply()

    def click(self, index: int) -> None:
        """What a click on nucleus `index` does (`click_combo`)."""
        if self.corrections is None:
            return
        choice = self.click_combo.currentText()
        if choice == "cycle":
            now = self.corrections.overrides.get(int(index))
            value = CYCLE[(CYCLE.index(now) + 1) % len(CYCLE)]
        else:
            value = None if choice == "automatic" else choice
        self.set_class(index, value)

    def _on_click(self, layer, event):
        """Mouse callback of the points layer: a click without dragging re-classes the nucleus."""
        if self.corrections is None or layer is not self.points:
            return
        index = layer.get_value(event.position, world=True)
        start = np.asarray(event.position, float)
        yield
        while event.type == "mouse_move":
            yield
        moved = np.abs(np.asarray(event.position, float) - start).max() > 1e-6
        if index is not None and not moved:
            self.click(int(index))

    def reset(self) -> None:
        """Back to the measurement as it was."""
        if self.base is None:
            return
        self.corrections = corrections_for(self.base)
        self._set_spins(self.base.params.thresholds)
        self.apply()

    def apply(self) -> None:
        """Re-score the measurement with the corrections and show it (timed: `last_ms`)."""
        from ..ihc.reporting import add_reported_scores

        assert self.corrections is not None
        t0 = time.perf_counter()
        try:
            result = apply_corrections(self.base, self.corrections)
        except HistostainError as exc:
            self.info.setText(str(exc))
            return
        add_reported_scores(result, self.panel.report_options)
        t1 = time.perf_counter()
        self.panel.show_corrected(result)
        t2 = time.perf_counter()
        if self.points is not None:
            self._restyle(result)
        self.timings = {  # ms: re-scoring, panel and map, points
            "score": (t1 - t0) * 1000,
            "panel": (t2 - t1) * 1000,
            "points": (time.perf_counter() - t2) * 1000,
        }
        self.last_ms = (time.perf_counter() - t0) * 1000
        n = len(self.corrections.overrides)
        self.info.setText(
            f"{n} nuclei re-classed by hand (squares); re-scored in {self.last_ms:.0f} ms."
        )

    def _restyle(self, result) -> None:
        """The points' colours, features and symbols (squares: corrected), changed rows only."""
        points = self.points
        colours, _ = point_style(result)
        features = point_features(result)
        symbols = np.full(len(colours), AUTO_SYMBOL, dtype=object)
        symbols[list(self.corrections.overrides)] = CORRECTED_SYMBOL
        old = points.features
        changed = (old["class"].to_numpy() != features["class"]) | (
            old["counted"].to_numpy() != features["counted"]
        )
        changed |= np.asarray([s.value for s in points.symbol]) != symbols
        if not changed.any():
            return
        points.features = features
        points.border_color = list(colours)
        points.symbol = list(symbols)

    # -- files -----------------------------------------------------------------------------------
    def default_path(self) -> Path:
        """`<slide>.<marker>.ihc_corrections.json` beside the IHC slide."""
        return corrections_path(Path(self.base.source_path).parent, self.base)

    def save(self, path: str | Path | None = None) -> Path | None:
        """Write the corrections as JSON (asking where when `path` is None)."""
        if self.corrections is None:
            return None
        if path is None:
            path, _ = QFileDialog.getSaveFileName(
                self, "Save corrections", str(self.default_path()), "JSON (*.json)"
            )
            if not path:
                return None
        try:
            out = save_corrections(path, self.corrections, self.base)
        except HistostainError as exc:
            self.info.setText(str(exc))
            return None
        self.info.setText(f"Corrections saved: {out}")
        return out

    def load(self, path: str | Path | None = None) -> bool:
        """Apply saved corrections to this measurement (asking which when `path` is None)."""
        if self.base is None:
            return False
        if path is None:
            path, _ = QFileDialog.getOpenFileName(
                self, "Load corrections", str(self.default_path().parent), "JSON (*.json)"
            )
            if not path:
                return False
        try:
            self.corrections = load_corrections(path, self.base)
        except HistostainError as exc:
            self.info.setText(str(exc))
            return False
        self._set_spins(self.corrections.thresholds or self.base.params.thresholds)
        self.apply()
        return True
