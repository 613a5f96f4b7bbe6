"""`histostain info SLIDE`: levels, mpp, vendor, tile size and associated images of a slide."""

from __future__ import annotations

import argparse
import json


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("info", help="describe a whole-slide image", description=__doc__)
    p.add_argument("slide", help="slide file or DICOM folder")
    p.add_argument("--json", action="store_true", help="print machine-readable JSON")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..io.slide import open_slide

    with open_slide(args.slide) as slide:
        info = slide.info
        if args.json:
            d = {k: v for k, v in info.__dict__.items() if k != "properties"}
            print(json.dumps(d, indent=2))
        else:
            print(info.summary())
    return 0
