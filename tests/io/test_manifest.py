"""The one manifest reader: comments, BOM, case-insensitive columns, relative paths, clear errors."""

from __future__ import annotations

import pytest

from napari_histostain.io.manifest import ManifestError, read_manifest


def test_csv_with_bom_comments_and_relative_paths(tmp_path):
    m = tmp_path / "sub" / "cohort.csv"
    m.parent.mkdir()
    m.write_text(
        "\ufeffCase_ID , Slide\n# a comment\n\nC1, a/s.svs \nC2,/abs/t.svs\n", encoding="utf-8"
    )
    t = read_manifest(m, required=("case_id", "slide"))
    assert t.columns == ["Case_ID", "Slide"] and t.column("case_id") == "Case_ID"
    assert [r["Slide"] for r in t.rows] == ["a/s.svs", "/abs/t.svs"]
    assert t.lines == [4, 5]
    assert t.resolve(t.rows[0]["Slide"]) == m.parent / "a" / "s.svs"
    assert str(t.resolve(t.rows[1]["Slide"])) == "/abs/t.svs"


def test_plain_list(tmp_path):
    m = tmp_path / "list.txt"
    m.write_text("# slides\none.svs\n/x/two.ndpi\n")
    t = read_manifest(m, plain_list_column="slide", path_columns=("slide", "path"))
    assert [r["slide"] for r in t.rows] == ["one.svs", "/x/two.ndpi"]


def test_errors_say_what_is_wrong(tmp_path):
    with pytest.raises(ManifestError, match="does not exist"):
        read_manifest(tmp_path / "nope.csv")
    empty = tmp_path / "empty.csv"
    empty.write_text("# nothing\n\n")
    with pytest.raises(ManifestError, match="empty"):
        read_manifest(empty)
    bad = tmp_path / "bad.csv"
    bad.write_text("case_id,marker\nC1,ki67\n")
    with pytest.raises(ManifestError, match=r"lacks column.*ihc_path"):
        read_manifest(bad, required=("case_id", "marker", "ihc_path"))
