"""What the canvas shows: the camera, and the viewport's corners in world coordinates (um)."""

from __future__ import annotations

import numpy as np


def camera_of(viewer):
    """The viewer's camera: `viewer.scene.camera` (napari >= 0.9), else `viewer.camera`."""
    scene = getattr(viewer, "scene", None)
    cam = getattr(scene, "camera", None)
    return cam if cam is not None else viewer.camera


def viewport_world_box(viewer) -> tuple[np.ndarray, np.ndarray]:
    """(top-left, bottom-right) world (row, col) corners of the canvas, um."""
    cam = camera_of(viewer)
    centre = np.asarray(cam.center, float)[-2:]
    zoom = float(cam.zoom)
    try:
        h, w = viewer.window._qt_viewer.canvas.size
    except AttributeError:  # no Qt canvas (headless viewer model)
        h, w = 600, 800
    half = np.array([h, w], float) / (2.0 * zoom)
    return centre - half, centre + half
