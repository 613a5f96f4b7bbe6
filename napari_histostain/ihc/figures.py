"""Figures of quantified IHC: the image with each nucleus marked by its class."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..io.atomic import atomic_path
from .params import CLASS_NAMES
from .results import IHCResult

#: Colours of nucleus classes in figures and points layers (negative cyan, 1+ yellow, 2+ orange, 3+ red).
CLASS_COLOURS = ("#00d5ff", "#f2d027", "#f28e2b", "#d62728")


def save_overlay_figure(
    rgb: np.ndarray,
    result: IHCResult,
    path: str | Path,
    *,
    origin: tuple[float, float] = (0.0, 0.0),
    downsample: float = 1.0,
    title: str | None = None,
    marker_size: float | None = None,
) -> Path:
    """A PNG of `rgb` (a view of the source from level-0 `origin`, at `downsample`) with nuclei
    coloured by class; written atomically."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    h, w = rgb.shape[:2]
    x = (result.nuclei.xy[:, 0] - origin[0] + 0.5) / downsample - 0.5
    y = (result.nuclei.xy[:, 1] - origin[1] + 0.5) / downsample - 0.5
    inside = (x >= 0) & (x < w) & (y >= 0) & (y < h)
    fig, ax = plt.subplots(figsize=(8, 8 * h / w + 0.4), dpi=100)
    ax.imshow(rgb, interpolation="nearest")
    size = marker_size or max(
        4.0, 2.0 * result.params.nucleus_radius_um / result.mpp[0] / downsample
    )
    counted = result.nuclei.counted
    if result.marker == "pdl1":  # PD-L1 is scored on membranes, not on nuclear DAB
        groups = [
            (counted & ~result.nuclei.membrane, CLASS_COLOURS[0], "membrane negative"),
            (counted & result.nuclei.membrane, CLASS_COLOURS[3], "membrane positive"),
        ]
    else:
        groups = [
            (counted & (result.nuclei.cls == c), CLASS_COLOURS[c], CLASS_NAMES[c]) for c in range(4)
        ]
    groups.append((~counted, "#9a9a9a", "not counted (stroma, lymphocyte- / fibroblast-like)"))
    for k, (mask, colour, name) in enumerate(groups):
        sel = inside & mask
        style: dict[str, Any] = (
            {"marker": "x", "c": colour}
            if k == len(groups) - 1
            else {"facecolors": "none", "edgecolors": colour}
        )
        ax.scatter(
            x[sel], y[sel], s=size, linewidths=1.4, label=f"{name} ({int(sel.sum())})", **style
        )
    ax.set_axis_off()
    ax.legend(loc="lower right", fontsize=8, framealpha=0.8)
    if title:
        ax.set_title(title, fontsize=10)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
    return Path(path)
