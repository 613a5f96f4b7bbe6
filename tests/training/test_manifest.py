"""Cohort manifest validation: clear errors for every kind of bad manifest."""

from pathlib import Path

import pytest

from napari_histostain.errors import HistostainError
from napari_histostain.training.manifest import ManifestError, load_manifest

HEADER = "case_id,marker,he_path,ihc_path,label"


def write(
    tmp_path: Path, lines: list[str], files=("a_he.tif", "a_ihc.tif", "b_he.tif", "b_ihc.tif")
):
    for f in files:
        (tmp_path / f).write_bytes(b"x")
    p = tmp_path / "manifest.csv"
    p.write_text("\n".join(lines) + "\n")
    return p


def test_good_manifest_resolves_relative_paths_and_classes(tmp_path):
    p = write(
        tmp_path,
        [
            HEADER + ",fold,split",
            "a,p53,a_he.tif,a_ihc.tif,1,0,train",
            "b,p53,b_he.tif,b_ihc.tif,0,1,test",
            "a,ki67,a_he.tif,b_ihc.tif,0,,",
        ],
    )
    m = load_manifest(p, marker="p53")
    assert [c.case_id for c in m.cases] == ["a", "b"] and m.classes == ["0", "1"]
    assert m.cases[0].he_path == tmp_path / "a_he.tif" and m.cases[1].split == "test"
    assert m.cases[0].fold == 0 and [c.case_id for c in m.split("test")] == ["b"]
    assert load_manifest(p, classes=["0", "1"]).markers == ["ki67", "p53"]
    # the shared H&E appears once among the slides
    assert len(load_manifest(p).slide_paths()) == 4


@pytest.mark.parametrize(
    "lines, message",
    [
        (["case_id,marker,he_path,label", "a,p53,a_he.tif,1"], r"lacks column\(s\) ihc_path"),
        ([HEADER], "has no cases"),
        (
            [HEADER, "a,p53,a_he.tif,missing.tif,1", "b,p53,b_he.tif,b_ihc.tif,0"],
            "slide file .*missing.tif does not exist",
        ),
        ([HEADER, "a,p53,a_he.tif,,1", "b,p53,b_he.tif,b_ihc.tif,0"], "case has no IHC slide"),
        ([HEADER, "a,p53,,a_ihc.tif,1", "b,p53,b_he.tif,b_ihc.tif,0"], "case has no H&E slide"),
        (
            [HEADER, "a,p53,a_he.tif,a_ihc.tif,1", "a,p53,b_he.tif,b_ihc.tif,0"],
            "duplicate case 'a' for marker 'p53' \\(first on line 2\\)",
        ),
        (
            [
                HEADER + ",split",
                "a,p53,a_he.tif,a_ihc.tif,1,holdout",
                "b,p53,b_he.tif,b_ihc.tif,0,",
            ],
            "split 'holdout' must be one of train, test",
        ),
        (
            [HEADER + ",fold", "a,p53,a_he.tif,a_ihc.tif,1,x", "b,p53,b_he.tif,b_ihc.tif,0,1"],
            "fold 'x' is not an integer",
        ),
        ([HEADER, "a,p53,a_he.tif,a_ihc.tif,1", "b,p53,b_he.tif,b_ihc.tif,1"], "single class"),
    ],
)
def test_bad_manifests_give_clear_errors(tmp_path, lines, message):
    with pytest.raises(ManifestError, match=message) as info:
        load_manifest(write(tmp_path, lines))
    assert isinstance(info.value, HistostainError)


def test_labels_outside_the_class_list_and_unknown_marker(tmp_path):
    p = write(tmp_path, [HEADER, "a,p53,a_he.tif,a_ihc.tif,maybe", "b,p53,b_he.tif,b_ihc.tif,0"])
    with pytest.raises(ManifestError, match="case a: label 'maybe' is not one of the classes"):
        load_manifest(p, classes=["0", "1"])
    with pytest.raises(ManifestError, match="no cases for marker 'ki67'; markers present: p53"):
        load_manifest(p, marker="ki67")


def test_every_problem_is_listed_with_its_line(tmp_path):
    p = write(
        tmp_path,
        [
            HEADER,
            "a,p53,nope1.tif,a_ihc.tif,1",
            "b,p53,b_he.tif,nope2.tif,0",
            "b,p53,b_he.tif,b_ihc.tif,0",
        ],
    )
    with pytest.raises(ManifestError) as info:
        load_manifest(p)
    text = str(info.value)
    assert "3 problem(s)" in text and "line 2" in text and "line 3" in text and "line 4" in text


def test_missing_manifest_and_unchecked_files(tmp_path):
    with pytest.raises(ManifestError, match="does not exist; give the cohort CSV"):
        load_manifest(tmp_path / "none.csv")
    p = write(tmp_path, [HEADER, "a,p53,x.tif,y.tif,1", "b,p53,z.tif,w.tif,0"], files=())
    assert len(load_manifest(p, check_files=False).cases) == 2
