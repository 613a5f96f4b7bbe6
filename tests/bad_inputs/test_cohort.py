"""`predict-cohort` touches only what it created: a user's files in --out and in slide folders
survive every run, --force included; what killed runs left is cleaned by name; a case_id that a
spreadsheet would run as a formula is escaped in the summary CSV."""

from __future__ import annotations

import csv
import json
import shutil

import pytest

from bad_inputs.kit import files_in, model_args

#: The files a cohort run writes for slide `case` (besides the summary).
OURS = [
    "case/.histostain-done.json",
    "case/case.prediction.json",
    "case/case.tiles.csv",
    "cohort-summary.csv",
    "cohort-summary.json",
]
#: Files of the user's that look like ours but are not.
USERS = [
    ".notes.part",
    ".staging/draft.txt",
    "case/.my-hidden-notes",
    "case/my-annotations.geojson",
    "my-cohort-notes.txt",
]


def _cohort(cli, out, slides, kit, *extra):
    return cli(
        "predict-cohort",
        *slides,
        "--out",
        out,
        "--workers",
        "0",
        "--quiet",
        *model_args(kit, ("ki67",)),
        *extra,
    )


def _user_files(out):
    for name in USERS:
        (out / name).parent.mkdir(parents=True, exist_ok=True)
        (out / name).write_text(f"the user's {name}")


@pytest.mark.slow
def test_user_files_survive_runs_force_and_cleanup(cli, small_slide, kit, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    _user_files(out)
    r = _cohort(cli, out, [small_slide], kit)
    assert r.code == 0 and "done 1, skipped 0, failed 0" in r.err
    assert files_in(out) == sorted(USERS + OURS)

    # what a killed run leaves (our own staging folder and temporary summary): cleaned by name
    (out / ".cohort.0123456789ab.histostain-staging" / "case.x").mkdir(parents=True)
    (out / ".cohort.0123456789ab.histostain-staging" / "case.x" / "case.tiles.csv").write_text("")
    (out / ".cohort-summary.csv.k2j3.part").write_text("half a summary")
    done = (out / "case" / ".histostain-done.json").read_text()
    r = _cohort(cli, out, [small_slide], kit, "--force")
    assert r.code == 0 and "done 1, skipped 0, failed 0" in r.err
    assert files_in(out) == sorted(USERS + OURS)
    assert (out / "case" / ".histostain-done.json").read_text() != done  # really recomputed
    for name in USERS:
        assert (out / name).read_text() == f"the user's {name}"

    r = _cohort(cli, out, [small_slide], kit)
    assert r.code == 0 and "done 0, skipped 1, failed 0" in r.err
    assert files_in(out) == sorted(USERS + OURS)


def test_interrupted_commit_is_recomputed_and_keeps_user_files(cli, small_slide, kit, tmp_path):
    """A slide folder whose commit was cut short (no done-marker) is recomputed on resume."""
    out = tmp_path / "out"
    assert _cohort(cli, out, [small_slide], kit).code == 0
    (out / "case" / "my-annotations.geojson").write_text("{}")
    marker = out / "case" / ".histostain-done.json"
    shutil.move(marker, out / "case" / ".histostain-done.replacing.json")
    (out / "case" / "case.tiles.csv").write_text("half")
    r = _cohort(cli, out, [small_slide], kit)
    assert r.code == 0 and "done 1, skipped 0" in r.err
    assert files_in(out / "case") == [
        ".histostain-done.json",
        "case.prediction.json",
        "case.tiles.csv",
        "my-annotations.geojson",
    ]
    assert (out / "case" / "case.tiles.csv").read_text() != "half"


@pytest.mark.parametrize(
    "case_id, cell",
    [
        ('=HYPERLINK("http://x","open")', '\'=HYPERLINK("http://x","open")'),
        ("+cmd|' /C calc'!A0", "'+cmd|' /C calc'!A0"),
        ("@SUM(A1:A9)", "'@SUM(A1:A9)"),
        ("-1+2", "'-1+2"),
        ("-7", "-7"),  # a plain number is left as it is
        ("C-12", "C-12"),
    ],
)
def test_formula_like_case_id_is_escaped_in_the_summary_csv(
    case_id, cell, cli, small_slide, kit, tmp_path
):
    manifest = tmp_path / "cohort.csv"
    with open(manifest, "w", newline="") as fh:
        csv.writer(fh).writerows([["slide", "case_id"], [str(small_slide), case_id]])
    out = tmp_path / "out"
    r = _cohort(cli, out, ["--manifest", manifest], kit)
    assert r.code == 0
    with open(out / "cohort-summary.csv", newline="") as fh:
        row = next(csv.DictReader(fh))
    assert row["case_id"] == cell
    assert json.loads((out / "cohort-summary.json").read_text())["slides"][0]["case_id"] == case_id
    assert files_in(out) == OURS


def test_resume_recomputes_when_the_encoder_changed_under_the_same_name(
    cli, small_slide, kit, tmp_path
):
    """Resume compares the encoder's fingerprint (the archive's hash), not its name or path."""
    import torch

    encoder = tmp_path / "encoder.pt"
    shutil.copy(kit["encoder"], encoder)
    argv = ["--encoder", encoder, "--marker", "ki67", "--model", f"ki67={kit['models']['ki67']}"]
    out = tmp_path / "out"
    base = ["predict-cohort", small_slide, "--out", out, "--workers", "0", "--quiet"]
    assert "done 1, skipped 0" in cli(*base, *argv).err
    assert "done 0, skipped 1" in cli(*base, *argv).err
    module = torch.jit.load(str(encoder))
    with torch.no_grad():
        for p in module.parameters():
            p.mul_(2.0)
    torch.jit.save(module, str(encoder))  # same file name, other weights
    assert "done 1, skipped 0" in cli(*base, *argv).err
    done = json.loads((out / "case" / ".histostain-done.json").read_text())
    from napari_histostain.io.fingerprint import file_sha256

    assert done["encoder_fingerprint"] == "sha256:" + file_sha256(encoder)
