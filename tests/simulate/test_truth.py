"""Label rules measured on the renders, and the Bayes-optimal reference."""

from __future__ import annotations

import numpy as np
import pytest

from napari_histostain.io.slide import open_slide
from napari_histostain.simulate import bayes_reference, load_case_model, simulate_case
from napari_histostain.simulate.cells import TUMOUR_CELL
from napari_histostain.simulate.cohort import CaseModel
from napari_histostain.simulate.params import DEFAULT_CUTOFFS

pytestmark = pytest.mark.slow  # simulated slides, clusters or whole cohorts: seconds each


def _nuclear_dab(rgb: np.ndarray, ids: np.ndarray, n_cells: int) -> tuple[np.ndarray, np.ndarray]:
    """Mean DAB optical density inside each cell's nucleus mask (and the mask areas)."""
    from skimage.color import rgb2hed

    dab = rgb2hed(rgb)[..., 2]
    area = np.bincount(ids.ravel(), minlength=n_cells + 1)[1:]
    total = np.bincount(ids.ravel(), dab.ravel(), minlength=n_cells + 1)[1:]
    return total / np.maximum(area, 1), area


@pytest.mark.parametrize("seed", [2022, 4])
def test_ki67_positive_tumour_fraction_matches_k(tmp_path, seed):
    case = simulate_case(tmp_path, ["ki67"], size_um=640, seed=seed)
    model = load_case_model(case.json_path)
    k = model.latents.markers["ki67"].latent
    with open_slide(case.ihc_paths["ki67"]) as s:
        rgb = s.read_region((0, 0), 0, s.dimensions)
    render = model.ihc_renderers["ki67"]
    ids = render.cell_ids(0, 0, model.height, model.width)
    cells = model.ihc["ki67"].cells
    mean_dab, area = _nuclear_dab(rgb, ids, len(cells))
    tumour = (cells.kind == TUMOUR_CELL) & (area >= 12)
    measured = float(np.mean(mean_dab[tumour] > 0.04))
    assert tumour.sum() > 200
    assert measured == pytest.approx(k, abs=0.03), (measured, k, tumour.sum())


def test_p53_patterns_and_pdl1_tps():
    cut = dict(DEFAULT_CUTOFFS)
    # seeds 2 (overexpression), 6 (null) and 0 (wild-type) at difficulty 1
    for seed, pattern in ((2, "overexpression"), (6, "null"), (0, "wild-type")):
        model = CaseModel(seed, (300.0, 300.0), 0.5, ("p53", "pdl1"), 1.0, cut)
        lat = model.latents.markers["p53"]
        assert lat.pattern == pattern
        t = model.truths["p53"]
        cells = model.ihc["p53"].cells
        tum = cells.kind == TUMOUR_CELL
        if pattern == "overexpression":
            assert (
                t["true_index"] >= 0.8 and np.mean(cells.dab[tum][cells.positive[tum]] >= 0.8) == 1
            )
        elif pattern == "null":
            assert t["true_index"] == 0 and cells.dab[tum].max() == 0
            assert cells.dab[~tum].max() > 0  # internal control still stains
        else:
            assert 0.05 <= t["true_index"] <= 0.5
        tps = model.truths["pdl1"]["true_index"]
        assert tps == pytest.approx(model.latents.markers["pdl1"].latent, abs=2.0 / tum.sum())
        pdl1 = model.ihc["pdl1"].cells
        assert np.all(pdl1.membrane[pdl1.positive] > 0)


def test_bayes_reference_default_and_difficulty_order():
    for m in ("ki67", "p53", "pdl1"):
        ref = bayes_reference(m, 1.0)
        assert 0.80 <= ref["best_weighted_f1"] <= 0.85, ref
        easy, hard = bayes_reference(m, 0.5), bayes_reference(m, 1.6)
        assert easy["best_weighted_f1"] > ref["best_weighted_f1"] > hard["best_weighted_f1"]
        assert easy["auc"] > ref["auc"] > hard["auc"]
    assert bayes_reference("ki67", 0.0)["best_weighted_f1"] == 1.0


def test_he_correlates_follow_the_drives():
    """Across cases, the rendered H&E shows each marker's drive: tumour nuclear size and
    hematoxylin (Ki-67), tumour nuclear size spread (P53), lymphocyte density (PD-L1)."""
    from scipy.stats import spearmanr
    from skimage.color import rgb2hed

    from napari_histostain.simulate.cells import LYMPHOCYTE

    rows = []
    for seed in range(8):
        model = CaseModel(seed, (300.0, 300.0), 0.5, (), 1.0, dict(DEFAULT_CUTOFFS))
        render = model.he_renderer
        rgb = render(0, 0, model.height, model.width)
        ids = render.cell_ids(0, 0, model.height, model.width)
        cells = model.he.cells
        area = np.bincount(ids.ravel(), minlength=len(cells) + 1)[1:]
        hema = np.bincount(ids.ravel(), rgb2hed(rgb)[..., 0].ravel(), minlength=len(cells) + 1)[1:]
        tum = (cells.kind == TUMOUR_CELL) & (area > 10)
        stroma_mm2 = (model.he.labels == 1).sum() * (8 * 0.5) ** 2 / 1e6
        lat = model.latents.markers
        rows.append(
            (
                lat["ki67"].drive,
                lat["p53"].drive,
                lat["pdl1"].drive,
                np.median(area[tum]),
                np.mean(hema[tum] / area[tum]),
                np.std(np.log(area[tum])),
                (cells.kind == LYMPHOCYTE).sum() / max(stroma_mm2, 1e-3),
            )
        )
    r = np.array(rows)
    assert spearmanr(r[:, 0], r[:, 3])[0] > 0.7  # nuclear size
    assert spearmanr(r[:, 0], r[:, 4])[0] > 0.5  # hyperchromasia
    assert spearmanr(r[:, 1], r[:, 5])[0] > 0.5  # pleomorphism
    assert spearmanr(r[:, 2], r[:, 6])[0] > 0.5  # tumour-infiltrating lymphocytes
