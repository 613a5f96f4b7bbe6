"""Training speed on cached embeddings: seconds per epoch for a 200-case cohort.

Figure: one HistoStainAlign epoch (InfoNCE + masked MSE + CE: three bags per case).
Baseline (same run, same data): one CE-only epoch (one bag per case). Also extrapolates the time
to train the three bundled models (5 folds x 80 epochs, contrastive + CE-only, 272 cases each).

    python benchmarks/bench_train.py [--cache runs/cohort367/cache_multiscale --manifest ...] [--epochs 3]

Uses the real cache of the bundled models when given (or found at runs/cohort367), else
synthetic 1744-d bags of 12-24 tiles (the same shape).
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np


def load(n_cases: int, manifest: Path | None, cache: Path | None):
    if manifest and cache and manifest.is_file() and (cache / "cache.json").is_file():
        from napari_histostain.training.cache import EmbeddingCache
        from napari_histostain.training.dataset import load_cases
        from napari_histostain.training.manifest import load_manifest

        m = load_manifest(manifest, marker="ki67", check_files=False)
        c = EmbeddingCache.open(cache, root=m.path.parent)
        return load_cases(m, m.cases[:n_cases], c), f"real cache {cache} (ki67)"
    from napari_histostain.training.synthetic_bags import synthetic_cases

    return synthetic_cases(n_cases, dim=1744, tiles=(12, 24), seed=0), "synthetic 1744-d bags"


def epoch_seconds(cases, cfg) -> float:
    from napari_histostain.training.trainer import train_one

    res = train_one(cases[:-20], cases[-20:], 2, cfg)
    secs = [h["seconds"] for h in res.history]
    return float(np.median(secs[1:] if len(secs) > 1 else secs))


def main() -> None:
    import torch

    from napari_histostain.training.trainer import TrainConfig

    root = Path(__file__).resolve().parents[1]
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cases", type=int, default=200)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--n-tokens", type=int, default=32)
    p.add_argument("--manifest", type=Path, default=root / "runs/cohort367/cohort/manifest.csv")
    p.add_argument("--cache", type=Path, default=root / "runs/cohort367/cache_multiscale")
    p.add_argument("--device", default="cpu")
    a = p.parse_args()
    cases, source = load(a.cases, a.manifest, a.cache)
    common = dict(
        epochs=a.epochs,
        batch_size=32,
        lr=1e-3,
        n_tokens=a.n_tokens,
        folds=1,
        device=a.device,
        model_kwargs={"dropout": 0.1},
    )
    t_c = epoch_seconds(cases, TrainConfig(**common))
    t_b = epoch_seconds(cases, TrainConfig(**common, contrastive_weight=0.0, mse_weight=0.0))
    per_model = 5 * 80 * (272 * 0.8 / (len(cases) - 20)) * (t_c + t_b)  # epochs scale with cases
    print(
        f"data: {source}, {len(cases)} cases, {a.n_tokens} tokens/slide, device {a.device}, "
        f"torch threads {torch.get_num_threads()}, cpus {os.cpu_count()}, "
        f"load average {os.getloadavg()[0]:.1f}"
    )
    print(f"HistoStainAlign epoch (InfoNCE+MSE+CE): {t_c:.2f} s")
    print(f"baseline CE-only epoch:                 {t_b:.2f} s")
    print(f"ratio contrastive / CE-only:            {t_c / t_b:.2f}x")
    print(
        f"extrapolated: three bundled markers (5 folds x 80 epochs, both losses, 272 cases): "
        f"{3 * per_model / 60:.1f} min (target <= 30 min)"
    )


if __name__ == "__main__":
    main()
