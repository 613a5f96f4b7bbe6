"""Calibrated probabilities: temperature scaling of slide logits, ECE and log-loss.

A model's slide logits z give probabilities softmax(z / T); the temperature T > 0 is fitted on
held-out (validation) logits by minimising the log-loss (`fit_temperature`) and stored in the model
file (`ModelConfig.calibration`). T = 1 leaves the model as it is; T > 1 softens overconfident calls.
"""

from __future__ import annotations

import math

import numpy as np

METHOD = "temperature"
#: the temperatures searched (log scale)
T_RANGE = (0.05, 20.0)
#: bins of the expected calibration error
ECE_BINS = 10


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """Row-wise softmax of (N, C) (or (C,)) logits divided by `temperature`."""
    z = np.asarray(logits, np.float64) / float(temperature)
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


def calibration_summary(temperature: float, fitted_on: str, cases: int) -> dict:
    """The `ModelConfig.calibration` dict."""
    return {
        "method": METHOD,
        "temperature": float(temperature),
        "fitted_on": fitted_on,
        "cases": int(cases),
    }


def temperature_of(cfg) -> float:
    """The temperature stored in a `ModelConfig` (1.0: not calibrated)."""
    cal = getattr(cfg, "calibration", None) or {}
    return float(cal.get("temperature", 1.0))
