"""`histostain quantify`: IHC indices per annotated region, and fields of view of any format
(the same pixels give the same index)."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import shapely
import tifffile
from PIL import Image

from napari_histostain.annotations import Annotation, write_annotations
from napari_histostain.cli import main
from napari_histostain.ihc.synthetic import dab_slide_renderer, render_dab
from shared_data import shared_file


@pytest.fixture(scope="module")
def dab_slide(tmp_path_factory):
    """A 1344 x 1344 px Ki-67 slide at 0.5 um/px: 3 x 3 tiles of 448 px."""
    from napari_histostain.io.synthetic import write_slide

    path = tmp_path_factory.mktemp("ihc") / "dab.tiff"
    write_slide(
        path, 1344, 1344, dab_slide_renderer(1344, 1344, 0.5, positive_fraction=0.3, seed=4), 0.5
    )
    return path


def test_quantify_per_annotation(dab_slide, tmp_path, capsys):
    anns = [
        Annotation(shapely.box(0, 0, 896, 1344), "Tumor", name="left"),  # columns 0-1
        Annotation(shapely.box(896, 0, 1344, 1344), "Stroma", name="right"),  # column 2
        Annotation(shapely.box(500, 500, 800, 800), "Exclude"),  # centre of tile (1, 1)
    ]
    gj = write_annotations(tmp_path / "a.geojson", anns)
    out = tmp_path / "out"
    argv = ["quantify", str(dab_slide), "--marker", "ki67", "--out", str(out)]
    assert main([*argv, "--annotations", str(gj)]) == 0
    printed = capsys.readouterr().out
    assert "region 'left' (annotation, 5 tiles)" in printed
    doc = json.loads((out / "dab.ki67.ihc.json").read_text())
    with open(out / "dab.ki67.ihc_tiles.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    regions = {r["name"]: r for r in doc["annotations"]}
    assert [r["kind"] for r in doc["annotations"]] == ["all", "class", "class", *["annotation"] * 2]
    left, right, every = regions["left"], regions["right"], regions["all included"]
    assert (left["n_tiles"], right["n_tiles"], every["n_tiles"]) == (5, 3, 8)
    for r in (left, right):
        mine = [row for row in rows if row["annotation"] == r["name"]]
        assert len(mine) == r["n_tiles"]
        n = sum(int(row["n_nuclei"]) for row in mine)
        positive = sum(int(row["n_1+"]) + int(row["n_2+"]) + int(row["n_3+"]) for row in mine)
        assert r["ihc"]["n_nuclei"] == n > 0
        assert r["ihc"]["ki67_index"] == pytest.approx(100 * positive / n, rel=1e-12)
        assert r["ihc"]["marker"] == "ki67"
        # the region's own global and hot-spot Ki-67, over its tiles (area-weighted fields)
        k = r["reported"]["ki67"]
        assert k["n_cells"] == n and k["n_fields"] == len(mine)
        index = [float(row["ki67_index"]) for row in mine]
        assert min(index) - 1e-3 <= k["global_index"] <= max(index) + 1e-3  # a weighted mean
        x0, x1 = (0, 896) if r["name"] == "left" else (896, 1344)
        assert x0 * 0.5 - 1 <= k["hotspot"]["x_um"] <= x1 * 0.5 + 1  # searched inside the region
    with open(out / "dab.ki67.ihc_scores.csv", newline="") as fh:
        scores = {row["region"]: row for row in csv.DictReader(fh)}
    assert set(scores) == {"slide", *regions}
    assert int(scores["left"]["n_tumour_cells"]) == left["reported"]["ki67"]["n_cells"]
    assert left["ihc"]["n_nuclei"] + right["ihc"]["n_nuclei"] == every["ihc"]["n_nuclei"]
    excluded = [row for row in rows if (row["row"], row["col"]) == ("1", "1")]
    assert excluded[0]["annotation"] == ""
    whole = doc["summary"]["n_nuclei"]
    assert every["ihc"]["n_nuclei"] == whole - int(excluded[0]["n_nuclei"])


def test_quantify_annotations_errors(dab_slide, tmp_path, capsys):
    bad = tmp_path / "bad.geojson"
    bad.write_text('{"type": "FeatureCollection", "features": []}')
    out = tmp_path / "o"
    argv = ["quantify", str(dab_slide), "--marker", "ki67", "--out", str(out)]
    assert main([*argv, "--annotations", str(bad)]) == 2
    assert "no polygon annotations" in capsys.readouterr().err
    assert not out.exists()
    argv = ["quantify", "--cohort", str(bad), "--out", str(out), "--annotations", str(bad)]
    assert main(argv) == 2
    assert "without --cohort" in capsys.readouterr().err


def _save_all(rgb: np.ndarray, folder, mpp: float) -> dict:
    """The same pixels as PNG, plain TIFF with a resolution tag, tiled TIFF and OME-TIFF."""
    paths = {
        k: folder / f"field-{k}{ext}"
        for k, ext in (("png", ".png"), ("tif", ".tif"), ("tiled", ".tif"), ("ome", ".ome.tif"))
    }
    Image.fromarray(rgb).save(paths["png"])
    res = dict(resolution=(1e4 / mpp, 1e4 / mpp), resolutionunit="CENTIMETER")
    tifffile.imwrite(paths["tif"], rgb, photometric="rgb", **res)
    tifffile.imwrite(paths["tiled"], rgb, photometric="rgb", tile=(256, 256), **res)
    tifffile.imwrite(
        paths["ome"], rgb, photometric="rgb", metadata={"axes": "YXS", "PhysicalSizeX": mpp}
    )
    return paths


def _index(path, out, capsys, *extra) -> dict:
    assert main(["quantify", str(path), "--marker", "ki67", "--out", str(out), *extra]) == 0
    printed = capsys.readouterr().out
    stem = path.name.split(".")[0]
    doc = json.loads((out / f"{stem}.ki67.ihc.json").read_text())
    return {"summary": doc["summary"], "printed": printed}


def _check_same(rgb, mpp, tmp_path, capsys):
    paths = _save_all(rgb, tmp_path, mpp)
    got = {}
    for kind, path in paths.items():
        extra = ("--mpp", str(mpp)) if kind == "png" else ()
        got[kind] = _index(path, tmp_path / "out", capsys, *extra)
    ref = got["png"]["summary"]
    assert ref["n_nuclei"] > 20
    for kind, g in got.items():
        assert g["summary"]["ki67_index"] == ref["ki67_index"], kind
        assert g["summary"]["n_nuclei"] == ref["n_nuclei"], kind
        assert "smaller than one tile" in g["printed"]  # 128 um < one 224 um tile: a note
    return ref


def test_512px_field_as_tiff_gives_the_index_of_the_same_pixels_as_png(tmp_path, capsys):
    rgb, truth = render_dab(512, 512, 0.25, positive_fraction=0.4, seed=7)
    ref = _check_same(rgb, 0.25, tmp_path, capsys)
    inside = (truth.centres >= 0).all(axis=1) & (truth.centres < 512).all(axis=1)
    assert abs(ref["ki67_index"] - (truth.dab[inside] > 0).mean() * 100) <= 5


def test_real_512px_ki67_field_as_tiff_equals_png(tmp_path, capsys):
    rgb = np.asarray(Image.open(shared_file("ihc-truth", "bcdata-sample", "bcdata-00.jpg")))
    _check_same(np.ascontiguousarray(rgb[:512, :512]), 0.25, tmp_path, capsys)


def test_mpp_overrides_the_files_and_is_needed_for_plain_images(tmp_path, capsys):
    rgb, _ = render_dab(512, 512, 0.25, positive_fraction=0.4, seed=7)
    paths = _save_all(rgb, tmp_path, 0.5)  # a wrong pixel size in the file
    wrong = _index(paths["tif"], tmp_path / "a", capsys)["summary"]
    right = _index(paths["tif"], tmp_path / "b", capsys, "--mpp", "0.25")["summary"]
    png = _index(paths["png"], tmp_path / "c", capsys, "--mpp", "0.25")["summary"]
    assert right["ki67_index"] == png["ki67_index"] and right["n_nuclei"] == png["n_nuclei"]
    assert wrong["n_nuclei"] != right["n_nuclei"]
    assert main(["quantify", str(paths["png"]), "--marker", "ki67", "--out", str(tmp_path)]) == 2
    assert "--mpp" in capsys.readouterr().err


@pytest.mark.parametrize("name", ["notes.png", "x.jpg"])
def test_unreadable_image_is_a_clear_error(tmp_path, capsys, name):
    bad = tmp_path / name
    bad.write_text("not an image")
    assert (
        main(["quantify", str(bad), "--marker", "ki67", "--mpp", "0.25", "--out", str(tmp_path)])
        == 2
    )
    assert "PNG / JPEG" in capsys.readouterr().err


# -- reported scores: global and hot-spot Ki-67, PD-L1 CPS -----------------------------------------
def test_quantify_reports_global_and_hotspot(dab_slide, tmp_path, capsys):
    out = tmp_path / "o"
    argv = ["quantify", str(dab_slide), "--marker", "ki67", "--out", str(out)]
    assert main([*argv, "--hotspot-cells", "300", "--net-grade"]) == 0
    printed = capsys.readouterr().out
    doc = json.loads((out / "dab.ki67.ihc.json").read_text())
    k = doc["reported"]["ki67"]
    spot = k["hotspot"]
    assert k["n_cells"] == doc["summary"]["n_nuclei"]
    assert k["insufficient"] == (k["n_cells"] < 500)
    assert spot["n_cells"] == 300 and spot["insufficient"] is True
    assert k["net_grade"] == "insufficient"  # a 300-cell hot spot cannot grade a NET
    assert spot["x_px"] == pytest.approx(spot["x_um"] / 0.5)
    assert 0 <= spot["x_px"] <= 1344 and 0 <= spot["y_px"] <= 1344
    assert f"Ki-67 global {k['global_index']:.1f} %" in printed
    rows = list(csv.DictReader((out / "dab.ki67.ihc_scores.csv").open()))
    assert rows[0]["region"] == "slide" and int(rows[0]["hotspot_cells"]) == 300
    assert float(rows[0]["ki67_global"]) == pytest.approx(k["global_index"], abs=1e-3)
    assert rows[0]["net_grade"] == "insufficient"


def test_quantify_report_options_checked_up_front(dab_slide, tmp_path, capsys):
    out = tmp_path / "o"
    argv = ["quantify", str(dab_slide), "--out", str(out)]
    both = ["--marker", "ki67", "--hotspot-cells", "500", "--hotspot-area-mm2", "0.2"]
    assert main([*argv, *both]) == 2
    assert "not both" in capsys.readouterr().err
    assert main([*argv, "--marker", "pdl1", "--net-grade"]) == 2
    assert "--net-grade belong to Ki-67" in capsys.readouterr().err
    assert main([*argv, "--marker", "ki67", "--hotspot-area-mm2", "0"]) == 2
    assert "greater than 0" in capsys.readouterr().err
    assert not out.exists()


def test_quantify_pdl1_reports_cps(tmp_path, capsys):
    rgb, _ = render_dab(448, 448, 0.5, positive_fraction=0.0, membrane_fraction=0.5, seed=2)
    path = tmp_path / "pdl1.png"
    Image.fromarray(rgb).save(path)
    argv = ["quantify", str(path), "--marker", "pdl1", "--mpp", "0.5", "--out", str(tmp_path)]
    assert main(argv) == 0
    doc = json.loads((tmp_path / "pdl1.pdl1.ihc.json").read_text())
    p = doc["reported"]["pdl1"]
    assert p["tps"] == pytest.approx(doc["summary"]["pdl1_tps"])
    assert p["cps"] >= p["tps"] and p["cps"] <= 100
    assert p["n_tumour"] == doc["summary"]["n_nuclei"]
    assert "CPS" in capsys.readouterr().out


def test_quantify_applies_and_writes_corrections(dab_slide, tmp_path, capsys):
    """Corrections saved in napari re-score `histostain quantify`'s results and are written
    beside them."""
    from napari_histostain import ihc
    from napari_histostain.ihc.corrections import (
        apply_corrections,
        corrections_for,
        save_corrections,
    )

    result = ihc.quantify_slide(dab_slide, "ki67")
    fixes = corrections_for(result)
    fixes.thresholds = (0.15, 0.5, 0.8)
    neg = np.flatnonzero(result.nuclei.counted & (result.nuclei.cls == 0))[:3]
    for i in neg:
        fixes.set(int(i), "positive")
    saved = save_corrections(tmp_path / "fixes.json", fixes, result)
    want = apply_corrections(result, fixes).summary()
    out = tmp_path / "out"
    argv = ["quantify", str(dab_slide), "--marker", "ki67", "--out", str(out)]
    assert main([*argv, "--corrections", str(saved)]) == 0
    printed = capsys.readouterr().out
    doc = json.loads((out / "dab.ki67.ihc.json").read_text())
    assert doc["summary"]["ki67_index"] == pytest.approx(want["ki67_index"])
    assert doc["summary"]["counts"] == want["counts"]
    assert doc["thresholds"] == [0.15, 0.5, 0.8]
    assert any("3 nuclei re-classed by hand" in m for m in doc["messages"])
    written = json.loads((out / "dab.ki67.ihc_corrections.json").read_text())
    assert len(written["overrides"]) == 3 and "ihc_corrections.json" in printed
    # corrections of another marker are refused with a message
    assert (
        main(
            [
                "quantify",
                str(dab_slide),
                "--marker",
                "p53",
                "--out",
                str(out),
                "--corrections",
                str(saved),
            ]
        )
        == 2
    )
    assert "corrects ki67" in capsys.readouterr().err
