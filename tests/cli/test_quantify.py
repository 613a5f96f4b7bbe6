"""`histostain quantify --annotations FILE`: IHC indices per annotated region."""

from __future__ import annotations

import csv
import json

import pytest
import shapely

from napari_histostain.annotations import Annotation, write_annotations
from napari_histostain.cli import main
from napari_histostain.ihc.synthetic import dab_slide_renderer


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
