"""Evaluation as in the paper: weighted F1 with bootstrap CI, ROC AUC, balanced accuracy, a linear
probe on frozen slide embeddings, the paired-alignment score, a Wilcoxon test, and plots; and the
calibration of the probabilities: ECE and log-loss with bootstrap CIs and a reliability diagram."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

N_BOOTSTRAP = 1000


def weighted_f1(y_true, y_pred) -> float:
    from sklearn.metrics import f1_score

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # one-class bootstrap resamples
        return float(f1_score(y_true, y_pred, average="weighted", zero_division=0))


def balanced_accuracy(y_true, y_pred) -> float:
    from sklearn.metrics import balanced_accuracy_score

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # one-class bootstrap resamples
        return float(balanced_accuracy_score(y_true, y_pred))


def roc_auc(y_true, prob: np.ndarray) -> float:
    """ROC AUC: binary from the positive-class column; multiclass one-vs-rest, weighted. NaN if undefined."""
    from sklearn.metrics import roc_auc_score

    y_true = np.asarray(y_true)
    prob = np.asarray(prob, dtype=np.float64)
    present = np.unique(y_true)
    if len(present) < 2:
        return float("nan")
    if prob.shape[1] == 2:
        return float(roc_auc_score(y_true, prob[:, 1]))
    if len(present) < prob.shape[1]:
        return float("nan")
    p = prob / prob.sum(1, keepdims=True)
    return float(roc_auc_score(y_true, p, multi_class="ovr", average="weighted"))


def bootstrap_ci(
    stat: Callable[..., float],
    *arrays: np.ndarray,
    n: int = N_BOOTSTRAP,
    seed: int = 0,
    level: float = 0.95,
) -> tuple[float, float, float]:
    """(point estimate, low, high): percentile CI of `stat` over `n` case-level resamples."""
    arrays = tuple(np.asarray(a) for a in arrays)
    m = len(arrays[0])
    rng = np.random.default_rng(seed)
    vals = []
    for _ in range(n):
        idx = rng.integers(0, m, m)
        v = stat(*(a[idx] for a in arrays))
        if np.isfinite(v):
            vals.append(v)
    point = float(stat(*arrays))
    if not vals:
        return point, float("nan"), float("nan")
    lo, hi = np.percentile(vals, [100 * (1 - level) / 2, 100 * (1 + level) / 2])
    return point, float(lo), float(hi)


def classification_report(
    y_true, prob: np.ndarray, *, n_bootstrap: int = N_BOOTSTRAP, seed: int = 0
) -> dict[str, Any]:
    """Weighted F1 [95% CI], ROC AUC [95% CI], balanced accuracy [95% CI] of class probabilities."""
    y_true = np.asarray(y_true)
    prob = np.asarray(prob)
    pred = prob.argmax(1)
    f1 = bootstrap_ci(weighted_f1, y_true, pred, n=n_bootstrap, seed=seed)
    auc = bootstrap_ci(roc_auc, y_true, prob, n=n_bootstrap, seed=seed)
    bacc = bootstrap_ci(balanced_accuracy, y_true, pred, n=n_bootstrap, seed=seed)
    return {
        "n_cases": len(y_true),
        "weighted_f1": f1[0],
        "weighted_f1_ci": [f1[1], f1[2]],
        "auc": auc[0],
        "auc_ci": [auc[1], auc[2]],
        "balanced_accuracy": bacc[0],
        "balanced_accuracy_ci": [bacc[1], bacc[2]],
    }


def per_case_log_loss(y_true, prob: np.ndarray) -> np.ndarray:
    """-log p(true class) per case (clipped), the paired quantity of the Wilcoxon test."""
    p = np.clip(np.asarray(prob)[np.arange(len(y_true)), np.asarray(y_true)], 1e-7, 1.0)
    return -np.log(p)


def wilcoxon_paired(loss_a: np.ndarray, loss_b: np.ndarray) -> dict[str, float]:
    """Two-sided Wilcoxon signed-rank test of paired per-case losses (a vs b); median difference a-b."""
    from scipy.stats import wilcoxon

    d = np.asarray(loss_a) - np.asarray(loss_b)
    if np.allclose(d, 0):
        return {"statistic": 0.0, "p_value": 1.0, "median_difference": 0.0}
    res = wilcoxon(loss_a, loss_b, alternative="two-sided")
    return {
        "statistic": float(res.statistic),
        "p_value": float(res.pvalue),
        "median_difference": float(np.median(d)),
    }


def calibration_error(y_true, prob: np.ndarray) -> float:
    """ECE (`engine.calibration.expected_calibration_error`, 10 equal-width bins): of the
    positive-class probability for two classes, of the top-class confidence vs being right for more."""
    from napari_histostain.engine.calibration import expected_calibration_error

    y, p = np.asarray(y_true), np.asarray(prob)
    if p.shape[1] == 2:
        return expected_calibration_error(p[:, 1], y)
    return expected_calibration_error(p.max(1), (p.argmax(1) == y).astype(float))


def calibration_report(
    y_true, prob: np.ndarray, *, n_bootstrap: int = N_BOOTSTRAP, seed: int = 0
) -> dict[str, Any]:
    """ECE [95% CI], mean log-loss [95% CI], the reliability-diagram points of probabilities and,
    for two classes, what a perfectly calibrated model with these probabilities would show as ECE
    on as many cases (`ece_if_calibrated`: the ECE's noise floor and the p-value of the observed
    ECE; on ~100-300 cases that floor is about 0.05)."""
    from napari_histostain.engine.calibration import ece_if_calibrated, reliability

    y, p = np.asarray(y_true), np.asarray(prob)
    ece = bootstrap_ci(calibration_error, y, p, n=n_bootstrap, seed=seed)
    ll = bootstrap_ci(
        lambda yy, pp: float(per_case_log_loss(yy, pp).mean()), y, p, n=n_bootstrap, seed=seed
    )
    conf, hit = (p[:, 1], y) if p.shape[1] == 2 else (p.max(1), (p.argmax(1) == y).astype(float))
    out = {
        "ece": ece[0],
        "ece_ci": [ece[1], ece[2]],
        "log_loss": ll[0],
        "log_loss_ci": [ll[1], ll[2]],
        "reliability": [list(t) for t in reliability(conf, hit)],
    }
    if p.shape[1] == 2:
        out["ece_if_calibrated"] = ece_if_calibrated(p[:, 1], ece[0], seed=seed)
    return out


def card_calibration(report: dict[str, Any]) -> dict[str, Any]:
    """The calibration entries of a model card's held-out metrics (from an evaluation report)."""
    out: dict[str, Any] = {}
    cal = report.get("HistoStainAlign", {}).get("calibration")
    if cal:
        out["temperature"] = cal["temperature"]
        out["ece"], out["ece_ci95"] = cal["ece"], cal["ece_ci"]
        out["log_loss"], out["log_loss_ci95"] = cal["log_loss"], cal["log_loss_ci"]
        if "ece_if_calibrated" in cal:
            out["ece_p_if_calibrated"] = cal["ece_if_calibrated"]["p_value"]
            out["ece_median_if_calibrated"] = cal["ece_if_calibrated"]["median"]
    base = report.get("CE-only baseline", {}).get("calibration")
    if base:
        out["ce_only_ece"], out["ce_only_log_loss"] = base["ece"], base["log_loss"]
    return out


def calibration_text(model_report: dict[str, Any], ci: bool = True) -> str:
    """', ECE x [lo, hi] (if calibrated: median m, p = q), log-loss y' of one model's report ('' without
    calibration)."""
    cal = model_report.get("calibration")
    if not cal:
        return ""
    ci_text = f" [{cal['ece_ci'][0]:.3f}, {cal['ece_ci'][1]:.3f}]" if ci else ""
    null = cal.get("ece_if_calibrated")
    if null:
        ci_text += f" (if calibrated: median {null['median']:.3f}, p = {null['p_value']:.2f})"
    return f", ECE {cal['ece']:.3f}{ci_text}, log-loss {cal['log_loss']:.3f}"


def alignment_scores(he: np.ndarray, ihc: np.ndarray) -> np.ndarray:
    """Per case: cosine(H&E_i, IHC_i) minus the mean cosine of H&E_i with the other cases' IHC."""
    a = he / np.linalg.norm(he, axis=1, keepdims=True).clip(1e-12)
    b = ihc / np.linalg.norm(ihc, axis=1, keepdims=True).clip(1e-12)
    sim = a @ b.T
    n = len(sim)
    own = np.diag(sim)
    others = (sim.sum(1) - own) / max(1, n - 1)
    return own - others


def alignment_report(
    he: np.ndarray, ihc: np.ndarray, *, n_bootstrap: int = N_BOOTSTRAP, seed: int = 0
) -> dict[str, Any]:
    """Mean paired-alignment score with a bootstrap 95% CI over cases, and top-1 retrieval accuracy."""
    s = alignment_scores(he, ihc)
    mean = bootstrap_ci(np.mean, s, n=n_bootstrap, seed=seed)
    a = he / np.linalg.norm(he, axis=1, keepdims=True).clip(1e-12)
    b = ihc / np.linalg.norm(ihc, axis=1, keepdims=True).clip(1e-12)
    top1 = float(np.mean((a @ b.T).argmax(1) == np.arange(len(a))))
    return {
        "alignment": mean[0],
        "alignment_ci": [mean[1], mean[2]],
        "retrieval_top1": top1,
        "chance_top1": 1.0 / max(1, len(a)),
    }


def linear_probe(
    train_x: np.ndarray,
    train_y: Sequence[int],
    test_x: np.ndarray,
    *,
    n_classes: int,
    seed: int = 0,
) -> np.ndarray:
    """Standardise + logistic regression (class_weight balanced, C by CV) on frozen embeddings;
    returns test class probabilities (n_test, n_classes)."""
    from sklearn.linear_model import LogisticRegressionCV
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    train_y = np.asarray(train_y)
    counts = np.bincount(train_y, minlength=n_classes)
    cv = int(max(2, min(5, counts[counts > 0].min())))
    clf = make_pipeline(
        StandardScaler(),
        LogisticRegressionCV(
            Cs=np.logspace(-4, 2, 13),
            cv=cv,
            class_weight="balanced",
            max_iter=5000,
            random_state=seed,
        ),
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # sklearn's future-change notices about fitted attributes
        clf.fit(train_x, train_y)
    prob = np.zeros((len(test_x), n_classes))
    prob[:, clf.classes_] = clf.predict_proba(test_x)
    return prob


# ---------------------------------------------------------------------------------- plots


def plot_roc(
    path: str | Path, y_true, curves: dict[str, np.ndarray], classes: Sequence[str], title: str
) -> Path:
    """ROC curve(s) of the positive class (binary) or each class one-vs-rest, one line per model."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.metrics import roc_curve

    from napari_histostain.io.atomic import atomic_path

    y_true = np.asarray(y_true)
    fig, ax = plt.subplots(figsize=(4.6, 4.4), dpi=110)
    for name, prob in curves.items():
        cols = [1] if prob.shape[1] == 2 else range(prob.shape[1])
        for c in cols:
            if len(np.unique(y_true == c)) < 2:
                continue
            fpr, tpr, _ = roc_curve(y_true == c, prob[:, c])
            auc = np.trapezoid(tpr, fpr)
            label = (
                f"{name} (AUC {auc:.3f})" if len(cols) == 1 else f"{name}: {classes[c]} ({auc:.2f})"
            )
            ax.plot(fpr, tpr, lw=1.6, label=label)
    ax.plot([0, 1], [0, 1], ls="--", c="grey", lw=0.8)
    ax.set(
        xlabel="false positive rate",
        ylabel="true positive rate",
        title=title,
        xlim=(0, 1),
        ylim=(0, 1.01),
    )
    ax.legend(loc="lower right", fontsize=7)
    fig.tight_layout()
    return _save(fig, path, atomic_path)


def plot_reliability(
    path: str | Path, y_true, curves: dict[str, np.ndarray], title: str, bins: int = 10
) -> Path:
    """Reliability diagram: per probability bin, the share positive (two classes; else: the share
    right) against the mean probability, one line per model (marker size: cases), with ECE."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from napari_histostain.engine.calibration import reliability
    from napari_histostain.io.atomic import atomic_path

    y = np.asarray(y_true)
    fig, ax = plt.subplots(figsize=(4.6, 4.4), dpi=110)
    ax.plot([0, 1], [0, 1], ls="--", c="grey", lw=0.8, label="perfectly calibrated")
    for name, prob in curves.items():
        p = np.asarray(prob)
        conf, hit = (p[:, 1], y) if p.shape[1] == 2 else (p.max(1), (p.argmax(1) == y))
        pts = np.array(reliability(conf, np.asarray(hit, float), bins))
        ece = calibration_error(y, p)
        line = ax.plot(pts[:, 0], pts[:, 1], lw=1.4, label=f"{name} (ECE {ece:.3f})")[0]
        ax.scatter(
            pts[:, 0], pts[:, 1], s=12 + 60 * pts[:, 2] / pts[:, 2].max(), color=line.get_color()
        )
    two = all(np.asarray(p).shape[1] == 2 for p in curves.values())
    ax.set(
        xlabel="predicted probability" + (" (positive class)" if two else " (top class)"),
        ylabel="observed share positive" if two else "observed share right",
        title=title,
        xlim=(0, 1),
        ylim=(0, 1.01),
    )
    ax.legend(loc="upper left", fontsize=7)
    fig.tight_layout()
    return _save(fig, path, atomic_path)


def plot_confusion(path: str | Path, y_true, y_pred, classes: Sequence[str], title: str) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.metrics import confusion_matrix

    from napari_histostain.io.atomic import atomic_path

    cm = confusion_matrix(y_true, y_pred, labels=range(len(classes)))
    fig, ax = plt.subplots(figsize=(3.2 + 0.5 * len(classes), 3.0 + 0.5 * len(classes)), dpi=110)
    ax.imshow(cm, cmap="Blues")
    for i in range(len(classes)):
        for j in range(len(classes)):
            ax.text(
                j,
                i,
                str(cm[i, j]),
                ha="center",
                va="center",
                color="white" if cm[i, j] > cm.max() / 2 else "black",
            )
    ax.set_xticks(range(len(classes)), classes, rotation=30, ha="right")
    ax.set_yticks(range(len(classes)), classes)
    ax.set(xlabel="predicted", ylabel="true", title=title)
    fig.tight_layout()
    return _save(fig, path, atomic_path)


def plot_embedding(
    path: str | Path, he: np.ndarray, ihc: np.ndarray, labels, classes: Sequence[str], title: str
) -> Path:
    """2-D PCA of H&E (dots) and IHC (crosses) slide embeddings, coloured by class, pairs joined."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from napari_histostain.io.atomic import atomic_path

    a = he / np.linalg.norm(he, axis=1, keepdims=True).clip(1e-12)
    b = ihc / np.linalg.norm(ihc, axis=1, keepdims=True).clip(1e-12)
    both = np.vstack([a, b])
    centred = both - both.mean(0)
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    xy = centred @ vt[:2].T
    n = len(a)
    labels = np.asarray(labels)
    fig, ax = plt.subplots(figsize=(5, 4.4), dpi=110)
    for i in range(n):
        ax.plot([xy[i, 0], xy[n + i, 0]], [xy[i, 1], xy[n + i, 1]], c="lightgrey", lw=0.5, zorder=0)
    colours = plt.get_cmap("tab10")
    for c, name in enumerate(classes):
        m = labels == c
        ax.scatter(xy[:n][m, 0], xy[:n][m, 1], s=14, color=colours(c), label=f"H&E {name}")
        ax.scatter(
            xy[n:][m, 0], xy[n:][m, 1], s=18, marker="x", color=colours(c), label=f"IHC {name}"
        )
    ax.set(xlabel="PC 1", ylabel="PC 2", title=title)
    ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    return _save(fig, path, atomic_path)


def _save(fig, path, atomic_path) -> Path:
    import matplotlib.pyplot as plt

    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
    return path
