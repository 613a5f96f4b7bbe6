"""The one tile table: a CSV row per tile with where it is and what was computed there.

Every tile table (`histostain predict`, exports, `histostain quantify`) has the same first columns:
`tile, row, col, x, y, width, height, x_um, y_um, tissue` (level-0 box in px, centre in um,
tissue fraction), followed by its value columns (`<marker>_positivity`, ...; empty where not
computed).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..io.atomic import write_csv

#: The columns every tile table starts with.
TILE_COLUMNS = ("tile", "row", "col", "x", "y", "width", "height", "x_um", "y_um", "tissue")
#: Per-marker columns of a prediction's tile table.
PREDICTION_KINDS = ("positivity", "attention", "contribution")


def _cell(v: Any) -> Any:
    """A CSV cell: floats as Python writes them, NaN (not computed) as an empty cell."""
    if isinstance(v, (float, np.floating)):
        return "" if not math.isfinite(v) else float(v)
    if isinstance(v, np.integer):
        return int(v)
    return v


def tile_rows(
    grid: Any,
    values: Mapping[str, Sequence[Any] | np.ndarray],
    indices: Sequence[int] | np.ndarray | None = None,
) -> list[dict]:
    """Rows of the tile table of `grid` (a `TileGrid`-like object: `coords`, `rowcol`, `tile_px0`,
    `slide_mpp`, `tissue_fraction`) with `values` columns (arrays aligned with the grid's tiles),
    for `indices` (default: every tile)."""
    coords = np.asarray(grid.coords, np.int64).reshape(-1, 2)
    rowcol = np.asarray(grid.rowcol, np.int64).reshape(-1, 2)
    tissue = getattr(grid, "tissue_fraction", None)
    tissue = np.ones(len(coords)) if tissue is None else np.asarray(tissue)
    t = float(grid.tile_px0)
    side = int(round(t))
    mx, my = (float(v) for v in grid.slide_mpp)
    half = (t - 1.0) / 2.0
    idx = range(len(coords)) if indices is None else [int(i) for i in indices]
    rows = []
    for i in idx:
        x, y = int(coords[i, 0]), int(coords[i, 1])
        row = {
            "tile": i,
            "row": int(rowcol[i, 0]),
            "col": int(rowcol[i, 1]),
            "x": x,
            "y": y,
            "width": side,
            "height": side,
            "x_um": round((x + half) * mx, 3),
            "y_um": round((y + half) * my, 3),
            "tissue": round(float(tissue[i]), 4),
        }
        for name, col in values.items():
            row[name] = _cell(col[i])
        rows.append(row)
    return rows


def write_tile_table(path: str | Path, rows: list[dict], value_columns: Sequence[str]) -> Path:
    """Atomically write tile-table `rows` with the common columns and then `value_columns`."""
    return write_csv(path, rows, [*TILE_COLUMNS, *value_columns])


def prediction_columns(markers: Sequence[str]) -> list[str]:
    """The value columns of a prediction's tile table: `domain_score` (percentile 0-100 of held-out
    training-domain tiles, empty where not scored), then marker by marker."""
    return ["domain_score", *(f"{m}_{kind}" for m in markers for kind in PREDICTION_KINDS)]


def prediction_values(
    markers: Mapping[str, Any], domain_score: Sequence[float] | np.ndarray | None = None
) -> dict[str, np.ndarray]:
    """{column: per-tile array} of per-marker results (objects with positivity/attention[/contribution])
    and the tiles' `domain_score` (NaN: not scored)."""
    out: dict[str, Any] = {}
    for m, res in markers.items():
        for kind in PREDICTION_KINDS:
            arr = getattr(res, kind, None)
            out[f"{m}_{kind}"] = np.asarray(arr) if arr is not None else None
    n = max((len(v) for v in out.values() if v is not None), default=0)
    if domain_score is not None:
        n = max(n, len(domain_score))
    out = {"domain_score": None if domain_score is None else np.asarray(domain_score), **out}
    return {k: (v if v is not None else np.full(n, np.nan)) for k, v in out.items()}
