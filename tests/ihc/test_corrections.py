"""Tests of a user's corrections of an IHC result (napari_histostain.ihc.corrections)."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest

from napari_histostain import ihc
from napari_histostain.ihc.corrections import (
    Corrections,
    apply_corrections,
    corrections_for,
    corrections_path,
    load_corrections,
    save_corrections,
)
from napari_histostain.ihc.reporting import add_reported_scores
from napari_histostain.ihc.synthetic import render_dab

#: other thresholds; 1+ lowered (raising it needs nuclei sizes measured only for negatives)
NEW = (0.15, 0.5, 0.8)


@pytest.fixture(scope="module")
def slide():
    """A simulated Ki-67 field with a spread of DAB levels, its RGB and its result."""
    rgb, _ = render_dab(448, 672, 0.5, positive_fraction=0.4, dab_levels=(0.15, 1.0), seed=5)
    return rgb, ihc.quantify_image(rgb, 0.5, "ki67")


def _scores(result) -> dict:
    s = result.summary()
    return {k: s[k] for k in ("n_nuclei", "counts", "ki67_index", "h_score", "pdl1_tps")}


@pytest.mark.parametrize("cells", ["tumour", "all"])
def test_new_thresholds_equal_a_fresh_quantification(slide, cells):
    rgb, _ = slide
    params = ihc.IHCParams(cells=cells)
    base = ihc.quantify_image(rgb, 0.5, "ki67", params=params)
    fresh = ihc.quantify_image(rgb, 0.5, "ki67", params=ihc.with_thresholds(params, NEW))
    c = corrections_for(base)
    c.thresholds = NEW
    fixed = apply_corrections(base, c)
    assert _scores(fixed) != _scores(base)  # the thresholds matter on this field
    assert _scores(fixed) == _scores(fresh)
    np.testing.assert_array_equal(fixed.counts, fresh.counts)
    np.testing.assert_array_equal(fixed.nuclei.cls, fresh.nuclei.cls)
    np.testing.assert_array_equal(fixed.nuclei.excluded, fresh.nuclei.excluded)
    assert fixed.params.thresholds == NEW
    assert base.params.thresholds != NEW  # the original is left alone


def test_overrides_change_the_scores(slide):
    _, base = slide
    nuc = base.nuclei
    neg = int(np.flatnonzero(nuc.counted & (nuc.cls == 0))[0])
    pos = int(np.flatnonzero(nuc.counted & (nuc.cls == 3))[0])
    out = int(np.flatnonzero(~nuc.counted)[0]) if (~nuc.counted).any() else None
    c = corrections_for(base)
    c.set(neg, "positive")
    c.set(pos, "not counted")
    fixed = apply_corrections(base, c)
    s0, s1 = base.summary(), fixed.summary()
    assert s1["n_nuclei"] == s0["n_nuclei"] - 1
    assert s1["counts"]["1+"] == s0["counts"]["1+"] + 1
    assert s1["counts"]["negative"] == s0["counts"]["negative"] - 1
    assert s1["counts"]["3+"] == s0["counts"]["3+"] - 1
    n, p = s0["n_nuclei"], sum(s0["counts"][k] for k in ("1+", "2+", "3+"))
    assert s1["ki67_index"] == pytest.approx(p / (n - 1) * 100)
    assert fixed.nuclei.exclusion_reasons[pos] == "by hand"
    # the reported scores follow
    assert add_reported_scores(fixed)["ki67"]["n_cells"] == s1["n_nuclei"]
    if out is not None:  # a left-out nucleus called negative counts
        c.set(out, "negative")
        assert apply_corrections(base, c).summary()["n_nuclei"] == s1["n_nuclei"] + 1
    c.set(neg, None)
    c.set(pos, None)
    c.set(out or 0, None)
    assert _scores(apply_corrections(base, c)) == _scores(base)
    with pytest.raises(ihc.IHCError, match="can be made one of"):
        c.set(0, "maybe")


def test_pdl1_override_sets_the_membrane():
    rgb, _ = render_dab(448, 448, 0.5, positive_fraction=0.0, membrane_fraction=0.5, seed=2)
    base = ihc.quantify_image(rgb, 0.5, "pdl1")
    nuc = base.nuclei
    i = int(np.flatnonzero(nuc.counted & ~nuc.membrane)[0])
    c = corrections_for(base)
    c.set(i, "positive")
    fixed = apply_corrections(base, c)
    assert fixed.summary()["pdl1_tps"] == pytest.approx(
        (base.membrane_positive.sum() + 1) / base.n_nuclei.sum() * 100
    )
    assert add_reported_scores(fixed)["pdl1"]["n_tumour_positive"] == int(
        fixed.membrane_positive.sum()
    )


def test_rescoring_is_fast(slide):
    _, base = slide
    c = corrections_for(base)
    c.thresholds = NEW
    c.set(0, "negative")
    t0 = time.perf_counter()
    for _ in range(10):
        add_reported_scores(apply_corrections(base, c))
    assert (time.perf_counter() - t0) / 10 < 0.1


def test_save_and_load_round_trip(slide, tmp_path):
    _, base = slide
    c = corrections_for(base)
    c.thresholds = NEW
    c.set(3, "positive")
    c.set(7, "not counted")
    path = save_corrections(corrections_path(tmp_path, base), c, base)
    assert path.name == "image.ki67.ihc_corrections.json"
    d = json.loads(path.read_text())
    assert d["thresholds"] == list(NEW) and d["marker"] == "ki67"
    assert [o["id"] for o in d["overrides"]] == [3, 7]
    back = load_corrections(path, base)
    assert back.overrides == c.overrides and back.thresholds == NEW
    assert _scores(apply_corrections(base, back)) == _scores(apply_corrections(base, c))
    # ids that moved are found again by position
    d["overrides"][0]["id"] = 5
    path.write_text(json.dumps(d))
    assert load_corrections(path, base).overrides == c.overrides
    d["overrides"][0]["x"] += 50
    path.write_text(json.dumps(d))
    with pytest.raises(ihc.IHCError, match="no nucleus at"):
        load_corrections(path, base)
    d["marker"] = "p53"
    path.write_text(json.dumps(d))
    with pytest.raises(ihc.IHCError, match="corrects p53"):
        load_corrections(path, base)
    with pytest.raises(ihc.IHCError, match="thresholds must be"):
        apply_corrections(base, Corrections("ki67", "image", (0.5, 0.4, 0.6)))
