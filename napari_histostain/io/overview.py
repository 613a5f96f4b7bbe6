"""Whole-level reads in bounded blocks: a slide's overview at a coarse resolution, and thumbnails;
and `read_level_region`, a level's own pixels from any slide-like object.

A level is read block by block (at most `BLOCK_PX` x `BLOCK_PX` level pixels at a time) and each
block is reduced by averaging k x k pixels, so memory stays bounded for any slide size; a level
with more pixels than the scan budget is refused first (`read_plan.check_scan`).
"""

from __future__ import annotations

import numpy as np

from .read_plan import check_scan, read_budget, region_bytes

#: Side of the blocks a level is read in, level pixels (12 MiB of RGB).
BLOCK_PX = 2048


def read_level_region(source, level: int, x: int, y: int, w: int, h: int) -> np.ndarray:
    """`source.read_level_region(...)` (a `Slide`); for a slide-like object without it (an
    OpenSlide-style `read_region` and `level_downsamples`), `read_region` at the level-0 location."""
    if hasattr(source, "read_level_region"):
        return source.read_level_region(level, x, y, w, h)
    ds = source.level_downsamples[level]
    return source.read_region((round(x * ds), round(y * ds)), level, (w, h))


def reduce_blocks(block: np.ndarray, k: int) -> np.ndarray:
    """k x k mean of an (H, W, 3) uint8 array whose sides are multiples of k."""
    h, w = block.shape[:2]
    return block.reshape(h // k, k, w // k, k, 3).mean(axis=(1, 3)).astype(np.uint8)


def read_reduced(slide, level: int, k: int, *, what: str, block_px: int = BLOCK_PX) -> np.ndarray:
    """All of `level`, k x k block-averaged (edges padded with the background), read in blocks."""
    info = getattr(slide, "info", None)
    if info is not None:
        check_scan(info, level, what)
    lw, lh = slide.level_dimensions[level]
    out_w, out_h = -(-lw // k), -(-lh // k)
    out = np.empty((out_h, out_w, 3), np.uint8)
    step = max(block_px // k, 1) * k
    for y in range(0, lh, step):
        h = min(step, lh - y)
        hp = -(-h // k) * k
        for x in range(0, lw, step):
            w = min(step, lw - x)
            wp = -(-w // k) * k
            region = np.empty((hp, wp, 3), np.uint8)
            region[:] = slide.background
            region[:h, :w] = read_level_region(slide, level, x, y, w, h)
            out[y // k : (y + hp) // k, x // k : (x + wp) // k] = (
                reduce_blocks(region, k) if k > 1 else region
            )
    return out


def overview_plan(slide, target_mpp: float = 8.0) -> tuple[int, int]:
    """(level, k) of `read_overview`: the closest level at or above `target_mpp` and the factor
    still to average; refuses (`SlideTooLargeError`) a level too large to scan."""
    mpp = float(slide.mpp[0])
    want = max(target_mpp / mpp, 1.0)
    level = slide.best_level_for_downsample(want)
    k = max(int(round(want / float(slide.level_downsamples[level]))), 1)
    info = getattr(slide, "info", None)
    if info is not None:
        check_scan(info, level, "detecting tissue")
    return level, k


def read_overview(slide, target_mpp: float = 8.0) -> tuple[np.ndarray, float]:
    """An RGB overview of the whole slide near `target_mpp` and its downsample (level-0 px per px).

    Reads the closest pyramid level at or above the target resolution in blocks and block-averages
    the remaining factor, so memory stays bounded even for single-level slides.
    """
    level, k = overview_plan(slide, target_mpp)
    img = read_reduced(slide, level, k, what="detecting tissue")
    return img, float(slide.level_downsamples[level]) * k


def thumbnail(slide, max_size: int = 1024) -> np.ndarray:
    """An RGB overview no larger than `max_size` on its longer side, from the best level (read in
    blocks and pre-reduced when the level is too large for one read)."""
    w, h = slide.dimensions
    ds = max(w, h) / max_size
    level = slide.best_level_for_downsample(max(ds, 1.0))
    lw, lh = slide.level_dimensions[level]
    if region_bytes(slide.info, level, lw, lh) <= min(read_budget(), 256 << 20):
        img = slide.read_region((0, 0), level, (lw, lh))
    else:  # a single-level or sparse pyramid: stream it, down to about twice the thumbnail
        img = read_reduced(
            slide, level, max(int(max(lw, lh) // (2 * max_size)), 1), what="a thumbnail"
        )
    if max(img.shape[:2]) > max_size:
        from skimage.transform import resize

        scale = max_size / max(img.shape[:2])
        out_shape = (max(1, round(img.shape[0] * scale)), max(1, round(img.shape[1] * scale)))
        img = (resize(img, out_shape, anti_aliasing=True, preserve_range=True) + 0.5).astype(
            np.uint8
        )
    return img
