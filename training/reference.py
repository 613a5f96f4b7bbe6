"""The simulator's Bayes-optimal reference for a simulated cohort (from its `cohort.json`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np


def bayes_reference(
    manifest_path: str | Path, model_path: str | Path | None = None, marker: str | None = None
) -> dict[str, Any] | None:
    """Bayes-optimal weighted F1 / AUC of the model's marker recorded by the simulator beside the
    manifest (`cohort.json`), or None for a cohort that was not simulated."""
    index = Path(manifest_path).parent / "cohort.json"
    if not index.is_file():
        return None
    try:
        meta = json.loads(index.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if marker is None and model_path is not None:
        from napari_histostain.engine.model_files import read_model_config

        marker = read_model_config(model_path).marker
    ref = (meta.get("bayes_optimal") or {}).get(marker)
    if not ref:
        return None
    return {
        "weighted_f1": ref.get("best_weighted_f1"),
        "auc": ref.get("auc"),
        "accuracy": ref.get("accuracy_at_0.5"),
        "prevalence": ref.get("prevalence"),
        "difficulty": ref.get("difficulty"),
        "threshold": ref.get("posterior_threshold"),
        "source": f"{index.name}: simulator Monte-Carlo "
        f"({ref.get('n_monte_carlo')} cases), best threshold on the exact posterior",
    }


def case_posteriors(cases, marker: str) -> np.ndarray | None:
    """P(label = positive | H&E morphology) of each simulated case: the exact posterior of its
    drive, read from the simulator's `<case_id>.json` beside the case's H&E slide. None when any
    case lacks it (a cohort that was not simulated)."""
    from napari_histostain.simulate.bayes import posterior
    from napari_histostain.simulate.params import DEFAULT_CUTOFFS, drive_noise_sd

    drives, difficulty = [], None
    for c in cases:
        try:
            meta = json.loads(
                (Path(c.he_path).parent / f"{c.case_id}.json").read_text(encoding="utf-8")
            )
            drives.append(float(meta["latents"][marker]["drive"]))
            d = float(meta.get("difficulty", 1.0))
            cutoff = float(meta.get("cutoffs", {}).get(marker, DEFAULT_CUTOFFS[marker]))
        except (OSError, ValueError, KeyError, TypeError):
            return None
        if difficulty is not None and d != difficulty:
            return None
        difficulty = d
    if not drives:
        return None
    return posterior(marker, np.asarray(drives), drive_noise_sd(marker, difficulty), cutoff)


def held_out_reference(
    y: np.ndarray,
    model_prob: np.ndarray,
    bayes_prob: np.ndarray,
    threshold: float,
    *,
    n_bootstrap: int = 1000,
    seed: int = 0,
) -> dict[str, Any]:
    """The Bayes-optimal rule (posterior >= the population's best threshold) scored on the same
    held-out cases as the model, and the paired gap (Bayes F1 - model F1) with a bootstrap CI.

    The population value says what the rule reaches on average; on a sample of ~100 cases the rule
    itself scores a few points above or below it, and the paired gap removes that shared noise.
    """
    from .evaluate import bootstrap_ci, roc_auc, weighted_f1

    y = np.asarray(y)
    bayes_pred = (np.asarray(bayes_prob) >= threshold).astype(np.int64)
    model_pred = np.asarray(model_prob).argmax(1)
    f1 = bootstrap_ci(weighted_f1, y, bayes_pred, n=n_bootstrap, seed=seed)
    gap = bootstrap_ci(
        lambda t, b, m: weighted_f1(t, b) - weighted_f1(t, m),
        y,
        bayes_pred,
        model_pred,
        n=n_bootstrap,
        seed=seed,
    )
    p2 = np.stack([1 - np.asarray(bayes_prob), np.asarray(bayes_prob)], 1)
    return {
        "n_cases": len(y),
        "weighted_f1": f1[0],
        "weighted_f1_ci": [f1[1], f1[2]],
        "auc": roc_auc(y, p2),
        "gap": gap[0],
        "gap_ci": [gap[1], gap[2]],
        "threshold": float(threshold),
        **posterior_calibration(y, bayes_prob, seed=seed),
    }


def posterior_calibration(y: np.ndarray, bayes_prob: np.ndarray, seed: int = 0) -> dict[str, Any]:
    """ECE and log-loss of the exact posterior P(positive | H&E) on these cases (labels 0 / 1), and
    its ECE if its labels were drawn from it (`ece_if_calibrated`): the calibration figures of the
    best-informed calibrated model possible, which no model's can be expected to beat."""
    from napari_histostain.engine.calibration import ece_if_calibrated, log_loss

    from .evaluate import calibration_error

    post = np.asarray(bayes_prob, np.float64)
    p2 = np.stack([1 - post, post], 1)
    ece = calibration_error(np.asarray(y), p2)
    return {
        "ece": ece,
        "log_loss": log_loss(p2, np.asarray(y)),
        "ece_if_calibrated": ece_if_calibrated(post, ece, seed=seed),
    }
