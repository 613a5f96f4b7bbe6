"""`histostain demo`: napari with the plugin and a sample slide, or the same job headless.

Without a slide, it uses the simulated Ki-67 sample case (rendered once into the user cache). The
GUI variant opens the H&E (and the hidden IHC of the same case) and docks the prediction widget; the
headless variant runs the whole-slide prediction for all markers and writes JSON + CSV.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "demo",
        help="open napari with the plugin and a sample slide (or --headless: predict it)",
        description=__doc__,
    )
    p.add_argument(
        "slide", nargs="?", help="an H&E slide (default: the simulated Ki-67 sample case)"
    )
    p.add_argument("--headless", action="store_true", help="no GUI: predict and write results")
    p.add_argument("--out", default="histostain-demo", help="output folder for --headless")
    p.add_argument(
        "--screenshot",
        metavar="PNG",
        help="GUI: run a whole-slide prediction, save a "
        "screenshot of the window and quit (for docs and smoke tests)",
    )
    p.set_defaults(func=run)


def _sample_paths(slide: str | None) -> tuple[Path, Path | None]:
    if slide:
        return Path(slide), None
    from ..plugin.sample_data import sample_case_paths

    print("preparing the simulated Ki-67 sample case (first time only: a few seconds) ...")
    he, ihc = sample_case_paths("ki67")
    return he, ihc


def run(args: argparse.Namespace) -> int:
    he, ihc = _sample_paths(args.slide)
    if args.headless:
        from . import predict

        parser = argparse.ArgumentParser(prog="histostain")
        predict.register(parser.add_subparsers())
        ns = parser.parse_args(["predict", str(he), "--out", args.out])
        return ns.func(ns)
    from .._qt.demo_window import run_demo_window

    return run_demo_window(he, ihc, args.screenshot)
