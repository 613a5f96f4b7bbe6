"""Benchmark: IHC quantification throughput (tiles/s) and peak RSS on a synthetic DAB slide.

Baseline measured in the same run: reading the same tiles (with the same margin and level) without
quantifying them. Usage: python benchmarks/bench_ihc.py [--size 4096] [--mpp 0.5]
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
from pathlib import Path

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", type=int, default=4096, help="slide side in px")
    ap.add_argument("--mpp", type=float, default=0.5)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()

    from napari_histostain import ihc
    from napari_histostain.ihc import quantify as ihc_quantify
    from napari_histostain.ihc.synthetic import dab_slide_renderer
    from napari_histostain.io.slide import open_slide
    from napari_histostain.io.synthetic import write_slide

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "dab.tiff"
        t = time.perf_counter()
        write_slide(
            path,
            args.size,
            args.size,
            dab_slide_renderer(args.size, args.size, args.mpp, positive_fraction=0.3),
            args.mpp,
        )
        print(
            f"wrote {args.size}x{args.size} px synthetic DAB slide in {time.perf_counter() - t:.1f} s"
        )
        with open_slide(path) as slide:
            grid = ihc.slide_grid(slide)
            n = len(grid.coords)
            params = ihc.IHCParams()
            level = ihc_quantify.analysis_level(slide, params)
            margin0 = 2.0 * params.nucleus_radius_um / slide.mpp[0]

            t = time.perf_counter()
            for _ in ihc_quantify._read_tiles(
                slide, grid, np.arange(n), level, margin0, args.threads
            ):
                pass
            read_s = time.perf_counter() - t

            t = time.perf_counter()
            result = ihc.quantify_slide(slide, "ki67", grid=grid, threads=args.threads)
            quant_s = time.perf_counter() - t
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    s = result.summary()
    print(
        f"tiles: {n} of {grid.tile_px0:.0f} px (224 um), {s['n_nuclei']} nuclei, "
        f"Ki-67 index {s['ki67_index']:.1f} % (rendered ~30 %)"
    )
    print(f"baseline (read tiles only): {n / read_s:.1f} tiles/s ({read_s:.2f} s)")
    print(f"quantify (read + analyse):  {n / quant_s:.1f} tiles/s ({quant_s:.2f} s)")
    print(f"ratio quantify/read time: {quant_s / read_s:.1f}x; peak RSS {rss_mb:.0f} MB")


if __name__ == "__main__":
    main()
