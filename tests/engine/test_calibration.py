"""Temperature and Platt scaling recover an overconfident (or shifted) model's calibration and lower
its log-loss/ECE."""

from __future__ import annotations

import numpy as np
import pytest

from napari_histostain.engine.calibration import (
    calibrate,
    calibration_of,
    expected_calibration_error,
    fit_calibration,
    fit_temperature,
    log_loss,
    reliability,
    softmax,
)
from napari_histostain.engine.model_files import ModelConfig, ModelFileError, seeded_model


def _cases(n, t_true, seed=0, b_true=0.0):
    """Two-class cases whose true probability is sigmoid(margin / t_true + b_true)."""
    rng = np.random.default_rng(seed)
    margin = rng.normal(0, 4, n)
    logits = np.stack([np.zeros(n), margin], 1)
    y = (rng.random(n) < softmax(logits, t_true, [0.0, b_true])[:, 1]).astype(int)
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


def test_platt_recovers_a_shift_that_a_temperature_cannot():
    """The model's margins are right up to a scale and an offset (its rate of positives is off)."""
    logits, y = _cases(4000, 2.0, b_true=-1.5)
    platt = fit_calibration(logits, y, "platt")
    assert platt["method"] == "platt"
    assert 1.7 < platt["temperature"] < 2.3 and -1.8 < platt["bias"] < -1.2
    temp = fit_calibration(logits, y, "temperature")
    assert temp["bias"] == 0.0
    test_logits, test_y = _cases(4000, 2.0, seed=1, b_true=-1.5)
    p_platt, p_temp = calibrate(test_logits, platt), calibrate(test_logits, temp)
    assert log_loss(p_platt, test_y) < log_loss(p_temp, test_y)
    assert expected_calibration_error(p_platt[:, 1], test_y) < 0.03
    assert expected_calibration_error(p_temp[:, 1], test_y) > expected_calibration_error(
        p_platt[:, 1], test_y
    )
    # the bias is on the positive class, whichever it is
    flipped = fit_calibration(logits[:, ::-1], 1 - y, "platt", positive_class=0)
    assert flipped["bias"] == pytest.approx(platt["bias"], abs=0.01)
    with pytest.raises(ValueError, match="unknown calibration"):
        fit_calibration(logits, y, "isotonic")


def test_calibration_is_stored_and_checked():
    _, cfg = seeded_model("ki67")
    assert calibration_of(cfg) == {}
    assert np.allclose(calibrate(np.array([0.0, 1.0]), calibration_of(cfg)), softmax([0.0, 1.0]))
    cfg.calibration = {"method": "platt", "temperature": 2.5, "bias": -0.5, "cases": 9}
    back = calibration_of(ModelConfig.from_dict(cfg.to_dict()))
    assert back["temperature"] == 2.5 and back["bias"] == -0.5
    assert calibrate(np.array([0.0, 1.0]), back)[1] == pytest.approx(
        1 / (1 + np.exp(-(1.0 / 2.5 - 0.5)))
    )
    with pytest.raises(ModelFileError, match="temperature"):
        ModelConfig.from_dict({**cfg.to_dict(), "calibration": {"temperature": -1}})
    with pytest.raises(ModelFileError, match="bias"):
        ModelConfig.from_dict({**cfg.to_dict(), "calibration": {"temperature": 1, "bias": "x"}})


def test_auto_picks_platt_for_a_shift_and_temperature_when_none_is_needed():
    from napari_histostain.engine.calibration import cross_validated_log_loss

    shifted, y = _cases(600, 2.0, b_true=-1.5)
    auto = fit_calibration(shifted, y, "auto")
    assert auto["method"] == "platt" and auto["bias"] < -1.0
    assert auto["cv_log_loss"]["platt"] < auto["cv_log_loss"]["temperature"]
    assert auto["cv_log_loss"]["platt"] == pytest.approx(
        cross_validated_log_loss(shifted, y, "platt"), abs=1e-4
    )
    plain, y2 = _cases(600, 2.0, seed=3)
    assert fit_calibration(plain, y2, "auto")["method"] == "temperature"  # a bias only adds noise
    with pytest.raises(ValueError, match="unknown calibration method"):
        fit_calibration(plain, y2, "isotonic")


def test_ece_of_a_calibrated_model_has_a_floor_that_the_check_accounts_for():
    from napari_histostain.engine.calibration import ece_if_calibrated

    rng = np.random.default_rng(0)
    p = rng.uniform(0.05, 0.95, 300)
    y = rng.random(300) < p  # perfectly calibrated, 300 cases
    ece = expected_calibration_error(p, y)
    null = ece_if_calibrated(p, ece, draws=500)
    assert 0.03 < null["median"] < 0.08 and null["p95"] > null["median"]  # not near 0 at n = 300
    assert null["p_value"] > 0.05  # consistent with being calibrated
    assert 0.0 < null["share_at_most_bound"] < 1.0  # an "ECE <= 0.05" check is a coin toss here
    assert ece_if_calibrated(p, ece, draws=200, bound=1.0)["share_at_most_bound"] == 1.0
    biased = ece_if_calibrated(p, expected_calibration_error(p, rng.random(300) < p * 0.6), 500)
    assert biased["p_value"] < 0.01  # a model 40 % too confident about positives is caught
