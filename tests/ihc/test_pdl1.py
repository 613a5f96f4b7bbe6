"""PD-L1 TPS, CPS and immune cells (napari_histostain.ihc.pdl1)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from napari_histostain import ihc
from napari_histostain.ihc.params import EXCLUSION_NAMES
from napari_histostain.ihc.pdl1 import CPS_CAP, cps, immune_mask, pdl1_scores, result_pdl1_scores

LYMPH = EXCLUSION_NAMES.index("lymphocyte")
FIBRO = EXCLUSION_NAMES.index("fibroblast")


def test_cps_counts_positive_immune_cells_and_is_capped():
    # 10 tumour cells (6 ring-positive), 8 lymphocytes (5 positive), 3 fibroblasts (2 rings)
    excluded = np.array([0] * 10 + [LYMPH] * 8 + [FIBRO] * 3)
    counted = excluded == 0
    membrane = np.array([1] * 6 + [0] * 4 + [1] * 5 + [0] * 3 + [1, 1, 0], bool)
    s = pdl1_scores(counted, excluded, membrane)
    assert (s.n_tumour, s.n_tumour_positive, s.n_immune, s.n_immune_positive) == (10, 6, 8, 5)
    assert s.tps == pytest.approx(60.0)
    assert s.cps == CPS_CAP  # (6 + 5) / 10 x 100 = 110 -> 100: fibroblasts never count
    assert s.immune_positive_pct == pytest.approx(5 / 8 * 100)
    assert s.immune_cell_pct == pytest.approx(8 / 18 * 100)
    assert s.insufficient  # fewer than 100 tumour cells
    fewer = pdl1_scores(counted, excluded, membrane & (np.arange(21) != 10))
    assert fewer.cps == pytest.approx(100.0)  # (6 + 4) / 10
    assert cps(3, 2, 50) == pytest.approx(10.0)
    assert math.isnan(cps(1, 1, 0))


def test_immune_cells_are_lymphocytes_and_merged_lymphocytes():
    codes = np.arange(len(EXCLUSION_NAMES))
    names = {EXCLUSION_NAMES[c] for c in codes[immune_mask(codes)]}
    assert names == {"lymphocyte", "merged lymphocytes"}


def test_result_scores_match_summary_tps():
    from napari_histostain.ihc.synthetic import render_dab

    rgb, _ = render_dab(448, 448, 0.5, positive_fraction=0.0, membrane_fraction=0.4, seed=4)
    result = ihc.quantify_image(rgb, 0.5, "pdl1")
    s = result_pdl1_scores(result)
    assert s.tps == pytest.approx(result.summary()["pdl1_tps"])
    assert s.cps >= s.tps
    tiles = np.arange(len(result.counts)) == 0
    part = result_pdl1_scores(result, tiles)
    assert part.n_tumour == int(result.counts[0].sum())


#: simulated PD-L1 cases over the range of expression (truth TPS 7, 51, 65, 84, 93 %; CPS 8-100),
#: all from the seeds the membrane and stroma rules were tuned on (0-39). Not every case is within
#: 5 points: scripts/pdl1_cps_accuracy.py --seeds 300-339 (untouched) gives the error over a cohort
#: (docs/ihc.md); before the membrane was searched over the whole cell and the stroma rule judged
#: stained and unstained cells apart, seed 15 read 63 % TPS and seed 2 (96 %) 48 %.
SIM_SEEDS = (14, 15, 19, 29, 23)


@pytest.mark.slow
@pytest.mark.parametrize("seed", SIM_SEEDS)
def test_sim_tps_and_cps_within_5_points(tmp_path, seed):
    simulate = pytest.importorskip("napari_histostain.simulate")
    case = simulate.simulate_case(tmp_path, ["pdl1"], case_id=f"c{seed}", size_um=768, seed=seed)
    truth = case.truth["pdl1"]
    s = result_pdl1_scores(ihc.quantify_slide(case.ihc_paths["pdl1"], "pdl1"))
    assert abs(s.tps - truth["true_index"] * 100) <= 5.0, (s, truth)
    assert abs(s.cps - truth["true_cps"]) <= 5.0, (s, truth)
    assert s.n_immune > 0  # the simulator's lymphocytes are told apart from tumour cells
    stored = simulate.truth.load_truth(case.truth_paths["pdl1"])
    assert stored["true_cps"] == pytest.approx(truth["true_cps"])
    kind = stored["ihc_cells_kind"]
    n_t = int((kind == 0).sum())
    n_pos = int(stored["ihc_cells_positive"][kind == 0].sum())
    imm_pos = int(((kind == 2) & (stored["ihc_cells_membrane"] > 0)).sum())
    assert truth["true_cps"] == pytest.approx(min(100.0, (n_pos + imm_pos) / n_t * 100))
