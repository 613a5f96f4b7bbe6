"""Tests of DAB IHC quantification (napari_histostain.ihc) and `histostain quantify`."""

from __future__ import annotations

import csv
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from napari_histostain import ihc
from napari_histostain.ihc import cell_rules
from napari_histostain.ihc.synthetic import dab_slide_renderer, render_dab
from shared_data import SHARED_DATA

DATA = SHARED_DATA


def _data(rel: str) -> Path:
    p = DATA / rel
    if not p.exists():
        pytest.skip(f"{p} not available")
    return p


# -- one tile / one image -------------------------------------------------------------------------
@pytest.mark.parametrize("fraction", [0.0, 0.05, 0.2, 0.4, 0.6, 0.8])
def test_ki67_index_matches_rendered_truth(fraction):
    rgb, truth = render_dab(448, 448, 0.5, positive_fraction=fraction, seed=3)
    result = ihc.quantify_image(rgb, 0.5, "ki67")
    s = result.summary()
    inside = (truth.centres >= 0).all(axis=1) & (truth.centres < 448).all(axis=1)
    true_index = float((truth.dab[inside] > 0).mean() * 100)
    assert abs(s["ki67_index"] - true_index) <= 3.0
    assert abs(s["n_nuclei"] - inside.sum()) <= 0.05 * inside.sum()


def test_nuclei_positions_are_level0_pixels():
    rgb, truth = render_dab(300, 500, 0.5, positive_fraction=0.5, seed=1)
    result = ihc.quantify_image(rgb, 0.5, "ki67")
    inside = (
        (truth.centres[:, 0] >= 0)
        & (truth.centres[:, 0] < 300)
        & (truth.centres[:, 1] >= 0)
        & (truth.centres[:, 1] < 500)
    )
    true_xy = truth.centres[inside][:, ::-1]
    d = np.linalg.norm(result.nuclei.xy[:, None, :] - true_xy[None], axis=2).min(axis=1)
    assert np.median(d) < 1.5
    # every class-positive nucleus sits on a rendered positive cell
    nearest = np.linalg.norm(result.nuclei.xy[:, None, :] - true_xy[None], axis=2).argmin(axis=1)
    pos = result.nuclei.cls > 0
    assert (truth.dab[inside][nearest[pos]] > 0).all()


@pytest.mark.parametrize(
    ("kwargs", "pattern"),
    [
        ({"positive_fraction": 0.95, "dab_levels": (0.8, 1.2)}, "overexpression"),
        ({"positive_fraction": 0.0}, "null"),
        ({"positive_fraction": 0.3, "dab_levels": (0.25, 0.7)}, "wild-type"),
    ],
)
def test_p53_pattern(kwargs, pattern):
    rgb, _ = render_dab(448, 448, 0.5, seed=5, **kwargs)
    assert ihc.quantify_image(rgb, 0.5, "p53").summary()["p53_pattern"] == pattern


def test_pdl1_membrane_fraction_and_thresholds():
    rgb, truth = render_dab(448, 448, 0.5, positive_fraction=0.0, membrane_fraction=0.5, seed=2)
    s = ihc.quantify_image(rgb, 0.5, "pdl1").summary()
    assert abs(s["pdl1_tps"] - truth.membrane.mean() * 100) < 10
    assert s["ki67_index"] < 5  # membranes are not positive nuclei
    with pytest.raises(ihc.IHCError, match="increasing"):
        ihc.with_thresholds(ihc.IHCParams(), (0.4, 0.2, 0.6))


def test_stain_estimation_falls_back_without_dab():
    rgb, _ = render_dab(256, 256, 0.5, positive_fraction=0.0, seed=1)
    od = ihc.optical_density(rgb).reshape(-1, 3)
    st = ihc.estimate_stains(od[od.sum(axis=1) > 0.15])
    assert st.source != "macenko"
    assert np.allclose(st.dab, ihc.standard_stains().dab)
    rgb, _ = render_dab(256, 256, 0.5, positive_fraction=0.5, seed=1)
    od = ihc.optical_density(rgb).reshape(-1, 3)
    assert ihc.estimate_stains(od[od.sum(axis=1) > 0.15]).source == "macenko"


def test_bad_inputs_have_clear_errors():
    from napari_histostain.errors import HistostainError

    with pytest.raises(HistostainError, match="mpp"):
        ihc.quantify_image(np.zeros((10, 10, 3), np.uint8), 0)
    with pytest.raises(HistostainError, match="uint8"):
        ihc.quantify_image(np.zeros((10, 10, 3), np.float32), 0.5)
    with pytest.raises(HistostainError, match="unknown marker"):
        ihc.quantify_image(np.zeros((10, 10, 3), np.uint8), 0.5, "cd8")


# -- slides ----------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def dab_slide(tmp_path_factory):
    from napari_histostain.io.synthetic import write_slide

    path = tmp_path_factory.mktemp("ihc") / "dab.tiff"
    write_slide(
        path, 1024, 1024, dab_slide_renderer(1024, 1024, 0.5, positive_fraction=0.3, seed=4), 0.5
    )
    return path


def test_slide_result_is_on_the_prediction_grid(dab_slide, tmp_path):
    from napari_histostain.engine.tiling import make_grid
    from napari_histostain.io.slide import open_slide

    with open_slide(dab_slide) as slide:
        grid = make_grid(slide, min_tissue=0)
        seen = []
        result = ihc.quantify_slide(slide, "ki67", grid=grid, progress=lambda d, n: seen.append(d))
    assert result.grid is grid and result.counts.shape == (len(grid.coords), 4)
    assert seen[-1] == len(grid.coords)
    assert result.positivity.shape == (len(grid.coords),)
    # nuclei lie inside their tile and the slide
    t = result.nuclei.tile
    lo = grid.coords[t]
    assert ((result.nuclei.xy >= lo - 0.5) & (result.nuclei.xy < lo + grid.tile_px0)).all()
    s = result.summary()
    assert 24 <= s["ki67_index"] <= 36
    paths = result.save(tmp_path)
    assert [p.name for p in paths] == [
        "dab.ki67.ihc.json",
        "dab.ki67.ihc_tiles.csv",
        "dab.ki67.ihc_nuclei.csv",
    ]
    doc = json.loads(paths[0].read_text())
    assert doc["summary"]["n_nuclei"] == s["n_nuclei"] and doc["n_tiles"] == len(grid.coords)
    rows = list(csv.DictReader(paths[2].open()))
    assert len(rows) == len(result.nuclei.xy) >= s["n_nuclei"]
    assert all((r["counted"] == "1") == (r["excluded_as"] == "") for r in rows)
    assert {r["excluded_as"] for r in rows} <= set(ihc.EXCLUSION_NAMES)


def test_region_quantifies_only_intersecting_tiles(dab_slide):
    result = ihc.quantify_slide(dab_slide, "ki67", region=(0, 0, 300, 300))
    assert result.n_nuclei.sum() > 0
    assert len(result.grid.coords) <= 4


def test_synthetic_he_slide_is_refused(tmp_path):
    from napari_histostain.io.synthetic import write_synthetic_slide

    path = write_synthetic_slide(tmp_path / "he.tiff", 1024, 1024, 0.5)
    with pytest.raises(ihc.NotDabError, match="H&E"):
        ihc.quantify_slide(path, "ki67")


def test_real_he_slide_is_refused():
    with pytest.raises(ihc.NotDabError, match="H&E"):
        ihc.quantify_slide(_data("slides/CMU-1-Small-Region.svs"), "ki67")


# -- real IHC images -------------------------------------------------------------------------------
def test_real_skimage_ihc_membranous_image():
    from skimage.io import imread

    rgb = imread(_data("images/ihc/skimage-ihc.png"))[..., :3]
    s = ihc.quantify_image(rgb, 0.5, "pdl1").summary()
    assert s["n_nuclei"] > 100
    # TPS counts tumour cells: the epithelium's (membranes stained), not the pale stroma's
    assert s["pdl1_tps"] >= 90
    everyone = replace(ihc.IHCParams(), context_min_nuclei=0)  # stroma counted too
    assert 40 <= ihc.quantify_image(rgb, 0.5, "pdl1", params=everyone).summary()["pdl1_tps"] <= 85


def test_real_os2_ki67_slide():
    result = ihc.quantify_slide(_data("slides/OS-2-Ki67-crop.tiff"), "ki67")
    s = result.summary()
    assert result.stains.source == "macenko"
    assert s["n_nuclei"] > 500
    assert 10 <= s["ki67_index"] <= 40


def test_real_anhir_ki67_section():
    from skimage.io import imread

    rgb = imread(_data("pairs/anhir-lung-lesion3/29-041-Izd2-w35-Ki67-7-les3.jpg"))
    result = ihc.quantify_image(rgb, 3.5, "ki67")  # 5 % scale of ~0.17 um/px: nuclei ~2 px
    assert any("too coarse" in m for m in result.messages)
    s = result.summary()
    assert 0.005 <= s["positive_pixel_fraction"] <= 0.1  # sparse brown dots in the lesion


# -- CLI -------------------------------------------------------------------------------------------
def test_cli_quantify_slide_and_refusal(dab_slide, tmp_path, capsys):
    from napari_histostain.cli import main
    from napari_histostain.io.synthetic import write_synthetic_slide

    assert (
        main(["quantify", str(dab_slide), "--marker", "ki67", "--out", str(tmp_path), "--figure"])
        == 0
    )
    out = capsys.readouterr().out
    assert "Ki-67 index" in out and (tmp_path / "dab.ki67.ihc.png").exists()
    he = write_synthetic_slide(tmp_path / "he.tiff", 512, 512, 0.5)
    assert main(["quantify", str(he), "--marker", "ki67", "--out", str(tmp_path / "x")]) == 2
    assert "H&E" in capsys.readouterr().err
    assert not (tmp_path / "x").exists() or not any((tmp_path / "x").iterdir())


def test_cli_cohort_writes_weak_labels(dab_slide, tmp_path):
    from napari_histostain.cli import main

    manifest = tmp_path / "manifest.csv"
    with manifest.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["case_id", "marker", "he_path", "ihc_path", "label", "latent", "seed"])
        w.writerow(["c0", "ki67", "", str(dab_slide), "", "", 0])
        w.writerow(["c1", "p53", "", str(dab_slide), "", "", 0])
    assert main(["quantify", "--cohort", str(manifest), "--out", str(tmp_path / "o")]) == 0
    rows = list(csv.DictReader((tmp_path / "o" / "weak_labels.csv").open()))
    assert [r["case_id"] for r in rows] == ["c0", "c1"]
    assert rows[0]["label"] == "1" and rows[0]["label_source"] == "ihc"  # ~30 % >= 20 % cutoff
    assert 24 <= float(rows[0]["ki67_index"]) <= 36
    assert rows[1]["p53_pattern"] == "wild-type" and rows[1]["label"] == "0"


def test_lymphocyte_and_fibroblast_like_nuclei_are_not_counted():
    """Small dense round nuclei and long thin ones stay out of the index (cells="tumour")."""
    rgb, _ = render_dab(448, 448, 0.5, positive_fraction=0.0, seed=6, tissue_box=(0, 40, 448, 368))
    # add a row of small dark Ki-67+ "lymphocytes" (r = 2.2 um) and thin "fibroblasts"
    from skimage.color import rgb_from_hdx
    from skimage.draw import disk, ellipse

    od = ihc.optical_density(rgb)
    d = rgb_from_hdx[1] / np.linalg.norm(rgb_from_hdx[1])
    for k in range(8):
        rr, cc = disk((20 + 50 * k, 10), 4.4, shape=rgb.shape[:2])
        od[rr, cc] += 0.9 * d
        rr, cc = ellipse(20 + 50 * k, 436, 9, 2.2, shape=rgb.shape[:2])
        od[rr, cc] += 0.3 * rgb_from_hdx[0] / np.linalg.norm(rgb_from_hdx[0])
    rgb = np.clip(255 * 10 ** (-od), 0, 255).astype(np.uint8)
    tumour = ihc.quantify_image(rgb, 0.5, "ki67")
    everyone = ihc.quantify_image(rgb, 0.5, "ki67", params=replace(ihc.IHCParams(), cells="all"))
    assert tumour.summary()["ki67_index"] == 0.0
    assert everyone.summary()["ki67_index"] > 0
    assert everyone.summary()["n_nuclei"] >= tumour.summary()["n_nuclei"] + 12
    assert (~tumour.nuclei.counted).sum() >= 12


def test_lymphocyte_density_is_calibrated_by_the_slides_fibroblasts():
    """On a strongly counterstained slide a small tumour nucleus is not taken for a lymphocyte."""
    p = ihc.IHCParams()
    n_fib = p.calibration_fibroblasts
    # n_fib thin negative fibroblasts of density 0.4, one small nucleus of 0.35, one of 0.6
    area = np.r_[np.full(n_fib, 20.0), 30.0, 30.0]
    elong = np.r_[np.full(n_fib, 4.0), 1.1, 1.1]
    width = np.r_[np.full(n_fib, 2.5), 6.0, 6.0]
    hema = np.r_[np.full(n_fib, 0.4), 0.35, 0.6]
    dab = np.zeros_like(hema)
    counted = cell_rules.counted_cells(area, elong, width, hema, dab, p)
    assert not counted[:n_fib].any()  # fibroblasts
    assert counted[n_fib] and not counted[n_fib + 1]  # 0.35 < 1.1 x 0.4 < 0.6
    assert cell_rules.lymphocyte_density(
        hema, np.r_[np.ones(n_fib, bool), False, False], p
    ) == pytest.approx(p.lymphocyte_fibroblast_ratio * 0.4)
    # too few fibroblasts to calibrate: the fixed density applies, both small nuclei are left out
    few = slice(n_fib - 5, None)
    counted = cell_rules.counted_cells(area[few], elong[few], width[few], hema[few], dab[few], p)
    assert not counted[-2:].any()


def test_a_lymphocyte_is_small_dense_and_round():
    """A small dense round nucleus is a lymphocyte; as small and dense but elongated (a tumour
    nucleus cut obliquely), it counts, stained or not: the call must not depend on the stain.
    Dense fragments (necrotic debris) are left out whatever their shape."""
    p = ihc.IHCParams()
    area, width = np.full(4, 28.0), np.full(4, 5.5)
    elong = np.array([1.05, 1.05, 1.5, 1.5])
    hema = np.array([0.5, 0.2, 0.5, 0.2])
    dab = np.array([0.0, 0.6, 0.0, 0.6])  # negative, 3+, negative, 3+
    counted = cell_rules.counted_cells(area, elong, width, hema, dab, p)
    assert counted.tolist() == [False, False, True, True]
    assert (elong[2:] >= p.lymphocyte_max_elongation).all()
    # a dense fragment below half a lymphocyte's area (necrotic debris) is left out, whatever its
    # shape; a pale one (a small tumour nucleus) counts
    fragment = cell_rules.counted_cells(
        np.full(2, 12.0), np.full(2, 1.6), np.full(2, 3.0), np.array([0.5, 0.2]), np.zeros(2), p
    )
    assert fragment.tolist() == [False, True]
    assert p.fragment_area_um2 > 12.0


def test_exclusion_codes_name_each_rule():
    """Each nucleus left out of the indices says why (the nuclei CSV's `excluded_as`)."""
    p = ihc.IHCParams()
    merged_od = p.merged_lymphocyte_density_ratio * p.lymphocyte_od + 0.1
    # fibroblast, lymphocyte, debris, merged lymphocytes, 25 tumour nuclei, one in pale stroma
    area = np.r_[20.0, 28.0, 12.0, 50.0, np.full(25, 50.0), 50.0]
    elong = np.r_[4.0, 1.05, 1.6, 1.4, np.full(25, 1.2), 1.2]
    width = np.r_[2.5, 5.5, 3.0, 6.5, np.full(25, 7.0), 7.0]
    hema = np.r_[0.4, 0.5, 0.5, merged_od, np.full(25, 0.3), 0.3]
    dab = np.zeros_like(hema)
    inscribed = np.r_[np.nan, np.nan, np.nan, 2.8, np.full(25, 4.0), 4.0]
    context = np.r_[np.full(29, 0.1), 0.05]
    codes = cell_rules.exclusion_codes(area, elong, width, hema, dab, p, inscribed, context)
    names = [ihc.EXCLUSION_NAMES[c] for c in codes]
    assert names[:4] == ["fibroblast", "lymphocyte", "debris", "merged lymphocytes"]
    assert set(names[4:29]) == {""} and names[29] == "stroma"
    counted = cell_rules.counted_cells(area, elong, width, hema, dab, p, inscribed, context)
    np.testing.assert_array_equal(counted, codes == 0)
    assert (
        cell_rules.exclusion_codes(
            area, elong, width, hema, dab, replace(p, cells="all"), inscribed, context
        )
        == 0
    ).all()


def _hdab_rgb(od_h: np.ndarray, od_d: np.ndarray) -> np.ndarray:
    """RGB uint8 from hematoxylin and DAB optical densities (Beer-Lambert, standard vectors)."""
    from skimage.color import rgb_from_hdx

    h = rgb_from_hdx[0] / np.linalg.norm(rgb_from_hdx[0])
    d = rgb_from_hdx[1] / np.linalg.norm(rgb_from_hdx[1])
    od = od_h[..., None] * h + od_d[..., None] * d
    return np.clip(255 * 10 ** (-od), 0, 255).astype(np.uint8)


def test_inscribed_radius_is_measured_and_merged_lymphocytes_are_not_counted():
    """Each nucleus' largest inscribed circle is measured; a larger, thin, very dense negative
    blob (overlapping lymphocytes merged) is left out, a round or a positive one is counted."""
    from skimage.draw import disk, ellipse

    od = np.full((120, 160), 0.06)  # faint counterstained tissue (hematoxylin OD)
    rr, cc = disk((40, 30), 8.0, shape=od.shape)  # round, r = 4 um at 0.5 um/px
    od[rr, cc] += 0.9
    rr, cc = ellipse(40, 110, 5.0, 14.0, shape=od.shape)  # 7 x 2.5 um semi-axes
    od[rr, cc] += 0.9
    rr, cc = disk((90, 80), 8.0, shape=od.shape)  # round but pale: the rule cannot apply
    od[rr, cc] += 0.3
    # seeds by distance: the blob seeds split a long nucleus at its two ends (the rule is tested)
    by_distance = ihc.IHCParams(seeds="distance")
    q = ihc.quantify_tile(_hdab_rgb(od, np.zeros_like(od)), 0.5, marker="ki67", params=by_distance)
    order = np.lexsort((q.nuclei.xy[:, 0], q.nuclei.xy[:, 1] > 60))
    assert len(order) == 3
    np.testing.assert_allclose(q.nuclei.inscribed_um[order[:2]], [4.0, 2.5], atol=0.6)
    assert np.isnan(q.nuclei.inscribed_um[order[2]])  # not measured where it is not needed

    p = ihc.IHCParams()
    dense = p.merged_lymphocyte_density_ratio * p.lymphocyte_od + 0.1
    # 0: thin dense negative blob of 50 um2 -> merged lymphocytes; 1: round (inscribed 4 um);
    # 2: thin but positive (DAB 2+); 3: thin but only as dense as a lymphocyte
    area = np.full(4, 50.0)
    elong, width = np.full(4, 1.4), np.full(4, 6.5)
    hema = np.array([dense, dense, dense, p.lymphocyte_od + 0.05])
    dab = np.array([0.0, 0.0, 0.5, 0.0])
    inscribed = np.array([2.8, 4.0, 2.8, 2.8])
    counted = cell_rules.counted_cells(area, elong, width, hema, dab, p, inscribed_um=inscribed)
    assert counted.tolist() == [False, True, True, True]
    assert cell_rules.counted_cells(
        area, elong, width, hema, dab, p
    ).all()  # no inscribed radii given


def test_nuclei_in_pale_stroma_are_not_counted_unless_large():
    """Indices are scored in the tumour: identical nuclei lying in pale stroma are left out, a
    large one there is counted; with the rule off (`context_min_nuclei=0`) all are counted."""
    from skimage.draw import disk

    od_h, od_d = np.zeros((256, 512)), np.zeros((256, 512))
    od_h[:, :352] = 0.14  # tumour: counterstained cytoplasm
    od_h[:, 352:] = 0.04  # stroma, a third of the tile
    centres = [(y, x) for y in range(24, 256, 32) for x in range(24, 512, 32) if abs(x - 352) > 20]
    for k, (y, x) in enumerate(centres):
        rr, cc = disk((y, x), 7.5, shape=od_h.shape)  # r = 3.75 um
        od_h[rr, cc] += 0.45
        od_d[rr, cc] += 0.8 if k % 3 == 0 else 0.0  # a third positive, on both sides
    # a large nucleus in the stroma, between four others (apart from them: the blob seeds tell
    # touching nuclei apart)
    rr, cc = disk((136, 456), 13.0, shape=od_h.shape)
    od_h[rr, cc] = 0.5
    od_d[rr, cc] = 0.0
    q = ihc.quantify_tile(_hdab_rgb(od_h, od_d), 0.5, marker="ki67")
    x = q.nuclei.xy[:, 0]
    large = q.nuclei.area_um2 > 100
    assert large.sum() == 1 and q.nuclei.counted[large].all()
    assert q.nuclei.counted[x < 352].all()
    assert not q.nuclei.counted[(x > 352) & ~large].any()
    assert q.nuclei.context[x < 352].min() > q.nuclei.context[(x > 352) & ~large].max()
    off = ihc.quantify_tile(
        _hdab_rgb(od_h, od_d),
        0.5,
        marker="ki67",
        params=replace(ihc.IHCParams(), context_min_nuclei=0),
    )
    assert off.nuclei.counted.all()


def test_cli_plain_image_needs_mpp(tmp_path, capsys):
    from skimage.io import imsave

    from napari_histostain.cli import main

    rgb, _ = render_dab(200, 200, 0.5, positive_fraction=0.5, seed=2)
    png = tmp_path / "ihc.png"
    imsave(png, rgb)
    assert main(["quantify", str(png), "--marker", "ki67", "--out", str(tmp_path / "o")]) == 2
    assert "--mpp" in capsys.readouterr().err
    assert (
        main(
            ["quantify", str(png), "--marker", "ki67", "--mpp", "0.5", "--out", str(tmp_path / "o")]
        )
        == 0
    )
    doc = json.loads((tmp_path / "o" / "ihc.ki67.ihc.json").read_text())
    assert doc["params"]["cells"] == "tumour" and doc["summary"]["n_nuclei"] > 20
    assert (
        main(
            [
                "quantify",
                str(png),
                "--marker",
                "ki67",
                "--mpp",
                "0.5",
                "--ki67-cutoff",
                "150",
                "--out",
                str(tmp_path / "o"),
            ]
        )
        == 2
    )
    assert "percentage" in capsys.readouterr().err
    assert (
        main(
            [
                "quantify",
                str(png),
                "--marker",
                "ki67",
                "--mpp",
                "0.5",
                "--count-stroma",
                "--out",
                str(tmp_path / "s"),
            ]
        )
        == 0
    )
    doc = json.loads((tmp_path / "s" / "ihc.ki67.ihc.json").read_text())
    assert doc["params"]["context_min_nuclei"] == 0 and "stroma" not in doc["not_counted"]


def test_cli_detection_preset_is_applied_and_recorded(tmp_path, capsys):
    from skimage.io import imsave

    from napari_histostain.cli import main

    rgb, _ = render_dab(200, 200, 0.5, positive_fraction=0.5, seed=2)
    png = tmp_path / "ihc.png"
    imsave(png, rgb)
    args = ["quantify", str(png), "--marker", "ki67", "--mpp", "0.5", "--out"]
    assert main([*args, str(tmp_path / "a"), "--detection", "real-fields"]) == 0
    doc = json.loads((tmp_path / "a" / "ihc.ki67.ihc.json").read_text())
    assert doc["params"]["seeds"] == "log" and doc["params"]["dab_baseline"] == "field"
    assert doc["summary"]["n_nuclei"] > 20
    assert main([*args, str(tmp_path / "b")]) == 0
    doc = json.loads((tmp_path / "b" / "ihc.ki67.ihc.json").read_text())
    assert doc["params"]["seeds"] == "distance"
    assert main([*args, str(tmp_path / "c"), "--detection", "fancy"]) == 2
    assert "real-fields" in capsys.readouterr().err
