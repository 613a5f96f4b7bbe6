"""Scores from counted nuclei: Ki-67 index, H-score, PD-L1 TPS, p53 pattern, per tile and per slide,
and the weak label of a case."""

from __future__ import annotations

import numpy as np

from .params import CLASS_NAMES, IHCParams


def p53_pattern(counts: np.ndarray, params: IHCParams = IHCParams()) -> str:
    """'overexpression' (>= 80 % strongly positive nuclei), 'null' (essentially none), or 'wild-type'."""
    total = int(np.sum(counts))
    if total == 0:
        return "null"
    strong = float(np.sum(counts[params.p53_strong_class :])) / total
    positive = float(np.sum(counts[1:])) / total
    if strong >= params.p53_overexpression:
        return "overexpression"
    if positive < params.p53_null:
        return "null"
    return "wild-type"


def summarise(
    counts: np.ndarray,
    membrane_positive: int,
    tissue_px: int,
    positive_px: int,
    params: IHCParams = IHCParams(),
) -> dict:
    """Index values from nucleus class counts (negative, 1+, 2+, 3+) and pixel counts."""
    counts = np.asarray(counts, np.int64)
    total = int(counts.sum())
    pct = counts / total * 100 if total else np.zeros(4)
    return {
        "n_nuclei": total,
        "counts": {name: int(c) for name, c in zip(CLASS_NAMES, counts)},
        "ki67_index": float(pct[1:].sum()) if total else float("nan"),
        "h_score": float(pct[1] + 2 * pct[2] + 3 * pct[3]) if total else float("nan"),
        "strong_fraction": float(pct[params.p53_strong_class :].sum() / 100)
        if total
        else float("nan"),
        "pdl1_tps": float(membrane_positive / total * 100) if total else float("nan"),
        "positive_pixel_fraction": float(positive_px / tissue_px) if tissue_px else 0.0,
        "p53_pattern": p53_pattern(counts, params),
    }


def tile_positivity(
    marker: str, counts: np.ndarray, membrane: np.ndarray | int, params: IHCParams = IHCParams()
) -> np.ndarray:
    """Observed positivity in [0, 1] from per-tile counted nuclei per class (..., 4) and membrane
    positives (...): Ki-67 positive, p53 strong or PD-L1 membrane fraction; NaN without nuclei."""
    counts = np.asarray(counts, np.float64)
    if marker == "pdl1":
        num = np.asarray(membrane, np.float64)
    elif marker == "p53":
        num = counts[..., params.p53_strong_class :].sum(-1)
    else:
        num = counts[..., 1:].sum(-1)
    n = counts.sum(-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n > 0, num / n, np.nan)


def weak_label(marker: str, summary: dict, params: IHCParams = IHCParams()) -> int:
    """Binary label from measured values: Ki-67 index >= cutoff, PD-L1 TPS >= cutoff, p53 abnormal."""
    if summary["n_nuclei"] == 0:
        return 0
    if marker == "ki67":
        return int(summary["ki67_index"] >= params.ki67_cutoff)
    if marker == "pdl1":
        return int(summary["pdl1_tps"] >= params.pdl1_cutoff)
    return int(summary["p53_pattern"] != "wild-type")
