"""`histostain quantify`: measure a real IHC slide or image, or a whole cohort (weak labels)."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..markers import MARKERS
from .options import add_annotation_options, percentage, positive_float, read_annotation_file

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
)
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")


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
        "--mpp", type=positive_float, help="pixel size in um/px (required for PNG/JPEG images)"
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
    p.add_argument("--figure", action="store_true", help="also write an overlay PNG of the nuclei")
    add_annotation_options(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from ..ihc import IHCError, IHCParams, with_thresholds

    params = with_thresholds(IHCParams(), args.thresholds)
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
        return _run_cohort(Path(args.cohort), Path(args.out), params)
    if not args.slide or not args.marker:
        raise IHCError(
            "give the IHC slide and its --marker (ki67, p53 or pdl1), or --cohort MANIFEST."
        )
    annotations = read_annotation_file(args)
    result, rgb_view = _quantify_path(Path(args.slide), args.marker, params, args.mpp)
    if annotations is not None:
        _add_region_results(args, result, annotations)
    paths = result.save(args.out)
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
    for r in result.annotations:
        print(
            _summary_line(f"  region {r['name']!r} ({r['kind']}, {r['n_tiles']} tiles)", r["ihc"])
        )
    for msg in result.messages:
        print(f"note: {msg}")
    for p in paths:
        print(f"wrote {p}")
    return 0


def _add_region_results(args: argparse.Namespace, result, annotations) -> None:
    """Per-annotation IHC results (the nuclei of each region's tiles) into `result`."""
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


def _summary_line(name, s: dict) -> str:
    def f(v, unit=""):
        return "n/a" if v is None or v != v else f"{v:.1f}{unit}"

    return (
        f"{name}: {s['marker']}: {s['n_nuclei']} nuclei, Ki-67 index {f(s['ki67_index'], '%')}, "
        f"H-score {f(s['h_score'])}, PD-L1 TPS {f(s['pdl1_tps'], '%')}, "
        f"p53 {s['p53_pattern']}, label {s['label']}"
    )


def _quantify_path(path: Path, marker: str, params, mpp: float | None):
    """Quantify a slide or a plain image; also return a callable giving a view for figures."""
    from ..ihc import IHCError, quantify_image, quantify_slide

    if path.suffix.lower() in IMAGE_SUFFIXES:
        if not path.exists():
            raise IHCError(f"{path}: no such file. Check the path.")
        if not mpp:
            raise IHCError(f"{path}: a plain image has no pixel size; pass --mpp (e.g. --mpp 0.5).")
        from skimage.io import imread

        try:
            rgb = imread(path)
        except Exception as exc:
            raise IHCError(
                f"{path}: cannot read this image ({exc}). Use a PNG or JPEG file."
            ) from exc
        if rgb.ndim == 2:
            raise IHCError(f"{path}: a greyscale image has no DAB colour; use the RGB image.")
        rgb = rgb[..., :3]
        return quantify_image(rgb, mpp, marker, params=params, name=str(path)), lambda: (rgb, 1.0)
    from ..io.slide import open_slide

    slide = open_slide(path)
    try:
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


def _run_cohort(manifest: Path, out: Path, params) -> int:
    """Quantify every IHC slide of a manifest; write `weak_labels.csv` in the manifest format."""
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
        result.save(out / "cases", stem=f"{row['case_id']}.{marker}")
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
