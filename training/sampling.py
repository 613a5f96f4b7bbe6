"""Token sampling as in the paper: n tiles per slide (with replacement when fewer), 50% masking."""

from __future__ import annotations

import numpy as np

DEFAULT_TOKENS = 4096


def sample_tokens(n_tiles: int, n_tokens: int, rng: np.random.Generator) -> np.ndarray:
    """Indices of `n_tokens` tiles of a slide: without replacement when it has enough, else with."""
    if n_tiles <= 0:
        raise ValueError("a slide without tissue tiles cannot be sampled")
    if n_tiles >= n_tokens:
        return np.sort(rng.choice(n_tiles, size=n_tokens, replace=False))
    return np.sort(rng.choice(n_tiles, size=n_tokens, replace=True))


def mask_keep(n_tokens: int, ratio: float, rng: np.random.Generator) -> np.ndarray:
    """Positions (sorted) of the tokens kept when a fraction `ratio` of a bag is masked (at least one)."""
    if not 0.0 <= ratio < 1.0:
        raise ValueError(f"mask ratio must be in [0, 1), got {ratio}")
    n_keep = max(1, int(round(n_tokens * (1.0 - ratio))))
    return np.sort(rng.choice(n_tokens, size=n_keep, replace=False))


def paired_bags(
    he_features: list[np.ndarray],
    ihc_features: list[np.ndarray],
    n_tokens: int,
    rng: np.random.Generator,
    mask_ratio: float = 0.5,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One batch of paired bags: H&E (B, n, D), IHC (B, n, D), masked H&E (B, n_keep, D) (float32).

    Case i's H&E and IHC bags are sampled independently (no registration); the masked bag is the same
    H&E bag with a random `mask_ratio` of its tokens removed.
    """
    he = np.stack([f[sample_tokens(len(f), n_tokens, rng)] for f in he_features]).astype(np.float32)
    ihc = np.stack([f[sample_tokens(len(f), n_tokens, rng)] for f in ihc_features]).astype(
        np.float32
    )
    masked = np.stack([bag[mask_keep(n_tokens, mask_ratio, rng)] for bag in he])
    return he, ihc, masked
