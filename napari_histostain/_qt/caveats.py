"""The caveats next to the widget's results: the demonstration-model disclaimer, each model's
identity, the domain verdict and why a marker got no call; and the "Force a call" option."""

from __future__ import annotations

from html import escape

from qtpy.QtCore import Qt
from qtpy.QtGui import QPalette
from qtpy.QtWidgets import QCheckBox, QLabel, QVBoxLayout, QWidget

from ..markers import marker_name
from ..results.caveats import DEMO_DISCLAIMER

#: Tooltip of the "Force a call" option.
FORCE_CALL_TIP = (
    "Call every marker even when the slide would get no call (out of domain, IHC input, pixel "
    "size assumed, too few tiles). The call is marked 'forced' and the reason is kept in the "
    "results and every exported file. Takes effect on the next tiles computed and the next "
    "Whole slide run."
)
#: warning red on light and on dark themes
WARN_LIGHT, WARN_DARK = "#a00000", "#ff7b7b"


def warning_colour(widget: QWidget) -> str:
    """A red that reads well on `widget`'s background (napari's dark or light theme)."""
    dark = widget.palette().color(QPalette.ColorRole.Window).lightness() < 128
    return WARN_DARK if dark else WARN_LIGHT


def disclaimer_style(colour: str) -> str:
    return (
        f"color: {colour}; font-weight: bold; border: 1px solid {colour}; border-radius: 3px; "
        "padding: 3px"
    )


class CaveatsBox(QWidget):
    """Disclaimer (only for demonstration models), model identities, domain verdict, no-call
    reasons; `show_caveats` takes `results.caveats.prediction_caveats` / `PredictionMaps.caveats`."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        self.disclaimer = QLabel(DEMO_DISCLAIMER)
        self.disclaimer.setWordWrap(True)
        self.disclaimer.setVisible(False)
        lay.addWidget(self.disclaimer)
        self.models = QLabel("")
        self.models.setWordWrap(True)
        self.models.setTextInteractionFlags(Qt.TextSelectableByMouse)
        self.models.setStyleSheet("color: gray")
        lay.addWidget(self.models)
        self.verdict = QLabel("")
        self.verdict.setWordWrap(True)
        lay.addWidget(self.verdict)
        self.force_call = QCheckBox("Force a call")
        self.force_call.setToolTip(FORCE_CALL_TIP)
        lay.addWidget(self.force_call)

    def show_caveats(self, caveats: dict | None) -> None:
        """Show (or clear, for None / {}) the caveats of the current results."""
        cav = caveats or {}
        red = warning_colour(self)
        self.disclaimer.setStyleSheet(disclaimer_style(red))
        self.disclaimer.setText(cav.get("disclaimer") or DEMO_DISCLAIMER)
        self.disclaimer.setVisible(bool(cav.get("disclaimer")))
        models = cav.get("models") or {}
        self.models.setText("\n".join(f"Model: {ident}" for ident in models.values()))
        lines = []
        tip = ""
        if cav.get("domain_verdict"):
            # the first part here ("in domain: 40/42 tiles in domain"), the whole in the tooltip:
            # the long form pushed the results table down
            full = f"Domain: {cav['domain_verdict']}"
            tip = full
            verdict = escape(full.split(";")[0], quote=False)
            if not (cav.get("domain") or {}).get("in_domain"):
                verdict = f"<span style='color:{red}'>{verdict}</span>"
            lines.append(verdict)
        by_text: dict[str, list[str]] = {}  # markers with the same reason share a line
        for m, state in (cav.get("markers") or {}).items():
            if state.get("no_call_text"):
                by_text.setdefault(state["no_call_text"], []).append(marker_name(m))
        for text, names in by_text.items():
            lines.append(f"<b>{escape(', '.join(names))}</b>: {escape(text, quote=False)}")
        self.verdict.setText("<br>".join(lines))
        self.verdict.setToolTip(tip)
        self.verdict.setVisible(bool(lines))
