"""Measure the bundled models' guard on a cached simulated cohort none of whose cases set it.

    python scripts/measure_guard.py MANIFEST CACHE [--models DIR]
Per marker: H&E slides flagged out of domain (with a Wilson 95 % CI) and, on the cases' labels,
log-loss and ECE (with bootstrap 95 % CIs) of the slide probabilities before and after the stored
calibration (temperature or Platt), the slides pooled over their in-domain tiles as
`predict_slide` pools them, beside the ECE a perfectly calibrated model would show on as many cases
(`ece_if_calibrated`: its median and 95th percentile, and the p-value of the observed ECE).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from napari_histostain.engine.calibration import calibrate, ece_if_calibrated, log_loss
from napari_histostain.engine.domain import reference_of, wilson_interval
from napari_histostain.engine.model_files import bundled_model_path, load_model_file
from napari_histostain.markers import MARKERS
from napari_histostain.training.cache import EmbeddingCache
from napari_histostain.training.evaluate import bootstrap_ci, calibration_error
from napari_histostain.training.guard import calibration_metrics, in_domain_logits
from napari_histostain.training.manifest import load_manifest


def measure(model_path: Path, manifest_path: str, cache_dir: str) -> dict:
    net, cfg = load_model_file(model_path)
    classes = list(cfg.training.get("label_values") or []) or None
    manifest = load_manifest(manifest_path, marker=cfg.marker, classes=classes, check_files=False)
    cache = EmbeddingCache.open(cache_dir, root=manifest.path.parent)
    cases = [c for c in manifest.cases if cache.has(c.he_path)]
    feats = [cache.load(c.he_path).features.astype(np.float32) for c in cases]
    labels = np.array([manifest.label_index(c) for c in cases])
    ref = reference_of(cfg)
    verdicts = [ref.verdict(ref.score(f)) for f in feats]
    flagged = sum(not v["in_domain"] for v in verdicts)
    logits = in_domain_logits(net, ref, feats)
    cal = dict(cfg.calibration)
    after = calibrate(logits, cal, cfg.positive_class)
    ece = bootstrap_ci(calibration_error, labels, after, n=1000, seed=0)
    loss = bootstrap_ci(lambda y, p: log_loss(p, y), labels, after, n=1000, seed=0)
    return {
        "marker": cfg.marker,
        "slides": len(cases),
        "flagged": int(flagged),
        "false_flag_rate": flagged / len(cases),
        "rate_ci95_wilson": list(wilson_interval(flagged, len(cases))),
        "median_out_share": float(np.median([v["score"] for v in verdicts])),
        "calibration": {k: cal.get(k) for k in ("method", "temperature", "bias")},
        **calibration_metrics(logits, labels, cal, cfg.positive_class),
        "ece_after_ci95": [ece[1], ece[2]],
        "log_loss_after_ci95": [loss[1], loss[2]],
        "ece_if_calibrated": ece_if_calibrated(after[:, cfg.positive_class], ece[0]),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("manifest")
    p.add_argument("cache")
    p.add_argument("--models", help="folder of histostainalign-<marker>.pt (default: bundled)")
    args = p.parse_args()
    for m in MARKERS:
        path = (
            Path(args.models) / f"histostainalign-{m}.pt" if args.models else bundled_model_path(m)
        )
        print(json.dumps(measure(path, args.manifest, args.cache)), flush=True)


if __name__ == "__main__":
    main()
