"""The caveats next to the widget's results: the demonstration-model disclaimer, each model's
identity, the domain verdict and why a marker got no call; and the "Force a call" option."""

from __future__ import annotations

from html import escape

from qtpy.QtCore import Qt
from qtpy.QtWidgets import QCheckBox, QLabel, QVBoxLayout, QWidget

from ..markers import marker_name
from ..results.caveats import DEMO_DISCLAIMER

#: Tooltip of the "Force a call" option.
FORCE_CALL_TIP = (
    "Call every marker even when the slide would get no call (out of domain, IHC input, pixel "
    "size assumed, too few tiles). The call is marked 'forced' and the reason is kept in the "
    "results and every exported file. Takes effect on the next Whole slide run."
)
DISCLAIMER_STYLE = (
    "color: #a00000; font-weight: bold; border: 1px solid #a00000; border-radius: 3px; padding: 3px"
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
        self.disclaimer.setStyleSheet(DISCLAIMER_STYLE)
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
        self.disclaimer.setText(cav.get("disclaimer") or DEMO_DISCLAIMER)
        self.disclaimer.setVisible(bool(cav.get("disclaimer")))
        models = cav.get("models") or {}
        self.models.setText("\n".join(f"Model: {ident}" for ident in models.values()))
        lines = []
        if cav.get("domain_verdict"):
            colour = "black" if (cav.get("domain") or {}).get("in_domain") else "#a00000"
            lines.append(
                f"<span style='color:{colour}'>Domain: {escape(cav['domain_verdict'], quote=False)}</span>"
            )
        for m, state in (cav.get("markers") or {}).items():
            if state.get("no_call_text"):
                lines.append(
                    f"<b>{escape(marker_name(m))}</b>: {escape(state['no_call_text'], quote=False)}"
                )
        self.verdict.setText("<br>".join(lines))
        self.verdict.setVisible(bool(lines))
