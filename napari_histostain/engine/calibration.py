"""Calibrated probabilities: temperature (or Platt) scaling of slide logits, ECE and log-loss.

A model's slide logits z give probabilities softmax(z / T + b): the temperature T > 0 and, for
Platt scaling, a bias b on the positive class's logit (for two classes: sigmoid(margin / T + b),
Platt's logistic fit on the margin). They are fitted on held-out logits by minimising the log-loss
(`fit_calibration`) and stored in the model file (`ModelConfig.calibration`). T = 1 and b = 0
leave the model as it is; T > 1 softens overconfident calls; b moves the probabilities to the
held-out cases' rate of positives.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

METHOD = "temperature"
#: calibration methods: temperature (T) or Platt (T and a positive-class bias)
METHODS = ("temperature", "platt")
#: choose between `METHODS` by cross-validated log-loss on the calibration cases
AUTO = "auto"
#: folds and repeats of that cross-validation
CV_FOLDS, CV_REPEATS = 10, 20
#: the temperatures searched (log scale)
T_RANGE = (0.05, 20.0)
#: the largest bias searched (log-odds)
B_RANGE = 10.0
#: bins of the expected calibration error
ECE_BINS = 10


def softmax(logits: np.ndarray, temperature: float = 1.0, bias: Any = None) -> np.ndarray:
    """Row-wise softmax of (N, C) (or (C,)) logits divided by `temperature`, plus `bias` (C,)."""
    z = np.asarray(logits, np.float64) / float(temperature)
    if bias is not None:
        z = z + np.asarray(bias, np.float64)
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def log_loss(probs: np.ndarray, labels: np.ndarray, eps: float = 1e-12) -> float:
    """Mean negative log-likelihood of integer `labels` under (N, C) class probabilities."""
    p = np.asarray(probs, np.float64)
    y = np.asarray(labels, np.int64)
    return float(-np.log(np.clip(p[np.arange(len(y)), y], eps, 1.0)).mean())


def fit_temperature(logits: np.ndarray, labels: np.ndarray) -> float:
    """The temperature minimising the log-loss of (N, C) held-out `logits` on `labels`."""
    from scipy.optimize import minimize_scalar

    z = np.asarray(logits, np.float64)
    y = np.asarray(labels, np.int64)
    if z.ndim != 2 or len(z) != len(y) or len(y) < 2:
        raise ValueError("temperature scaling needs (N, C) logits and N >= 2 labels")
    lo, hi = (math.log(v) for v in T_RANGE)
    res = minimize_scalar(
        lambda lt: log_loss(softmax(z, math.exp(lt)), y), bounds=(lo, hi), method="bounded"
    )
    return float(math.exp(res.x))


def fit_platt(
    logits: np.ndarray, labels: np.ndarray, positive_class: int = 1
) -> tuple[float, float]:
    """(temperature, bias) minimising the log-loss of softmax(z / T + b e_positive) on held-out
    (N, C) `logits` and `labels` (Platt scaling on the positive class's logit)."""
    from scipy.optimize import minimize

    z = np.asarray(logits, np.float64)
    y = np.asarray(labels, np.int64)
    if z.ndim != 2 or len(z) != len(y) or len(y) < 2:
        raise ValueError("Platt scaling needs (N, C) logits and N >= 2 labels")
    lo, hi = (math.log(v) for v in T_RANGE)

    def loss(v: np.ndarray) -> float:
        return log_loss(softmax(z, math.exp(v[0]), _bias(z.shape[1], positive_class, v[1])), y)

    start = np.array([math.log(fit_temperature(z, y)), 0.0])
    res = minimize(loss, start, method="L-BFGS-B", bounds=[(lo, hi), (-B_RANGE, B_RANGE)])
    return float(math.exp(res.x[0])), float(res.x[1])


def _bias(n_classes: int, positive_class: int, b: float) -> np.ndarray:
    out = np.zeros(n_classes)
    out[positive_class] = b
    return out


def fit_calibration(
    logits: np.ndarray, labels: np.ndarray, method: str = METHOD, positive_class: int = 1
) -> dict:
    """{"method", "temperature", "bias"} fitted on held-out `logits` and `labels` (`METHODS`)."""
    if method not in (*METHODS, AUTO):
        raise ValueError(f"unknown calibration method {method!r}; use one of {(*METHODS, AUTO)}")
    if method == AUTO:
        scores = {m: cross_validated_log_loss(logits, labels, m, positive_class) for m in METHODS}
        chosen = min(METHODS, key=lambda m: scores[m])
        return {
            **fit_calibration(logits, labels, chosen, positive_class),
            "chosen_by": f"{CV_FOLDS}-fold cross-validated log-loss ({CV_REPEATS} repeats) on "
            f"{len(labels)} cases",
            "cv_log_loss": {m: round(v, 4) for m, v in scores.items()},
        }
    if method == "platt":
        t, b = fit_platt(logits, labels, positive_class)
    else:
        t, b = fit_temperature(logits, labels), 0.0
    return {"method": method, "temperature": t, "bias": b}


def cross_validated_log_loss(
    logits: np.ndarray, labels: np.ndarray, method: str, positive_class: int = 1, seed: int = 0
) -> float:
    """Mean held-out log-loss of `method` fitted on the other folds, over `CV_REPEATS` seeded
    `CV_FOLDS`-fold splits of (N, C) `logits` and `labels`."""
    z, y = np.asarray(logits, np.float64), np.asarray(labels, np.int64)
    folds = min(CV_FOLDS, len(y))
    if folds < 2:
        raise ValueError("choosing a calibration needs at least 2 cases")
    losses = []
    for r in range(CV_REPEATS):
        order = np.random.default_rng(seed + r).permutation(len(y))
        probs = np.zeros(z.shape)
        for k in range(folds):
            test = order[k::folds]
            train = np.setdiff1d(order, test)
            probs[test] = calibrate(
                z[test], fit_calibration(z[train], y[train], method, positive_class), positive_class
            )
        losses.append(log_loss(probs, y))
    return float(np.mean(losses))


def ece_if_calibrated(
    prob_positive: np.ndarray,
    observed: float,
    draws: int = 2000,
    seed: int = 0,
    bound: float = 0.05,
) -> dict:
    """What a perfectly calibrated model with these probabilities would show as ECE on as many
    cases (labels drawn from the probabilities themselves; consistency resampling, Broecker and
    Smith 2007): the median and 95th percentile of its ECE, the share of draws at least as large
    as `observed` (a p-value of "the model is calibrated") and the share at or below `bound` (how
    often such a model would pass an "ECE <= bound" check)."""
    p = np.asarray(prob_positive, np.float64)
    rng = np.random.default_rng(seed)
    null = np.array([expected_calibration_error(p, rng.random(len(p)) < p) for _ in range(draws)])
    return {
        "median": float(np.median(null)),
        "p95": float(np.quantile(null, 0.95)),
        "p_value": float((null >= observed).mean()),
        "bound": float(bound),
        "share_at_most_bound": float((null <= bound).mean()),
    }


def calibrate(
    logits: np.ndarray, calibration: Mapping | None, positive_class: int = 1
) -> np.ndarray:
    """Class probabilities of (N, C) (or (C,)) logits under a stored `calibration` dict (None or
    {}: uncalibrated)."""
    cal = calibration or {}
    z = np.asarray(logits, np.float64)
    bias = float(cal.get("bias", 0.0) or 0.0)
    return softmax(
        z,
        float(cal.get("temperature", 1.0)),
        _bias(z.shape[-1], positive_class, bias) if bias else None,
    )


def expected_calibration_error(
    prob_positive: np.ndarray, labels: np.ndarray, bins: int = ECE_BINS
) -> float:
    """ECE of binary probabilities: |mean label - mean probability| per equal-width bin, weighted
    by the bin's share of cases."""
    p = np.asarray(prob_positive, np.float64)
    y = np.asarray(labels, np.float64)
    if not len(p):
        return math.nan
    which = np.minimum((p * bins).astype(int), bins - 1)
    err = 0.0
    for b in range(bins):
        m = which == b
        if m.any():
            err += m.mean() * abs(y[m].mean() - p[m].mean())
    return float(err)


def reliability(prob_positive: np.ndarray, labels: np.ndarray, bins: int = ECE_BINS) -> list:
    """Reliability-diagram points: per non-empty equal-width bin, (mean probability, share
    positive, cases)."""
    p = np.asarray(prob_positive, np.float64)
    y = np.asarray(labels, np.float64)
    which = np.minimum((p * bins).astype(int), bins - 1)
    return [
        (float(p[which == b].mean()), float(y[which == b].mean()), int((which == b).sum()))
        for b in range(bins)
        if (which == b).any()
    ]


def calibration_summary(fitted: Mapping, fitted_on: str, cases: int) -> dict:
    """The `ModelConfig.calibration` dict of a `fit_calibration` result."""
    out = {
        "method": str(fitted.get("method", METHOD)),
        "temperature": float(fitted["temperature"]),
        "fitted_on": fitted_on,
        "cases": int(cases),
    }
    if fitted.get("bias"):
        out["bias"] = float(fitted["bias"])
    for key in ("chosen_by", "cv_log_loss"):
        if key in fitted:
            out[key] = fitted[key]
    return out


def calibration_of(cfg) -> dict:
    """The calibration stored in a `ModelConfig` ({}: not calibrated)."""
    return dict(getattr(cfg, "calibration", None) or {})
