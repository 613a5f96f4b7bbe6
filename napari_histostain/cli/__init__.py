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
    "add_domain",
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
    setup_logging(verbose=args.verbose)
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
        print("histostain: interrupted; no file was left half-written.", file=sys.stderr)
        return 130


def _show_warning(message, *_args, **_kwargs):
    print(f"histostain: warning: {message}", file=sys.stderr)


#: Loggers whose records the command line shows without --verbose: ours.
OWN_LOGGERS = ("napari_histostain", "training")


class _OwnRecords(logging.Filter):
    """Pass our own records; libraries' (tifffile's "invalid page offset", ...) only with -v."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.name.split(".")[0] in OWN_LOGGERS


class _StderrHandler(logging.StreamHandler):
    """Log lines as `histostain: warning: ...` on the current sys.stderr."""

    @property  # type: ignore[override]
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, _value) -> None:
        pass

    def format(self, record: logging.LogRecord) -> str:
        source = "" if _OwnRecords().filter(record) else f"{record.name}: "
        return f"histostain: {record.levelname.lower()}: {source}{record.getMessage()}"


def setup_logging(*, verbose: bool = False) -> None:
    """Our log lines on stderr; library log lines only with --verbose (their problems reach the
    user as our own one-line error)."""
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _StderrHandler)]:
        root.removeHandler(old)
    handler = _StderrHandler()
    if not verbose:
        handler.addFilter(_OwnRecords())
    root.addHandler(handler)
    root.setLevel(logging.DEBUG if verbose else logging.WARNING)
