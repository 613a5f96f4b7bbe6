"""Benchmark: seconds and peak RSS to simulate one paired case (H&E + Ki-67 IHC) at 16k x 16k px.

Baseline from the same run: writing two plain synthetic slides of the same size with
`napari_histostain.io.synthetic.write_synthetic_slide` (same writer, trivial renderer). Each
measurement runs in a fresh child process so that its peak RSS is its own.

    python benchmarks/bench_simulate.py [--px 16384] [--mpp 0.5]

Targets (issue 3): <= 60 s per pair, <= 2 GB peak RSS.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _child(kind: str, px: int, mpp: float, out: str) -> None:
    t0 = time.perf_counter()
    if kind == "simulate":
        from napari_histostain.simulate import simulate_case

        simulate_case(out, ["ki67"], size_um=px * mpp, mpp=mpp, seed=1)
    else:
        from napari_histostain.io.synthetic import write_synthetic_slide

        for i in range(2):
            write_synthetic_slide(Path(out) / f"plain{i}.tiff", px, px, mpp, seed=i)
    seconds = time.perf_counter() - t0
    ru = resource.getrusage(resource.RUSAGE_SELF)
    peak_mb = ru.ru_maxrss / 1024  # Linux: KiB
    print(
        json.dumps({"seconds": seconds, "cpu_s": ru.ru_utime + ru.ru_stime, "peak_rss_mb": peak_mb})
    )


def _measure(kind: str, px: int, mpp: float) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        res = subprocess.run(
            [
                sys.executable,
                __file__,
                "--child",
                kind,
                "--px",
                str(px),
                "--mpp",
                str(mpp),
                "--out",
                tmp,
            ],
            check=True,
            capture_output=True,
            text=True,
        )
        size_mb = sum(p.stat().st_size for p in Path(tmp).rglob("*.tiff")) / 1e6
    out = json.loads(res.stdout.strip().splitlines()[-1])
    out["tiff_mb"] = size_mb
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--px", type=int, default=16384)
    ap.add_argument("--mpp", type=float, default=0.5)
    ap.add_argument("--child", choices=["simulate", "baseline"])
    ap.add_argument("--out")
    args = ap.parse_args()
    if args.child:
        _child(args.child, args.px, args.mpp, args.out)
        return
    print(f"paired case (H&E + Ki-67 IHC), {args.px} x {args.px} px at {args.mpp} um/px")
    base = _measure("baseline", args.px, args.mpp)
    sim = _measure("simulate", args.px, args.mpp)
    try:
        import os

        print(f"load average before: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    except OSError:
        pass
    for name, r in (
        ("baseline (2 plain synthetic slides)", base),
        ("simulator (1 pair + truth)", sim),
    ):
        print(
            f"{name:36s} {r['seconds']:6.1f} s wall, {r['cpu_s']:6.1f} s CPU, "
            f"peak RSS {r['peak_rss_mb']:5.0f} MB, {r['tiff_mb']:4.0f} MB of TIFF"
        )
    print(
        f"ratio simulator / baseline: wall {sim['seconds'] / base['seconds']:.2f}x, "
        f"CPU {sim['cpu_s'] / base['cpu_s']:.2f}x, "
        f"peak RSS {sim['peak_rss_mb'] / base['peak_rss_mb']:.2f}x"
    )
    ok_t, ok_m = sim["seconds"] <= 60, sim["peak_rss_mb"] <= 2048
    print(
        f"targets: <= 60 s per pair: {'met' if ok_t else 'MISSED'}; "
        f"<= 2 GB peak RSS: {'met' if ok_m else 'MISSED'}"
    )


if __name__ == "__main__":
    main()
