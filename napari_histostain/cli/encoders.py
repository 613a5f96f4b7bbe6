"""`histostain encoders`: every tile encoder with its embedding size, input and weights status."""

from __future__ import annotations

import argparse


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "encoders",
        help="list the tile encoders (embedding size, tile size, um/px, weights)",
        description="List every built-in tile encoder: its embedding size, input tile size, the "
        "resolution it was made for (um/px; '-' for any), and whether its weights are bundled, "
        "found in the weights folder (HISTOSTAIN_WEIGHTS_DIR, else the user data folder) or "
        "missing. Foundation-model weights are never downloaded: see docs/foundation-models.md.",
    )
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=run)


COLUMNS = (
    ("name", "encoder"),
    ("dim", "dim"),
    ("tile_size", "tile px"),
    ("um_per_px", "um/px"),
    ("weights", "weights"),
    ("licence", "licence"),
)


def run(args: argparse.Namespace) -> int:
    import json

    from ..engine.encoders import describe_encoders
    from ..engine.encoders.weights import WEIGHTS_ENV, weights_dir

    rows = describe_encoders()
    if args.json:
        print(json.dumps({"weights_dir": str(weights_dir()), "encoders": rows}, indent=2))
        return 0
    cells = [[_cell(r[k]) for k, _ in COLUMNS] for r in rows]
    widths = [max(len(h), *(len(c[i]) for c in cells)) for i, (_, h) in enumerate(COLUMNS)]
    lines = [[h for _, h in COLUMNS], *cells]
    for line in lines:
        print("  ".join(c.ljust(w) for c, w in zip(line, widths)).rstrip())
    print(
        f"\nweights folder: {weights_dir()} (${WEIGHTS_ENV} sets it); a preset's file goes to "
        "<folder>/<encoder>/<file>, or give it as --encoder NAME:PATH."
    )
    return 0


def _cell(value) -> str:
    return "-" if value is None else str(value)
