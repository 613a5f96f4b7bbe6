"""`histostain predict`: outputs written atomically, clear errors for bad input."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from tiny_models import write_tiny_kit

from napari_histostain.cli import main
from napari_histostain.engine import model_files as model_mod


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    kit = write_tiny_kit(tmp_path_factory.mktemp("cli"))
    return kit["encoder"], kit["models"]


def _args(slide, out, files, *extra):
    enc, models = files
    return [
        "predict",
        str(slide),
        "--out",
        str(out),
        "--encoder",
        str(enc),
        "--marker",
        "p53",
        "--marker",
        "ki67",
        "--model",
        f"p53={models['p53']}",
        "--model",
        f"ki67={models['ki67']}",
        *extra,
    ]


def test_predict_writes_json_and_csv(synthetic_slide, files, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(_args(synthetic_slide, out, files, "--tile-mpp", "0.5")) == 0
    assert sorted(p.name for p in out.iterdir()) == [
        ".synthetic.histostain-files.json",  # the set written, replaced as one by the next run
        "synthetic.prediction.json",
        "synthetic.tiles.csv",
    ]
    doc = json.loads((out / "synthetic.prediction.json").read_text())
    assert set(doc["markers"]) == {"p53", "ki67"} and doc["grid"]["tile_mpp"] == 0.5
    lines = (out / "synthetic.tiles.csv").read_text().splitlines()
    assert len(lines) == doc["grid"]["n_tiles"] + 1 and "ki67_attention" in lines[0]
    captured = capsys.readouterr()
    assert "Ki-67" in captured.out and "wrote" in captured.out
    assert "tile" in captured.err  # the progress bar


def test_region_and_mpp_options(synthetic_slide, files, tmp_path):
    out = tmp_path / "out"
    assert (
        main(
            _args(
                synthetic_slide, out, files, "--region", "0,0,1500,1000", "--mpp", "0.25", "--quiet"
            )
        )
        == 0
    )
    doc = json.loads((out / "synthetic.prediction.json").read_text())
    assert doc["grid"]["region"] == [0, 0, 1500, 1000] and doc["grid"]["slide_mpp"] == [0.25, 0.25]


def test_export_flag_writes_qupath_geojson_and_heatmaps(synthetic_slide, files, tmp_path):
    import tifffile
    from shapely.geometry import shape

    out = tmp_path / "out"
    assert main(_args(synthetic_slide, out, files, "--export", "geojson,heatmaps", "--quiet")) == 0
    names = sorted(p.name for p in out.iterdir())
    geojson = [n for n in names if n.endswith(".geojson")]
    heatmaps = [n for n in names if n.endswith(".ome.tif")]
    assert geojson and len(heatmaps) >= 2, names
    doc = json.loads((out / "synthetic.prediction.json").read_text())
    fc = json.loads((out / geojson[0]).read_text())
    assert fc["type"] == "FeatureCollection" and len(fc["features"]) == doc["grid"]["n_tiles"]
    feature = fc["features"][0]
    assert feature["properties"]["objectType"] == "tile" and shape(feature["geometry"]).area > 0
    with tifffile.TiffFile(out / heatmaps[0]) as tif:
        assert tif.is_ome


def test_export_csv_leaves_one_tile_table_with_the_predict_schema(
    synthetic_slide, files, tmp_path, capsys
):
    import csv

    out = tmp_path / "out"
    assert main(_args(synthetic_slide, out, files, "--export", "csv,report", "--quiet")) == 0
    printed = capsys.readouterr().out
    assert printed.count("synthetic.tiles.csv") == 1  # written once, said once
    doc = json.loads((out / "synthetic.prediction.json").read_text())
    assert doc["tiles_csv"] == "synthetic.tiles.csv"
    with open(out / "synthetic.tiles.csv", newline="") as fh:
        header = next(csv.reader(fh))
    assert header[:10] == [
        "tile",
        "row",
        "col",
        "x",
        "y",
        "width",
        "height",
        "x_um",
        "y_um",
        "tissue",
    ]
    assert "p53_contribution" in header and "tile_id" not in header


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--export", "pdf"], "unknown kind"),
        (["--model", "p53=/nonexistent/model.pt"], "not found"),
        (["--region", "1,2,3"], "X,Y,W,H"),
        (["--model", "her2=x.pt"], "MARKER=PATH"),
    ],
)
def test_bad_options_give_clear_errors(synthetic_slide, files, tmp_path, capsys, extra, message):
    out = tmp_path / "out"
    assert main(_args(synthetic_slide, out, files, *extra)) == 2
    err = capsys.readouterr().err
    assert err.startswith("histostain: error:") and message in err
    assert not out.exists() or not list(out.iterdir())


def test_missing_slide_and_missing_bundled_model(synthetic_slide, tmp_path, capsys, monkeypatch):
    assert (
        main(
            ["predict", str(tmp_path / "nope.svs"), "--out", str(tmp_path / "o"), "--marker", "p53"]
        )
        == 2
    )
    assert "no such file" in capsys.readouterr().err
    monkeypatch.setattr(model_mod, "MODELS_DIR", tmp_path / "empty")
    assert (
        main(["predict", str(synthetic_slide), "--out", str(tmp_path / "o"), "--marker", "pdl1"])
        == 2
    )
    assert "no bundled PD-L1 model" in capsys.readouterr().err


def test_help_is_quick_and_lists_options():
    r = subprocess.run(
        [sys.executable, "-m", "napari_histostain.cli", "predict", "--help"],
        cwd=Path(sys.executable).parent,  # import the installed package
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 0 and "--tile-mpp" in r.stdout and "--marker" in r.stdout


def test_predict_with_annotations_gives_results_per_region(
    synthetic_slide, files, tmp_path, capsys
):
    import csv

    import shapely

    from napari_histostain.annotations import Annotation, write_annotations

    def run(name, *extra):
        out = tmp_path / name
        assert (
            main([*_args(synthetic_slide, out, files, "--tile-mpp", "1", *extra), "--quiet"]) == 0
        )
        with open(out / "synthetic.tiles.csv", newline="") as fh:
            rows = list(csv.DictReader(fh))
        return json.loads((out / "synthetic.prediction.json").read_text()), rows

    # 448 px tiles (224 px at 1 um/px on a 0.5 um/px slide): the box holds tile columns 0-2
    left = Annotation(shapely.box(0, 0, 1344, 2000), "Tumor", name="left")
    doc, rows = run("out", "--annotations", str(write_annotations(tmp_path / "a.geojson", [left])))
    assert "region 'left' (annotation)" in capsys.readouterr().out
    assert doc["annotations_source"]["tile_rule"] == "centre"
    regions = {r["key"]: r for r in doc["annotations"]}
    assert set(regions) == {"all", "class:Tumor", left.id}
    mine = [r for r in rows if r["annotation"] == "left"]
    cells = {(int(r["row"]), int(r["col"])) for r in mine}
    assert len(cells) == regions[left.id]["n_tiles"] > 1
    assert {c for _, c in cells} <= {0, 1, 2}
    # the same tiles predicted on their own (a --region of exactly them) give the same call
    part, part_rows = run("alone", "--region", "0,0,1344,2000")
    assert {(int(r["row"]), int(r["col"])) for r in part_rows} == cells
    res = regions[left.id]["markers"]
    for m in ("p53", "ki67"):
        assert res[m]["tiles_computed"] == len(cells)
        assert res[m]["probability"] == pytest.approx(part["markers"][m]["probability"], rel=1e-6)
        assert res[m]["label"] == part["markers"][m]["label"]
        assert res[m]["probability"] != pytest.approx(doc["markers"][m]["probability"], abs=1e-9)
    # an Ignore* region over one tile's centre takes that tile out of the region and its call
    r, c = sorted(cells)[len(cells) // 2]
    fold = Annotation(
        shapely.box(c * 448 + 200, r * 448 + 200, c * 448 + 250, r * 448 + 250), "Ignore*"
    )
    gj = write_annotations(tmp_path / "b.geojson", [left, fold])
    doc2, rows2 = run("fold", "--annotations", str(gj))
    res2 = next(x for x in doc2["annotations"] if x["key"] == left.id)
    assert res2["n_tiles"] == len(cells) - 1
    assert [x["annotation"] for x in rows2 if (x["row"], x["col"]) == (str(r), str(c))] == [""]
    for m in ("p53", "ki67"):
        assert res2["markers"][m]["probability"] != pytest.approx(res[m]["probability"], abs=1e-9)


def test_predict_refuses_a_bad_annotation_file_before_any_work(
    synthetic_slide, files, tmp_path, capsys
):
    bad = tmp_path / "bad.geojson"
    bad.write_text("[]")
    out = tmp_path / "out"
    assert main(_args(synthetic_slide, out, files, "--annotations", str(bad))) == 2
    assert "no polygon annotations" in capsys.readouterr().err
    assert not out.exists()
