"""The memory plan of a slide read: what a read will cost, checked before anything is decoded.

A region read holds its output (width x height x 3 bytes) and the native chunk being decoded (a
tile, or a whole strip of a stripped TIFF, as RGBA); `check_region` refuses one that needs more
than the read budget. Whole-level scans (the tissue overview, a thumbnail) stream in blocks, so
they cost time rather than memory: `check_scan` refuses a level with more pixels than the scan
budget (a single-level image of 200000 x 200000 px declared in a small file). `check_chunks`
refuses at open a file none of whose levels can be read within the budget. The budgets can be
raised with the environment variables HISTOSTAIN_READ_BUDGET (bytes, e.g. 4GB) and
HISTOSTAIN_SCAN_BUDGET (pixels).
"""

from __future__ import annotations

import os

from .errors import SlideError
from .metadata import SlideInfo

#: Default memory budget of one region read, bytes.
READ_BUDGET_BYTES = 1 << 30
#: Default pixel budget of a whole-level scan (about 46000 x 46000 px).
SCAN_BUDGET_PIXELS = 1 << 31
#: How to make a slide that fits: a tiled pyramid.
MAKE_PYRAMID = (
    "convert it to a tiled pyramidal TIFF (e.g. `vips tiffsave SLIDE out.tif --tile --pyramid "
    "--compression jpeg`)"
)


class SlideTooLargeError(SlideError):
    """A read of this slide would need more memory or decoding than the budget allows."""


def read_budget() -> int:
    """Bytes one region read may need (HISTOSTAIN_READ_BUDGET overrides the default)."""
    return _budget("HISTOSTAIN_READ_BUDGET", READ_BUDGET_BYTES)


def scan_budget() -> int:
    """Pixels a whole-level scan may decode (HISTOSTAIN_SCAN_BUDGET overrides the default)."""
    return _budget("HISTOSTAIN_SCAN_BUDGET", SCAN_BUDGET_PIXELS)


def _budget(variable: str, default: int) -> int:
    text = os.environ.get(variable, "").strip()
    if not text:
        return default
    from dask.utils import parse_bytes

    try:
        value = int(parse_bytes(text))
    except (ValueError, TypeError):
        raise SlideError(
            f"{variable}={text!r} is not a size; write e.g. 4GB or 8000000000."
        ) from None
    if value <= 0:
        raise SlideError(f"{variable}={text!r} must be positive.")
    return value


def chunk_bytes(info: SlideInfo, level: int) -> int:
    """Bytes of one decoded native chunk (tile or strip, RGBA) of `level`."""
    lw, lh = info.level_dimensions[level]
    tw, th = info.tile_sizes[level] if level < len(info.tile_sizes) else (256, 256)
    return min(max(int(tw), 1), lw) * min(max(int(th), 1), lh) * 4


def region_bytes(info: SlideInfo, level: int, width: int, height: int) -> int:
    """Bytes a read of `width` x `height` px at `level` needs: its output and one native chunk."""
    return int(width) * int(height) * 3 + chunk_bytes(info, level)


def check_region(info: SlideInfo, level: int, width: int, height: int) -> None:
    """Refuse a region read that needs more than the read budget."""
    need, budget = region_bytes(info, level, width, height), read_budget()
    if need <= budget:
        return
    name = os.path.basename(info.path)
    if chunk_bytes(info, level) > budget:
        lw, lh = info.level_dimensions[level]
        tw, th = info.tile_sizes[level]
        raise SlideTooLargeError(
            f"{name}: level {level} ({lw} x {lh} px) is stored in blocks of {min(tw, lw)} x "
            f"{min(th, lh)} px; decoding one needs {_gb(chunk_bytes(info, level))}, more than the "
            f"{_gb(budget)} read budget. Such a file can only be read whole: {MAKE_PYRAMID}."
        )
    raise SlideTooLargeError(
        f"{name}: reading {width} x {height} px at level {level} needs {_gb(need)}, more than the "
        f"{_gb(budget)} read budget. Read a smaller region or a coarser level (check --tile-mpp "
        "and the slide's pixel size), or raise HISTOSTAIN_READ_BUDGET."
    )


def check_scan(info: SlideInfo, level: int, what: str) -> None:
    """Refuse to decode the whole of `level` (for `what`, e.g. "detecting tissue") when it has more
    pixels than the scan budget."""
    lw, lh = info.level_dimensions[level]
    budget = scan_budget()
    if lw * lh <= budget:
        return
    smallest = min(info.level_dimensions, key=lambda d: d[0] * d[1])
    raise SlideTooLargeError(
        f"{os.path.basename(info.path)}: {what} reads the whole slide at low resolution, but its "
        f"smallest level is {smallest[0]} x {smallest[1]} px: it would decode "
        f"{lw * lh / 1e9:.1f} gigapixels, more than the {budget / 1e9:.1f} gigapixel budget. The "
        f"file declares a huge image without a pyramid; {MAKE_PYRAMID}, or raise "
        "HISTOSTAIN_SCAN_BUDGET (pixels) if you have the time."
    )


def check_chunks(info: SlideInfo) -> None:
    """Refuse at open a slide none of whose levels can be read within the read budget."""
    budget = read_budget()
    if any(chunk_bytes(info, lv) <= budget for lv in range(info.level_count)):
        return
    check_region(info, info.level_count - 1, 1, 1)  # raises, naming the smallest level's blocks


def _gb(n: int) -> str:
    return f"{n / 2**30:.1f} GiB" if n >= 2**30 else f"{n / 2**20:.0f} MiB"
