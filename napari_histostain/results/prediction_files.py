"""A prediction on disk: `<slide>.prediction.json` (slide-level) and `<slide>.tiles.csv` (per tile)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..io.atomic import ensure_dir, write_json
from ..io.naming import slide_name
from .caveats import CAVEATS_COLUMN, caveats_cell, prediction_caveats
from .tile_table import prediction_columns, prediction_values, tile_rows, write_tile_table


def prediction_file_names(slide_path: str | Path) -> tuple[str, str]:
    """(JSON, CSV) file names of a slide's prediction: <name>.prediction.json, <name>.tiles.csv."""
    name = slide_name(slide_path)
    return f"{name}.prediction.json", f"{name}.tiles.csv"


def save_prediction(prediction: Any, out_dir: str | Path) -> list[Path]:
    """Write a `SlidePrediction`'s JSON summary and tile table atomically into `out_dir`.

    Both carry the caveats (`results.caveats`): the JSON under "caveats" (disclaimer, model
    identities, domain verdict, each marker's call state), the CSV in its last column.
    """
    out = ensure_dir(out_dir)
    json_name, csv_name = prediction_file_names(prediction.slide_path)
    doc = prediction.to_dict()
    doc["caveats"] = prediction_caveats(doc)
    values = prediction_values(prediction.markers, getattr(prediction, "domain_score", None))
    values[CAVEATS_COLUMN] = np.full(
        len(prediction.grid), caveats_cell(doc["caveats"]), dtype=object
    )
    rows = tile_rows(prediction.grid, values)
    columns = [*prediction_columns(list(prediction.markers)), CAVEATS_COLUMN]
    write_tile_table(out / csv_name, rows, columns)
    doc["tiles_csv"] = csv_name
    write_json(out / json_name, doc)
    return [out / json_name, out / csv_name]
