"""The domain reference: fitted on training-domain tiles, it flags shifted tiles and slides at about
the stated rate, and survives the model file."""

from __future__ import annotations

import numpy as np
import pytest

from napari_histostain.engine.domain import (
    DomainError,
    DomainReference,
    fit_reference,
    reference_of,
    wilson_interval,
)
from napari_histostain.engine.model_files import load_model_file, save_model_file, seeded_model


def _domain(rng, n_slides, tiles=30, dim=32, shift=0.0):
    """Slides of correlated Gaussian tiles (a low-rank signal plus noise), optionally shifted."""
    basis = np.random.default_rng(123).normal(size=(6, dim))
    return [
        rng.normal(size=(tiles, 6)) @ basis + 0.3 * rng.normal(size=(tiles, dim)) + shift
        for _ in range(n_slides)
    ]


@pytest.fixture(scope="module")
def ref():
    rng = np.random.default_rng(0)
    fit = np.concatenate(_domain(rng, 40))
    return fit_reference(fit, _domain(rng, 60), dims=8, fitted_on="gaussians")


def test_scores_are_percentiles_of_held_out_tiles(ref):
    rng = np.random.default_rng(1)
    scores = ref.score(np.concatenate(_domain(rng, 40)))
    assert scores.min() >= 0 and scores.max() <= 100
    # fresh tiles from the same domain: about 1 % above the 99th percentile
    assert 0.002 < (scores > ref.tile_cut).mean() < 0.03
    assert 40 < np.median(scores) < 60


def test_fresh_slides_are_rarely_flagged_and_shifted_ones_always(ref):
    rng = np.random.default_rng(2)
    fresh = [ref.verdict(ref.score(s))["in_domain"] for s in _domain(rng, 200)]
    assert np.mean(fresh) >= 0.95
    shifted = [ref.verdict(ref.score(s)) for s in _domain(rng, 20, shift=1.0)]
    assert not any(v["in_domain"] for v in shifted)
    assert all(v["in_domain_tiles"] < v["tiles"] / 2 for v in shifted)


def test_verdict_counts_tiles_and_needs_enough_in_domain_tiles(ref):
    v = ref.verdict(np.array([10.0] * 5 + [100.0] * 25))
    assert v == {
        "in_domain": False,
        "score": round(25 / 30, 4),
        "threshold": round(ref.max_out_share, 4),
        "tiles": 30,
        "in_domain_tiles": 5,
        "mean_score": 85.0,
        "mean_threshold": round(ref.max_mean_score, 2),
    }
    assert ref.verdict(np.array([10.0] * 3))["in_domain"]  # few tiles: too_few_tiles, not domain


def test_a_mild_shift_of_every_tile_is_caught_by_the_mean_score(ref):
    """Every tile a little farther than usual: none crosses the tile cut, the mean does."""
    assert ref.max_mean_score is not None and ref.max_mean_score >= 75.0
    mild = np.full(40, min(ref.tile_cut - 1.0, ref.max_mean_score + 5.0))
    v = ref.verdict(mild)
    assert v["in_domain_tiles"] == 40 and v["score"] == 0.0
    assert v["in_domain"] is False and v["mean_score"] > v["mean_threshold"]
    assert ref.verdict(np.full(40, 50.0))["in_domain"] is True
    # a reference made before the mean rule (no max_mean_score) keeps the share rule only
    old = DomainReference.from_config(
        {k: v for k, v in ref.to_config()[0].items() if k != "max_mean_score"}, ref.to_config()[1]
    )
    assert old is not None and old.max_mean_score is None
    assert old.verdict(mild)["in_domain"] is True and "mean_score" not in old.verdict(mild)


def test_reference_round_trips_through_the_model_file(ref, tmp_path):
    net, cfg = seeded_model("p53", in_dim=32)
    cfg.domain, cfg.domain_arrays = ref.to_config()
    path = save_model_file(tmp_path / "m.pt", net, cfg)
    _, back = load_model_file(path)
    again = reference_of(back)
    x = np.concatenate(_domain(np.random.default_rng(3), 2))
    np.testing.assert_allclose(again.score(x), ref.score(x), atol=1e-3)
    assert again.max_mean_score == pytest.approx(ref.max_mean_score)
    assert back.domain["fitted_on"] == "gaussians" and "mean" not in back.to_dict()["domain"]
    assert reference_of(seeded_model("p53")[1]) is None  # older files: no reference


def test_wrong_size_and_too_little_data_are_clear_errors(ref):
    with pytest.raises(DomainError, match="tile encoder"):
        ref.score(np.zeros((3, 5)))
    with pytest.raises(DomainError, match="larger cohort"):
        fit_reference(np.zeros((10, 32)), [np.zeros((3, 32))] * 2)
    with pytest.raises(DomainError, match="add-domain"):
        DomainReference.from_config({"method": "knn"}, {})


def test_wilson_interval():
    lo, hi = wilson_interval(0, 20)
    assert lo == 0 and 0.15 < hi < 0.17
    lo, hi = wilson_interval(5, 10)
    assert lo < 0.5 < hi and abs((lo + hi) / 2 - 0.5) < 1e-9


def test_models_out_of_domain_for_the_same_reason_are_named_in_one_message():
    from napari_histostain.engine.predict import out_of_domain_messages

    far = {"in_domain": False, "tiles": 17, "in_domain_tiles": 0, "score": 1.0, "threshold": 0.2}
    near = {**far, "in_domain_tiles": 15, "score": 2 / 17, "mean_score": 90, "mean_threshold": 80}
    both = out_of_domain_messages({"p53": far, "pdl1": far, "ki67": dict(far)})
    assert both == [
        "The P53, PD-L1 and Ki-67 models: 17 of 17 tiles (100%) do not look like their training "
        "tissue (at most 20% may): the slide is out of their domain."
    ]
    two = out_of_domain_messages({"p53": far, "ki67": near, "pdl1": {**far, "in_domain": True}})
    assert two[0].startswith("The P53 model: 17 of 17 tiles") and "its domain" in two[0]
    assert two[1].startswith("The Ki-67 model: the slide's tiles are on average farther")
