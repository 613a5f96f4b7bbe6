"""`histostain quantify`: measure a real IHC slide or image, or a whole cohort (weak labels)."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..markers import MARKERS
from .options import (
    add_annotation_options,
    percentage,
    positive_float,
    positive_int,
    read_annotation_file,
)

#: Extra columns written beside the training manifest's columns by `--cohort`.
WEAK_LABEL_COLUMNS = (
    "label_source",
    "measured_index",
    "ki67_index",
    "h_score",
    "pdl1_tps",
    "p53_pattern",
    "positive_pixel_fraction",
    "n_nuclei",
    "ki67_global",
    "ki67_hotspot",
    "pdl1_cps",
    "insufficient",
)


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "quantify",
        help="measure DAB IHC: Ki-67 index, H-score, PD-L1 TPS, p53 pattern (+ weak labels)",
        description="Quantify a hematoxylin-DAB IHC slide or image (PNG/JPEG with --mpp), or with "
        "--cohort every IHC slide of a manifest, writing weak labels in the manifest format.",
    )
    p.add_argument("slide", nargs="?", help="IHC slide or image file")
    p.add_argument("--marker", choices=list(MARKERS), help="the IHC marker")
    p.add_argument(
        "--cohort", metavar="MANIFEST", help="manifest CSV (case_id, marker, ihc_path, ...)"
    )
    p.add_argument("--out", required=True, metavar="DIR", help="output folder")
    p.add_argument(
        "--mpp",
        type=positive_float,
        help="pixel size in um/px (required for images without one, e.g. PNG/JPEG; overrides "
        "the file's)",
    )
    p.add_argument(
        "--thresholds",
        type=positive_float,
        nargs=3,
        metavar=("T1", "T2", "T3"),
        default=(0.2, 0.4, 0.6),
        help="mean nuclear DAB OD for 1+/2+/3+ (default 0.2 0.4 0.6)",
    )
    p.add_argument(
        "--nucleus-contrast",
        type=positive_float,
        default=None,
        help="OD by which nuclei must stand out from their surroundings (default 0.05)",
    )
    p.add_argument(
        "--detection",
        choices=("auto", "standard", "real-fields"),
        default="auto",
        help="nucleus detection: 'auto' (default: 'real-fields' for Ki-67 tiles whose tissue "
        "between nuclei is stained, else 'standard'), 'standard' (as tuned on the simulator) or "
        "'real-fields' (scale-space blobs for real fields with a stained background and pale "
        "negative nuclei; see docs/ihc.md)",
    )
    p.add_argument(
        "--all-cells",
        action="store_true",
        help="count every nucleus (default: leave lymphocyte- and fibroblast-like "
        "nuclei and those in the stroma out of the indices, as they are scored on "
        "tumour cells)",
    )
    p.add_argument(
        "--count-stroma",
        action="store_true",
        help="also count nuclei in pale surroundings (turns the stroma rule off; the "
        "shape rules stay)",
    )
    p.add_argument(
        "--ki67-cutoff",
        type=percentage,
        default=None,
        metavar="PCT",
        help="Ki-67 index (%%) at and above which the weak label is 1 (default 20)",
    )
    p.add_argument(
        "--pdl1-cutoff",
        type=percentage,
        default=None,
        metavar="PCT",
        help="PD-L1 TPS (%%) at and above which the weak label is 1 (default 1; 50 for "
        "the high-expression cutoff)",
    )
    p.add_argument(
        "--hotspot-area-mm2",
        type=positive_float,
        default=None,
        metavar="MM2",
        help="Ki-67 hot spot: the circular field of this area with the most positive tumour "
        "nuclei (default 0.2 mm^2, a 40x high-power field)",
    )
    p.add_argument(
        "--hotspot-cells",
        type=positive_int,
        default=None,
        metavar="N",
        help="Ki-67 hot spot: the circular field holding N tumour cells (e.g. 500) with the most "
        "positive nuclei, instead of a fixed area",
    )
    p.add_argument(
        "--net-grade",
        action="store_true",
        help="Ki-67: also give the WHO grade of a neuroendocrine tumour from the hot spot "
        "(G1 < 3 %%, G2 3-20 %%, G3 > 20 %%; 'insufficient' under 500 cells)",
    )
    p.add_argument("--figure", action="store_true", help="also write an overlay PNG of the nuclei")
    p.add_argument(
        "--corrections",
        metavar="JSON",
        help="apply thresholds and nuclei corrected by hand in napari (a saved "
        "<slide>.<marker>.ihc_corrections.json) and write them with the results",
    )
    add_annotation_options(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from ..ihc import IHCError, IHCParams, with_thresholds
    from ..ihc.params import with_detection
    from ..ihc.reporting import add_reported_scores

    params = with_detection(with_thresholds(IHCParams(), args.thresholds), args.detection)
    if args.nucleus_contrast is not None:
        params = replace(params, nucleus_contrast=args.nucleus_contrast)
    if args.all_cells:
        params = replace(params, cells="all")
    if args.count_stroma:
        params = replace(params, context_min_nuclei=0)
    for name in ("ki67_cutoff", "pdl1_cutoff"):
        value = getattr(args, name, None)
        if value is not None:
            params = replace(params, **{name: value})
    if args.cohort:
        if args.slide:
            raise IHCError("give either a SLIDE or --cohort MANIFEST, not both.")
        if args.annotations:
            raise IHCError("--annotations belong to one slide; use them without --cohort.")
        if args.corrections:
            raise IHCError("--corrections belong to one slide; use them without --cohort.")
        return _run_cohort(Path(args.cohort), Path(args.out), params, report_options(args, None))
    if not args.slide or not args.marker:
        raise IHCError(
            "give the IHC slide and its --marker (ki67, p53 or pdl1), or --cohort MANIFEST."
        )
    report = report_options(args, args.marker)
    annotations = read_annotation_file(args)
    result, rgb_view = _quantify_path(Path(args.slide), args.marker, params, args.mpp)
    if args.corrections:
        from ..ihc.corrections import apply_corrections, load_corrections

        fixes = load_corrections(args.corrections, result)
        result = apply_corrections(result, fixes)
    regions = _add_region_results(args, result, annotations) if annotations is not None else None
    add_reported_scores(result, report, regions)
    paths = result.save(args.out)
    if args.corrections:  # beside the results they made
        from ..ihc.corrections import corrections_path, save_corrections

        paths.append(save_corrections(corrections_path(args.out, result), fixes, result))
    if args.figure:
        from ..ihc import save_overlay_figure
        from ..io.naming import slide_name

        rgb, ds = rgb_view()
        stem = f"{slide_name(args.slide)}.{args.marker}"
        paths.append(
            save_overlay_figure(rgb, result, Path(args.out) / f"{stem}.ihc.png", downsample=ds)
        )
    s = result.summary()
    print(_summary_line(args.slide, s))
    for line in reported_lines(result.reported):
        print(f"  {line}")
    for r in result.annotations:
        print(
            _summary_line(f"  region {r['name']!r} ({r['kind']}, {r['n_tiles']} tiles)", r["ihc"])
        )
    for msg in result.messages:
        print(f"note: {msg}")
    for p in paths:
        print(f"wrote {p}")
    return 0


def report_options(args: argparse.Namespace, marker: str | None):
    """The reporting options (`ihc.reporting.ReportOptions`), checked against each other and the
    marker before any work starts."""
    from ..ihc import IHCError
    from ..ihc.reporting import HOTSPOT_AREA_MM2, ReportOptions

    if args.hotspot_area_mm2 is not None and args.hotspot_cells is not None:
        raise IHCError(
            "give the hot spot either an area (--hotspot-area-mm2) or a cell count "
            "(--hotspot-cells), not both."
        )
    ki67_only = [
        name
        for name, given in (
            ("--hotspot-area-mm2", args.hotspot_area_mm2 is not None),
            ("--hotspot-cells", args.hotspot_cells is not None),
            ("--net-grade", args.net_grade),
        )
        if given
    ]
    if ki67_only and marker is not None and marker != "ki67":
        raise IHCError(f"{', '.join(ki67_only)} belong to Ki-67; drop them or use --marker ki67.")
    return ReportOptions(
        hotspot_area_mm2=args.hotspot_area_mm2 or HOTSPOT_AREA_MM2,
        hotspot_cells=args.hotspot_cells,
        net_grade=bool(args.net_grade),
    )


def reported_lines(reported: dict) -> list[str]:
    """Console lines of `IHCResult.reported`."""

    def f(v, unit=" %"):
        return "n/a" if v is None else f"{v:.1f}{unit}"

    lines = []
    k = reported.get("ki67")
    if k:
        lines.append(
            f"Ki-67 global {f(k['global_index'])} over {k['n_cells']} tumour cells in "
            f"{k['n_fields']} fields"
            + (" (insufficient: < 500 cells)" if k["insufficient"] else "")
        )
        spot = k.get("hotspot")
        if spot:
            lines.append(
                f"Ki-67 hot spot {f(spot['index'])} ({spot['n_positive']}/{spot['n_cells']} cells, "
                f"{spot['area_mm2']:.3f} mm^2) at x={spot['x_um']:.0f} um, y={spot['y_um']:.0f} um"
                + (" (insufficient: < 500 cells)" if spot["insufficient"] else "")
            )
        if k.get("net_grade"):
            lines.append(f"neuroendocrine grade (WHO): {k['net_grade']}")
    p = reported.get("pdl1")
    if p:
        lines.append(
            f"PD-L1 TPS {f(p['tps'])}, CPS {f(p['cps'], '')}, immune cells "
            f"{p['n_immune']} ({f(p['immune_positive_pct'])} positive) over "
            f"{p['n_tumour']} tumour cells"
            + (" (insufficient: < 100)" if p["insufficient"] else "")
        )
    return lines


def _add_region_results(args: argparse.Namespace, result, annotations) -> list:
    """Per-annotation IHC results (the nuclei of each region's tiles) into `result`; the regions."""
    from ..annotations import region_column, regions_on_grid
    from ..annotations.regions import placement_notes
    from ..annotations.results import ihc_region_results

    grid = result.grid
    result.messages.extend(placement_notes(annotations, grid.slide_dimensions))
    regions = regions_on_grid(
        annotations, grid, rule=args.tile_rule, min_fraction=args.min_fraction
    )
    result.annotations = ihc_region_results(result, regions)
    result.tile_annotation = region_column(regions, len(grid.coords))
    return regions


def _summary_line(name, s: dict) -> str:
    def f(v, unit=""):
        return "n/a" if v is None or v != v else f"{v:.1f}{unit}"

    return (
        f"{name}: {s['marker']}: {s['n_nuclei']} nuclei, Ki-67 index {f(s['ki67_index'], '%')}, "
        f"H-score {f(s['h_score'])}, PD-L1 TPS {f(s['pdl1_tps'], '%')}, "
        f"p53 {s['p53_pattern']}, label {s['label']}"
    )


def _quantify_path(path: Path, marker: str, params, mpp: float | None):
    """Quantify a slide or an image file at its own or the given pixel size (`mpp`); also return a
    callable giving a view for figures."""
    import warnings

    from ..ihc import IHCError, quantify_slide
    from ..io.slide import MissingMppWarning, open_slide

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MissingMppWarning)  # refused below unless --mpp is given
        slide = open_slide(path)
    try:
        if mpp:
            slide = slide.with_mpp(mpp)
        elif not slide.info.mpp_known:
            raise IHCError(
                f"{path}: the image has no pixel size; pass --mpp (e.g. --mpp 0.5 at 20x, 0.25 "
                "at 40x)."
            )
        result = quantify_slide(slide, marker, params=params)
    finally:
        slide.close()

    def view():
        with open_slide(path) as s:
            ds = max(1.0, max(s.dimensions) / 2000)
            level = s.best_level_for_downsample(ds)
            ds = float(s.level_downsamples[level])
            return s.read_region((0, 0), level, s.level_dimensions[level]), ds

    return result, view


def _run_cohort(manifest: Path, out: Path, params, report) -> int:
    """Quantify every IHC slide of a manifest; write `weak_labels.csv` in the manifest format."""
    from ..ihc.reporting import add_reported_scores
    from ..io.atomic import ensure_dir, write_csv
    from ..io.manifest import read_manifest

    table = read_manifest(
        manifest, required=("case_id", "marker", "ihc_path"), what="manifest (see docs/ihc.md)"
    )
    ensure_dir(out)
    columns = list(table.columns)
    for col in ("label", *WEAK_LABEL_COLUMNS):
        if col not in columns:
            columns.append(col)
    written = []
    for i, row in enumerate(table.rows, start=1):
        marker = row["marker"].strip().lower()
        result, _ = _quantify_path(
            table.resolve(row["ihc_path"]), marker, params, _float(row.get("mpp"))
        )
        add_reported_scores(result, report)
        result.save(out / "cases", stem=f"{row['case_id']}.{marker}")
        scores = result.score_table()[0]
        s = result.summary()
        measured = {
            "ki67": s["ki67_index"],
            "pdl1": s["pdl1_tps"],
            "p53": s["strong_fraction"] * 100 if s["n_nuclei"] else float("nan"),
        }[marker]
        row.update(
            {
                "label": s["label"],
                "label_source": "ihc",
                "measured_index": _fmt(measured),
                "ki67_index": _fmt(s["ki67_index"]),
                "h_score": _fmt(s["h_score"]),
                "pdl1_tps": _fmt(s["pdl1_tps"]),
                "p53_pattern": s["p53_pattern"],
                "positive_pixel_fraction": _fmt(s["positive_pixel_fraction"]),
                "n_nuclei": s["n_nuclei"],
                "ki67_global": scores.get("ki67_global", ""),
                "ki67_hotspot": scores.get("hotspot_index", ""),
                "pdl1_cps": scores.get("pdl1_cps", ""),
                "insufficient": scores.get("insufficient", ""),
            }
        )
        written.append(row)
        print(f"[{i}/{len(table.rows)}] {_summary_line(row['case_id'], s)}")
    path = write_csv(out / "weak_labels.csv", written, columns)
    print(f"wrote {path}")
    return 0


def _float(v) -> float | None:
    try:
        return float(v) if v not in (None, "") else None
    except ValueError:
        return None


def _fmt(v: float) -> str:
    return "" if v is None or v != v else f"{v:.3f}"
