"""`histostain build-cohort`: simulate a paired cohort and embed it into a cache, in parallel."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from .options import add_device, add_reader_threads, count, positive_float, positive_int


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "build-cohort",
        help="simulate a paired cohort and embed it (the bundled models' data)",
        description="Simulate a paired H&E / IHC cohort (as `histostain simulate`) in --workers "
        "processes and embed it into --cache in --embed-workers processes (on the GPU when one "
        "is present). The manifest uses paths relative to its folder, so cohort and cache move "
        "together.",
    )
    p.add_argument("--out", required=True, type=Path, help="cohort folder (slides + manifest)")
    p.add_argument("--cache", required=True, type=Path, help="embedding cache folder")
    p.add_argument("--cases", type=positive_int, default=300)
    p.add_argument(
        "--size-um", type=positive_float, default=1344.0, help="slide side in micrometres"
    )
    p.add_argument("--seed", type=count, default=2026)
    p.add_argument("--workers", type=positive_int, default=os.cpu_count() or 1)
    p.add_argument("--embed-workers", type=positive_int, default=max(1, (os.cpu_count() or 2) - 2))
    add_reader_threads(p)
    add_device(p)
    p.add_argument(
        "--deadline", type=positive_float, help="seconds: stop simulating / embedding in time"
    )
    p.add_argument(
        "--id-prefix",
        default="case",
        help="case ids are PREFIX0000, ...; give an external test cohort its own",
    )
    p.add_argument(
        "--encoder",
        default="efficientnet-lite0",
        help="tile encoder (the bundled models use efficientnet-lite0-multiscale)",
    )
    p.add_argument(
        "--he-only",
        action="store_true",
        help="embed only the H&E slides: enough for `add-domain` (domain reference, "
        "calibration) and scripts/measure_guard.py; `train` and `evaluate` need the IHC slides "
        "too. About 4x less embedding",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import json

    from ..training.build_cohort import build

    info = build(
        args.out,
        args.cache,
        args.cases,
        size_um=args.size_um,
        seed=args.seed,
        workers=args.workers,
        embed_workers=args.embed_workers,
        device=args.device,
        threads=args.reader_threads,
        deadline=args.deadline,
        id_prefix=args.id_prefix,
        encoder=args.encoder,
        he_only=args.he_only,
    )
    print(json.dumps(info, indent=2))
    return 0
