"""Simulate a paired cohort and embed it into a cache, in parallel (the bundled models' data).

    histostain build-cohort --out cohort --cache cache --cases 300

Simulation runs in `--workers` processes; embedding runs in `--embed-workers` processes, each with
its own tile encoder on `--device` (the engine's one device path: `get_encoder(..., device=)` and
`embed_slides`, as `histostain embed`). The manifest is rewritten with paths
relative to its folder, so cohort + cache can be moved together (or the cache used alone).
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import time
from pathlib import Path


def relative_manifest(manifest: Path) -> Path:
    """Rewrite a manifest's slide / truth paths relative to its folder (in place, atomically)."""
    from napari_histostain.io.atomic import atomic_open

    base = manifest.parent.resolve()
    with open(manifest, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        fields, rows = reader.fieldnames, list(reader)
    for r in rows:
        for k in ("he_path", "ihc_path", "truth_path"):
            if r.get(k):
                p = Path(r[k])
                if p.is_absolute():
                    with contextlib.suppress(ValueError):
                        r[k] = str(p.resolve().relative_to(base))
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=fields, lineterminator="\n")
    w.writeheader()
    w.writerows(rows)
    with atomic_open(manifest, "w", encoding="utf-8", newline="") as fh:
        fh.write(buf.getvalue())
    return manifest


def _embed_shard(args: tuple) -> tuple[int, int, float]:
    manifest_path, cache_dir, shard, n_shards, device, threads, stop_at, encoder, he_only = args
    import torch

    torch.set_num_threads(1)
    from napari_histostain.engine.encoders import get_encoder

    from .cache import EmbeddingCache, embed_slides
    from .manifest import load_manifest

    m = load_manifest(manifest_path)
    enc = get_encoder(encoder, device=device)
    cache = EmbeddingCache.for_encoder(cache_dir, enc, root=m.path.parent)
    slides = (m.he_paths() if he_only else m.slide_paths())[shard::n_shards]
    s = embed_slides(
        slides,
        cache,
        enc,
        progress=False,
        threads=threads,
        ihc_slides={c.ihc_path for c in m.cases},
        stop=None if stop_at is None else (lambda: time.time() > stop_at),
    )
    return len(s.embedded), s.tiles, s.seconds


MARKER_ORDER = ("ki67", "p53", "pdl1")


def simulate(
    out: Path,
    n_cases: int,
    *,
    size_um: float,
    seed: int,
    workers: int,
    deadline: float | None = None,
    id_prefix: str = "case",
) -> Path:
    """`simulate_cohort` (same cases, seeds and files), in a process pool; with `deadline`
    (seconds), cases not started by then are dropped and the manifest lists the finished ones."""
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

    from napari_histostain.io.atomic import write_json
    from napari_histostain.simulate.bayes import bayes_reference
    from napari_histostain.simulate.cohort import _one_case, case_seed, write_manifest
    from napari_histostain.simulate.params import DEFAULT_CUTOFFS

    t0 = time.perf_counter()
    width = max(4, len(str(n_cases - 1)))
    jobs = [
        dict(
            out_dir=out,
            markers=MARKER_ORDER,
            case_id=f"{id_prefix}{i:0{width}d}",
            size_um=size_um,
            mpp=0.5,
            seed=case_seed(seed, i),
            difficulty=1.0,
            cutoffs=dict(DEFAULT_CUTOFFS),
        )
        for i in range(n_cases)
    ]
    done: dict[int, object] = {}
    with ProcessPoolExecutor(workers) as pool:
        todo = list(enumerate(jobs))
        running: dict = {}
        while todo or running:
            late = deadline is not None and time.perf_counter() - t0 > deadline
            while todo and len(running) < 2 * workers and not late:
                i, job = todo.pop(0)
                running[pool.submit(_one_case, job)] = i
            if late:
                todo = []
            if not running:
                break
            finished, _ = wait(list(running), return_when=FIRST_COMPLETED)
            for f in finished:
                done[running.pop(f)] = f.result()
            if len(done) % 50 == 0:
                print(
                    f"simulated {len(done)}/{n_cases} ({time.perf_counter() - t0:.0f} s)",
                    flush=True,
                )
    cases = [done[i] for i in sorted(done)]
    manifest = write_manifest(out / "manifest.csv", [r for c in cases for r in c.rows])
    rows = [r for c in cases for r in c.rows]
    write_json(
        out / "cohort.json",
        {
            "seed": seed,
            "n_cases": len(cases),
            "n_cases_requested": n_cases,
            "markers": list(MARKER_ORDER),
            "size_um": [size_um, size_um],
            "mpp": 0.5,
            "difficulty": 1.0,
            "cutoffs": dict(DEFAULT_CUTOFFS),
            "manifest": manifest.name,
            "label_counts": {
                m: {
                    str(k): sum(1 for r in rows if r["marker"] == m and r["label"] == k)
                    for k in (0, 1)
                }
                for m in MARKER_ORDER
            },
            "bayes_optimal": {m: bayes_reference(m, 1.0, DEFAULT_CUTOFFS[m]) for m in MARKER_ORDER},
        },
    )
    return manifest


def build(
    out: Path,
    cache: Path,
    n_cases: int,
    *,
    size_um: float,
    seed: int,
    workers: int,
    embed_workers: int,
    device: str = "auto",
    threads: int = 2,
    deadline: float | None = None,
    id_prefix: str = "case",
    encoder: str = "efficientnet-lite0",
    he_only: bool = False,
) -> dict:
    from napari_histostain.engine.encoders import get_encoder

    from .cache import EmbeddingCache
    from .manifest import load_manifest

    t0 = time.perf_counter()
    manifest = out / "manifest.csv"
    if not manifest.exists():
        manifest = simulate(
            out,
            n_cases,
            size_um=size_um,
            seed=seed,
            workers=workers,
            deadline=None if deadline is None else deadline * 0.55,
            id_prefix=id_prefix,
        )
    relative_manifest(manifest)
    t_sim = time.perf_counter() - t0
    m = load_manifest(manifest)
    EmbeddingCache.for_encoder(cache, get_encoder(encoder), root=m.path.parent).check_or_create()
    t1 = time.perf_counter()
    stop_at = None if deadline is None else time.time() + max(10.0, deadline - (t1 - t0))
    jobs = [
        (str(manifest), str(cache), k, embed_workers, device, threads, stop_at, encoder, he_only)
        for k in range(embed_workers)
    ]
    if embed_workers == 1:
        results = [_embed_shard(jobs[0])]
    else:
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(embed_workers, mp_context=mp.get_context("spawn")) as pool:
            results = list(pool.map(_embed_shard, jobs))
    t_emb = time.perf_counter() - t1
    tiles = sum(r[1] for r in results)
    info = {
        "cases": n_cases,
        "size_um": size_um,
        "seed": seed,
        "encoder": encoder,
        "slides": len(m.he_paths() if he_only else m.slide_paths()),
        "he_only": he_only,
        "slides_embedded": sum(r[0] for r in results),
        "tiles": tiles,
        "simulate_seconds": round(t_sim, 1),
        "embed_seconds": round(t_emb, 1),
        "tiles_per_second": round(tiles / t_emb, 1) if t_emb else None,
        "workers": workers,
        "embed_workers": embed_workers,
        "device": device,
        "cpu_count": os.cpu_count(),
    }
    (cache / "build.json").write_text(json.dumps(info, indent=2))
    return info
