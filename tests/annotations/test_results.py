"""Per-region results: the slide call pooled over a region's tiles equals predicting those tiles."""

from __future__ import annotations

import numpy as np
import pytest
import shapely
from tiny_models import write_tiny_kit

from napari_histostain.annotations import Annotation, regions_on_grid
from napari_histostain.annotations.results import (
    maps_region_results,
    prediction_region_results,
)
from napari_histostain.engine.predict import PredictOptions, predict_slide
from napari_histostain.results.maps import PredictionMaps

MARKERS = ("p53", "ki67")


@pytest.fixture(scope="module")
def options(tmp_path_factory):
    kit = write_tiny_kit(tmp_path_factory.mktemp("kit"), MARKERS)
    return PredictOptions(models=kit["models"], encoder=str(kit["encoder"]), batch_size=8)


@pytest.fixture(scope="module")
def whole(synth_slide, options):
    return predict_slide(synth_slide, MARKERS, options)


def _pooled(mp, idx) -> float:
    """The slide model's pooling written out: softmax of scores, weighted tile logits."""
    s = mp.scores[idx]
    a = np.exp(s - s.max())
    a /= a.sum()
    logits = a @ mp.tile_logits[idx]
    e = np.exp(logits - logits.max())
    return float(e[mp.positive_class] / e.sum())


def test_region_call_equals_predicting_only_its_tiles(synth_slide, options, whole):
    grid = whole.grid
    t = grid.tile_px0
    box = (0, 0, int(3 * t), synth_slide.dimensions[1])  # the first three tile columns
    ann = Annotation(shapely.box(box[0], box[1], box[0] + box[2], box[1] + box[3]), "Tumor")
    regions = regions_on_grid([ann], grid)
    idx = regions[0].indices
    assert 0 < len(idx) < len(grid)
    assert set(grid.rowcol[idx, 1]) <= {0, 1, 2}
    part = predict_slide(synth_slide, MARKERS, options, region=box)  # reads and embeds again
    assert sorted(map(tuple, part.grid.rowcol)) == sorted(map(tuple, grid.rowcol[idx]))
    results = prediction_region_results(whole, regions)
    assert [r["key"] for r in results] == ["all", "class:Tumor", ann.id]
    for r in results:
        assert r["n_tiles"] == len(idx)
        for m in MARKERS:
            got = r["markers"][m]
            assert got["tiles_computed"] == len(idx)
            assert got["probability"] == pytest.approx(part.markers[m].probability, rel=1e-6)
            assert got["logit"] == pytest.approx(part.markers[m].logit, rel=1e-6, abs=1e-9)
            assert got["label"] == part.markers[m].label
            assert got["mean_positivity"] == pytest.approx(part.markers[m].positivity.mean(), 1e-6)
            pm = PredictionMaps.from_prediction(part)
            assert got["positive_fraction"] == pytest.approx(pm.positive_fraction(m), abs=1e-9)
    # the whole slide's call differs from the region's (else the test proves nothing)
    assert whole.markers["p53"].probability != pytest.approx(
        results[0]["markers"]["p53"]["probability"], abs=1e-6
    )


def test_exclusion_removes_tiles_from_the_pooled_call(whole):
    grid = whole.grid
    t = grid.tile_px0
    tumour = Annotation(shapely.box(0, 0, 4 * t, 4 * t), "Tumor")
    without = regions_on_grid([tumour], grid)[0].indices
    i = int(without[len(without) // 2])
    r, c = (int(v) for v in grid.rowcol[i])
    hole = Annotation(
        shapely.box(c * t + 10, r * t + 10, (c + 1) * t - 10, (r + 1) * t - 10), "Exclude"
    )
    with_hole = regions_on_grid([tumour, hole], grid)[0].indices
    assert sorted(set(without.tolist()) - set(with_hole.tolist())) == [i]
    assert set(with_hole.tolist()) < set(without.tolist())
    (res,) = prediction_region_results(whole, regions_on_grid([tumour, hole], grid))[:1]
    for m in MARKERS:
        assert res["markers"][m]["probability"] == pytest.approx(
            _pooled(whole.markers[m], with_hole), rel=1e-12
        )


def test_widget_maps_give_the_same_numbers(whole):
    grid = whole.grid
    t = grid.tile_px0
    anns = [
        Annotation(shapely.box(0, 0, 3 * t, 5 * t), "Tumor"),
        Annotation(shapely.box(3 * t, 0, 7 * t, 5 * t), "Stroma"),
        Annotation(shapely.box(100, 100, 200, 200), "Tumor", name="no tile centre inside"),
    ]
    regions = regions_on_grid(anns, grid)
    headless = prediction_region_results(whole, regions)
    maps = PredictionMaps.from_prediction(whole)
    assert maps_region_results(maps, regions) == headless
    empty = headless[-1]
    assert empty["n_tiles"] == 0 and empty["markers"]["p53"]["probability"] is None
    # every tile in "all": the whole slide's call
    assert len(headless[0]["markers"]) == 2
    assert headless[0]["n_tiles"] == len(grid)
    for m in MARKERS:
        assert headless[0]["markers"][m]["probability"] == pytest.approx(
            whole.markers[m].probability, rel=1e-12
        )
    # a widget that has computed only some tiles pools those (tiles streamed so far)
    partial = PredictionMaps.from_grid(grid, MARKERS)
    half = np.arange(len(grid))[::2]
    for m in MARKERS:
        mp = whole.markers[m]
        partial.update(m, half, mp.positivity[half], None, mp.scores[half], mp.tile_logits[half])
    res = maps_region_results(partial, regions)[0]["markers"]["p53"]
    assert res["tiles_computed"] == len(half)
    assert res["probability"] == pytest.approx(_pooled(whole.markers["p53"], half), rel=1e-12)


def test_viewer_predictor_maps_give_the_headless_numbers(synthetic_slide):
    """The widget's tiles (RegionPredictor, computed on demand with the bundled model) give the
    per-region results of `histostain predict --annotations`."""
    from napari_histostain.engine.region_predictor import RegionPredictor

    pred = predict_slide(synthetic_slide, ["ki67"])
    rp = RegionPredictor(synthetic_slide, ["ki67"])
    try:
        assert np.array_equal(rp.grid.rowcol, pred.grid.rowcol)
        t = rp.grid.tile_px0
        anns = [
            Annotation(shapely.box(0, 0, 3 * t, 5 * t), "Tumor"),
            Annotation(shapely.box(t, t, 2 * t, 2 * t), "Exclude"),
        ]
        regions = regions_on_grid(anns, pred.grid)
        headless = prediction_region_results(pred, regions)
        everything = np.arange(len(rp.grid))
        for start in range(0, len(everything), 8):  # as the viewer streams, batch by batch
            batch = everything[start : start + 8]
            rp.store(batch, rp.compute(batch))
        viewer = maps_region_results(rp.maps, regions)
        for h, v in zip(headless, viewer, strict=True):
            assert h["n_tiles"] == v["n_tiles"] > 0
            a, b = h["markers"]["ki67"], v["markers"]["ki67"]
            assert a["label"] == b["label"] and a["tiles_computed"] == b["tiles_computed"]
            for key in ("probability", "logit", "mean_positivity"):
                assert a[key] == pytest.approx(b[key], rel=1e-5, abs=1e-7), key
        # a finished prediction handed to the viewer gives exactly the same numbers
        rp.store_prediction(pred)
        assert maps_region_results(rp.maps, regions) == headless
    finally:
        rp.close()


def test_a_region_call_pools_only_its_in_domain_tiles(whole):
    """Tiles out of the model's domain are left out of a region's call, as out of the slide's; a
    region with too few in-domain tiles gets no call, out_of_domain."""
    from napari_histostain.annotations.results import marker_region_result

    mp = whole.markers["p53"]
    n = len(whole.grid)
    assert n >= 6
    idx = np.arange(n)
    kept = np.zeros(n, bool)
    kept[: n // 2] = True
    common = dict(positive_class=mp.positive_class, class_names=mp.class_names)
    got = marker_region_result(
        idx, mp.scores, mp.tile_logits, mp.positivity, np.ones(n), kept=kept, **common
    )
    assert got["probability"] == pytest.approx(_pooled(mp, idx[kept]), rel=1e-9)
    assert got["tiles_in_domain"] == n // 2 and got["tiles_computed"] == n
    few = np.zeros(n, bool)
    few[:2] = True
    out = marker_region_result(
        idx, mp.scores, mp.tile_logits, mp.positivity, np.ones(n), kept=few, **common
    )
    assert out["call_status"] == "no_call" and out["no_call_reason"] == "out_of_domain"
    assert out["label"] is None
