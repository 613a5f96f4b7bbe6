"""`histostain embed`: embed the tissue tiles of a cohort's slides into a resumable cache."""

from __future__ import annotations

import argparse

from ..defaults import MIN_TISSUE, TILE_MPP
from ..markers import MARKERS
from .options import (
    add_batch_size,
    add_device,
    add_quiet,
    add_reader_threads,
    fraction,
    positive_float,
    positive_int,
)


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "embed",
        help="embed the tissue tiles of a cohort's slides into a resumable cache",
        description="Embed every slide of a cohort manifest (H&E and IHC) with the tile encoder, "
        "one cache file per slide; finished slides are skipped, so an interrupted run resumes.",
    )
    p.add_argument("manifest", help="cohort CSV (case_id, marker, he_path, ihc_path, label)")
    p.add_argument("--cache", required=True, help="embedding cache folder")
    p.add_argument("--marker", choices=list(MARKERS), help="only this marker's slides")
    p.add_argument(
        "--encoder",
        default="efficientnet-lite0",
        metavar="NAME[:WEIGHTS]",
        help="tile encoder (see `histostain encoders`; a foundation-model preset may be followed "
        "by :PATH of its weights file)",
    )
    p.add_argument(
        "--tile-mpp",
        type=positive_float,
        help=f"tile resolution, um/px (default: the encoder's, e.g. 0.571 for uni; {TILE_MPP} "
        "for EfficientNet-Lite0)",
    )
    p.add_argument(
        "--tile-size",
        type=positive_int,
        help="tile side in pixels (default: the encoder's input, 224 for most)",
    )
    p.add_argument(
        "--min-tissue", type=fraction, default=MIN_TISSUE, help="min tissue fraction of a tile"
    )
    add_batch_size(p)
    add_reader_threads(p, default=None)
    add_device(p)
    p.add_argument(
        "--limit", type=positive_int, help="embed at most this many new slides, then stop"
    )
    add_quiet(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..engine.encoders import get_encoder
    from ..training.cache import EmbeddingCache, embed_slides
    from ..training.manifest import load_manifest

    manifest = load_manifest(args.manifest, marker=args.marker)
    encoder = get_encoder(
        args.encoder, device=args.device, allow_torchscript=True
    )  # the user named it
    cache = EmbeddingCache.for_encoder(
        args.cache,
        encoder,
        tile_mpp=args.tile_mpp,
        tile_size=args.tile_size,
        min_tissue=args.min_tissue,
        root=manifest.path.parent,
    )
    s = embed_slides(
        manifest.slide_paths(),
        cache,
        encoder,
        batch_size=args.batch_size,
        threads=args.reader_threads,
        progress=not args.quiet,
        limit=args.limit,
        ihc_slides={c.ihc_path for c in manifest.cases},
    )
    print(
        f"embedded {len(s.embedded)} slide(s) ({s.tiles} tiles, {s.tiles_per_second:.1f} tiles/s), "
        f"{len(s.skipped)} already cached, into {cache.folder}"
    )
    return 0
