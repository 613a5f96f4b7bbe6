"""Fit a model's guard: its domain reference (`engine.domain`) and its temperature
(`engine.calibration`), from training tiles and held-out training-domain cases.

Used by `histostain train` (fitting tiles: the training cases outside the validation fold; held
out: the validation fold) and `histostain add-domain` (a cache of cases the model did not train on).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from napari_histostain.engine.calibration import (
    METHOD,
    calibrate,
    calibration_summary,
    expected_calibration_error,
    fit_calibration,
    log_loss,
    softmax,
)
from napari_histostain.engine.domain import DomainError, DomainReference, fit_reference

log = logging.getLogger(__name__)

#: at most this many tiles fit the PCA and covariance (a random subset; keeps fitting quick)
MAX_FIT_TILES = 50_000


@dataclass
class Guard:
    """A fitted domain reference and temperature, with what was measured while fitting."""

    reference: DomainReference
    temperature: float | None
    calibration: dict
    report: dict


def fit_tiles(slides: Sequence[np.ndarray], seed: int = 0) -> np.ndarray:
    """The slides' tiles stacked, at most `MAX_FIT_TILES` of them (a seeded random subset)."""
    x = np.concatenate([np.asarray(s, np.float32) for s in slides if len(s)])
    if len(x) > MAX_FIT_TILES:
        x = x[np.random.default_rng(seed).choice(len(x), MAX_FIT_TILES, replace=False)]
    return x


def in_domain_logits(model, reference: DomainReference, slides: Sequence[np.ndarray]) -> np.ndarray:
    """(N, C) slide logits pooled over each slide's in-domain tiles (all when none is), as
    `predict_slide` pools them."""
    from .trainer import slide_embeddings

    kept = []
    for s in slides:
        keep = reference.in_domain(reference.score(s))
        kept.append(s[keep] if keep.any() else s)
    device = next(model.parameters()).device
    _, logits = slide_embeddings(model, kept, device)
    return logits.double().numpy()


def fit_guard(
    model,
    fit_slides: Sequence[np.ndarray],
    heldout_slides: Sequence[np.ndarray],
    heldout_labels: Sequence[int] | None,
    *,
    fitted_on: str,
    seed: int = 0,
    positive_class: int = 1,
    fit_labels: Sequence[int] | None = None,
    method: str = METHOD,
) -> Guard:
    """The domain reference (PCA + covariance on `fit_slides`' tiles; percentiles, tile cut and
    slide rule on `heldout_slides`) and, with `heldout_labels`, the temperature fitted on the held-out
    slides' logits (ECE and log-loss before and after are in the report, on those same cases);
    with `fit_labels` too (fitting slides the model did not train on), on both sets of slides."""
    ref = fit_reference(
        fit_tiles(fit_slides, seed), list(heldout_slides), fitted_on=fitted_on, seed=seed
    )
    guard = Guard(ref, None, {}, {"domain": dict(ref.info)})
    if heldout_labels is not None:
        slides, y = list(heldout_slides), np.asarray(heldout_labels, np.int64)
        if fit_labels is not None:
            slides = [*fit_slides, *slides]
            y = np.concatenate([np.asarray(fit_labels, np.int64), y])
        calibrate_guard(model, guard, slides, y, fitted_on, method, positive_class)
    return guard


def calibrate_guard(
    model,
    guard: Guard,
    slides: Sequence[np.ndarray],
    labels: np.ndarray,
    fitted_on: str,
    method: str = METHOD,
    positive_class: int = 1,
) -> Guard:
    """Fit (or refit) `guard`'s calibration on `slides` pooled as `predict_slide` pools them under
    its reference; the report measures it on those same cases."""
    y = np.asarray(labels, np.int64)
    logits = in_domain_logits(model, guard.reference, slides)
    fitted = fit_calibration(logits, y, method, positive_class)
    guard.temperature = fitted["temperature"]
    guard.report["calibration"] = {
        **fitted,
        **calibration_metrics(logits, y, fitted, positive_class),
        "note": "measured on the cases the calibration was fitted on",
    }
    guard.calibration = calibration_summary(fitted, fitted_on, len(y))
    return guard


def apply_guard(cfg, guard: Guard):
    """Store `guard` in a `ModelConfig` (domain summary + arrays, calibration); return it."""
    summary, arrays = guard.reference.to_config()
    cfg.domain = summary
    cfg.domain_arrays = arrays
    if guard.calibration:
        cfg.calibration = dict(guard.calibration)
    return cfg


def fit_training_guard(final, best, cases: list, refit: bool, seed: int, positive_class: int):
    """The domain reference and temperature of a trained model: fitted on the training cases
    outside the selected fold, held out on that fold's validation cases (with `refit` the final
    model saw them, so the temperature is the fold model's). None (logged) when there are too few
    cases: the model file then has no guard; add one later with `histostain add-domain`."""

    val = set(best.val_case_ids)
    held = [c for c in cases if c.case_id in val]
    rest = [c for c in cases if c.case_id not in val]
    try:
        return fit_guard(
            best.model if refit else final,
            [c.he for c in rest],
            [c.he for c in held],
            [c.label for c in held],
            fitted_on=f"validation fold {best.fold} ({len(held)} cases; "
            f"reference fitted on the other {len(rest)} training cases)",
            seed=seed,
            positive_class=positive_class,
        )
    except DomainError as exc:
        log.warning("no domain reference or calibration stored: %s", exc)
        return None


def calibration_metrics(
    logits: np.ndarray, labels: np.ndarray, calibration: dict, positive: int
) -> dict:
    """Log-loss and ECE of `logits` before and after `calibration`, on `labels`."""
    y = np.asarray(labels, np.int64)
    before, after = softmax(logits), calibrate(logits, calibration, positive)
    return {
        "cases": int(len(y)),
        "log_loss_before": log_loss(before, y),
        "log_loss_after": log_loss(after, y),
        "ece_before": expected_calibration_error(before[:, positive], y == positive),
        "ece_after": expected_calibration_error(after[:, positive], y == positive),
    }


def add_domain(
    model,
    cfg,
    manifest_path,
    cache_dir,
    *,
    fit_fraction: float = 0.4,
    keep_back: float = 0.0,
    calibrate: bool = True,
    seed: int = 0,
    method: str = METHOD,
    calibrate_on_all: bool = False,
) -> dict:
    """Fit and store (in `cfg`) a guard from the cached H&E slides of a manifest's cases for the
    model's marker, split by case (seeded) into fitting, held-out and kept-back cases; return what
    was measured (the kept-back cases' false-flag rate with a Wilson 95 % CI, and calibration).
    With `calibrate_on_all` the calibration is fitted on every case, the kept-back ones too."""
    from napari_histostain.engine.domain import wilson_interval
    from napari_histostain.errors import HistostainError

    from .cache import EmbeddingCache
    from .manifest import load_manifest

    classes = list(cfg.training.get("label_values") or []) or None
    manifest = load_manifest(manifest_path, marker=cfg.marker, classes=classes, check_files=False)
    cache = EmbeddingCache.open(cache_dir, root=manifest.path.parent)
    enc = cache.settings.get("encoder_id")
    if enc != cfg.encoder_id:
        raise HistostainError(
            f"the cache {cache.folder} holds {enc} embeddings but the model was trained on "
            f"{cfg.encoder_id}; embed the cases with --encoder {cfg.encoder_id}."
        )
    cases = [c for c in manifest.cases if cache.has(c.he_path)]
    feats = [cache.load(c.he_path).features.astype(np.float32) for c in cases]
    keep = [i for i, f in enumerate(feats) if len(f)]
    cases, feats = [cases[i] for i in keep], [feats[i] for i in keep]
    labels = np.array([manifest.label_index(c) for c in cases], np.int64)
    order = np.random.default_rng(seed).permutation(len(cases))
    n_fit, n_keep = round(fit_fraction * len(cases)), round(keep_back * len(cases))
    fit_i, kept_i = order[:n_fit], order[len(cases) - n_keep :]
    held_i = order[n_fit : len(cases) - n_keep]
    name = f"{'/'.join(Path(str(manifest_path)).parts[-3:])} (split seed {seed})"
    split = f"{name}: {len(fit_i)} cases fit the reference, {len(held_i)} set the thresholds"
    on_split = calibrate and not calibrate_on_all  # else fitted once below, on every case
    guard = fit_guard(
        model,
        [feats[i] for i in fit_i],
        [feats[i] for i in held_i],
        labels[held_i] if on_split else None,
        fitted_on=split
        + (f"; all {len(fit_i) + len(held_i)} fit the calibration" if on_split else ""),
        seed=seed,
        positive_class=cfg.positive_class,
        fit_labels=labels[fit_i] if on_split else None,
        method=method,
    )
    if calibrate and calibrate_on_all:
        kept_text = f", {n_keep} kept back to measure the false-flag rate" if n_keep else ""
        calibrate_guard(
            model,
            guard,
            feats,
            labels,
            f"{split}{kept_text}; all {len(feats)} fit the calibration",
            method,
            cfg.positive_class,
        )
    report = {"cases": len(cases), **guard.report}
    if n_keep:
        ref = guard.reference
        kept = [feats[i] for i in kept_i]
        flagged = sum(not ref.verdict(ref.score(f))["in_domain"] for f in kept)
        lo, hi = wilson_interval(flagged, len(kept))
        check = {"slides": len(kept), "flagged": int(flagged), "rate_ci95_wilson": [lo, hi]}
        if on_split:  # kept-back cases measure the calibration only when it did not see them
            logits = in_domain_logits(model, ref, kept)
            check["calibration"] = calibration_metrics(
                logits, labels[kept_i], guard.calibration, cfg.positive_class
            )
        report["kept_back"] = check
        ref.info["kept_back_slides"] = len(kept)
        ref.info["kept_back_flagged"] = int(flagged)
    apply_guard(cfg, guard)
    return report


def called_logits(model, model_path, slides: list, logits: np.ndarray) -> np.ndarray:
    """(N, C) slide logits as `predict_slide` pools them: over each slide's in-domain tiles when
    the model file has a domain reference (`logits`, over all tiles, otherwise)."""
    from napari_histostain.engine.domain import reference_of
    from napari_histostain.engine.model_files import load_model_file

    ref = reference_of(load_model_file(model_path)[1])
    return logits if ref is None else in_domain_logits(model, ref, slides)
