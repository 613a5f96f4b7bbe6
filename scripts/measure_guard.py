"""Measure the bundled models' guard on a cached simulated cohort none of whose cases set it.

    python scripts/measure_guard.py MANIFEST CACHE [--also MANIFEST CACHE ...] [--models DIR]
        [--baseline MARKER=MODEL ...]
Per marker: H&E slides flagged out of domain (with a Wilson 95 % CI) and, on the cases' labels,
log-loss and ECE (with bootstrap 95 % CIs) of the slide probabilities before and after the stored
calibration (temperature or Platt), the slides pooled over their in-domain tiles as
`predict_slide` pools them, beside the ECE a perfectly calibrated model would show on as many cases
(`ece_if_calibrated`: its median and 95th percentile, and the p-value of the observed ECE).
On a simulated cohort, the same figures for the simulator's exact Bayes posterior of each case (the
best-informed calibrated model possible from the H&E): what no model can beat on these cases.
With `--baseline`, a second model file for a marker (e.g. its CE-only baseline) is called the same way
(its own domain reference and calibration) and compared on the same cases: its log-loss and ECE, the
mean per-case log-loss difference (model - baseline, paired bootstrap 95 % CI) and the two-sided
Wilcoxon signed-rank test of the per-case log-losses.
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
from napari_histostain.training.evaluate import (
    bootstrap_ci,
    calibration_error,
    per_case_log_loss,
    wilcoxon_paired,
)
from napari_histostain.training.guard import calibration_metrics, in_domain_logits
from napari_histostain.training.manifest import load_manifest
from napari_histostain.training.reference import case_posteriors, posterior_calibration


def called(model_path: Path, cohorts: list[tuple[str, str]]) -> dict:
    """The slide calls of one model file on the embedded H&E slides of one or more cohorts
    ((manifest, cache) pairs, pooled in order), as `predict_slide` makes them: its domain verdicts,
    in-domain logits and calibrated probabilities."""
    net, cfg = load_model_file(model_path)
    classes = list(cfg.training.get("label_values") or []) or None
    ref = reference_of(cfg)
    ids: list[str] = []
    labels: list[int] = []
    feats: list[np.ndarray] = []
    posteriors: list[np.ndarray] | None = []
    for manifest_path, cache_dir in cohorts:
        manifest = load_manifest(
            manifest_path, marker=cfg.marker, classes=classes, check_files=False
        )
        cache = EmbeddingCache.open(cache_dir, root=manifest.path.parent)
        cases = [c for c in manifest.cases if cache.has(c.he_path)]
        ids += [f"{manifest.path}:{c.case_id}" for c in cases]
        labels += [manifest.label_index(c) for c in cases]
        feats += [cache.load(c.he_path).features.astype(np.float32) for c in cases]
        post = case_posteriors(cases, cfg.marker)
        posteriors = None if posteriors is None or post is None else [*posteriors, post]
    logits = in_domain_logits(net, ref, feats)
    cal = dict(cfg.calibration)
    return {
        "cfg": cfg,
        "case_ids": ids,
        "labels": np.array(labels),
        "verdicts": [ref.verdict(ref.score(f)) for f in feats],
        "logits": logits,
        "calibration": cal,
        "probs": calibrate(logits, cal, cfg.positive_class),
        "bayes_posterior": None if posteriors is None else np.concatenate(posteriors),
    }


def bayes_figures(labels: np.ndarray, posterior: np.ndarray, positive_class: int) -> dict:
    """`posterior_calibration` of the simulator's exact posterior P(positive | H&E) on the same
    cases."""
    return posterior_calibration(labels if positive_class == 1 else 1 - labels, posterior)


def measure(c: dict) -> dict:
    """The guard's figures from one model's `called` result."""
    cfg, labels, after, verdicts = c["cfg"], c["labels"], c["probs"], c["verdicts"]
    flagged = sum(not v["in_domain"] for v in verdicts)
    cal = c["calibration"]
    ece = bootstrap_ci(calibration_error, labels, after, n=1000, seed=0)
    loss = bootstrap_ci(lambda y, p: log_loss(p, y), labels, after, n=1000, seed=0)
    return {
        "marker": cfg.marker,
        "slides": len(labels),
        "flagged": int(flagged),
        "false_flag_rate": flagged / len(labels),
        "rate_ci95_wilson": list(wilson_interval(flagged, len(labels))),
        "median_out_share": float(np.median([v["score"] for v in verdicts])),
        "calibration": {k: cal.get(k) for k in ("method", "temperature", "bias")},
        **calibration_metrics(c["logits"], labels, cal, cfg.positive_class),
        "ece_after_ci95": [ece[1], ece[2]],
        "log_loss_after_ci95": [loss[1], loss[2]],
        "ece_if_calibrated": ece_if_calibrated(after[:, cfg.positive_class], ece[0]),
        "bayes_optimal": None
        if c["bayes_posterior"] is None
        else bayes_figures(labels, c["bayes_posterior"], cfg.positive_class),
    }


def compare(a: dict, baseline_path: Path, cohorts: list[tuple[str, str]]) -> dict:
    """Paired per-case log-loss of a model (its `called` result) against a baseline model file on
    the same cases."""
    b = called(baseline_path, cohorts)
    if a["case_ids"] != b["case_ids"] or a["cfg"].marker != b["cfg"].marker:
        raise SystemExit(f"{baseline_path} is not a model of the same marker on the same cases")
    y = a["labels"]
    la, lb = per_case_log_loss(y, a["probs"]), per_case_log_loss(y, b["probs"])
    diff = bootstrap_ci(lambda d: float(np.mean(d)), la - lb, n=1000, seed=0)
    return {
        "marker": a["cfg"].marker,
        "baseline": str(baseline_path),
        "slides": len(y),
        "log_loss": float(la.mean()),
        "baseline_log_loss": float(lb.mean()),
        "baseline_ece": calibration_error(y, b["probs"]),
        "baseline_calibration": {
            k: b["calibration"].get(k) for k in ("method", "temperature", "bias")
        },
        "mean_difference": diff[0],
        "mean_difference_ci95": [diff[1], diff[2]],
        "wilcoxon_per_case_log_loss": wilcoxon_paired(la, lb),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("manifest")
    p.add_argument("cache")
    p.add_argument(
        "--also",
        nargs=2,
        action="append",
        default=[],
        metavar=("MANIFEST", "CACHE"),
        help="pool another cohort's cases with the first (e.g. two untouched cohorts)",
    )
    p.add_argument("--models", help="folder of histostainalign-<marker>.pt (default: bundled)")
    p.add_argument(
        "--baseline",
        action="append",
        default=[],
        metavar="MARKER=MODEL",
        help="compare the marker's model with this model file (paired per-case log-loss)",
    )
    args = p.parse_args()
    baselines = dict(b.split("=", 1) for b in args.baseline)
    unknown = set(baselines) - set(MARKERS)
    if unknown:
        p.error(f"--baseline markers must be among {list(MARKERS)}, not {sorted(unknown)}")
    cohorts = [(args.manifest, args.cache), *[(m, c) for m, c in args.also]]
    for m in MARKERS:
        path = (
            Path(args.models) / f"histostainalign-{m}.pt" if args.models else bundled_model_path(m)
        )
        calls = called(path, cohorts)
        print(json.dumps(measure(calls)), flush=True)
        if m in baselines:
            report = compare(calls, Path(baselines[m]), cohorts)
            print(json.dumps(report), flush=True)


if __name__ == "__main__":
    main()
