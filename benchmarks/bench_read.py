"""Benchmark: slide opening and level-0 tile throughput of the plugin's lazy pyramid vs raw OpenSlide.

One run, on a synthetic 40k x 40k, 4-level JPEG slide (written once to a cache folder):
  - reader open latency (napari layer data ready: slide opened + dask pyramid built)
  - level-0 random-chunk throughput through the pyramid (dask, 1 and 2 threads) vs raw
    `OpenSlide.read_region` of the same native tiles, single-threaded (the baseline); the pyramid
    also with HISTOSTAIN_DIRECT_TILES=0, i.e. with OpenSlide decoding every tile
  - peak RSS after reading 2 GB worth of level-0 tiles through the pyramid
Targets: open <= 0.3 s; pyramid 1 thread >= 0.9x raw; pyramid 2 threads >= 1.5x raw; peak RSS <= 1 GB.

Usage: python benchmarks/bench_read.py [--size 40000] [--cache-dir DIR]
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=40000)
    ap.add_argument("--cache-dir", default=os.path.join(tempfile.gettempdir(), "histostain-bench"))
    ap.add_argument(
        "--tiles", type=int, default=600, help="random level-0 tiles per throughput run"
    )
    ap.add_argument("--gb", type=float, default=2.0, help="GB of level-0 tiles for the RSS run")
    args = ap.parse_args()

    import dask
    import openslide

    from napari_histostain.io.synthetic import write_synthetic_slide
    from napari_histostain.plugin.reader import read_slide_layer

    path = Path(args.cache_dir) / f"bench_{args.size}.tif"
    if not path.exists():
        t0 = time.perf_counter()
        write_synthetic_slide(path, args.size, args.size, 0.25, levels=4, seed=7)
        print(
            f"wrote {path} ({path.stat().st_size / 2**30:.2f} GiB) in {time.perf_counter() - t0:.0f} s"
        )

    # -- open latency --------------------------------------------------------------------------
    read_slide_layer(path)  # warm imports
    opens = []
    for _ in range(5):
        t0 = time.perf_counter()
        data, _kwargs, _ = read_slide_layer(path)
        opens.append(time.perf_counter() - t0)
    open_s = statistics.median(opens)
    print(f"open latency (median of 5): {open_s * 1000:.1f} ms   [target <= 300 ms]")
    small = Path(args.cache_dir) / "bench_2048.tif"
    if not small.exists():
        write_synthetic_slide(small, 2048, 2048, 0.25, seed=7)
    t0 = time.perf_counter()
    for _ in range(5):
        read_slide_layer(small)
    small_s = (time.perf_counter() - t0) / 5
    print(
        f"  baseline: 2k x 2k slide opens in {small_s * 1000:.1f} ms -> ratio {open_s / small_s:.2f}x"
    )

    # -- throughput ------------------------------------------------------------------------------
    rng = np.random.default_rng(0)
    level0 = data[0]
    th, tw = level0.chunksize[:2]
    nty, ntx = level0.numblocks[:2]
    wy, wx = 5, 8  # napari asks for screen-sized views: a full-HD screen at level 0 is ~8 x 5 tiles

    def pick(n):
        """Random tile-aligned windows in the tissue-heavy middle; fresh ones per run (no cache help)."""
        ty = rng.integers(nty // 4, 3 * nty // 4 - wy, n)
        tx = rng.integers(ntx // 4, 3 * ntx // 4 - wx, n)
        return list(zip(ty.tolist(), tx.tolist()))

    raw = openslide.OpenSlide(str(path))

    def raw_window(ty0, tx0):
        for ty in range(ty0, ty0 + wy):
            for tx in range(tx0, tx0 + wx):
                np.asarray(raw.read_region((tx * tw, ty * th), 0, (tw, th)))

    def pyramid(direct: bool):
        """Level 0 of a freshly opened slide (own handles, no tile cache): no method helps another."""
        os.environ["HISTOSTAIN_DIRECT_TILES"] = "1" if direct else "0"
        try:
            arr = read_slide_layer(path, cache_bytes=0)[0][0]
            np.asarray(arr[:th, :tw])  # open the tile decoder now, outside the timing
        finally:
            os.environ.pop("HISTOSTAIN_DIRECT_TILES")
        return arr

    methods = {  # name: (level-0 array or None for raw, dask threads)
        "raw": (None, 0),
        "pyr1": (pyramid(True), 1),
        "pyr2": (pyramid(True), 2),
        "os1": (pyramid(False), 1),
        "os2": (pyramid(False), 2),
    }
    # every method reads the same random windows, in a rotating order, so machine noise and tile
    # content hit all alike
    n_windows = max(5, args.tiles // (wy * wx))
    spent = dict.fromkeys(methods, 0.0)
    names = list(methods)
    for i, (ty, tx) in enumerate(pick(n_windows)):
        for key in names[i % len(names) :] + names[: i % len(names)]:
            arr, workers = methods[key]
            t0 = time.perf_counter()
            if arr is None:
                raw_window(ty, tx)
            else:
                with dask.config.set(scheduler="threads", num_workers=workers):
                    np.asarray(arr[ty * th : (ty + wy) * th, tx * tw : (tx + wx) * tw])
            spent[key] += time.perf_counter() - t0
    n = n_windows * wy * wx
    tps = {k: n / v for k, v in spent.items()}
    raw_tps = tps["raw"]
    print(
        f"level-0 tiles/s ({n_windows} random {wx} x {wy}-tile views, the same for every method):"
    )
    print(f"  raw OpenSlide.read_region, 1 thread {raw_tps:.0f} tiles/s (baseline)")
    print(
        f"  pyramid 1 thread  {tps['pyr1']:.0f} tiles/s -> {tps['pyr1'] / raw_tps:.2f}x raw   [target >= 0.9x]"
    )
    print(
        f"  pyramid 2 threads {tps['pyr2']:.0f} tiles/s -> {tps['pyr2'] / raw_tps:.2f}x raw   [target >= 1.5x]"
    )
    print("  with HISTOSTAIN_DIRECT_TILES=0 (every tile decoded by OpenSlide):")
    print(f"    pyramid 1 thread  {tps['os1']:.0f} tiles/s -> {tps['os1'] / raw_tps:.2f}x raw")
    print(f"    pyramid 2 threads {tps['os2']:.0f} tiles/s -> {tps['os2'] / raw_tps:.2f}x raw")

    # -- peak RSS over 2 GB of level-0 tiles -------------------------------------------------------
    rss_before = peak_rss_mb()
    data, _, _ = read_slide_layer(path)  # default bounded cache
    arr = data[0]
    n_tiles = int(args.gb * 2**30 / (th * tw * 3))
    t0 = time.perf_counter()
    done = 0
    with dask.config.set(scheduler="threads", num_workers=2):
        for ty in range(nty):
            for tx0 in range(0, ntx, 8):
                if done >= n_tiles:
                    break
                view = arr[ty * th : (ty + 1) * th, tx0 * tw : min(tx0 + 8, ntx) * tw]
                view.compute()
                done += min(8, ntx - tx0)
    dt = time.perf_counter() - t0
    print(
        f"read {done} level-0 tiles ({done * th * tw * 3 / 2**30:.2f} GiB decoded) in {dt:.1f} s; "
        f"peak RSS {peak_rss_mb():.0f} MB (before: {rss_before:.0f} MB)   [target <= 1024 MB]"
    )


if __name__ == "__main__":
    main()
