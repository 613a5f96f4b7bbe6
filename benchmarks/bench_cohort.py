"""Cohort throughput: a sequential loop vs dask with 1 worker x 2 threads vs 2 workers x 1 thread.

Writes N small synthetic slides, then predicts them (markers p53 + ki67, real EfficientNet-Lite0
tile encoder, seeded slide models unless bundled weights exist) three ways:

- sequential loop: `predict_slide(...).save(...)` for each slide in this process (torch: all cores),
- `run_cohort` on a LocalCluster of 1 worker process x 2 task threads,
- `run_cohort` on a LocalCluster of 2 worker processes x 1 task thread.

Prints slides per hour end to end (cluster start-up, torch import and model loading included, as a
user sees it) and after the first task was submitted, each as a ratio to the sequential loop
measured in the same run.

    python benchmarks/bench_cohort.py [--slides 8] [--size 2048]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

MARKERS = ("p53", "ki67")


def _models(folder: Path) -> dict[str, str] | None:
    """Bundled models when installed, else seeded model files (same cost per tile)."""
    from napari_histostain.engine.model_files import (
        bundled_model_path,
        save_model_file,
        seeded_model,
    )

    if all(bundled_model_path(m).is_file() for m in MARKERS):
        return None
    return {
        m: str(save_model_file(folder / f"{m}.pt", *seeded_model(m, seed=i)))
        for i, m in enumerate(MARKERS)
    }


def sequential(slides, out: Path, models, tiles: list) -> tuple[float, float]:
    """The plain loop a user would write; returns (wall s, s after the first slide started)."""
    t0 = time.perf_counter()
    import torch  # noqa: F401 - its import time counts, as in the workers

    from napari_histostain.engine.predict import PredictOptions, predict_slide
    from napari_histostain.results.prediction_files import save_prediction

    t1 = time.perf_counter()
    for s in slides:
        pred = predict_slide(s.path, MARKERS, PredictOptions(models=models))
        save_prediction(pred, out / s.name)
        tiles.append(len(pred.grid))
    t = time.perf_counter()
    return t - t0, t - t1


def distributed(slides, out: Path, models, workers: int, threads: int) -> tuple[float, float]:
    from napari_histostain.cohort.runner import ClusterOptions, run_cohort
    from napari_histostain.engine.predict import PredictOptions

    started = {}
    t0 = time.perf_counter()
    res = run_cohort(
        slides,
        out,
        MARKERS,
        predict=PredictOptions(models=models),
        cluster=ClusterOptions(workers=workers, threads_per_worker=threads, memory_limit="3GB"),
        on_start=lambda *_: started.setdefault("t", time.perf_counter()),
    )
    t = time.perf_counter()
    assert res.ok and res.counts["done"] == len(slides), res.failed
    return t - t0, t - started["t"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--slides", type=int, default=8)
    ap.add_argument("--size", type=int, default=2048, help="slide width in px (height 3/4 of it)")
    args = ap.parse_args()

    import os

    from napari_histostain.cohort.slides import cohort_slides
    from napari_histostain.io.synthetic import write_synthetic_slide

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        paths = [
            write_synthetic_slide(tmp / f"slide{i}.tif", args.size, args.size * 3 // 4, 0.5, seed=i)
            for i in range(args.slides)
        ]
        slides = cohort_slides(paths)
        models = _models(tmp)
        print(
            f"{args.slides} synthetic slides {args.size} x {args.size * 3 // 4} px at 0.5 um/px, "
            f"markers {', '.join(MARKERS)}, {os.cpu_count()} CPUs"
        )
        tiles: list[int] = []
        runs = {"sequential loop": sequential(slides, tmp / "seq", models, tiles)}
        print(f"{sum(tiles) / len(tiles):.0f} tissue tiles per slide on average")
        runs["1 worker x 2 threads"] = distributed(slides, tmp / "w1t2", models, 1, 2)
        runs["2 workers x 1 thread"] = distributed(slides, tmp / "w2t1", models, 2, 1)
        base_wall, base_run = runs["sequential loop"]
        n = args.slides
        print(
            f"{'':24s} {'wall s':>7s} {'slides/h':>9s} {'ratio':>6s} | {'run s':>7s} "
            f"{'slides/h':>9s} {'ratio':>6s}"
        )
        for name, (wall, run) in runs.items():
            print(
                f"{name:24s} {wall:7.1f} {n / wall * 3600:9.0f} {base_wall / wall:6.2f} | "
                f"{run:7.1f} {n / run * 3600:9.0f} {base_run / run:6.2f}"
            )
        print(
            "wall: end to end (cluster start, torch import, model loading included); run: from "
            "the first submitted task (sequential: after import). ratio: vs the sequential loop."
        )


if __name__ == "__main__":
    main()
