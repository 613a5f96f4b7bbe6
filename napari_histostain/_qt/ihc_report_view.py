"""What the observed-IHC panel shows of the reported scores: Ki-67 global / hot spot / cells /
`insufficient` and PD-L1 CPS as table rows, and the Ki-67 hot spot as a circle (a Shapes layer in
um, the viewer's world units) on the IHC slide."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from ..markers import MARKERS


def hotspot_name(marker: str) -> str:
    """Layer name of the hot-spot circle, e.g. 'Ki-67 hot spot'."""
    return f"{MARKERS.get(marker, marker)} hot spot"


def report_rows(reported: dict) -> list[tuple[str, str]]:
    """(label, value) rows of `IHCResult.reported` for the panel's table."""

    def pct(v) -> str:
        return "-" if v is None else f"{v:.1f} %"

    rows: list[tuple[str, str]] = []
    k = reported.get("ki67")
    if k:
        flag = " (insufficient: < 500)" if k["insufficient"] else ""
        rows.append(("Ki-67 global", f"{pct(k['global_index'])}, {k['n_cells']} cells{flag}"))
        spot = k.get("hotspot")
        if spot:
            flag = " (insufficient: < 500)" if spot["insufficient"] else ""
            rows.append(
                (
                    "Ki-67 hot spot",
                    f"{pct(spot['index'])}, {spot['n_positive']}/{spot['n_cells']} cells in "
                    f"{spot['area_mm2']:.2f} mm² at ({spot['x_um']:.0f}, {spot['y_um']:.0f}) um"
                    + flag,
                )
            )
        if k.get("net_grade"):
            rows.append(("NET grade (WHO)", k["net_grade"]))
    p = reported.get("pdl1")
    if p:
        cps = "-" if p["cps"] is None else f"{p['cps']:.0f}"
        flag = " (insufficient: < 100 tumour cells)" if p["insufficient"] else ""
        rows.append(("PD-L1 CPS", cps + flag))
        rows.append(
            (
                "Immune cells",
                f"{p['n_immune']} ({pct(p['immune_positive_pct'])} PD-L1+), "
                f"{pct(p['immune_cell_pct'])} of cells",
            )
        )
    return rows


def hotspot_ellipse(spot: dict) -> np.ndarray:
    """The hot spot's bounding box corners in world (y, x) um, for a napari ellipse."""
    cy, cx, r = spot["y_um"], spot["x_um"], spot["radius_um"]
    return np.array([[cy - r, cx - r], [cy - r, cx + r], [cy + r, cx + r], [cy + r, cx - r]])


def show_hotspot(viewer, result, put: Callable[[str, Callable[[], Any]], Any], key: str):
    """Draw the Ki-67 hot spot of `result.reported` (replacing an older one through `put`);
    None when there is none."""
    spot = (result.reported.get("ki67") or {}).get("hotspot")
    if not spot:
        return None
    name = hotspot_name(result.marker)
    kw = {
        "name": name,
        "shape_type": "ellipse",
        "edge_color": "#ff2bd6",
        "face_color": "transparent",
        "edge_width": max(2.0, spot["radius_um"] / 40),
        "features": {"index": [spot["index"]], "n_cells": [spot["n_cells"]]},
        "units": ("um", "um"),
        "metadata": {key: {"marker": result.marker, "hotspot": spot}},
    }
    return put(name, lambda: viewer.add_shapes([hotspot_ellipse(spot)], **kw))
