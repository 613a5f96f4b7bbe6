"""Colours of maps and reports: the 'ihc' ramp (glass-blue -> yellow -> DAB-brown)."""

from __future__ import annotations

import numpy as np

#: The 'ihc' colormap: glass-blue (0) through yellow to DAB-brown (1), RGBA in [0, 1].
IHC_COLOURS = np.array(
    [[0.25, 0.45, 0.85, 1], [0.95, 0.9, 0.55, 1], [0.85, 0.45, 0.1, 1], [0.45, 0.15, 0.05, 1]],
    np.float32,
)


def colour_ramp(values: np.ndarray, colours: np.ndarray = IHC_COLOURS) -> np.ndarray:
    """RGB in [0, 1] of `values` in [0, 1] on an evenly spaced colour ramp (pure numpy)."""
    v = np.clip(np.asarray(values, np.float32), 0.0, 1.0)
    pos = v * (len(colours) - 1)
    i = np.minimum(np.floor(pos).astype(int), len(colours) - 2)
    f = (pos - i)[..., None]
    return colours[i, :3] * (1 - f) + colours[i + 1, :3] * f
