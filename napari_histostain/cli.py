"""`histostain` command line. Each subcommand lives in its feature module, registered here by name.

A feature module exposes `register(subparsers)`, which adds its parser(s) and sets `func`; it keeps
heavy imports (torch, napari, dask) inside the function that runs, so `histostain --help` is quick.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
import warnings

from .errors import HistostainError

#: Modules whose `register(subparsers)` adds subcommands, in the order shown by --help.
COMMAND_MODULES = (
    "napari_histostain.cli_info",
    "napari_histostain.demo",
    "napari_histostain.simulate.cli",
    "napari_histostain.predict_cli",
    "napari_histostain.cohort",
    "napari_histostain.ihc_cli",
    "napari_histostain.training.cli",
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
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name:  # feature not built in this version
                continue
            raise
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING, format="%(message)s")
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


def _show_warning(message, category, filename, lineno, file=None, line=None):
    print(f"histostain: warning: {message}", file=sys.stderr)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
