"""`IHCResult`: observed IHC positivity on a tile grid plus the nuclei, and its files."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..io.atomic import ensure_dir, write_csv, write_json
from ..io.naming import slide_name
from ..results.tile_table import tile_rows, write_tile_table
from .nuclei import Nuclei
from .params import CLASS_NAMES, IHCParams
from .scores import summarise, tile_positivity, weak_label
from .stains import StainVectors

#: Value columns of the IHC tile table (after the common tile columns).
TILE_VALUE_COLUMNS = (
    "n_nuclei",
    *(f"n_{name}" for name in CLASS_NAMES),
    "ki67_index",
    "h_score",
    "pdl1_tps",
    "positive_pixel_fraction",
    "positivity",
)
#: Columns of the nuclei table.
NUCLEI_COLUMNS = (
    "x",
    "y",
    "class",
    "dab_od",
    "membrane",
    "tile",
    "counted",
    "excluded_as",
    "area_um2",
)


@dataclass
class IHCResult:
    """Observed IHC positivity on a tile grid (aligned to `grid.coords`) plus the nuclei.

    Per-tile arrays have one row per grid tile; they are NaN where a tile has no nuclei.
    `positivity` is the marker's observed positive fraction in [0, 1] (Ki-67: labelling index,
    p53: strongly positive fraction, PD-L1: membrane-positive fraction), for the overlay beside the
    predicted map. Nuclei positions are level-0 pixels (x, y).
    """

    marker: str
    source_path: str
    grid: Any
    mpp: tuple[float, float]
    level: int
    stains: StainVectors
    params: IHCParams
    counts: np.ndarray  # (N, 4) counted nuclei per class per tile
    membrane_positive: np.ndarray  # (N,) counted membrane-positive cells per tile
    tissue_px: np.ndarray  # (N,) tissue pixels (at the analysis level) per tile
    positive_px: np.ndarray  # (N,)
    nuclei: Nuclei  # every nucleus found, level-0 px; `nuclei.counted`: enters the indices
    messages: list[str] = field(default_factory=list)
    #: per-region results (`annotations.results.ihc_region_results`), in the JSON when set
    annotations: list[dict] = field(default_factory=list)
    #: per tile, the annotations it lies in (`annotations.region_column`): a tile-table column
    tile_annotation: list[str] | None = None
    #: scores as a report gives them (`reporting.add_reported_scores`: Ki-67 global and hot spot,
    #: PD-L1 TPS/CPS); in the JSON and `<stem>.ihc_scores.csv` when set
    reported: dict = field(default_factory=dict)
    #: per tile, the nucleus detection it was read with (`params.resolve_detection`: with
    #: `detection="auto"`, "real-fields" or "standard" tile by tile; "" where no tile was read);
    #: a tile-table column and counted in the JSON when set
    tile_detection: list[str] | None = None

    # -- per tile --------------------------------------------------------------------------------
    @property
    def n_nuclei(self) -> np.ndarray:
        return self.counts.sum(axis=1)

    def _per_tile(self, num: np.ndarray) -> np.ndarray:
        n = self.n_nuclei.astype(np.float64)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(n > 0, num / n, np.nan)

    @property
    def labelling_index(self) -> np.ndarray:
        """Per-tile % positive nuclei (Ki-67 index)."""
        return self._per_tile(self.counts[:, 1:].sum(axis=1) * 100.0)

    @property
    def h_score(self) -> np.ndarray:
        return self._per_tile((self.counts[:, 1:] * [100.0, 200.0, 300.0]).sum(axis=1))

    @property
    def membrane_fraction(self) -> np.ndarray:
        return self._per_tile(self.membrane_positive.astype(np.float64))

    @property
    def strong_fraction(self) -> np.ndarray:
        return self._per_tile(self.counts[:, self.params.p53_strong_class :].sum(axis=1) * 1.0)

    @property
    def positive_pixel_fraction(self) -> np.ndarray:
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(
                self.tissue_px > 0, self.positive_px / np.maximum(self.tissue_px, 1), 0.0
            )

    @property
    def positivity(self) -> np.ndarray:
        """Observed positivity per tile in [0, 1] for the marker (NaN: no nuclei in the tile)."""
        return tile_positivity(self.marker, self.counts, self.membrane_positive, self.params)

    # -- whole slide -----------------------------------------------------------------------------
    def summary(self) -> dict:
        s = summarise(
            self.counts.sum(axis=0),
            int(self.membrane_positive.sum()),
            int(self.tissue_px.sum()),
            int(self.positive_px.sum()),
            self.params,
        )
        s["marker"] = self.marker
        s["label"] = weak_label(self.marker, s, self.params)
        return s

    def to_dict(self) -> dict:
        reasons = self.nuclei.exclusion_reasons[~self.nuclei.counted]
        return {
            "source": self.source_path,
            "marker": self.marker,
            "mpp": list(self.mpp),
            "analysis_level": self.level,
            "tile_px0": float(self.grid.tile_px0),
            "n_tiles": len(self.grid.coords),
            "stains": self.stains.to_dict(),
            "thresholds": list(self.params.thresholds),
            "params": asdict(self.params),
            **({"detection": self.detection_summary()} if self.tile_detection else {}),
            "summary": _json_safe(self.summary()),
            "not_counted": {
                name: int(n) for name, n in zip(*np.unique(reasons, return_counts=True))
            },
            "messages": list(self.messages),
            **({"reported": _json_safe(self.reported)} if self.reported else {}),
            **({"annotations": _json_safe(self.annotations)} if self.annotations else {}),
        }

    def detection_summary(self) -> dict:
        """The detection setting asked for and how many tiles each preset was applied to."""
        applied = [d for d in self.tile_detection or [] if d]
        names, counts = np.unique(np.asarray(applied, str), return_counts=True)
        return {
            "setting": self.params.detection,
            "applied_tiles": {str(k): int(n) for k, n in zip(names, counts)},
        }

    # -- files -----------------------------------------------------------------------------------
    def tile_table(self) -> list[dict]:
        """The tile table's rows (common tile columns + `TILE_VALUE_COLUMNS`)."""
        values: dict[str, Any] = {"n_nuclei": self.n_nuclei}
        values.update({f"n_{name}": self.counts[:, k] for k, name in enumerate(CLASS_NAMES)})
        values.update(
            {
                "ki67_index": _rounded(self.labelling_index),
                "h_score": _rounded(self.h_score),
                "pdl1_tps": _rounded(self.membrane_fraction * 100),
                "positive_pixel_fraction": _rounded(self.positive_pixel_fraction),
                "positivity": _rounded(self.positivity),
            }
        )
        if self.tile_annotation is not None:
            values["annotation"] = self.tile_annotation
        if self.tile_detection is not None:
            values["detection"] = self.tile_detection
        return tile_rows(self.grid, values)

    def nuclei_table(self) -> list[dict]:
        """One row per nucleus (`NUCLEI_COLUMNS`)."""
        n = self.nuclei
        return [
            {
                "x": round(float(x), 1),
                "y": round(float(y), 1),
                "class": CLASS_NAMES[c],
                "dab_od": round(float(d), 4),
                "membrane": int(m),
                "tile": int(t),
                "counted": int(k),
                "excluded_as": reason,
                "area_um2": round(float(a), 1),
            }
            for (x, y), c, d, m, t, k, reason, a in zip(
                n.xy, n.cls, n.dab, n.membrane, n.tile, n.counted, n.exclusion_reasons, n.area_um2
            )
        ]

    def score_table(self) -> list[dict]:
        """`<stem>.ihc_scores.csv` rows: the slide's reported scores, then each region's."""
        from .reporting import score_row

        rows = [score_row("slide", self.marker, self.reported)]
        rows += [
            score_row(str(r.get("name", "")), self.marker, r["reported"])
            for r in self.annotations
            if r.get("reported")
        ]
        return rows

    def save(self, out_dir: str | Path, stem: str | None = None) -> list[Path]:
        """Write `<stem>.ihc.json`, `<stem>.ihc_tiles.csv` and `<stem>.ihc_nuclei.csv` atomically
        (and `<stem>.ihc_scores.csv` when `reported` is set)."""
        from .reporting import SCORE_COLUMNS

        out = ensure_dir(out_dir)
        stem = stem or f"{slide_name(self.source_path)}.{self.marker}"
        scores = (
            [write_csv(out / f"{stem}.ihc_scores.csv", self.score_table(), SCORE_COLUMNS)]
            if self.reported
            else []
        )
        return [
            write_json(out / f"{stem}.ihc.json", self.to_dict()),
            write_tile_table(
                out / f"{stem}.ihc_tiles.csv",
                self.tile_table(),
                [
                    *TILE_VALUE_COLUMNS,
                    *(["annotation"] if self.tile_annotation else []),
                    *(["detection"] if self.tile_detection else []),
                ],
            ),
            write_csv(out / f"{stem}.ihc_nuclei.csv", self.nuclei_table(), NUCLEI_COLUMNS),
            *scores,
        ]


def _rounded(values: np.ndarray, nd: int = 4) -> np.ndarray:
    """Values rounded for the tile table (NaN stays NaN: an empty cell)."""
    return np.round(np.asarray(values, np.float64), nd)


def _json_safe(obj):
    if isinstance(obj, dict):
        return {k: _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj
