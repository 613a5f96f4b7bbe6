"""Bayes-optimal reference: the best weighted F1 and AUC any classifier could reach from the H&E.

The H&E morphology of a marker is a monotone function of its drive z = latent + sd * noise, so the
H&E carries exactly the information of z. The posterior P(label = 1 | z) is computed by numerical
integration over the latent prior; its AUC and its best-threshold weighted F1 on Monte-Carlo cases
are the bounds.
"""

from __future__ import annotations

import functools

import numpy as np

from .params import DEFAULT_CUTOFFS, SIM_MARKERS, drive_noise_sd, sample_latents_vec


def weighted_f1(y: np.ndarray, pred: np.ndarray) -> float:
    """Support-weighted mean of the two classes' F1 (scikit-learn's average='weighted')."""
    out = 0.0
    for cls in (0, 1):
        t = y == cls
        p = pred == cls
        tp = np.sum(t & p)
        denom = t.sum() + p.sum()
        f1 = 2 * tp / denom if denom else 0.0
        out += f1 * t.mean()
    return float(out)


def auc(y: np.ndarray, score: np.ndarray) -> float:
    """Area under the ROC curve (Mann-Whitney, ties counted half)."""
    from scipy.stats import rankdata

    y = np.asarray(y).astype(bool)
    n1, n0 = int(y.sum()), int((~y).sum())
    if n1 == 0 or n0 == 0:
        return float("nan")
    ranks = rankdata(score)
    return float((ranks[y].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))


def best_weighted_f1(y: np.ndarray, score: np.ndarray) -> tuple[float, float]:
    """(best weighted F1 over thresholds on `score`, that threshold)."""
    order = np.argsort(-score, kind="stable")
    ys = np.asarray(y)[order].astype(np.int64)
    n = ys.size
    n1 = ys.sum()
    n0 = n - n1
    tp = np.cumsum(ys)  # predicting the top i+1 as positive
    k = np.arange(1, n + 1)
    fp = k - tp
    fn = n1 - tp
    tn = n0 - fp
    f1_pos = 2 * tp / np.maximum(2 * tp + fp + fn, 1)
    f1_neg = 2 * tn / np.maximum(2 * tn + fn + fp, 1)
    wf1 = (n1 * f1_pos + n0 * f1_neg) / n
    i = int(np.argmax(wf1))
    # also the all-negative classifier
    all_neg = n0 / n * (2 * n0 / (2 * n0 + n1)) if n0 else 0.0
    if all_neg > wf1[i]:
        return float(all_neg), float("inf")
    return float(wf1[i]), float(score[order][i])


def posterior(
    marker: str, z: np.ndarray, sd: float, cutoff: float, n_grid: int = 1500
) -> np.ndarray:
    """P(latent >= cutoff | drive z) by integrating over a latent sample from the prior."""
    rng = np.random.default_rng(12345)
    lat = np.sort(sample_latents_vec(marker, rng, n_grid))
    pos = lat >= cutoff
    if sd <= 0:
        return (z >= cutoff).astype(np.float64)
    out = np.empty(z.size)
    for s in range(0, z.size, 4096):
        zz = z[s : s + 4096, None]
        lik = np.exp(-0.5 * ((zz - lat[None, :]) / sd) ** 2)
        out[s : s + 4096] = (lik * pos).sum(1) / np.maximum(lik.sum(1), 1e-300)
    return out


@functools.lru_cache(maxsize=64)
def bayes_reference(
    marker: str,
    difficulty: float = 1.0,
    cutoff: float | None = None,
    n_mc: int = 40000,
    seed: int = 0,
) -> dict:
    """Monte-Carlo Bayes-optimal weighted F1 / AUC of a marker's label from the H&E morphology."""
    cutoff = DEFAULT_CUTOFFS[marker] if cutoff is None else float(cutoff)
    sd = drive_noise_sd(marker, difficulty)
    rng = np.random.default_rng(np.random.SeedSequence([seed, 991, SIM_MARKERS.index(marker)]))
    lat = sample_latents_vec(marker, rng, n_mc)
    y = (lat >= cutoff).astype(np.int64)
    z = lat + sd * rng.standard_normal(n_mc)
    p = posterior(marker, z, sd, cutoff)
    f1, thr = best_weighted_f1(y, p)
    acc = float(np.mean((p >= 0.5) == y))
    return {
        "marker": marker,
        "difficulty": float(difficulty),
        "cutoff": cutoff,
        "prevalence": round(float(y.mean()), 4),
        "drive_noise_sd": round(sd, 5),
        "best_weighted_f1": round(f1, 4),
        "auc": round(auc(y, p), 4),
        "accuracy_at_0.5": round(acc, 4),
        "posterior_threshold": round(thr, 4) if np.isfinite(thr) else None,
        "n_monte_carlo": n_mc,
    }
