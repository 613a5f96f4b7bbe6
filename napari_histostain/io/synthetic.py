"""Write pyramidal, tiled TIFF slides tile by tile (tests, benchmarks, the simulator).

`write_slide` takes a function that renders any level-0 region, writes level 0 strip by strip and
builds each lower level from a disk-backed 2x-downsampled copy of the level above, so memory stays
bounded whatever the slide size. The result is a generic tiled TIFF with resolution tags (mpp) that
OpenSlide opens as `generic-tiff`. Files are written to a temporary name, then renamed.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

from .metadata import mpp_pair

RegionRenderer = Callable[[int, int, int, int], np.ndarray]
"""render(y0, x0, height, width) -> (height, width, C) uint8 for level-0 pixels."""


def _downsample2(block: np.ndarray) -> np.ndarray:
    """2x2 mean of an (H, W, C) uint8 block (odd edges padded by replication)."""
    h, w = block.shape[:2]
    if h % 2 or w % 2:
        block = np.pad(block, ((0, h % 2), (0, w % 2), (0, 0)), mode="edge")
    b = block.astype(np.uint16)
    s = b[0::2, 0::2] + b[1::2, 0::2] + b[0::2, 1::2] + b[1::2, 1::2]
    return ((s + 2) // 4).astype(np.uint8)


def level_shapes(height: int, width: int, min_size: int = 512, max_levels: int | None = None):
    """(height, width) of each pyramid level, halving until the longer side is <= min_size."""
    shapes = [(height, width)]
    while max(shapes[-1]) > min_size and (max_levels is None or len(shapes) < max_levels):
        h, w = shapes[-1]
        shapes.append(((h + 1) // 2, (w + 1) // 2))
    return shapes


def write_slide(
    path: str | Path,
    height: int,
    width: int,
    render: RegionRenderer,
    mpp: float | tuple[float, float] | None = 0.5,
    *,
    tile: int = 256,
    levels: int | None = None,
    min_level_size: int = 512,
    channels: int = 3,
    quality: int = 90,
    description: str = "",
    strip_height: int | None = None,
) -> Path:
    """Write a tiled pyramidal TIFF of `height` x `width` level-0 pixels rendered by `render`.

    `mpp` None writes no physical size (a slide without mpp). `channels=4` writes RGBA with
    deflate compression (JPEG has no alpha); otherwise JPEG at `quality`. `levels` caps the number
    of pyramid levels (1 = a single level).
    """
    import tifffile

    if height <= 0 or width <= 0:
        raise ValueError(f"slide size must be positive, got {width} x {height}")
    if channels not in (3, 4):
        raise ValueError("channels must be 3 (RGB) or 4 (RGBA)")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    shapes = level_shapes(height, width, min_level_size, levels)
    strip = strip_height or tile
    if mpp is None:
        res_kw: dict = {}
    else:
        mx, my = mpp_pair(mpp)
        res_kw = {"resolutionunit": "CENTIMETER", "resolution": (1e4 / mx, 1e4 / my)}
    if channels == 4:
        comp: dict = {"compression": "zlib", "extrasamples": ["unassalpha"]}
    else:
        comp = {"compression": "jpeg", "compressionargs": {"level": quality}}

    tmpdir = tempfile.mkdtemp(prefix=".hs-pyramid-", dir=path.parent)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    os.close(fd)
    try:
        # source of each level: level 0 from the renderer, level k from a memmap of level k-1 / 2
        prev: np.memmap | None = None
        with tifffile.TiffWriter(tmp_name, bigtiff=(height * width * channels > 2**31)) as tw:
            for li, (lh, lw) in enumerate(shapes):
                nxt = None
                if li + 1 < len(shapes):
                    nh, nw = shapes[li + 1]
                    nxt = np.memmap(
                        os.path.join(tmpdir, f"l{li + 1}.raw"),
                        np.uint8,
                        "w+",
                        shape=(nh, nw, channels),
                    )

                def strips(lh=lh, lw=lw, li=li, prev=prev, nxt=nxt) -> Iterator[np.ndarray]:
                    for y0 in range(0, lh, strip):
                        sh = min(strip, lh - y0)
                        if li == 0:
                            block = np.asarray(render(y0, 0, sh, lw), np.uint8)
                            if block.shape != (sh, lw, channels):
                                raise ValueError(
                                    f"render returned {block.shape}, expected {(sh, lw, channels)}"
                                )
                        else:
                            block = np.asarray(prev[y0 : y0 + sh])
                        if nxt is not None:
                            small = _downsample2(block)
                            ny = y0 // 2
                            nxt[ny : ny + small.shape[0]] = small[: nxt.shape[0] - ny]
                        yield from _tiles_of_strip(block, tile)

                tw.write(
                    strips(),
                    shape=(lh, lw, channels),
                    dtype=np.uint8,
                    tile=(tile, tile),
                    photometric="rgb",
                    subfiletype=1 if li else 0,
                    description=description if li == 0 else None,
                    metadata=None,
                    **res_kw if li == 0 else _scaled_res(res_kw, width / lw),
                    **comp,
                )
                if prev is not None:
                    del prev
                prev = nxt
        os.replace(tmp_name, path)
    except BaseException:
        if os.path.exists(tmp_name):
            os.unlink(tmp_name)
        raise
    finally:
        for f in Path(tmpdir).glob("*"):
            f.unlink()
        os.rmdir(tmpdir)
    return path


def _scaled_res(res_kw: dict, downsample: float) -> dict:
    if not res_kw:
        return {}
    rx, ry = res_kw["resolution"]
    return {
        "resolutionunit": res_kw["resolutionunit"],
        "resolution": (rx / downsample, ry / downsample),
    }


def _tiles_of_strip(block: np.ndarray, tile: int) -> Iterator[np.ndarray]:
    """Tiles of one strip, left to right, rows of tiles top to bottom (tifffile pads edges)."""
    h, w = block.shape[:2]
    for ty in range(0, h, tile):
        for tx in range(0, w, tile):
            yield block[ty : ty + tile, tx : tx + tile]


# ------------------------------------------------------------------------------------------------
# A cheap procedural "tissue" renderer for tests and benchmarks
# ------------------------------------------------------------------------------------------------
def tissue_renderer(
    height: int,
    width: int,
    seed: int = 0,
    *,
    background: tuple[int, int, int] = (243, 243, 243),
    transparent_outside: bool = False,
    n_blobs: int = 6,
) -> RegionRenderer:
    """A renderer of pink/purple H&E-like blobs with nuclei-like dots on glass, any region, cheaply.

    Deterministic for (height, width, seed) and independent of how the slide is split into regions.
    With `transparent_outside`, it returns RGBA with alpha 0 on glass.
    """
    rng = np.random.default_rng(seed)
    cy = rng.uniform(0.2, 0.8, n_blobs) * height
    cx = rng.uniform(0.2, 0.8, n_blobs) * width
    r = rng.uniform(0.08, 0.22, n_blobs) * min(height, width)
    eosin = np.array([230, 150, 190], np.float32)
    hema = np.array([80, 50, 140], np.float32)
    bg = np.array(background, np.float32)

    def render(y0: int, x0: int, h: int, w: int) -> np.ndarray:
        yy = np.arange(y0, y0 + h, dtype=np.float32)[:, None]
        xx = np.arange(x0, x0 + w, dtype=np.float32)[None, :]
        inside = np.zeros((h, w), bool)
        for i in range(n_blobs):
            wobble = 1.0 + 0.15 * np.sin(xx / (r[i] * 0.3) + i) * np.cos(yy / (r[i] * 0.25) - i)
            inside |= ((yy - cy[i]) ** 2 + (xx - cx[i]) ** 2) < (r[i] * wobble) ** 2
        # nuclei: a hashed lattice of dots, period 24 px, jittered deterministically
        gy = np.floor(yy / 24.0)
        gx = np.floor(xx / 24.0)
        hsh = np.sin(gy * 12.9898 + gx * 78.233 + seed) * 43758.5453
        frac = hsh - np.floor(hsh)
        dy = (yy - gy * 24.0 - 6.0 - 12.0 * frac) ** 2
        dx = (xx - gx * 24.0 - 6.0 - 12.0 * (1.0 - frac)) ** 2
        nucleus = (dy + dx) < 16.0 + 12.0 * frac
        img = np.empty((h, w, 3), np.float32)
        img[:] = bg
        img[inside] = eosin
        img[inside & nucleus] = hema
        out = img.astype(np.uint8)
        if transparent_outside:
            alpha = np.where(inside, 255, 0).astype(np.uint8)
            out = np.dstack([out, alpha])
        return out

    return render


def write_synthetic_slide(
    path: str | Path,
    width: int = 4096,
    height: int = 4096,
    mpp: float | None = 0.5,
    *,
    seed: int = 0,
    levels: int | None = None,
    rgba: bool = False,
    tile: int = 256,
    quality: int = 90,
) -> Path:
    """A synthetic H&E-like tissue slide (see `tissue_renderer`) written with `write_slide`."""
    render = tissue_renderer(height, width, seed, transparent_outside=rgba)
    return write_slide(
        path,
        height,
        width,
        render,
        mpp,
        tile=tile,
        levels=levels,
        channels=4 if rgba else 3,
        quality=quality,
    )
