"""Qt pieces shared by the prediction widget and the observed-IHC panel."""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Generator
from typing import Any

from qtpy.QtWidgets import QFormLayout, QHBoxLayout, QRadioButton

VISIBLE, WHOLE = "visible", "whole"


def stream_from_thread(
    job: Callable[[Callable[[Any], None]], Any], name: str
) -> Generator[Any, None, Any]:
    """Run `job(put)` in a helper thread; yield what it `put`s, return its result.

    For napari generator workers: the blocking call runs in its own thread so its callbacks can
    stream items back while the worker yields them; an exception of `job` is re-raised here.
    """
    q: queue.Queue = queue.Queue()
    out: dict[str, Any] = {}

    def run() -> None:
        try:
            out["result"] = job(q.put)
        except BaseException as exc:  # noqa: BLE001 - handed to the GUI thread below
            out["error"] = exc
        finally:
            q.put(None)

    thread = threading.Thread(target=run, name=name, daemon=True)
    thread.start()
    while (item := q.get()) is not None:
        yield item
    thread.join()
    if "error" in out:
        raise out["error"]
    return out["result"]


class ModeAndStatus:
    """Mixin for a panel with "Visible region" / "Whole slide" radios and a `status` label."""

    visible_radio: QRadioButton
    whole_radio: QRadioButton

    def _add_mode_row(self, form: QFormLayout, default: str) -> None:
        """Add the Mode row (visible region / whole slide) to `form`, `default` checked."""
        mode = QHBoxLayout()
        self.visible_radio = QRadioButton("Visible region")
        self.whole_radio = QRadioButton("Whole slide")
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
