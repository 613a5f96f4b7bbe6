"""The scores a pathology report gives for an `IHCResult`: Ki-67 global and hot spot
(`ki67_report`), PD-L1 TPS/CPS (`pdl1`); set on the result so its JSON and `<stem>.ihc_scores.csv`
carry them, and per annotation region."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .errors import IHCError
from .ki67_report import HOTSPOT_AREA_MM2, ki67_report
from .pdl1 import result_pdl1_scores

#: columns of `<stem>.ihc_scores.csv` (one row per slide, and one per annotation region)
SCORE_COLUMNS = (
    "region",
    "marker",
    "n_tumour_cells",
    "insufficient",
    "ki67_global",
    "ki67_pooled",
    "n_fields",
    "hotspot_index",
    "hotspot_cells",
    "hotspot_positive",
    "hotspot_insufficient",
    "hotspot_x_px",
    "hotspot_y_px",
    "hotspot_x_um",
    "hotspot_y_um",
    "hotspot_radius_um",
    "hotspot_area_mm2",
    "net_grade",
    "pdl1_tps",
    "pdl1_cps",
    "n_immune_cells",
    "n_immune_positive",
    "immune_positive_pct",
    "immune_cell_pct",
)


@dataclass(frozen=True)
class ReportOptions:
    """How the hot spot is chosen and whether a neuroendocrine grade is given."""

    hotspot_area_mm2: float = HOTSPOT_AREA_MM2
    hotspot_cells: int | None = None  # a field of this many tumour cells instead of an area
    net_grade: bool = False

    def __post_init__(self) -> None:
        if not self.hotspot_area_mm2 > 0:
            raise IHCError(f"the hot-spot area must be > 0 mm^2, got {self.hotspot_area_mm2}.")
        if self.hotspot_cells is not None and self.hotspot_cells < 1:
            raise IHCError(f"the hot-spot cell count must be >= 1, got {self.hotspot_cells}.")


def reported_scores(result, options: ReportOptions = ReportOptions(), tiles=None) -> dict:
    """The marker's reported scores of `result` (over `tiles`, default all) as a JSON-ready dict:
    `ki67` (global, hot spot, cells, `insufficient`, grade) for Ki-67, `pdl1` (TPS, CPS, immune
    cells) for PD-L1; empty for p53."""
    if result.marker == "ki67":
        rep = ki67_report(
            result,
            hotspot_area_mm2=options.hotspot_area_mm2,
            hotspot_cells=options.hotspot_cells,
            grade=options.net_grade,
            tiles=tiles,
        )
        return {"ki67": rep.to_dict()}
    if result.marker == "pdl1":
        return {"pdl1": result_pdl1_scores(result, tiles).to_dict()}
    return {}


def add_reported_scores(
    result, options: ReportOptions = ReportOptions(), regions: Sequence | None = None
) -> dict:
    """Set `result.reported` and return it; with `regions` (the `annotations.Region`s behind
    `result.annotations`, in order) each region's dict gets its own `reported` scores too."""
    result.reported = reported_scores(result, options)
    for d, region in zip(result.annotations, regions or ()):
        d["reported"] = reported_scores(result, options, np.asarray(region.indices, np.int64))
    return result.reported


def score_row(region: str, marker: str, reported: dict) -> dict:
    """One `SCORE_COLUMNS` row from a `reported_scores` dict."""
    row: dict = {"region": region, "marker": marker}
    k = reported.get("ki67")
    if k:
        spot = k.get("hotspot") or {}
        row.update(
            n_tumour_cells=k["n_cells"],
            insufficient=int(k["insufficient"]),
            ki67_global=_r(k["global_index"]),
            ki67_pooled=_r(k["pooled_index"]),
            n_fields=k["n_fields"],
            hotspot_index=_r(spot.get("index")),
            hotspot_cells=spot.get("n_cells", 0),
            hotspot_positive=spot.get("n_positive", 0),
            hotspot_insufficient=int(spot.get("insufficient", True)),
            hotspot_x_px=_r(spot.get("x_px"), 1),
            hotspot_y_px=_r(spot.get("y_px"), 1),
            hotspot_x_um=_r(spot.get("x_um"), 1),
            hotspot_y_um=_r(spot.get("y_um"), 1),
            hotspot_radius_um=_r(spot.get("radius_um"), 1),
            hotspot_area_mm2=_r(spot.get("area_mm2"), 4),
            net_grade=k.get("net_grade") or "",
        )
    p = reported.get("pdl1")
    if p:
        row.update(
            n_tumour_cells=p["n_tumour"],
            insufficient=int(p["insufficient"]),
            pdl1_tps=_r(p["tps"]),
            pdl1_cps=_r(p["cps"]),
            n_immune_cells=p["n_immune"],
            n_immune_positive=p["n_immune_positive"],
            immune_positive_pct=_r(p["immune_positive_pct"]),
            immune_cell_pct=_r(p["immune_cell_pct"]),
        )
    return row


def _r(v, nd: int = 3):
    return "" if v is None else round(float(v), nd)
