"""Temperature scaling recovers an overconfident model's temperature and lowers its log-loss/ECE."""

from __future__ import annotations

import numpy as np
import pytest

from napari_histostain.engine.calibration import (
    expected_calibration_error,
    fit_temperature,
    log_loss,
    reliability,
    softmax,
    temperature_of,
)
from napari_histostain.engine.model_files import ModelConfig, ModelFileError, seeded_model


def _cases(n, t_true, seed=0):
    """Two-class cases whose true probability is softmax(logits / t_true)."""
    rng = np.random.default_rng(seed)
    margin = rng.normal(0, 4, n)
    logits = np.stack([np.zeros(n), margin], 1)
    y = (rng.random(n) < softmax(logits, t_true)[:, 1]).astype(int)
    return logits, y


def test_fit_recovers_the_temperature_and_improves_calibration():
    logits, y = _cases(4000, 3.0)
    t = fit_temperature(logits, y)
    assert 2.6 < t < 3.4
    test_logits, test_y = _cases(4000, 3.0, seed=1)
    before, after = softmax(test_logits), softmax(test_logits, t)
    assert log_loss(after, test_y) < log_loss(before, test_y)
    assert expected_calibration_error(after[:, 1], test_y) < 0.03
    assert expected_calibration_error(before[:, 1], test_y) > 0.08


def test_ece_and_reliability_of_known_cases():
    p = np.array([0.1, 0.1, 0.9, 0.9])
    y = np.array([0, 0, 1, 1])
    assert expected_calibration_error(p, y) == pytest.approx(0.1)
    assert reliability(p, y) == [(0.1, 0.0, 2), (0.9, 1.0, 2)]
    assert log_loss(np.stack([1 - p, p], 1), y) == pytest.approx(-np.log(0.9))


def test_temperature_is_stored_and_checked():
    _, cfg = seeded_model("ki67")
    assert temperature_of(cfg) == 1.0
    cfg.calibration = {"method": "temperature", "temperature": 2.5, "fitted_on": "x", "cases": 9}
    assert temperature_of(ModelConfig.from_dict(cfg.to_dict())) == 2.5
    with pytest.raises(ModelFileError, match="temperature"):
        ModelConfig.from_dict({**cfg.to_dict(), "calibration": {"temperature": -1}})
