"""The widget's Results section: each marker's call, probability and tiles; the clicked tile."""

from __future__ import annotations

import numpy as np
from qtpy.QtCore import Qt
from qtpy.QtGui import QColor
from qtpy.QtWidgets import QHeaderView, QLabel, QTableWidget, QTableWidgetItem, QVBoxLayout, QWidget

from ..markers import MARKERS, marker_name
from ..results.caveats import FORCED, NO_CALL, no_call_short, no_call_text
from .caveats import CaveatsBox, warning_colour

ATTENTION_NOTE = (
    "Positivity is per tile. In Visible region mode, attention and the call cover only the tiles "
    "computed so far; Whole slide gives the slide call."
)


def call_cell(s: dict) -> tuple[str, str]:
    """(text, tooltip) of a marker's Call cell: the label, 'no call (reason)' or 'label (forced)'."""
    status, reason = s.get("call_status", "call"), s.get("no_call_reason")
    if status == NO_CALL:
        return "no call", f"No call ({no_call_short(reason) or '?'}): {no_call_text(reason)}"
    label = s["label"] or "-"
    if status == FORCED:
        why = no_call_text(reason)
        return f"{label} (forced)", "Forced call" + (f"; would be no call: {why}" if why else "")
    return label, ""


class ResultsPanel(QWidget):
    """A table of slide calls (one row per marker), the caveats (disclaimer, models, verdict), the
    scope of the calls and the clicked tile."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addWidget(QLabel("<b>Results</b>"))
        self.table = QTableWidget(0, 5)
        self.table.setHorizontalHeaderLabels(["Marker", "Call", "Prob.", "Pos.", "Tiles"])
        self.table.horizontalHeaderItem(3).setToolTip("Positive tissue fraction (tile threshold)")
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeToContents)
        self.table.horizontalHeader().setStretchLastSection(True)
        self.table.setHorizontalScrollBarPolicy(Qt.ScrollBarAlwaysOff)
        self.table.setVerticalScrollBarPolicy(Qt.ScrollBarAlwaysOff)
        self.table.verticalHeader().setVisible(False)
        row_h = self.table.fontMetrics().height() + 8
        self.table.verticalHeader().setDefaultSectionSize(row_h)
        self.table.setEditTriggers(QTableWidget.NoEditTriggers)
        self.table.setFixedHeight((len(MARKERS) + 1) * row_h + 12)
        lay.addWidget(self.table)
        self.caveats = CaveatsBox()
        lay.addWidget(self.caveats)
        self.scope_label = QLabel(ATTENTION_NOTE)
        self.scope_label.setWordWrap(True)
        self.scope_label.setStyleSheet("color: gray")
        lay.addWidget(self.scope_label)
        self.tile_label = QLabel("Click a tile to see its scores.")
        self.tile_label.setWordWrap(True)
        self.tile_label.setTextInteractionFlags(Qt.TextSelectableByMouse)
        lay.addWidget(self.tile_label)

    @property
    def force_call(self) -> bool:
        """Whether 'Force a call' is ticked."""
        return self.caveats.force_call.isChecked()

    def show_summary(self, summary: dict, caveats: dict | None = None) -> None:
        """One row per marker of `PredictionMaps.summary()` (no-call rows say why), the caveats
        (`PredictionMaps.caveats`) and what the calls cover."""
        self.table.setRowCount(len(summary))
        self.caveats.show_caveats(caveats)
        scopes = set()
        red = QColor(warning_colour(self))
        for r, s in enumerate(summary.values()):
            p = s["probability"]
            frac = s["positive_fraction"]
            call, tip = call_cell(s)
            cells = [
                s["marker"],
                call,
                f"{p:.3f}" if np.isfinite(p) and s.get("call_status") != NO_CALL else "-",
                f"{frac:.0%}" if np.isfinite(frac) else "-",
                f"{s['tiles_computed']}/{s['tiles_total']}",
            ]
            for c, text in enumerate(cells):
                item = QTableWidgetItem(text)
                if tip:
                    item.setToolTip(tip)
                    if c == 1:
                        item.setForeground(red)
                self.table.setItem(r, c, item)
            if s["scope"]:
                scopes.add(s["scope"])
        scope = f"Call over: {', '.join(sorted(scopes))}. " if scopes else ""
        self.scope_label.setText(scope + ATTENTION_NOTE)

    def show_tile(self, scores: dict | None) -> None:
        """A tile's position and per-marker scores (`PredictionMaps.tile_scores`), or none there."""
        if scores is None:
            self.tile_label.setText("No tissue tile here.")
            return
        s = scores
        lines = [
            f"Tile {s['tile']} (row {s['row']}, col {s['col']}; x {s['x']}, y {s['y']} px; "
            f"tissue {s['tissue_fraction']:.0%})"
        ]
        if not s["computed"]:
            lines.append("not computed yet")
        for m, v in s["markers"].items():
            pos, att = v["positivity"], v["attention"]
            if np.isfinite(pos):
                lines.append(f"{marker_name(m)}: positivity {pos:.3f}, attention {att:.4f}")
        self.tile_label.setText("\n".join(lines))
