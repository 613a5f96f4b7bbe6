"""End-to-end train / evaluate of one marker from a manifest and an embedding cache."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from napari_histostain.engine.calibration import calibrate
from napari_histostain.errors import HistostainError

from .cache import EmbeddingCache
from .dataset import load_cases, split_cases
from .guard import called_logits
from .manifest import load_manifest
from .reference import case_posteriors, held_out_reference
from .trainer import MetricsLog, TrainConfig, cross_validate, slide_embeddings, train_one

log = logging.getLogger(__name__)


class TrainingError(HistostainError):
    """Training or evaluation cannot proceed (too few cases, a class missing, ...)."""


def train_marker(
    manifest_path: str | Path,
    cache_dir: str | Path,
    out_dir: str | Path,
    marker: str,
    cfg: TrainConfig,
    *,
    classes: list[str] | None = None,
    test_fraction: float = 0.25,
    model_file: str | Path | None = None,
    command: str = "",
    progress: Callable[[str], None] | None = None,
    refit: bool = False,
) -> dict[str, Any]:
    """k-fold CV on the non-test cases of `marker`; saves the best fold's model (lowest val loss),
    or with `refit` a model trained on all of them, stopped at the folds' median best epoch.

    Writes `metrics.csv`, `train.json` and `model.pt` (engine format) in `out_dir`, and a copy of
    the model at `model_file` when given. Returns the summary written to `train.json`.
    """
    import torch

    from napari_histostain.io.atomic import ensure_dir, write_json

    from .evaluate import classification_report

    out = ensure_dir(out_dir)
    if classes is None:
        classes = default_classes(manifest_path, marker)
    manifest = load_manifest(manifest_path, marker=marker, classes=classes, check_files=False)
    cache = EmbeddingCache.open(cache_dir, root=manifest.path.parent)
    train_cc, test_cc = split_cases(manifest, test_fraction, cfg.seed)
    cases = load_cases(manifest, train_cc, cache)
    labels = [c.label for c in cases]
    n_classes = len(manifest.classes)
    counts = np.bincount(labels, minlength=n_classes)
    if (counts < max(2, cfg.folds)).any():
        raise TrainingError(
            f"marker {marker}: training cases per class {dict(zip(manifest.classes, counts.tolist()))}; "
            f"every class needs at least {max(2, cfg.folds)} (one per fold)."
        )
    t0 = time.perf_counter()
    metrics = MetricsLog(out / "metrics.csv")
    try:
        results = cross_validate(
            cases,
            n_classes,
            cfg,
            given_folds=[c.fold for c in train_cc],
            log_rows=metrics,
            progress=progress,
        )
    finally:
        metrics.close()
    seconds = time.perf_counter() - t0
    # out-of-fold predictions: each case scored by the model that did not train on it
    by_id = {c.case_id: c for c in cases}
    oof_y, oof_p = [], []
    for r in results:
        if not r.val_case_ids:
            continue
        val = [by_id[i] for i in r.val_case_ids]
        _, logits = slide_embeddings(r.model, [c.he for c in val], torch.device("cpu"))
        oof_p.append(torch.softmax(logits, 1).numpy())
        oof_y += [c.label for c in val]
    cv = (
        classification_report(oof_y, np.concatenate(oof_p), n_bootstrap=200, seed=cfg.seed)
        if oof_p
        else None
    )
    best = min(results, key=lambda r: (np.nan_to_num(r.best_val_loss, nan=np.inf), r.fold))
    final, refit_info = best.model, None
    if refit:
        # all training cases, the folds' schedule, stopped after their median best epoch (0-based)
        stop = int(np.median([r.best_epoch for r in results])) + 1
        t1 = time.perf_counter()
        final = train_one(
            cases, [], n_classes, cfg, fold=cfg.folds, stop_after=stop, progress=progress
        ).model
        refit_info = {"epochs": stop, "n_cases": len(cases), "seconds": time.perf_counter() - t1}
        seconds += refit_info["seconds"]
    summary = {
        "marker": marker,
        "classes": manifest.classes,
        "manifest": str(manifest.path),
        "cache": str(cache.folder),
        "config": cfg.to_dict(),
        "test_fraction": test_fraction,
        "n_train_cases": len(cases),
        "n_test_cases": len(test_cc),
        "test_case_ids": [c.case_id for c in test_cc],
        "class_counts_train": dict(zip(manifest.classes, counts.tolist())),
        "folds": [
            {
                "fold": r.fold,
                "best_epoch": r.best_epoch,
                "best_val_loss": r.best_val_loss,
                "n_val": len(r.val_case_ids),
            }
            for r in results
        ],
        "selected_fold": "refit" if refit else best.fold,
        "refit": refit_info,
        "cv_out_of_fold": cv,
        "train_seconds": seconds,
        "encoder": {
            k: cache.settings.get(k, "")
            for k in (
                "encoder_id",
                "encoder_version",
                "encoder_weights",
                "tile_mpp",
                "tile_size",
                "min_tissue",
            )
        },
        "command": command,
    }
    summary["class_names"] = class_display_names(manifest)
    from .guard import fit_training_guard

    guard = fit_training_guard(final, best, cases, refit, cfg.seed, n_classes - 1)
    summary["guard"] = guard.report if guard else None
    config = model_config(summary, final)
    if guard is not None:
        summary_cfg, arrays = guard.reference.to_config()
        config.update(domain=summary_cfg, domain_arrays=arrays, calibration=guard.calibration)
    from .modeling import save_model

    save_model(out / "model.pt", final, config)
    if model_file is not None:
        save_model(model_file, final, config)
    write_json(out / "train.json", summary)
    return summary


def default_classes(manifest_path: str | Path, marker: str) -> list[str] | None:
    """The simulator's class order (negative first, positive last) when the manifest uses its
    labels; None otherwise (then the classes are the sorted labels; give --classes to order them)."""
    import csv

    from napari_histostain.markers import REGISTRY

    names = REGISTRY[marker].class_names if marker in REGISTRY else None
    try:
        with open(manifest_path, newline="", encoding="utf-8-sig") as fh:
            labels = {
                r.get("label", "").strip()
                for r in csv.DictReader(fh)
                if r.get("marker", "").strip() == marker
            }
    except OSError:
        return None
    return list(names) if names and labels and labels <= set(names) else None


def class_display_names(manifest) -> list[str]:
    """Class names for display: the manifest's `label_name` column when it names each label value
    consistently (the simulator's, e.g. 0 -> 'low'), else the label values themselves."""
    names: dict[str, set[str]] = {}
    for c in manifest.cases:
        n = c.extra.get("label_name")
        if n:
            names.setdefault(c.label, set()).add(n)
    if all(len(names.get(k, ())) == 1 for k in manifest.classes):
        return [next(iter(names[k])) for k in manifest.classes]
    return list(manifest.classes)


def model_config(summary: dict[str, Any], model) -> dict[str, Any]:
    """The config stored in the model file: what inference needs plus how the model was trained."""
    from .modeling import model_init_kwargs

    cfg = summary["config"]
    enc = summary["encoder"]
    return {
        "marker": summary["marker"],
        "classes": summary["classes"],
        "class_names": summary.get("class_names") or summary["classes"],
        "encoder": enc["encoder_id"],
        "encoder_version": enc["encoder_version"],
        "encoder_weights": enc.get("encoder_weights", ""),
        "tile_mpp": enc["tile_mpp"],
        "tile_size": enc["tile_size"],
        "min_tissue": enc["min_tissue"],
        "model_kwargs": model_init_kwargs(model),
        "training": {
            "loss": "ce-only"
            if cfg["contrastive_weight"] == 0 and cfg["mse_weight"] == 0
            else "infonce+mse+ce",
            "config": cfg,
            "test_fraction": summary["test_fraction"],
            "n_train_cases": summary["n_train_cases"],
            "selected_fold": summary["selected_fold"],
            "cv_out_of_fold": summary["cv_out_of_fold"],
            "command": summary["command"],
        },
    }


def _load(model_path: str | Path):
    from .modeling import load_model

    model, config = load_model(model_path)
    model.eval()
    return model, config


def evaluate_marker(
    manifest_path: str | Path,
    cache_dir: str | Path,
    model_path: str | Path,
    out_dir: str | Path,
    *,
    baseline_path: str | Path | None = None,
    n_bootstrap: int = 1000,
    seed: int = 0,
    bayes: dict[str, Any] | None = None,
    plot_prefix: str = "",
    external: bool = False,
    device: str = "cpu",
) -> dict[str, Any]:
    """Held-out evaluation of a trained model (and the CE-only baseline): metrics, probe, plots.

    Test cases are those held out when the model was trained (same `test_fraction` and seed, or
    the manifest's split column); with `external`, every case of the manifest (a cohort the model
    never saw; no linear probe then, it needs training cases). Writes `report.json`,
    `predictions.csv` and PNG plots. The slide models run on `device` (auto, cpu, cuda, mps).
    """

    from napari_histostain.io.atomic import atomic_open, ensure_dir, write_json

    from . import evaluate as ev

    out = ensure_dir(out_dir)
    model, config = _load(model_path)
    marker = config["marker"]
    training = config.get("training", {})
    tcfg = training.get("config", {})
    manifest = load_manifest(
        manifest_path, marker=marker, classes=config["classes"], check_files=False
    )
    cache = EmbeddingCache.open(cache_dir, root=manifest.path.parent)
    if cache.settings["encoder_id"] != config["encoder"]:
        raise TrainingError(
            f"model {model_path} uses encoder {config['encoder']!r} but cache "
            f"{cache_dir} holds {cache.settings['encoder_id']!r} embeddings."
        )
    cache_weights = cache.settings.get("encoder_weights", "")
    if (
        config.get("encoder_weights")
        and cache_weights
        and cache_weights != config["encoder_weights"]
    ):
        raise TrainingError(
            f"model {model_path} was trained on {config['encoder']} embeddings from weights "
            f"{config['encoder_weights'][:19]}..., but cache {cache_dir} holds embeddings from "
            f"weights {cache_weights[:19]}...; embed the cohort with the model's weights file."
        )
    if external:
        train_cc, test_cc = [], list(manifest.cases)
    else:
        train_cc, test_cc = split_cases(
            manifest, training.get("test_fraction", 0.25), tcfg.get("seed", 0)
        )
    if len(test_cc) < 4:
        raise TrainingError(
            f"only {len(test_cc)} held-out test case(s) for {marker}; "
            "use a larger cohort or --test-fraction."
        )
    train = load_cases(manifest, train_cc, cache)
    test = load_cases(manifest, test_cc, cache)
    by_id = {c.case_id: c for c in test_cc}
    classes = config["classes"]
    names = config.get("class_names") or classes
    y = np.array([c.label for c in test])
    from .trainer import pick_device

    dev = pick_device(device)
    models = {"HistoStainAlign": (model, config)}
    paths = {"HistoStainAlign": model_path}
    if baseline_path is not None:
        models["CE-only baseline"] = _load(baseline_path)
        paths["CE-only baseline"] = baseline_path
    models = {k: (m.to(dev), c) for k, (m, c) in models.items()}
    report: dict[str, Any] = {
        "marker": marker,
        "classes": classes,
        "class_names": names,
        "n_test": len(test),
        "external": external,
        "n_train": len(train),
        "model": str(model_path),
        "baseline": str(baseline_path) if baseline_path else None,
        "test_class_counts": np.bincount(y, minlength=len(classes)).tolist(),
    }
    probs, embs = {}, {}
    for name, (m, cfg) in models.items():
        he, logits = slide_embeddings(m, [c.he for c in test], dev)
        ihc, _ = slide_embeddings(m, [c.ihc for c in test], dev)
        he, ihc, logits = he.cpu(), ihc.cpu(), logits.cpu()
        # the call as `predict_slide` makes it (in-domain tiles, the model's calibration)
        call_logits = called_logits(m, paths[name], [c.he for c in test], logits.double().numpy())
        cal = {"temperature": 1.0, "method": "none", "bias": 0.0, **(cfg.get("calibration") or {})}
        p = calibrate(call_logits, cal, int(cfg.get("positive_class", 1)))
        probs[name] = p
        embs[name] = (he.numpy(), ihc.numpy())
        report[name] = {
            "head": ev.classification_report(y, p, n_bootstrap=n_bootstrap, seed=seed),
            "calibration": {
                **{k: cal[k] for k in ("temperature", "method", "bias")},
                **ev.calibration_report(y, p, n_bootstrap=n_bootstrap, seed=seed),
            },
            "alignment": ev.alignment_report(
                he.numpy(), ihc.numpy(), n_bootstrap=n_bootstrap, seed=seed
            ),
        }
        if train:
            tr_he, _ = slide_embeddings(m, [c.he for c in train], dev)
            probe = ev.linear_probe(
                tr_he.cpu().numpy(),
                [c.label for c in train],
                he.numpy(),
                n_classes=len(classes),
                seed=seed,
            )
            probs[f"{name} linear probe"] = probe
            report[name]["linear_probe"] = ev.classification_report(
                y, probe, n_bootstrap=n_bootstrap, seed=seed
            )
    if "CE-only baseline" in models:
        report["wilcoxon_per_case_log_loss"] = ev.wilcoxon_paired(
            ev.per_case_log_loss(y, probs["HistoStainAlign"]),
            ev.per_case_log_loss(y, probs["CE-only baseline"]),
        )
    if bayes is not None:
        report["bayes_optimal"] = dict(bayes)
        posteriors = case_posteriors([by_id[c.case_id] for c in test], marker)
        if posteriors is not None and bayes.get("threshold") is not None:
            report["bayes_optimal"]["held_out"] = held_out_reference(
                y,
                probs["HistoStainAlign"],
                posteriors,
                bayes["threshold"],
                n_bootstrap=n_bootstrap,
                seed=seed,
            )
    plots = {
        "roc": ev.plot_roc(
            out / f"{plot_prefix}roc.png",
            y,
            {k: v for k, v in probs.items() if "probe" not in k},
            names,
            f"{marker}: held-out ROC (n={len(y)})",
        ),
        "reliability": ev.plot_reliability(
            out / f"{plot_prefix}reliability.png",
            y,
            {k: v for k, v in probs.items() if "probe" not in k},
            f"{marker}: held-out reliability (n={len(y)})",
        ),
        "confusion": ev.plot_confusion(
            out / f"{plot_prefix}confusion.png",
            y,
            probs["HistoStainAlign"].argmax(1),
            names,
            f"{marker}: HistoStainAlign",
        ),
        "embedding": ev.plot_embedding(
            out / f"{plot_prefix}embedding.png",
            *embs["HistoStainAlign"],
            y,
            names,
            f"{marker}: slide embeddings (PCA)",
        ),
    }
    report["plots"] = {k: str(v) for k, v in plots.items()}
    with atomic_open(out / "predictions.csv", "w", encoding="utf-8") as fh:
        names = [k for k in probs]
        fh.write("case_id,label," + ",".join(f"p_{classes[-1]}[{n}]" for n in names) + "\n")
        for i, c in enumerate(test):
            fh.write(
                f"{c.case_id},{classes[c.label]},"
                + ",".join(f"{probs[n][i, -1]:.5f}" for n in names)
                + "\n"
            )
    write_json(out / "report.json", report)
    return report


DISCLAIMER = (
    "Demonstration model, not for clinical use; train on your own cohort "
    "(histostain embed / train / evaluate)."
)


def annotate_model(
    model_path: str | Path,
    report: dict[str, Any],
    out_path: str | Path | None = None,
    key: str | None = None,
) -> Path:
    """Write the held-out evaluation (and the disclaimer) into a model file's config, under
    `metrics.<key>` (default `held_out`, or `external_test` for an `external` report); the
    weights are unchanged. Writes `out_path` (default: the model file itself), atomically."""
    from napari_histostain.engine.model_files import load_model_file, save_model_file

    from . import evaluate as ev

    net, cfg = load_model_file(model_path)
    h = report["HistoStainAlign"]["head"]
    held = {
        "n_test": report["n_test"],
        "weighted_f1": h["weighted_f1"],
        "weighted_f1_ci95": h["weighted_f1_ci"],
        "auc": h["auc"],
        "auc_ci95": h["auc_ci"],
        "balanced_accuracy": h["balanced_accuracy"],
    }
    held.update(ev.card_calibration(report))
    if "CE-only baseline" in report:
        b = report["CE-only baseline"]["head"]
        held["ce_only_weighted_f1"] = b["weighted_f1"]
        held["ce_only_auc"] = b["auc"]
        held["wilcoxon_p_per_case_log_loss"] = report["wilcoxon_per_case_log_loss"]["p_value"]
    if report.get("bayes_optimal"):
        held["bayes_optimal_weighted_f1"] = report["bayes_optimal"].get("weighted_f1")
        held["bayes_optimal_auc"] = report["bayes_optimal"].get("auc")
        same = report["bayes_optimal"].get("held_out")
        if same:
            held["bayes_rule_weighted_f1_same_cases"] = same["weighted_f1"]
            held["gap_to_bayes_rule_same_cases"] = same["gap"]
            held["gap_to_bayes_rule_same_cases_ci95"] = same["gap_ci"]
            held["bayes_posterior_ece_same_cases"] = same["ece"]
    key = key or ("external_test" if report.get("external") else "held_out")
    cfg.metrics = {**cfg.metrics, key: held}
    cfg.description = cfg.description or DISCLAIMER
    return save_model_file(out_path or model_path, net, cfg)


def summary_line(report: dict[str, Any]) -> str:
    """One-line human summary of an evaluation report."""
    from . import evaluate as ev

    h = report["HistoStainAlign"]["head"]
    s = (
        f"{report['marker']}{' (external test cohort)' if report.get('external') else ''}: weighted F1 {h['weighted_f1']:.3f} "
        f"[{h['weighted_f1_ci'][0]:.3f}, {h['weighted_f1_ci'][1]:.3f}], AUC {h['auc']:.3f}, "
        f"balanced acc {h['balanced_accuracy']:.3f} (n={report['n_test']})"
    )
    s += ev.calibration_text(report.get("HistoStainAlign", {}))
    if "CE-only baseline" in report:
        b = report["CE-only baseline"]["head"]
        s += f"; CE-only F1 {b['weighted_f1']:.3f}, AUC {b['auc']:.3f}"
        s += ev.calibration_text(report["CE-only baseline"], ci=False)
    if "wilcoxon_per_case_log_loss" in report:
        s += f"; Wilcoxon p={report['wilcoxon_per_case_log_loss']['p_value']:.3g}"
    if "bayes_optimal" in report:
        s += f"; Bayes-optimal F1 {report['bayes_optimal'].get('weighted_f1', float('nan')):.3f}"
        if same := report["bayes_optimal"].get("held_out"):
            s += f" (on these cases {same['weighted_f1']:.3f}; gap {same['gap']:.3f} "
            s += f"[{same['gap_ci'][0]:.3f}, {same['gap_ci'][1]:.3f}]; posterior ECE {same['ece']:.3f})"
    return s


def dumps(obj: Any) -> str:
    return json.dumps(obj, indent=2)
