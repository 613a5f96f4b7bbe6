"""A prediction on disk: `<slide>.prediction.json` (slide-level) and `<slide>.tiles.csv` (per tile)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ..io.atomic import ensure_dir, write_json
from ..io.naming import slide_name
from .tile_table import prediction_columns, prediction_values, tile_rows, write_tile_table


def prediction_file_names(slide_path: str | Path) -> tuple[str, str]:
    """(JSON, CSV) file names of a slide's prediction: <name>.prediction.json, <name>.tiles.csv."""
    name = slide_name(slide_path)
    return f"{name}.prediction.json", f"{name}.tiles.csv"


def save_prediction(
    prediction: Any,
    out_dir: str | Path,
    *,
    extra: Mapping[str, Any] | None = None,
    extra_columns: Mapping[str, Sequence[Any]] | None = None,
) -> list[Path]:
    """Write a `SlidePrediction`'s JSON summary and tile table atomically into `out_dir`.

    `extra` entries are added to the JSON (e.g. "annotations": per-region results) and
    `extra_columns` (one value per tile) to the tile table, after the markers' columns."""
    out = ensure_dir(out_dir)
    json_name, csv_name = prediction_file_names(prediction.slide_path)
    values: dict[str, Any] = dict(prediction_values(prediction.markers))
    columns = prediction_columns(list(prediction.markers))
    for name, col in (extra_columns or {}).items():
        values[name] = list(col)
        columns.append(name)
    rows = tile_rows(prediction.grid, values)
    write_tile_table(out / csv_name, rows, columns)
    doc = prediction.to_dict()
    doc["tiles_csv"] = csv_name
    doc.update(extra or {})
    write_json(out / json_name, doc)
    return [out / json_name, out / csv_name]
