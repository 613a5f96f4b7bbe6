"""IHC quantification against the simulator's IHC renders (napari_histostain.simulate truth)."""

from __future__ import annotations

import numpy as np
import pytest

from napari_histostain import ihc

pytestmark = pytest.mark.slow  # simulated slides, clusters or whole cohorts: seconds each

simulate = pytest.importorskip("napari_histostain.simulate")

#: the first ten seeds, as they come (true indices 4.5-76.7 %), seed 109 (about 1 %), and the two
#: worst cases of the stop before (84: pleomorphic, +8.3 points then; 135: lymphocyte-rich, -6.5).
#: Not every simulated case is within 3 points: scripts/ki67_accuracy.py finds 99 of seeds 0-99,
#: 98 of 100-199 and 99 of 200-299 within, and 297 of the 300 fresh300 cohort slides; the 7
#: misses are 3.1-4.2 points off (docs/ihc.md lists them and why).
KI67_SEEDS = (*range(10), 109, 84, 135)
#: seeds with each simulated p53 pattern
P53_SEEDS = {"overexpression": 1, "null": 6, "wild-type": 3}
SIZE_UM = 768


@pytest.fixture(scope="module")
def sim_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("sim")


@pytest.mark.parametrize("seed", KI67_SEEDS)
def test_sim_ki67_index_within_3_points(sim_dir, seed):
    case = simulate.simulate_case(sim_dir, ["ki67"], case_id=f"k{seed}", size_um=SIZE_UM, seed=seed)
    truth = case.truth["ki67"]["true_index"] * 100
    result = ihc.quantify_slide(case.ihc_paths["ki67"], "ki67")
    measured = result.summary()["ki67_index"]
    assert abs(measured - truth) <= 3.0, f"truth {truth:.1f} %, measured {measured:.1f} %"


@pytest.mark.parametrize("pattern", list(P53_SEEDS))
def test_sim_p53_pattern(sim_dir, pattern):
    seed = P53_SEEDS[pattern]
    case = simulate.simulate_case(sim_dir, ["p53"], case_id=f"p{seed}", size_um=SIZE_UM, seed=seed)
    assert case.truth["p53"]["pattern"] == pattern
    assert ihc.quantify_slide(case.ihc_paths["p53"], "p53").summary()["p53_pattern"] == pattern


def test_sim_cohort_weak_labels(tmp_path):
    """`histostain quantify --cohort` on a simulated cohort's manifest keeps its rows and columns."""
    import csv

    from napari_histostain.cli import main

    simulate.simulate_cohort(tmp_path / "c", 2, ["ki67"], size_um=384, seed=7)
    manifest = tmp_path / "c" / "manifest.csv"
    assert main(["quantify", "--cohort", str(manifest), "--out", str(tmp_path / "o")]) == 0
    src = list(csv.DictReader(manifest.open()))
    out = list(csv.DictReader((tmp_path / "o" / "weak_labels.csv").open()))
    assert [r["case_id"] for r in out] == [r["case_id"] for r in src]
    assert set(src[0]) <= set(out[0]) and out[0]["label_source"] == "ihc"
    for s, o in zip(src, out):
        assert abs(float(o["ki67_index"]) - float(s["true_index"]) * 100) <= 10
        assert o["label"] == str(int(float(o["ki67_index"]) >= 20))
        # the reported scores of each case: global and hot spot; 384 um cases hold < 500 cells
        assert float(o["ki67_global"]) == pytest.approx(float(o["ki67_index"]), abs=15)
        assert o["ki67_hotspot"] != "" and o["insufficient"] == "1"
    # a lab's own cutoff: every case is "high" at 0 %, none at 100 %
    for cutoff, label in (("0", "1"), ("100", "0")):
        assert (
            main(
                [
                    "quantify",
                    "--cohort",
                    str(manifest),
                    "--out",
                    str(tmp_path / cutoff),
                    "--ki67-cutoff",
                    cutoff,
                ]
            )
            == 0
        )
        rows = list(csv.DictReader((tmp_path / cutoff / "weak_labels.csv").open()))
        assert {r["label"] for r in rows} == {label}


def test_sim_negative_tumour_nuclei_are_scored_negative(sim_dir):
    """In a pleomorphic case (seed 84: large stained nuclei overlapping small unstained ones), a
    region that takes in part of a stained neighbour is still scored by its own core: nuclei at
    the simulator's negative tumour cells are >= 98 % negative, at positive ones >= 98 % positive."""
    from scipy.spatial import cKDTree

    from napari_histostain.simulate.cells import TUMOUR_CELL

    case = simulate.simulate_case(sim_dir, ["ki67"], case_id="k84", size_um=SIZE_UM, seed=84)
    result = ihc.quantify_slide(case.ihc_paths["ki67"], "ki67")
    with np.load(case.truth_paths["ki67"]) as z:
        mpp, kind, positive = float(z["mpp"]), z["ihc_cells_kind"], z["ihc_cells_positive"]
        cells = np.c_[z["ihc_cells_x"], z["ihc_cells_y"]]
    dist, nearest = cKDTree(cells).query(result.nuclei.xy)
    tumour = (dist * mpp < 4.0) & (kind[nearest] == TUMOUR_CELL)
    negative, stained = tumour & ~positive[nearest], result.nuclei.cls >= 1
    assert negative.sum() > 200
    assert stained[negative].mean() <= 0.02  # 6 % when scored on the body alone
    assert stained[tumour & positive[nearest]].mean() >= 0.98
