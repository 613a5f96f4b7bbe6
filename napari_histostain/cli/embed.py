"""`histostain embed`: embed the tissue tiles of a cohort's slides into a resumable cache."""

from __future__ import annotations

import argparse

from ..defaults import MIN_TISSUE, TILE_MPP, TILE_SIZE
from ..markers import MARKERS
from .options import add_quiet, add_reader_threads, fraction, positive_float, positive_int


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
    p.add_argument("--encoder", default="efficientnet-lite0", help="tile encoder name")
    p.add_argument(
        "--tile-mpp",
        type=positive_float,
        default=TILE_MPP,
        help=f"tile resolution, um/px ({TILE_MPP})",
    )
    p.add_argument(
        "--tile-size",
        type=positive_int,
        default=TILE_SIZE,
        help=f"tile side in pixels ({TILE_SIZE})",
    )
    p.add_argument(
        "--min-tissue", type=fraction, default=MIN_TISSUE, help="min tissue fraction of a tile"
    )
    p.add_argument("--batch-size", type=positive_int, default=64)
    add_reader_threads(p)
    p.add_argument(
        "--limit", type=positive_int, help="embed at most this many new slides, then stop"
    )
    add_quiet(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..engine.encoders import get_encoder
    from ..training.cache import EmbeddingCache, embed_slides, encoder_version
    from ..training.manifest import load_manifest

    manifest = load_manifest(args.manifest, marker=args.marker)
    encoder = get_encoder(args.encoder, allow_torchscript=True)  # the user named it
    cache = EmbeddingCache(
        args.cache,
        encoder_id=encoder.id,
        encoder_version=encoder_version(encoder),
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
