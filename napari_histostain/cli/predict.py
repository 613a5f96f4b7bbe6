"""`histostain predict`: predicted IHC positivity for one H&E slide -> JSON summary + tile CSV."""

from __future__ import annotations

import argparse
import warnings

from ..errors import HistostainError
from .options import (
    add_annotation_options,
    add_markers,
    add_prediction_options,
    add_quiet,
    chosen_markers,
    prediction_options,
    progress_bar,
    read_annotation_file,
)


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "predict",
        help="predict P53 / PD-L1 / Ki-67 positivity from an H&E slide",
        description="Predict slide-level IHC status and per-tile positivity / attention for an H&E "
        "whole-slide image. Writes <slide>.prediction.json and <slide>.tiles.csv into --out.",
    )
    p.add_argument("slide", help="whole-slide image (svs, ndpi, tiff, mrxs, DICOM folder, ...)")
    add_markers(p)
    p.add_argument("--out", required=True, help="output folder (created if needed)")
    add_prediction_options(p)
    p.add_argument("--region", metavar="X,Y,W,H", help="only tiles intersecting this level-0 box")
    p.add_argument(
        "--export",
        metavar="KINDS",
        default="",
        help="also write exports, comma-separated: geojson (QuPath), csv, heatmaps "
        "(pyramidal OME-TIFF), report (JSON + PNG), or 'all'",
    )
    add_annotation_options(p)
    add_quiet(p)
    p.set_defaults(func=run)


def parse_exports(text: str) -> list[str]:
    """--export KINDS as a list of export kinds ('all': every kind)."""
    from ..results.export import EXPORT_KINDS

    kinds = [k.strip() for k in text.split(",") if k.strip()]
    if "all" in kinds:
        return list(EXPORT_KINDS)
    unknown = [k for k in kinds if k not in EXPORT_KINDS]
    if unknown:
        raise HistostainError(
            f"--export {text!r}: unknown kind(s) {', '.join(unknown)}; "
            f"choose from {', '.join(EXPORT_KINDS)} or all"
        )
    return kinds


def parse_region(text: str | None) -> tuple[int, int, int, int] | None:
    """--region X,Y,W,H as a level-0 box."""
    if not text:
        return None
    try:
        x, y, w, h = (int(float(v)) for v in text.split(","))
    except (ValueError, OverflowError):  # not four numbers, or inf / nan
        raise HistostainError(
            f"--region {text!r}: write four finite numbers X,Y,W,H (level-0 pixels)"
        ) from None
    if w <= 0 or h <= 0:
        raise HistostainError(f"--region {text!r}: the width and height must be at least 1 pixel")
    return x, y, w, h


def run(args: argparse.Namespace) -> int:
    from ..engine.predict import predict_slide
    from ..engine.stain_check import StainWarning
    from ..io.atomic import ensure_dir, staged_files
    from ..io.lock import OutputLock
    from ..io.naming import slide_name
    from ..results.prediction_files import save_prediction

    markers = chosen_markers(args)
    options = prediction_options(args, markers)
    region = parse_region(args.region)
    exports = parse_exports(args.export)
    annotations = read_annotation_file(args)
    out = ensure_dir(args.out)  # fail early on an unwritable folder
    name = slide_name(args.slide)
    # one run at a time writes this slide's outputs into this folder (else their files would mix)
    with OutputLock(out / f".{name}.histostain-lock", f"histostain predict run for {name}"):
        progress, close_bar = progress_bar(args, "tile", "predict")
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", StainWarning)  # printed below with the other notes
                pred = predict_slide(args.slide, markers, options, region=region, progress=progress)
        finally:
            close_bar()
        exports = [
            k for k in exports if k != "csv"
        ]  # the tile table is written with the prediction
        # the prediction and its exports are written as one set: all of them, or (Ctrl-C, a full
        # disk) none of them
        per_region, extra, columns = _annotation_results(args, pred, annotations)
        with staged_files(out, name) as staged:
            save_prediction(pred, staged.folder, extra=extra, extra_columns=columns)
            if exports and not pred.is_empty:
                from ..io.slide import open_slide
                from ..results.export import export_prediction

                with open_slide(args.slide) as slide:
                    export_prediction(staged.folder, pred, slide=slide, what=exports)
    for msg in pred.messages:
        print(f"note: {msg}")
    print(f"{len(pred.grid)} tissue tiles at {pred.grid.tile_mpp:g} um/px in {pred.seconds:.1f} s")
    for m in pred.markers.values():
        prob = "n/a" if m.label is None else f"{m.probability:.3f}"
        print(f"  {m.name:6s} probability {prob:>6s}  -> {m.label or 'no call'}")
    for r in per_region:
        calls = ", ".join(
            f"{k} {v['probability']:.3f}" if v["probability"] is not None else f"{k} n/a"
            for k, v in r["markers"].items()
        )
        print(f"  region {r['name']!r} ({r['kind']}): {r['n_tiles']} tiles; {calls}")
    for f in staged.committed:
        print(f"wrote {f}")
    for f in staged.removed:
        print(f"removed {f} (of the previous prediction, not written this time)")
    return 0


def _annotation_results(args: argparse.Namespace, pred, annotations) -> tuple[list, dict, dict]:
    """(per-region results, JSON entries, tile-table columns) of --annotations (empty without)."""
    if annotations is None:
        return [], {}, {}
    from ..annotations import region_column, regions_on_grid
    from ..annotations.regions import placement_notes
    from ..annotations.results import prediction_region_results

    pred.messages.extend(placement_notes(annotations, pred.grid.slide_dimensions))
    regions = regions_on_grid(
        annotations, pred.grid, rule=args.tile_rule, min_fraction=args.min_fraction
    )
    results = prediction_region_results(pred, regions)
    extra = {
        "annotations": results,
        "annotations_source": {
            "file": str(args.annotations),
            "tile_rule": args.tile_rule,
            "min_fraction": args.min_fraction if args.tile_rule == "area" else None,
        },
    }
    return results, extra, {"annotation": region_column(regions, len(pred.grid))}
