"""GPU throughput of the whole pipeline: one short run that prints every figure as one JSON object.

    PYTHONPATH=. python benchmarks/bench_gpu.py [--out bench_gpu.json]   # on a CUDA machine
    PYTHONPATH=. python benchmarks/bench_gpu.py --smoke                  # anywhere: tiny, on the CPU

Figures (random weights everywhere; no weights files needed):
- `encoder_only`: tiles/s of EfficientNet-Lite0 and ViT presets (default `uni`, ViT-L/16; add
  `--presets uni,virchow2,h-optimus-0` for ViT-H / ViT-g) at the encoder's GPU batch size under
  its autocast: on normalised tensors already on the GPU (`net`), and from page-locked uint8 tiles
  uploaded and normalised on the GPU (`with_upload`);
- `end_to_end`: `predict_slide` tiles/s (3 markers, tiles read and decoded by reader threads, the
  encoder and the slide models on the GPU) on a synthetic 0.5 um/px slide of about `--tiles` tissue
  tiles at 1 um/px, EfficientNet-Lite0 at 1 um/px and the ViT-L at its own 0.571 um/px (about 3x
  the tiles), the median of `--repeats` runs; targets: ViT-L >= 0.85 x its encoder-only rate,
  EfficientNet-Lite0 >= 5,000 tiles/s;
- `cohort`: `run_cohort` slides/hour with 1 GPU worker (dask; in-process without distributed) on
  `--cohort-slides` links to the same slide;
- `equivalence`: max abs difference of every preset against timm on the same random weights,
  float32 (benchmarks/bench_vit_equivalence.py), when timm imports.

Each part runs when what it needs imports (torch and numpy always; tifffile and imagecodecs to
write the slide; openslide-python, else zarr, to read it; scikit-image, scipy, pillow and
cachetools for `predict_slide`; distributed for the cohort; timm for the equivalence), else says
what is missing; an error in one part does not stop the others. `--out FILE` is rewritten after
every part, so a run cut short keeps what it measured.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import statistics
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # this checkout's package first
sys.path.insert(1, str(HERE))  # bench_infer's slide writer, bench_vit_equivalence

MARKERS = ("p53", "pdl1", "ki67")
LITE0 = "efficientnet-lite0"
TARGETS = {"vit_l_end_to_end_over_encoder_only": 0.85, "lite0_end_to_end_tiles_per_s": 5000.0}


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn: Callable[[], Any], iters: int, device: torch.device, warmup: int = 2) -> float:
    """Seconds per call of `fn` after `warmup` calls (the GPU synchronised around)."""
    for _ in range(warmup):
        fn()
    sync(device)
    t0 = time.perf_counter()
    for _ in range(iters):
        fn()
    sync(device)
    return (time.perf_counter() - t0) / iters


def make_encoder(name: str, device: torch.device, smoke: bool):
    """A tile encoder on `device`: the bundled EfficientNet-Lite0, or a preset with random
    weights (2 blocks of width 96 in a smoke run: the same code, a fraction of the work)."""
    from napari_histostain.engine.encoders import foundation, get_encoder

    if name == LITE0:
        return get_encoder(LITE0, device=device)
    small = {"depth": 2, "embed_dim": 96, "num_heads": 4}
    preset = foundation.with_config(name, **small) if smoke else name
    return foundation.preset_encoder(preset, random_weights=True).to_device(device)


def encoder_only(args, device: torch.device) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in [LITE0, *args.presets]:
        enc = make_encoder(name, device, args.smoke)
        batch = args.batch or enc.batch_size
        t = enc.tile_size
        x = torch.randn(batch, 3, t, t, device=device).contiguous(memory_format=torch.channels_last)
        host = enc.host_batch(batch, t)
        host[:] = np.random.default_rng(0).integers(0, 256, host.shape, dtype=np.uint8)
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        warmup = 0 if args.smoke else 2
        s_net = timed(lambda enc=enc, x=x: enc.forward_tensor(x), args.iters, device, warmup)
        s_up = timed(lambda enc=enc, host=host: enc.features(host), args.iters, device, warmup)
        row = {
            "tile": t,
            "batch": batch,
            "autocast": str(enc.amp_dtype).replace("torch.", "") if enc.amp_dtype else "float32",
            "net_tiles_per_s": round(batch / s_net, 1),
            "with_upload_tiles_per_s": round(batch / s_up, 1),
            "params_M": round(sum(p.numel() for p in enc.module.parameters()) / 1e6, 1),
        }
        if device.type == "cuda":
            row["peak_mem_GiB"] = round(torch.cuda.max_memory_allocated(device) / 2**30, 2)
        out[name] = row
        del enc
        if device.type == "cuda":
            torch.cuda.empty_cache()
    return out


def bench_slide(args) -> Path:
    """The synthetic slide (written once, reused with --slide): bench_infer's H&E-like disc."""
    from bench_infer import make_slide

    path = args.slide or Path(tempfile.gettempdir()) / f"histostain-bench-gpu-{args.tiles}.tif"
    if not path.exists():
        with contextlib.redirect_stdout(sys.stderr):  # stdout is for the JSON
            make_slide(path, args.tiles)
    return path


def open_bench_slide(path: Path):
    """`open_slide`, or the tifffile backend directly where openslide-python is missing."""
    from napari_histostain.io.slide import Slide, open_slide

    try:
        import openslide  # noqa: F401
    except ImportError:
        from napari_histostain.io.backends.tifffile import open_tifffile

        opened = open_tifffile(path, path.name)
        if opened is None:
            raise RuntimeError(f"tifffile cannot read {path}") from None
        return Slide(*opened)
    return open_slide(path)


def end_to_end(args, device: torch.device, encoder_rates: dict) -> dict[str, Any]:
    from napari_histostain.engine.model_files import seeded_model
    from napari_histostain.engine.predict import PredictOptions, predict_slide
    from napari_histostain.engine.tissue import detect_tissue

    path = bench_slide(args)
    out: dict[str, Any] = {"slide": path.name}
    with open_bench_slide(path) as slide:
        t0 = time.perf_counter()
        tissue = detect_tissue(slide)
        out["tissue_detection_s"] = round(time.perf_counter() - t0, 2)
        out["reader"] = slide.info.backend
        for name in [LITE0, args.presets[0]] if args.presets else [LITE0]:
            enc = make_encoder(name, device, args.smoke)
            mpp = enc.tile_mpp or 1.0
            models = {
                m: seeded_model(
                    m,
                    seed=i,
                    in_dim=enc.dim,
                    encoder_id=enc.id,
                    tile_mpp=mpp,
                    tile_size=enc.tile_size,
                )
                for i, m in enumerate(MARKERS)
            }
            opts = PredictOptions(models=models, encoder=enc, batch_size=args.batch)
            if not args.smoke:  # warm up (kernels, allocator) on tissue at the centre
                w, h = slide.dimensions
                warm = (w // 2 - 1024, h // 2 - 1024, 2048, 2048)
                predict_slide(slide, MARKERS, opts, tissue=tissue, region=warm)
            runs = []
            for _ in range(args.repeats):
                sync(device)
                t0 = time.perf_counter()
                pred = predict_slide(slide, MARKERS, opts, tissue=tissue)
                sync(device)
                runs.append((len(pred.grid), time.perf_counter() - t0))
            n = runs[0][0]
            rate = n / statistics.median(s for _, s in runs)
            row: dict[str, Any] = {
                "tile_mpp": round(mpp, 4),
                "tiles": n,
                "seconds": [round(s, 2) for _, s in runs],
                "tiles_per_s": round(rate, 1),
                "batch": args.batch or enc.batch_size,
                "reader_threads": "default",
            }
            net = (encoder_rates.get(name) or {}).get("net_tiles_per_s")
            if net:
                row["over_encoder_only"] = round(rate / net, 3)
            out[name] = row
            del enc
    return out


def cohort(args, device: torch.device) -> dict[str, Any]:
    from napari_histostain.cohort.runner import ClusterOptions, run_cohort
    from napari_histostain.engine.model_files import save_model_file, seeded_model
    from napari_histostain.engine.predict import PredictOptions

    path = bench_slide(args)
    work = Path(tempfile.mkdtemp(prefix="histostain-bench-gpu-cohort-"))
    slides = []
    for i in range(args.cohort_slides):
        link = work / f"slide{i:02d}.tif"
        os.symlink(path, link)
        slides.append(link)
    models = {}
    for i, m in enumerate(MARKERS):
        net, cfg = seeded_model(m, seed=i, in_dim=1280, encoder_id=LITE0)
        models[m] = str(save_model_file(work / f"{m}.pt", net, cfg))
    try:
        import distributed  # noqa: F401

        workers, how = 1, "1 dask worker process"
    except ImportError:
        workers, how = 0, "in-process (distributed is not installed)"
    if args.smoke:
        workers, how = 0, "in-process (smoke run)"
    predict = PredictOptions(models=models, encoder=LITE0, device=str(device))
    t0 = time.perf_counter()
    result = run_cohort(
        slides,
        work / "out",
        MARKERS,
        predict=predict,
        cluster=ClusterOptions(workers=workers),
    )
    seconds = time.perf_counter() - t0
    done = [r for r in result.rows if r["status"] == "done"]
    tiles = sum(int(r.get("n_tiles") or 0) for r in done)
    return {
        "how": how,
        "encoder": LITE0,
        "slides": len(slides),
        "done": len(done),
        "failed": [r.get("error") for r in result.rows if r["status"] == "failed"][:2],
        "seconds": round(seconds, 1),
        "slides_per_hour": round(3600 * len(done) / seconds, 1),
        "tiles_per_s": round(tiles / seconds, 1),
        "note": "includes starting the worker and loading the models once",
    }


def equivalence(args, device: torch.device) -> dict[str, Any]:
    try:
        import timm  # noqa: F401
    except Exception as exc:  # ImportError, or torchvision failing inside timm
        return {"skipped": f"timm is not importable: {exc}"}
    import bench_vit_equivalence as eq

    from napari_histostain.engine.encoders import foundation

    names = ["vit-tiny-test"] if args.smoke else list(foundation.PRESETS)
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    rows = {}
    for name in names:
        preset = foundation.PRESETS[name]
        rows[name] = eq.compare(eq.tiny(preset) if args.smoke else preset, 2, device=str(device))
    return {"tolerance": eq.TOLERANCE, "all_ok": all(r["ok"] for r in rows.values()), **rows}


def environment(device: torch.device) -> dict[str, Any]:
    import importlib.util

    mods = (
        "tifffile",
        "imagecodecs",
        "openslide",
        "zarr",
        "skimage",
        "scipy",
        "PIL",
        "cachetools",
        "distributed",
        "timm",
        "efficientnet_lite_pytorch",
    )
    return {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "modules": {m: importlib.util.find_spec(m) is not None for m in mods},
    }


def summary(report: dict[str, Any], vit: str) -> dict[str, Any]:
    e2e = report.get("end_to_end") or {}
    ratio = (e2e.get(vit) or {}).get("over_encoder_only")
    lite0 = (e2e.get(LITE0) or {}).get("tiles_per_s")
    if report.get("smoke"):
        return {"smoke": "figures of a tiny CPU run: not comparable with the targets"}
    return {
        "vit_l_end_to_end_over_encoder_only": ratio,
        "lite0_end_to_end_tiles_per_s": lite0,
        "targets": TARGETS,
        "met": {
            "vit_l": None
            if ratio is None
            else ratio >= TARGETS["vit_l_end_to_end_over_encoder_only"],
            "lite0": None if lite0 is None else lite0 >= TARGETS["lite0_end_to_end_tiles_per_s"],
        },
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--smoke", action="store_true", help="tiny run on the CPU (checks the script)")
    ap.add_argument("--presets", default="uni", help="ViT presets, comma-separated (first: e2e)")
    ap.add_argument("--batch", type=int, default=None, help="default: each encoder's GPU batch")
    ap.add_argument("--iters", type=int, default=10, help="encoder-only batches timed")
    ap.add_argument("--tiles", type=int, default=3000, help="slide size: tissue tiles at 1 um/px")
    ap.add_argument("--repeats", type=int, default=3, help="end-to-end runs (median)")
    ap.add_argument("--cohort-slides", type=int, default=4)
    ap.add_argument("--slide", type=Path, help="reuse / write the benchmark slide here")
    ap.add_argument("--skip", default="", help="parts to leave out, comma-separated")
    ap.add_argument("--out", type=Path, help="also write the JSON here (after every part)")
    args = ap.parse_args(argv)
    args.presets = [p for p in args.presets.split(",") if p]
    cuda = torch.cuda.is_available() and not args.smoke
    device = torch.device("cuda" if cuda else "cpu")
    if args.smoke:
        args.batch, args.iters, args.tiles, args.repeats = 2, 1, 3, 1
        args.cohort_slides = 2
    if cuda:
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    report: dict[str, Any] = {"smoke": args.smoke, "environment": environment(device)}
    parts: list[tuple[str, Callable[[], dict]]] = [
        ("encoder_only", lambda: encoder_only(args, device)),
        ("end_to_end", lambda: end_to_end(args, device, report.get("encoder_only") or {})),
        ("cohort", lambda: cohort(args, device)),
        ("equivalence", lambda: equivalence(args, device)),
    ]
    skip = set(args.skip.split(","))
    for name, run in parts:
        if name in skip:
            continue
        t0 = time.perf_counter()
        try:
            report[name] = run()
        except ImportError as exc:
            report[name] = {"skipped": f"needs {exc.name or exc}: {exc}"}
        except Exception as exc:
            report[name] = {
                "error": f"{type(exc).__name__}: {exc}",
                "where": traceback.format_exc(limit=-2).strip().splitlines()[-3:],
            }
        report[name + "_seconds"] = round(time.perf_counter() - t0, 1)
        print(f"{name}: done in {report[name + '_seconds']} s", file=sys.stderr, flush=True)
        if args.out:
            args.out.write_text(json.dumps(report, indent=1))
    report["summary"] = summary(report, args.presets[0] if args.presets else "")
    text = json.dumps(report, indent=1)
    if args.out:
        args.out.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
