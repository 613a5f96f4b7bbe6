"""What the canvas shows: the viewport's corners in world coordinates (um)."""

from __future__ import annotations

import numpy as np


def viewport_world_box(viewer) -> tuple[np.ndarray, np.ndarray]:
    """(top-left, bottom-right) world (row, col) corners of the canvas, um."""
    centre = np.asarray(viewer.camera.center, float)[-2:]
    zoom = float(viewer.camera.zoom)
    try:
        h, w = viewer.window._qt_viewer.canvas.size
    except AttributeError:  # no Qt canvas (headless viewer model)
        h, w = 600, 800
    half = np.array([h, w], float) / (2.0 * zoom)
    return centre - half, centre + half
