"""Calibration metrics of `evaluate`: ECE and log-loss with bootstrap CIs, reliability diagram."""

from __future__ import annotations

import numpy as np
import pytest

from napari_histostain.training import evaluate as ev


def _cases(n=600, seed=0, sharpen=1.0):
    """Binary cases whose labels are drawn from p; `sharpen` > 1 makes the stated p overconfident."""
    rng = np.random.default_rng(seed)
    p = rng.uniform(0.02, 0.98, n)
    y = (rng.random(n) < p).astype(int)
    z = np.log(p / (1 - p)) * sharpen
    q = 1 / (1 + np.exp(-z))
    return y, np.stack([1 - q, q], 1)


def test_ece_small_when_calibrated_large_when_overconfident():
    y, good = _cases()
    _, bad = _cases(sharpen=4.0)
    rep_good = ev.calibration_report(y, good, n_bootstrap=200)
    rep_bad = ev.calibration_report(y, bad, n_bootstrap=200)
    assert rep_good["ece"] < 0.05 < rep_bad["ece"]
    assert rep_good["ece_ci"][0] <= rep_good["ece"] <= rep_good["ece_ci"][1]
    assert rep_bad["log_loss"] > rep_good["log_loss"]
    assert rep_good["log_loss"] == pytest.approx(ev.per_case_log_loss(y, good).mean())
    assert sum(n for _, _, n in rep_good["reliability"]) == len(y)
    # beside the ECE: what a calibrated model would show on as many cases, and the p-value
    assert 0.0 < rep_good["ece_if_calibrated"]["median"] < 0.06
    assert rep_good["ece_if_calibrated"]["p_value"] > 0.05
    assert rep_bad["ece_if_calibrated"]["p_value"] < 0.01
    assert "if calibrated: median" in ev.calibration_text({"calibration": rep_good})


def test_ece_of_more_classes_uses_top_class_confidence():
    y = np.array([0, 1, 2, 2])
    p = np.array([[0.9, 0.05, 0.05], [0.1, 0.8, 0.1], [0.6, 0.2, 0.2], [0.2, 0.2, 0.6]])
    # top-class confidences 0.9 (right), 0.8 (right), 0.6 (wrong), 0.6 (right)
    want = 0.25 * abs(1 - 0.9) + 0.25 * abs(1 - 0.8) + 0.5 * abs(0.5 - 0.6)
    assert ev.calibration_error(y, p) == pytest.approx(want)
    assert "ece_if_calibrated" not in ev.calibration_report(y, p, n_bootstrap=20)


def test_reliability_diagram_png(tmp_path):
    y, good = _cases()
    _, bad = _cases(sharpen=4.0)
    path = ev.plot_reliability(tmp_path / "rel.png", y, {"a": good, "b": bad}, "test")
    from PIL import Image

    with Image.open(path) as im:
        assert im.size[0] > 300 and im.size[1] > 300
