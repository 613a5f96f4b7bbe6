"""The viewer's tiles-on-demand predictor follows the one no-call policy: tiles out of the model's
domain are marked (the grey overlay), left out of the "tiles seen" call, and a view of too few or
out-of-domain tiles gets no call."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from napari_histostain.engine.predict import predict_slide
from napari_histostain.engine.region_predictor import RegionPredictor


def _stream(rp: RegionPredictor, indices, batch: int = 8) -> None:
    """Compute and store `indices` as the viewer does, batch by batch."""
    for start in range(0, len(indices), batch):
        part = np.asarray(indices[start : start + batch])
        rp.store(part, rp.compute(part))


@pytest.fixture(scope="module")
def simulated_he(tmp_path_factory):
    """A simulated H&E slide like the bundled models' training slides (in their domain)."""
    from napari_histostain import simulate

    folder = tmp_path_factory.mktemp("sim")
    return simulate.simulate_case(folder, ["ki67"], case_id="rp", size_um=1344, seed=77).he_path


def test_out_of_domain_tiles_are_marked_and_the_view_gets_no_call(synthetic_slide):
    """The synthetic test slide is nothing like simulated H&E: every tile is out of domain."""
    rp = RegionPredictor(synthetic_slide, ["ki67"])
    try:
        _stream(rp, np.arange(len(rp.grid)))
        mm = rp.maps.markers["ki67"]
        assert mm.in_domain is not None and (mm.in_domain == 0).all()
        assert (rp.maps.out_of_domain() == 1).all()
        heat = rp.maps.out_of_domain_heatmap()
        assert np.nansum(heat) == len(rp.grid)
        assert mm.call_status == "no_call" and "out_of_domain" in mm.no_call_reason
        assert mm.label == ""
        # the same verdict as the whole-slide prediction
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            whole = predict_slide(synthetic_slide, ("ki67",))
        assert whole.markers["ki67"].call_status == "no_call"
        assert np.array_equal(whole.markers["ki67"].in_domain, mm.in_domain == 1)
        # forced: a call with the reason kept
        rp.force_call = True
        rp.store(np.arange(2), rp.compute(np.arange(2)))
        assert mm.call_status == "forced" and "out_of_domain" in mm.no_call_reason
        assert mm.label in ("low", "high")
    finally:
        rp.close()


def test_in_domain_view_is_called_once_enough_tiles_are_seen(simulated_he):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        whole = predict_slide(simulated_he, ("ki67",))
    assert whole.markers["ki67"].call_status == "call"
    rp = RegionPredictor(simulated_he, ["ki67"])
    try:
        order = np.arange(len(rp.grid))
        _stream(rp, order[:3])
        mm = rp.maps.markers["ki67"]
        assert mm.call_status == "no_call" and mm.no_call_reason == "too_few_tiles"
        _stream(rp, order[3:])
        assert mm.call_status == "call" and mm.no_call_reason is None and mm.label
        # every tile seen: the calibrated probability of the whole-slide call, in-domain tiles only
        assert mm.probability == pytest.approx(whole.markers["ki67"].probability, rel=1e-5)
        assert np.array_equal(mm.in_domain == 1, whole.markers["ki67"].in_domain)
    finally:
        rp.close()


def test_a_finished_prediction_brings_its_domain_flags(synthetic_slide):
    from napari_histostain.results.maps import PredictionMaps

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pred = predict_slide(synthetic_slide, ("ki67",))
    maps = PredictionMaps.from_prediction(pred)
    assert maps.has_domain()
    assert (maps.markers["ki67"].kept() == pred.markers["ki67"].in_domain).all()
    assert np.nansum(maps.out_of_domain_heatmap()) == len(pred.grid)
