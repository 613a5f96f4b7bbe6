"""`histostain simulate`: write a simulated paired H&E / IHC cohort with known ground truth."""

from __future__ import annotations

import argparse

from .options import count, int_between, positive_float, positive_int


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "simulate",
        help="simulate a paired H&E / IHC cohort with known ground truth",
        description="Render simulated cases (one H&E plus one IHC per marker, consecutive sections) "
        "as pyramidal TIFFs, with manifest.csv, per-tile truth maps and cohort.json "
        "(incl. the Bayes-optimal weighted F1 / AUC per marker).",
    )
    p.add_argument("out_dir", help="output folder (created if needed)")
    p.add_argument(
        "-n", "--cases", type=positive_int, default=10, help="number of cases (default 10)"
    )
    p.add_argument(
        "--markers", default="ki67,p53,pdl1", help="comma-separated markers (default ki67,p53,pdl1)"
    )
    p.add_argument(
        "--size-um",
        type=positive_float,
        nargs="+",
        default=[2048.0],
        metavar="UM",
        help="slide side in micrometres, or HEIGHT WIDTH (default 2048)",
    )
    p.add_argument(
        "--mpp", type=positive_float, default=0.5, help="micrometres per pixel (default 0.5)"
    )
    p.add_argument("--seed", type=count, default=0, help="cohort seed (default 0)")
    p.add_argument(
        "--difficulty",
        default="1.0",
        help="noise of the H&E correlates: a number >= 0 or easy/default/hard (default 1.0)",
    )
    p.add_argument(
        "--cutoff",
        action="append",
        default=[],
        metavar="MARKER=VALUE",
        help="label cutoff on the latent, e.g. ki67=0.2 pdl1=0.5 (repeatable)",
    )
    p.add_argument(
        "--workers", type=positive_int, default=1, help="cases rendered in parallel (default 1)"
    )
    p.add_argument(
        "--quality", type=int_between(1, 100), default=85, help="JPEG quality (default 85)"
    )
    g = p.add_argument_group(
        "another lab (stain and scanner shift; default: none, outputs unchanged)"
    )
    g.add_argument(
        "--lab-shift",
        choices=["another-lab", "mild"],
        default=None,
        help="a preset shift of stain protocol and scanner; the options below override its values",
    )
    g.add_argument(
        "--stain-rotation",
        type=float,
        metavar="DEG",
        help="rotate the stain vectors about the grey axis (another hue; -90..90)",
    )
    g.add_argument("--hematoxylin-gain", type=positive_float, help="hematoxylin intensity (x)")
    g.add_argument("--eosin-gain", type=positive_float, help="eosin / DAB intensity (x)")
    g.add_argument(
        "--thickness", type=positive_float, help="section thickness relative to nominal (x)"
    )
    g.add_argument("--blur-um", type=float, help="scanner defocus, Gaussian sigma in um")
    g.add_argument(
        "--white-point",
        type=float,
        nargs=3,
        metavar=("R", "G", "B"),
        help="the scanner's glass colour (white balance), 0-255",
    )
    p.set_defaults(func=run)


#: `LabShift` fields set by the command-line options
SHIFT_OPTIONS = {
    "stain_rotation": "stain_rotation_deg",
    "hematoxylin_gain": "hematoxylin_gain",
    "eosin_gain": "eosin_gain",
    "thickness": "thickness",
    "blur_um": "blur_um",
    "white_point": "white_point",
}


def lab_shift(args: argparse.Namespace):
    """The `LabShift` of the options (None: no shift asked for)."""
    import dataclasses

    from ..simulate.shift import PRESETS, LabShift

    base = PRESETS[args.lab_shift] if getattr(args, "lab_shift", None) else LabShift()
    given = {
        field: getattr(args, opt)
        for opt, field in SHIFT_OPTIONS.items()
        if getattr(args, opt, None) is not None
    }
    if "white_point" in given:
        given["white_point"] = tuple(given["white_point"])
    shift = dataclasses.replace(base, **given)
    return None if shift.is_neutral else shift


def _parse_cutoffs(items: list[str]) -> dict[str, float]:
    from ..simulate.params import SimulationError

    out: dict[str, float] = {}
    for item in items:
        key, sep, value = item.partition("=")
        try:
            if not sep:
                raise ValueError
            out[key.strip()] = float(value)
        except ValueError:
            raise SimulationError(
                f"--cutoff {item!r}: write it as MARKER=VALUE, e.g. ki67=0.2"
            ) from None
    return out


def run(args: argparse.Namespace) -> int:
    import time

    from ..simulate.cohort import simulate_cohort
    from ..simulate.params import SimulationError

    size = args.size_um[0] if len(args.size_um) == 1 else tuple(args.size_um)
    if len(args.size_um) > 2:
        raise SimulationError("--size-um takes one value (square) or two (HEIGHT WIDTH)")
    t0 = time.perf_counter()

    def progress(done: int, total: int) -> None:
        print(f"case {done}/{total} done ({time.perf_counter() - t0:.1f} s)", flush=True)

    manifest = simulate_cohort(
        args.out_dir,
        args.cases,
        args.markers,
        size_um=size,
        mpp=args.mpp,
        seed=args.seed,
        difficulty=args.difficulty,
        cutoffs=_parse_cutoffs(args.cutoff),
        workers=args.workers,
        quality=args.quality,
        shift=lab_shift(args),
        progress=progress,
    )
    print(f"wrote {manifest} and {manifest.parent / 'cohort.json'}")
    return 0
