"""Choose and check the bundled models' calibration: cross-validated on the held-out reference
cohort, then measured once on an untouched cohort (issue 16).

    python scripts/calibration_study.py REF_MANIFEST REF_CACHE TEST_MANIFEST TEST_CACHE [--out F]

Per marker, the slide logits (pooled over in-domain tiles, as `predict_slide` pools them) of the
reference cohort's cases (none trained the model) and of the test cohort's. On the reference
cohort, each calibration method is scored by 10-fold cross-validation (fit on nine tenths, log-loss
and ECE on the tenth, repeated over 20 seeded splits); the method with the lower cross-validated
log-loss is then fitted on every reference case. The test cohort is used once, to measure the
chosen calibration (ECE and log-loss with bootstrap 95 % CIs) beside the ECE a perfectly
calibrated model would show on the same number of cases (labels drawn from its own probabilities:
the sampling floor of a 10-bin ECE).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from napari_histostain.engine.calibration import (
    METHODS,
    calibrate,
    expected_calibration_error,
    fit_calibration,
    log_loss,
)
from napari_histostain.engine.domain import reference_of
from napari_histostain.engine.model_files import bundled_model_path, load_model_file
from napari_histostain.markers import MARKERS
from napari_histostain.training.cache import EmbeddingCache
from napari_histostain.training.evaluate import bootstrap_ci, calibration_error
from napari_histostain.training.guard import in_domain_logits
from napari_histostain.training.manifest import load_manifest

FOLDS = 10
REPEATS = 20


def cohort_logits(net, cfg, manifest_path: str, cache_dir: str) -> tuple[np.ndarray, np.ndarray]:
    """(N, C) in-domain pooled slide logits and (N,) labels of a cached cohort."""
    classes = list(cfg.training.get("label_values") or []) or None
    manifest = load_manifest(manifest_path, marker=cfg.marker, classes=classes, check_files=False)
    cache = EmbeddingCache.open(cache_dir, root=manifest.path.parent)
    cases = [c for c in manifest.cases if cache.has(c.he_path)]
    feats = [cache.load(c.he_path).features.astype(np.float32) for c in cases]
    keep = [i for i, f in enumerate(feats) if len(f)]
    labels = np.array([manifest.label_index(cases[i]) for i in keep], np.int64)
    return in_domain_logits(net, reference_of(cfg), [feats[i] for i in keep]), labels


def cross_validated(z: np.ndarray, y: np.ndarray, method: str, positive: int) -> dict:
    """Mean held-out log-loss and ECE of `method` over repeated k-fold splits of (z, y)."""
    losses, eces = [], []
    for r in range(REPEATS):
        order = np.random.default_rng(r).permutation(len(y))
        probs = np.zeros((len(y), z.shape[1]))
        for k in range(FOLDS):
            test = order[k::FOLDS]
            train = np.setdiff1d(order, test)
            fitted = fit_calibration(z[train], y[train], method, positive)
            probs[test] = calibrate(z[test], fitted, positive)
        losses.append(log_loss(probs, y))
        eces.append(expected_calibration_error(probs[:, positive], y == positive))
    return {"log_loss": float(np.mean(losses)), "ece": float(np.mean(eces))}


def ece_floor(p: np.ndarray, n_draws: int = 2000, seed: int = 0) -> list[float]:
    """Median and 95th percentile of the ECE of a perfectly calibrated model with probabilities
    `p` (labels drawn from them)."""
    rng = np.random.default_rng(seed)
    draws = [expected_calibration_error(p, rng.random(len(p)) < p) for _ in range(n_draws)]
    return [float(np.median(draws)), float(np.quantile(draws, 0.95))]


def study(marker: str, ref: tuple[str, str], test: tuple[str, str]) -> dict:
    net, cfg = load_model_file(bundled_model_path(marker))
    pos = cfg.positive_class
    z_ref, y_ref = cohort_logits(net, cfg, *ref)
    cv = {m: cross_validated(z_ref, y_ref, m, pos) for m in METHODS}
    method = min(METHODS, key=lambda m: cv[m]["log_loss"])
    fitted = fit_calibration(z_ref, y_ref, method, pos)
    z, y = cohort_logits(net, cfg, *test)
    out = {"marker": marker, "reference_cases": len(y_ref), "cv": cv, "chosen": fitted}
    for name, cal in (("stored", dict(cfg.calibration)), ("chosen", fitted)):
        p = calibrate(z, cal, pos)
        ece = bootstrap_ci(calibration_error, y, p, n=1000, seed=0)
        ll = bootstrap_ci(lambda a, b: log_loss(b, a), y, p, n=1000, seed=0)
        out[name + "_on_test"] = {
            "cases": len(y),
            "ece": list(ece),
            "log_loss": list(ll),
            "ece_floor_median_p95": ece_floor(p[:, pos]),
        }
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("ref_manifest")
    ap.add_argument("ref_cache")
    ap.add_argument("test_manifest")
    ap.add_argument("test_cache")
    ap.add_argument("--out", default=None, help="JSON file to write")
    args = ap.parse_args()
    results = [
        study(m, (args.ref_manifest, args.ref_cache), (args.test_manifest, args.test_cache))
        for m in MARKERS
    ]
    text = json.dumps(results, indent=1)
    print(text)
    if args.out:
        Path(args.out).write_text(text)


if __name__ == "__main__":
    main()
