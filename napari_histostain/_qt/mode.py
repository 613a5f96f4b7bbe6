"""The Mode row (visible region / whole slide) and status line shared by the widget's panels."""

from __future__ import annotations

from qtpy.QtWidgets import QButtonGroup, QFormLayout, QHBoxLayout, QRadioButton

VISIBLE, WHOLE = "visible", "whole"


class ModeAndStatus:
    """Mixin for a panel with "Visible region" / "Whole slide" radios and a `status` label."""

    visible_radio: QRadioButton
    whole_radio: QRadioButton

    def _add_mode_row(self, form: QFormLayout, default: str) -> None:
        """Add the Mode row (visible region / whole slide) to `form`, `default` checked."""
        mode = QHBoxLayout()
        self.visible_radio = QRadioButton("Visible region")
        self.whole_radio = QRadioButton("Whole slide")
        # an exclusive group: exactly one mode is checked, clicking the checked one keeps it
        self.mode_group = QButtonGroup(mode)
        self.mode_group.setExclusive(True)
        self.mode_group.addButton(self.visible_radio)
        self.mode_group.addButton(self.whole_radio)
        self.set_mode(default)
        mode.addWidget(self.visible_radio)
        mode.addWidget(self.whole_radio)
        form.addRow("Mode", mode)

    @property
    def mode(self) -> str:
        return WHOLE if self.whole_radio.isChecked() else VISIBLE

    def set_mode(self, mode: str) -> None:
        (self.whole_radio if mode == WHOLE else self.visible_radio).setChecked(True)

    def _message(self, text: str, error: bool = False) -> None:
        """Show `text` in the status label (red for an error) and keep it as `last_message`."""
        self.last_message = text
        self.status.setText(text)
        self.status.setStyleSheet("color: #d9534f" if error else "")
