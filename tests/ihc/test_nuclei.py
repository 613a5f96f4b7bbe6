"""Tests of nucleus detection options (napari_histostain.ihc.nuclei) and the detection presets."""

from __future__ import annotations

import csv
import warnings
from dataclasses import replace

import numpy as np
import pytest

from napari_histostain import ihc
from napari_histostain.ihc.nuclei import ground_glass, quantify_tile
from napari_histostain.ihc.params import DETECTION_PRESETS, resolve_detection, with_detection
from napari_histostain.ihc.stains import optical_density, standard_stains
from napari_histostain.ihc.synthetic import render_dab
from shared_data import SHARED_DATA

MPP = 0.25
REAL = with_detection(ihc.IHCParams(), "real-fields")
STANDARD = with_detection(ihc.IHCParams(), "standard")


def _beer_lambert(hema: np.ndarray, dab: np.ndarray) -> np.ndarray:
    """RGB uint8 of hematoxylin and DAB optical densities (standard vectors)."""
    s = standard_stains()
    od = hema[..., None] * np.asarray(s.hematoxylin) + dab[..., None] * np.asarray(s.dab)
    return np.clip(255 * 10.0 ** (-od), 0, 255).astype(np.uint8)


def _disk(shape, centre, radius) -> np.ndarray:
    yy, xx = np.indices(shape)
    return (yy - centre[0]) ** 2 + (xx - centre[1]) ** 2 <= radius**2


def test_unknown_detection_preset_is_a_clear_error():
    with pytest.raises(ihc.IHCError, match="real-fields"):
        with_detection(ihc.IHCParams(), "fancy")
    assert with_detection(ihc.IHCParams(), "auto") == ihc.IHCParams()  # the default
    assert replace(ihc.IHCParams(), detection="standard") == STANDARD
    assert all(hasattr(REAL, k) for k in DETECTION_PRESETS["real-fields"])


def test_auto_detection_reads_ki67_tiles_on_tissue_ground_as_real_fields():
    auto = ihc.IHCParams()
    assert auto.detection == "auto"
    real = resolve_detection(auto, "ki67", 0.01)
    assert real == replace(REAL, detection="real-fields")
    assert resolve_detection(auto, "ki67", 0.5) == auto  # cells on glass: standard
    assert resolve_detection(auto, "ki67", float("nan")) == auto  # nothing between nuclei
    assert resolve_detection(auto, "pdl1", 0.0) == auto  # only Ki-67 was checked on real cells
    assert resolve_detection(STANDARD, "ki67", 0.0) == STANDARD  # an explicit choice stands
    # settings the caller changed are kept, the others come from the preset
    own = resolve_detection(replace(auto, seeds="blob", nucleus_radius_um=5.0), "ki67", 0.0)
    assert (own.seeds, own.nucleus_radius_um, own.dab_baseline) == ("blob", 5.0, "field")


def test_ground_between_nuclei_tells_rendered_cells_on_glass_from_a_real_field():
    from imageio.v3 import imread

    rendered, _ = render_dab(448, 448, 0.5, positive_fraction=0.4, seed=3)
    field, _ = _bcdata("bcdata-00")
    real = np.asarray(imread(field))[..., :3]
    padded = np.full((900, 900, 3), 255, np.uint8)  # a field smaller than a tile, padded white
    padded[30:670, 30:670] = real
    p = ihc.IHCParams()
    values = []
    for rgb, mpp in ((rendered, 0.5), (real, MPP), (padded, MPP)):
        conc = optical_density(rgb) @ standard_stains().matrix()
        signal = np.maximum(conc[..., 0], 0) + np.maximum(conc[..., 1], 0)
        values.append(ground_glass(rgb, signal, mpp, p))
    assert values[1] <= p.real_field_max_glass < values[0]
    assert values[2] == pytest.approx(values[1], abs=0.01)  # the padding is not ground


def test_scale_space_seeds_give_one_seed_per_large_textured_nucleus():
    rng = np.random.default_rng(0)
    shape = (240, 240)
    hema = np.full(shape, 0.03)
    dab = np.zeros(shape)
    big = _disk(shape, (120, 120), 28)  # 14 um across at 0.25 um/px, mottled chromatin
    dab[big] = 0.8 + 0.3 * rng.random(int(big.sum()))
    hema[big] += 0.2
    rgb = _beer_lambert(hema, dab)
    found = quantify_tile(rgb, MPP, params=replace(REAL, cells="all")).nuclei
    assert len(found) == 1 and found.cls[0] == 3


def test_field_dab_baseline_judges_nuclei_above_a_tinted_background():
    shape = (200, 200)
    centres = [(50, 50), (50, 150), (150, 50), (150, 150)]
    hema, dab = np.full(shape, 0.05), np.full(shape, 0.18)  # DAB-tinted field
    for c in centres:
        hema[_disk(shape, c, 16)] = 0.5  # negative nuclei: hematoxylin on the same tint
    hema[_disk(shape, centres[0], 16)] = 0.3
    dab[_disk(shape, centres[0], 16)] = 0.9  # one positive
    rgb = _beer_lambert(hema, dab)
    params = replace(REAL, cells="all", thresholds=(0.15, 0.4, 0.6))
    as_is = quantify_tile(rgb, MPP, params=replace(params, dab_baseline="none")).nuclei
    above = quantify_tile(rgb, MPP, params=params).nuclei
    assert len(as_is) == len(above) == 4
    assert (as_is.cls > 0).sum() == 4  # the tint alone passes the first threshold
    assert (above.cls > 0).sum() == 1  # judged above the field's own DAB, only the positive does


def test_pale_nucleus_in_stained_cytoplasm_is_found_in_hematoxylin():
    shape = (200, 200)
    hema, dab = np.full(shape, 0.02), np.zeros(shape)
    cell = _disk(shape, (100, 100), 40)
    dab[cell] = 0.12  # DAB-tinted cytoplasm
    nucleus = _disk(shape, (100, 100), 14)
    hema[nucleus] = 0.18  # a pale negative nucleus
    dab[nucleus] = 0.0
    rgb = _beer_lambert(hema, dab)
    found = quantify_tile(rgb, MPP, params=replace(REAL, cells="all")).nuclei
    assert len(found) >= 1
    d = np.hypot(found.xy[:, 0] - 100, found.xy[:, 1] - 100)
    assert d.min() < 6 and found.cls[d.argmin()] == 0


def test_real_fields_detection_holds_on_the_rendered_truth():
    rgb, truth = render_dab(448, 448, 0.5, positive_fraction=0.4, seed=3)
    result = ihc.quantify_image(rgb, 0.5, "ki67", params=REAL)
    inside = (truth.centres >= 0).all(axis=1) & (truth.centres < 448).all(axis=1)
    true_index = float((truth.dab[inside] > 0).mean() * 100)
    assert abs(result.summary()["ki67_index"] - true_index) <= 3.0


def _bcdata(name: str):
    field = SHARED_DATA / "ihc-truth" / "bcdata-sample" / f"{name}.jpg"
    if not field.exists():
        pytest.skip(f"{field} not available")
    with open(field.with_suffix(".points.csv"), newline="") as fh:
        positive = [r["class"].strip() == "positive" for r in csv.DictReader(fh)]
    return field, 100.0 * float(np.mean(positive))


def _index(path, params) -> float:
    from napari_histostain.io.slide import MissingMppWarning, open_slide

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MissingMppWarning)
        slide = open_slide(path)
    with slide:
        result = ihc.quantify_slide(slide.with_mpp(MPP), "ki67", params=params, threads=0)
    return float(result.summary()["ki67_index"])


def test_real_fields_detection_on_a_real_bcdata_field():
    """bcdata-15 (held-out half): pale negative nuclei in a DAB-tinted field, 265 marked nuclei."""
    field, truth = _bcdata("bcdata-15")
    standard, real = _index(field, STANDARD), _index(field, REAL)
    assert abs(real - truth) <= 5.0
    assert abs(real - truth) < abs(standard - truth)
    assert _index(field, ihc.IHCParams()) == real  # the default ("auto") reads it as a real field


@pytest.mark.parametrize(
    "params", [STANDARD, REAL, ihc.IHCParams()], ids=["standard", "real-fields", "auto"]
)
def test_a_512px_field_gives_the_same_index_as_tiff_and_png(tmp_path, params):
    import tifffile
    from imageio.v3 import imread, imwrite

    field, _ = _bcdata("bcdata-00")
    rgb = np.ascontiguousarray(imread(field)[:512, :512, :3])
    png, tif = tmp_path / "field.png", tmp_path / "field.tif"
    imwrite(png, rgb)
    tifffile.imwrite(tif, rgb, photometric="rgb")
    from_png, from_tif = _index(png, params), _index(tif, params)
    assert from_png == from_tif


def test_saved_results_record_the_detection_each_tile_got(tmp_path):
    """With "auto", a real field's tile gets "real-fields" and rendered cells on glass "standard";
    the JSON keeps the setting and counts the tiles of each, the tile table names each tile's."""
    import json

    from imageio.v3 import imread

    field, _ = _bcdata("bcdata-00")
    real = np.asarray(imread(field))[:, :, :3]
    rendered, _ = render_dab(640, 640, MPP, positive_fraction=0.4, seed=3)
    rgb = np.concatenate([real, rendered[..., :3]], axis=1)  # two 640 px tiles side by side
    result = ihc.quantify_image(rgb, MPP, "ki67", tile_mpp=MPP, tile_size=640)
    assert result.tile_detection == ["real-fields", "standard"]
    result.save(tmp_path, stem="two")
    doc = json.loads((tmp_path / "two.ihc.json").read_text())
    assert doc["params"]["detection"] == "auto"
    assert doc["detection"] == {
        "setting": "auto",
        "applied_tiles": {"real-fields": 1, "standard": 1},
    }
    with open(tmp_path / "two.ihc_tiles.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["detection"] for r in rows] == ["real-fields", "standard"]
    # an explicit choice is what every tile gets
    fixed = ihc.quantify_image(rgb, MPP, "ki67", params=STANDARD, tile_mpp=MPP, tile_size=640)
    assert fixed.tile_detection == ["standard", "standard"]
    assert fixed.to_dict()["detection"]["applied_tiles"] == {"standard": 2}
