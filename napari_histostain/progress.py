"""The progress and cancel hooks that long work (prediction, IHC, cohorts) takes."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

#: `progress(done, total)`: called as work advances.
ProgressHook = Callable[[int, int], Any]
#: `cancel()`: returns True when the user asked to stop; checked at least once per batch.
CancelHook = Callable[[], bool]


def cancelled(cancel: CancelHook | None) -> bool:
    """Whether `cancel` (may be None) asks to stop now."""
    return cancel is not None and bool(cancel())
