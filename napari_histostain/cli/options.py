"""Options shared by the `histostain` commands, and the checks every value passes up front.

Each `add_*` adds one option the same way to every command that takes it; the `type=` checkers
turn a bad value into one argparse error line (exit 2) before any work starts.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from pathlib import Path

from ..defaults import MAX_TILES, MIN_TISSUE, READER_THREADS
from ..engine.device import DEFAULT_DEVICE, DEVICE_CHOICES, DeviceError, check_device
from ..errors import HistostainError
from ..markers import MARKERS


# ------------------------------------------------------------------------------------------------
# Value checks (argparse `type=`)
# ------------------------------------------------------------------------------------------------
def _number(text: str, kind: Callable[[str], float | int]) -> float | int:
    try:
        value = kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if isinstance(value, float) and not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text!r} is not a finite number")
    return value


def positive_float(text: str) -> float:
    """A finite number > 0."""
    value = float(_number(text, float))
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text} must be greater than 0")
    return value


def fraction(text: str) -> float:
    """A finite number in [0, 1]."""
    value = float(_number(text, float))
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"{text} must be between 0 and 1")
    return value


def percentage(text: str) -> float:
    """A finite number in [0, 100]."""
    value = float(_number(text, float))
    if not 0.0 <= value <= 100.0:
        raise argparse.ArgumentTypeError(f"{text} must be a percentage (0-100)")
    return value


def positive_int(text: str) -> int:
    """A whole number >= 1."""
    value = int(_number(text, int))
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text} must be at least 1")
    return value


def count(text: str) -> int:
    """A whole number >= 0."""
    value = int(_number(text, int))
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text} must be 0 or more")
    return value


def device(text: str) -> str:
    """auto, cpu, cuda, cuda:N or mps."""
    try:
        return check_device(text)
    except DeviceError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def nonnegative_float(text: str) -> float:
    """A finite number >= 0."""
    value = float(_number(text, float))
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text} must be 0 or more")
    return value


def int_between(low: int, high: int) -> Callable[[str], int]:
    """A checker of whole numbers in [low, high]."""

    def check(text: str) -> int:
        value = int(_number(text, int))
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{text} must be between {low} and {high}")
        return value

    check.__name__ = f"whole number {low}-{high}"
    return check


def memory_size(text: str) -> str | int | None:
    """A memory size such as 4GB or 500MiB (bytes), 'auto', or 0 / 'none' for no limit."""
    from dask.utils import parse_bytes

    word = text.strip().lower()
    if word == "auto":
        return "auto"
    if word in ("0", "none"):
        return None
    try:
        value = parse_bytes(word)
    except (ValueError, TypeError):
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a memory size; write e.g. 4GB, 500MiB, auto, or none"
        ) from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text} must be a positive size")
    return int(value)


# ------------------------------------------------------------------------------------------------
# Shared options
# ------------------------------------------------------------------------------------------------
def add_markers(p: argparse.ArgumentParser, *, what: str = "predict") -> None:
    """--marker (repeatable; default all)."""
    p.add_argument(
        "--marker",
        "-m",
        action="append",
        choices=list(MARKERS),
        dest="markers",
        metavar="MARKER",
        help=f"marker to {what} ({', '.join(MARKERS)}); repeat for several; default all",
    )


def chosen_markers(args: argparse.Namespace) -> list[str]:
    """The markers given with --marker (default all), without duplicates."""
    return list(dict.fromkeys(args.markers or MARKERS))


def add_prediction_options(p: argparse.ArgumentParser) -> None:
    """The options of how slides are predicted (`engine.predict.PredictOptions`)."""
    p.add_argument(
        "--model",
        action="append",
        default=[],
        metavar="MARKER=PATH",
        help="use this model file for a marker instead of the bundled one",
    )
    p.add_argument("--mpp", type=positive_float, help="override the slide's pixel size (um/px)")
    p.add_argument(
        "--tile-mpp", type=positive_float, help="tile resolution in um/px (default: the model's)"
    )
    p.add_argument(
        "--encoder",
        metavar="NAME[:WEIGHTS]",
        help="tile encoder: a name of `histostain encoders` (a foundation-model preset may be "
        "followed by :PATH of its weights file) or a TorchScript file (default: the model's)",
    )
    p.add_argument(
        "--min-tissue",
        type=fraction,
        default=MIN_TISSUE,
        help=f"minimum tissue fraction of a tile, 0-1 (default {MIN_TISSUE})",
    )
    p.add_argument(
        "--allow-other-encoder-weights",
        action="store_true",
        help="run a model with other tile-encoder weights than it was trained with (refused "
        "otherwise: the predictions would be meaningless)",
    )
    p.add_argument(
        "--max-tiles",
        type=positive_int,
        default=MAX_TILES,
        metavar="N",
        help=f"refuse a slide with more tissue tiles than this (default {MAX_TILES:,}; so many "
        "usually means a wrong pixel size or --tile-mpp)",
    )
    add_batch_size(p)
    add_reader_threads(p, default=None)
    add_device(p)


def add_batch_size(p: argparse.ArgumentParser) -> None:
    """--batch-size (default: the encoder's for the device)."""
    p.add_argument(
        "--batch-size",
        type=positive_int,
        default=None,
        help="tiles per encoder batch (default: the encoder's; e.g. 32 for EfficientNet-Lite0 "
        "on the CPU, 256 on a GPU)",
    )


def add_reader_threads(p: argparse.ArgumentParser, default: int | None = READER_THREADS) -> None:
    """--reader-threads (tile reader threads; --threads is an older name); default None: 2 on
    the CPU, up to 16 on a GPU."""
    what = f"{default}" if default else f"{READER_THREADS} on the CPU, up to 16 on a GPU"
    p.add_argument(
        "--reader-threads",
        "--threads",
        type=positive_int,
        default=default,
        dest="reader_threads",
        help=f"tile reader threads per slide (default {what})",
    )


def add_device(p: argparse.ArgumentParser) -> None:
    """--device auto|cpu|cuda[:N]|mps (default auto: a GPU when torch sees one)."""
    p.add_argument(
        "--device",
        type=device,
        default=DEFAULT_DEVICE,
        metavar="DEVICE",
        help=f"where torch runs: {DEVICE_CHOICES} (default {DEFAULT_DEVICE}: a GPU when there is "
        "one, else the CPU)",
    )


def add_quiet(p: argparse.ArgumentParser) -> None:
    """--quiet (no progress bar; --no-progress is an older name)."""
    p.add_argument(
        "--quiet", "--no-progress", action="store_true", dest="quiet", help="no progress bar"
    )


def parse_models(
    items: list[str], markers: list[str], *, must_exist: bool = False
) -> dict[str, str]:
    """--model MARKER=PATH values as {marker: path}, each for a chosen marker."""
    models = {}
    for item in items:
        marker, sep, path = item.partition("=")
        if not sep or marker not in MARKERS or not path:
            raise HistostainError(
                f"--model {item!r}: write MARKER=PATH with MARKER one of {', '.join(MARKERS)}"
            )
        if marker not in markers:
            raise HistostainError(f"--model given for {marker}, which is not a chosen --marker")
        if must_exist and not Path(path).expanduser().is_file():
            raise HistostainError(f"--model {item!r}: {path} does not exist.")
        models[marker] = str(Path(path).expanduser().resolve()) if must_exist else path
    return models


def prediction_options(args: argparse.Namespace, markers: list[str], *, must_exist: bool = False):
    """The `PredictOptions` of parsed prediction options."""
    from ..engine.predict import PredictOptions

    return PredictOptions(
        models=parse_models(args.model, markers, must_exist=must_exist),
        encoder=args.encoder,
        tile_mpp=args.tile_mpp,
        mpp=args.mpp,
        min_tissue=args.min_tissue,
        batch_size=args.batch_size,
        reader_threads=args.reader_threads,
        device=args.device,
        allow_other_encoder_weights=args.allow_other_encoder_weights,
        max_tiles=args.max_tiles,
    )


def progress_bar(args: argparse.Namespace, unit: str, desc: str):
    """A `progress(done, total)` hook drawing a tqdm bar (nothing with --quiet), and its closer."""
    state: dict = {}

    def progress(done: int, total: int) -> None:
        if args.quiet:
            return
        if "bar" not in state:
            from tqdm import tqdm

            state["bar"] = tqdm(total=total, unit=unit, desc=desc, dynamic_ncols=True)
        state["bar"].update(done - state["bar"].n)

    def close() -> None:
        if "bar" in state:
            state["bar"].close()

    return progress, close


#: Tile rules of `--tile-rule` (as `annotations.TILE_RULES`; not imported so the parser stays light).
TILE_RULE_CHOICES = ("centre", "area")


def add_annotation_options(p: argparse.ArgumentParser) -> None:
    """--annotations FILE, --tile-rule, --min-fraction: results per annotated region."""
    p.add_argument(
        "--annotations",
        metavar="FILE",
        help="QuPath GeoJSON annotations (File > Export objects as GeoJSON; level-0 px): also give "
        "results per annotation and per class; Exclude / Ignore* regions are left out of the others",
    )
    p.add_argument(
        "--tile-rule",
        choices=TILE_RULE_CHOICES,
        default="centre",
        help="which tiles belong to an annotation: those whose centre lies inside it (centre, the "
        "default) or those with at least --min-fraction of their area inside it (area)",
    )
    p.add_argument(
        "--min-fraction",
        type=fraction,
        default=0.5,
        help="with --tile-rule area: the share of a tile that must lie inside (default 0.5)",
    )


def read_annotation_file(args: argparse.Namespace) -> list | None:
    """The annotations of --annotations (checked before any work; None without the option);
    prints what was skipped."""
    if not getattr(args, "annotations", None):
        return None
    if args.tile_rule == "area" and args.min_fraction <= 0:
        raise HistostainError("--min-fraction must be above 0 (e.g. 0.5) with --tile-rule area")
    from ..annotations import read_annotations

    notes: list[str] = []
    annotations = read_annotations(args.annotations, notes=notes)
    for n in notes:
        print(f"note: {args.annotations}: {n}")
    return annotations
