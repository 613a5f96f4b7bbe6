"""`histostain predict`: predicted IHC positivity for one H&E slide -> JSON summary + tile CSV."""

from __future__ import annotations

import argparse
import warnings

from . import MARKERS
from .errors import HistostainError


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "predict",
        help="predict P53 / PD-L1 / Ki-67 positivity from an H&E slide",
        description="Predict slide-level IHC status and per-tile positivity / attention for an H&E "
        "whole-slide image. Writes <slide>.prediction.json and <slide>.tiles.csv into --out.",
    )
    p.add_argument("slide", help="whole-slide image (svs, ndpi, tiff, mrxs, DICOM folder, ...)")
    p.add_argument("--marker", action="append", choices=list(MARKERS), metavar="MARKER",
                   help=f"marker to predict ({', '.join(MARKERS)}); repeat for several; default all")
    p.add_argument("--out", required=True, help="output folder (created if needed)")
    p.add_argument("--mpp", type=float, help="override the slide's pixel size (um/px)")
    p.add_argument("--tile-mpp", type=float, help="tile resolution in um/px (default: the model's)")
    p.add_argument("--model", action="append", default=[], metavar="MARKER=PATH",
                   help="use this model file for a marker instead of the bundled one")
    p.add_argument("--encoder", help="tile encoder: registry name or TorchScript file "
                   "(default: the model's)")
    p.add_argument("--region", metavar="X,Y,W,H", help="only tiles intersecting this level-0 box")
    p.add_argument("--min-tissue", type=float, default=0.25,
                   help="minimum tissue fraction of a tile (default 0.25)")
    p.add_argument("--batch-size", type=int, default=32, help="tiles per batch (default 32)")
    p.add_argument("--threads", type=int, default=2, help="tile reader threads (default 2)")
    p.add_argument("--export", metavar="KINDS", default="",
                   help="also write exports, comma-separated: geojson (QuPath), csv, heatmaps "
                   "(pyramidal OME-TIFF), report (JSON + PNG), or 'all'")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def _parse_models(items: list[str]) -> dict[str, str]:
    models = {}
    for item in items:
        marker, sep, path = item.partition("=")
        if not sep or marker not in MARKERS or not path:
            raise HistostainError(
                f"--model {item!r}: write MARKER=PATH with MARKER one of {', '.join(MARKERS)}"
            )
        models[marker] = path
    return models


def _parse_exports(text: str) -> list[str]:
    from .export import EXPORT_KINDS

    kinds = [k.strip() for k in text.split(",") if k.strip()]
    if "all" in kinds:
        return list(EXPORT_KINDS)
    unknown = [k for k in kinds if k not in EXPORT_KINDS]
    if unknown:
        raise HistostainError(f"--export {text!r}: unknown kind(s) {', '.join(unknown)}; "
                              f"choose from {', '.join(EXPORT_KINDS)} or all")
    return kinds


def _parse_region(text: str | None):
    if not text:
        return None
    try:
        x, y, w, h = (int(float(v)) for v in text.split(","))
    except ValueError:
        raise HistostainError(f"--region {text!r}: write four numbers X,Y,W,H (level-0 pixels)") from None
    return x, y, w, h


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from ._io import ensure_dir
    from .inference import StainWarning, predict_slide

    markers = list(dict.fromkeys(args.marker or MARKERS))
    models = _parse_models(args.model)
    extra = [m for m in models if m not in markers]
    if extra:
        raise HistostainError(f"--model given for {', '.join(extra)}, which is not a chosen --marker")
    region = _parse_region(args.region)
    exports = _parse_exports(args.export)
    if args.batch_size < 1 or args.threads < 1:
        raise HistostainError("--batch-size and --threads must be at least 1")
    ensure_dir(args.out)  # fail early on an unwritable folder
    bar = None

    def progress(done: int, total: int) -> None:
        nonlocal bar
        if args.quiet:
            return
        if bar is None:
            bar = tqdm(total=total, unit="tile", desc="predict", dynamic_ncols=True)
        bar.update(done - bar.n)

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", StainWarning)  # printed below with the other notes
            pred = predict_slide(
                args.slide, markers, region=region, tile_mpp=args.tile_mpp,
                models={m: models.get(m) for m in markers}, progress=progress,
                encoder=args.encoder, mpp=args.mpp, min_tissue=args.min_tissue,
                batch_size=args.batch_size, threads=args.threads,
            )
    finally:
        if bar is not None:
            bar.close()
    files = pred.save(args.out)
    if exports and not pred.is_empty:
        from .export import export_prediction
        from .slide import open_slide

        with open_slide(args.slide) as slide:
            files += export_prediction(args.out, pred, slide=slide, what=exports)
    for msg in pred.messages:
        print(f"note: {msg}")
    print(f"{len(pred.grid)} tissue tiles at {pred.grid.tile_mpp:g} um/px in {pred.seconds:.1f} s")
    for m in pred.markers.values():
        prob = "n/a" if m.label is None else f"{m.probability:.3f}"
        print(f"  {m.name:6s} probability {prob:>6s}  -> {m.label or 'no call'}")
    for f in files:
        print(f"wrote {f}")
    return 0
