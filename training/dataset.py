"""Turn a validated manifest and an embedding cache into in-memory cases, and split off test cases."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .cache import CacheError, EmbeddingCache
from .manifest import CohortCase, Manifest
from .trainer import CaseData, stable_fraction


def is_test_case(case: CohortCase, test_fraction: float, seed: int = 0) -> bool:
    """Held-out test case: the manifest's split column if given, else a fixed hash of the case id
    (the same cases for every marker and run)."""
    if case.split is not None:
        return case.split == "test"
    return stable_fraction(case.case_id, 10_000 + seed) < test_fraction


def split_cases(
    manifest: Manifest, test_fraction: float, seed: int = 0
) -> tuple[list[CohortCase], list[CohortCase]]:
    train = [c for c in manifest.cases if not is_test_case(c, test_fraction, seed)]
    test = [c for c in manifest.cases if is_test_case(c, test_fraction, seed)]
    return train, test


def load_cases(
    manifest: Manifest, cases: Sequence[CohortCase], cache: EmbeddingCache
) -> list[CaseData]:
    """Tile embeddings (float32) of each case's H&E and IHC slide from the cache.

    Raises `CacheError` listing the slides that are not embedded or have no tissue tiles.
    """
    out, missing, empty = [], [], []
    for c in cases:
        bags = []
        for p in (c.he_path, c.ihc_path):
            if not cache.has(p):
                missing.append(str(p))
                continue
            emb = cache.load(p)
            if len(emb) == 0:
                empty.append(str(p))
            bags.append(emb.features.astype(np.float32))
        if len(bags) == 2 and all(len(b) for b in bags):
            out.append(CaseData(c.case_id, manifest.label_index(c), bags[0], bags[1]))
    if missing:
        raise CacheError(
            f"{len(missing)} slide(s) are not in the embedding cache {cache.folder} "
            f"(e.g. {missing[0]}); run `histostain embed` on the manifest first."
        )
    if empty:
        raise CacheError(
            f"{len(empty)} slide(s) have no tissue tiles (e.g. {empty[0]}); "
            "remove those cases from the manifest or lower --min-tissue."
        )
    return out
