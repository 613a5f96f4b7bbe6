"""The error of exports, and checks shared by the export formats."""

from __future__ import annotations

import numpy as np

from ..errors import HistostainError


class ExportError(HistostainError):
    """Predictions could not be exported (nothing to export, not a HistoStain file, ...)."""


def finite(v: float) -> float | None:
    return float(v) if np.isfinite(v) else None


def check_marker(maps, marker: str) -> None:
    if marker not in maps.markers:
        have = ", ".join(maps.markers) or "none"
        raise ExportError(
            f"no predictions for marker {marker!r} (have: {have}); run a prediction first."
        )
