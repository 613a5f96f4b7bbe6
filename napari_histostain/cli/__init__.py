"""`histostain` command line: one module per command in this folder, registered here by name.

A command module exposes `register(subparsers)`, which adds its parser and sets `func`; it keeps
heavy imports (torch, napari, dask) inside the function that runs, so `histostain --help` is quick.
Options shared by several commands, and the checks of their values, are in `options`.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
import warnings

from ..errors import HistostainError

#: Command modules of this package, in the order --help shows them.
COMMAND_MODULES = (
    "info",
    "demo",
    "simulate",
    "predict",
    "predict_cohort",
    "quantify",
    "build_cohort",
    "encoders",
    "embed",
    "train",
    "evaluate",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="histostain",
        description="Whole-slide H&E -> predicted IHC (P53, PD-L1, Ki-67) positivity. "
        "Demonstration software, not for clinical use.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(f"{__name__}.{name}").register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, or a bad value: argparse has printed why
        return int(exc.code or 0)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING, format="%(message)s"
    )
    if not getattr(args, "func", None):
        parser.print_help()
        return 1
    warnings.showwarning = _show_warning
    try:
        return int(args.func(args) or 0)
    except HistostainError as exc:
        print(f"histostain: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("histostain: interrupted; nothing half-written was left behind.", file=sys.stderr)
        return 130


def _show_warning(message, *_args, **_kwargs):
    print(f"histostain: warning: {message}", file=sys.stderr)
