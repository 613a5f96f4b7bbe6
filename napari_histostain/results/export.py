"""Export tile predictions: QuPath GeoJSON, CSV tile table, heatmap OME-TIFFs, slide report.

Pure compute (no Qt, no napari). Every file is written atomically (`io.atomic`);
`export_predictions` also removes the files it already wrote when a later one fails, so a read-only
or full destination leaves nothing half-written.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..io.atomic import OutputError, write_json
from ..io.naming import slide_name
from ..markers import marker_name
from .caveats import CAVEATS_COLUMN, caveats_cell
from .errors import ExportError, check_marker
from .geojson import write_tiles_geojson
from .heatmap_tiff import HEATMAP_SUFFIX, write_heatmap
from .maps import KINDS, PredictionMaps
from .report import report_image, slide_report, write_png
from .tile_table import prediction_columns, prediction_values, tile_rows, write_tile_table

#: What `export_predictions` can write.
EXPORT_KINDS = ("geojson", "csv", "heatmaps", "report")


def export_paths(out_dir: str | Path, stem: str, markers: Iterable[str]) -> dict[str, Path]:
    """The file names `export_predictions` uses."""
    d = Path(out_dir)
    paths = {
        "csv": d / f"{stem}.tiles.csv",
        "report_json": d / f"{stem}.report.json",
        "report_png": d / f"{stem}.report.png",
    }
    for m in markers:
        paths[f"geojson:{m}"] = d / f"{stem}.{m}.tiles.geojson"
        for kind in KINDS:
            paths[f"heatmap:{m}:{kind}"] = d / f"{stem}.{m}-{kind}{HEATMAP_SUFFIX}"
    return paths


def export_predictions(
    out_dir: str | Path,
    maps: PredictionMaps,
    *,
    slide: Any = None,
    markers: Sequence[str] | None = None,
    what: Iterable[str] = EXPORT_KINDS,
    stem: str | None = None,
    tile_threshold: float = 0.5,
    messages: Iterable[str] = (),
) -> list[Path]:
    """Write the selected exports into `out_dir`; returns the paths written.

    `slide` (an open `Slide`) is needed only for the report thumbnail. On any error the files this
    call already wrote are removed and an `OutputError`/`ExportError` is raised.
    """
    what = set(what)
    unknown = what - set(EXPORT_KINDS)
    if unknown:
        raise ExportError(f"unknown export kind(s) {sorted(unknown)}; use {EXPORT_KINDS}.")
    markers = list(markers if markers is not None else maps.markers)
    for m in markers:
        check_marker(maps, m)
    if not maps.done.any():
        raise ExportError("there are no computed tiles to export; run a prediction first.")
    stem = stem or (slide_name(maps.slide_path) if maps.slide_path else "histostain")
    paths = export_paths(out_dir, stem, markers)
    written: list[Path] = []
    try:
        if "geojson" in what:
            for m in markers:
                written.append(
                    write_tiles_geojson(
                        paths[f"geojson:{m}"], maps, m, tile_threshold=tile_threshold
                    )
                )
        if "csv" in what:
            values = prediction_values(maps.markers, getattr(maps, "domain_score", None))
            values[CAVEATS_COLUMN] = np.full(len(maps), caveats_cell(maps.caveats), dtype=object)
            rows = tile_rows(maps, values, np.flatnonzero(maps.done))
            columns = [*prediction_columns(markers), CAVEATS_COLUMN]
            written.append(write_tile_table(paths["csv"], rows, columns))
        if "heatmaps" in what:
            for m in markers:
                for kind in KINDS:
                    meta = {
                        "marker": m,
                        "kind": kind,
                        "slide_path": maps.slide_path,
                        "name": f"{marker_name(m)} {kind}",
                    }
                    written.append(
                        write_heatmap(
                            paths[f"heatmap:{m}:{kind}"], maps.heatmap(m, kind), maps.lattice, meta
                        )
                    )
        if "report" in what:
            rep = slide_report(maps, tile_threshold=tile_threshold, slide=slide, messages=messages)
            rep["files"] = [p.name for p in written] + [paths["report_png"].name]
            if slide is not None:
                thumb = slide.thumbnail(768)
                img = report_image(
                    thumb, slide.dimensions, maps, markers, maps.summary(tile_threshold)
                )
                written.append(write_png(paths["report_png"], img))
            else:
                rep["files"].pop()
            written.append(write_json(paths["report_json"], rep))
    except (OutputError, ExportError, OSError):
        for p in written:
            p.unlink(missing_ok=True)
        raise
    return written


def export_prediction(
    out_dir: str | Path,
    prediction: Any,
    *,
    slide: Any = None,
    what: Iterable[str] = EXPORT_KINDS,
    tile_threshold: float = 0.5,
) -> list[Path]:
    """`export_predictions` for a finished `inference.SlidePrediction` (used by the CLI)."""
    maps = PredictionMaps.from_prediction(prediction)
    return export_predictions(
        out_dir,
        maps,
        slide=slide,
        what=what,
        tile_threshold=tile_threshold,
        messages=getattr(prediction, "messages", ()),
    )
