"""Synthetic tile-embedding cohorts for tests and benchmarks (no slides needed)."""

from __future__ import annotations

import numpy as np

from .trainer import CaseData


def synthetic_cases(
    n_cases: int = 80,
    *,
    dim: int = 64,
    tiles: tuple[int, int] = (20, 60),
    signal: float = 1.0,
    positive_fraction: float = 0.3,
    n_classes: int = 2,
    seed: int = 0,
) -> list[CaseData]:
    """Cases whose label shows as a shift of a fraction of tiles along a class direction.

    H&E and IHC tiles of a case share a case-specific latent, so the two modalities can be aligned.
    `signal` = 0 makes the label unlearnable.
    """
    rng = np.random.default_rng(seed)
    directions = rng.normal(size=(n_classes, dim))
    directions /= np.linalg.norm(directions, axis=1, keepdims=True)
    ihc_map = rng.normal(size=(dim, dim)) / np.sqrt(dim)
    cases = []
    for i in range(n_cases):
        label = int(rng.integers(0, n_classes))
        latent = rng.normal(size=dim) * 0.3
        he = _bag(
            rng,
            int(rng.integers(*tiles)),
            latent,
            signal * 5.0 * directions[label],
            positive_fraction,
        )
        ihc = (
            _bag(
                rng,
                int(rng.integers(*tiles)),
                latent,
                signal * 5.0 * directions[label],
                positive_fraction,
            )
            @ ihc_map
        )
        ihc = np.abs(ihc).astype(np.float32)
        cases.append(CaseData(f"case{i:04d}", label, he, ihc))
    return cases


def _bag(
    rng: np.random.Generator, n: int, latent: np.ndarray, shift: np.ndarray, fraction: float
) -> np.ndarray:
    x = rng.normal(size=(n, len(latent))) * 0.7 + latent
    x[rng.random(n) < fraction] += shift
    return np.abs(x).astype(np.float32)  # encoder features are non-negative (ReLU6)
