"""Output folders that cannot take the outputs, interrupted runs and two runs into one folder: a
prediction and its exports are written as one set (all of them or none), the message is true, and
no lock, staging folder or temporary file is left behind."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from bad_inputs.kit import cli_env, files_in, predict_args, private_mount_available, run_subprocess

EXPORT_SET = [
    ".case.histostain-files.json",
    "case.ki67-attention.heatmap.ome.tif",
    "case.ki67-positivity.heatmap.ome.tif",
    "case.ki67.tiles.geojson",
    "case.p53-attention.heatmap.ome.tif",
    "case.p53-positivity.heatmap.ome.tif",
    "case.p53.tiles.geojson",
    "case.prediction.json",
    "case.report.json",
    "case.report.png",
    "case.tiles.csv",
]

needs_mounts = pytest.mark.skipif(
    not private_mount_available(), reason="unshare cannot give the test its own tmpfs mounts here"
)


def _in_private_tmpfs(out, listing, options: str, before: str = "") -> list[str]:
    """A wrapper running a command with `out` a fresh tmpfs (mount `options`) of its own; the files
    it leaves there are written to `listing` (the mount vanishes with the command)."""
    script = (
        f"mount -t tmpfs -o {options} tmpfs '{out}' && {before} "
        f"\"$@\"; code=$?; (cd '{out}' && find . -type f | sort) > '{listing}'; exit $code"
    )
    return ["unshare", "-rm", "sh", "-c", script, "sh"]


@pytest.mark.slow
@needs_mounts
def test_full_disk_leaves_the_previous_outputs_and_nothing_else(small_slide, kit, tmp_path):
    out, listing = tmp_path / "out", tmp_path / "listing.txt"
    out.mkdir()
    previous = f"echo previous > '{out}/case.prediction.json' &&"
    r = run_subprocess(
        predict_args(small_slide, out, kit, "--export", "all"),
        wrap=_in_private_tmpfs(out, listing, "size=96k", before=previous),
    )
    assert r.code == 2 and len(r.error_lines) == 1
    assert r.error_lines[0].startswith(f"histostain: error: could not write {out}/case.")
    assert r.error_lines[0].endswith(
        "the disk is full; free some space or choose another output folder. Nothing was written."
    )
    # the previous result is untouched; no staging folder, lock or temporary file remains
    assert listing.read_text().split() == ["./case.prediction.json"]


@needs_mounts
def test_read_only_folder_is_one_line(small_slide, kit, tmp_path):
    out, listing = tmp_path / "out", tmp_path / "listing.txt"
    out.mkdir()
    r = run_subprocess(
        predict_args(small_slide, out, kit), wrap=_in_private_tmpfs(out, listing, "ro")
    )
    assert r.code == 2
    assert r.error_lines == [
        f"histostain: error: could not write to {out}: the folder is read-only; choose another "
        "output folder."
    ]
    assert listing.read_text().split() == []


def test_output_folder_under_a_file_is_one_line(cli, small_slide, kit, tmp_path):
    (tmp_path / "file").write_text("a file, not a folder")
    r = cli(*predict_args(small_slide, tmp_path / "file" / "out", kit))
    assert r.code == 2 and len(r.error_lines) == 1
    assert r.error_lines[0].startswith(f"histostain: error: could not write {tmp_path / 'file'}")
    assert files_in(tmp_path) == ["file"]


def test_failing_export_writes_none_of_the_set(cli, small_slide, kit, tmp_path, monkeypatch):
    from napari_histostain.io.atomic import OutputError

    def full(path, *_a, **_k):
        raise OutputError(f"could not write {path}: the disk is full. Nothing was written.")

    monkeypatch.setattr("napari_histostain.results.export.write_png", full)
    out = tmp_path / "out"
    r = cli(*predict_args(small_slide, out, kit, "--export", "all"))
    assert r.code == 2 and "the disk is full" in r.err
    assert files_in(out) == []  # not the JSON, the CSV, the GeoJSONs or the heatmaps before it


def test_ctrl_c_during_exports_writes_none_of_the_set(cli, small_slide, kit, tmp_path, monkeypatch):
    out = tmp_path / "out"
    assert cli(*predict_args(small_slide, out, kit)).code == 0
    before = {f: (out / f).read_bytes() for f in files_in(out)}
    calls = []

    def interrupted(*_a, **_k):
        calls.append(1)
        raise KeyboardInterrupt

    monkeypatch.setattr("napari_histostain.results.export.write_heatmap", interrupted)
    r = cli(*predict_args(small_slide, out, kit, "--export", "all"))
    assert calls and r.code == 130
    assert r.error_lines == ["histostain: interrupted; no file was left half-written."]
    assert {f: (out / f).read_bytes() for f in files_in(out)} == before  # the old set, untouched


@pytest.mark.slow
def test_real_ctrl_c_leaves_the_whole_set_or_none(small_slide, kit, tmp_path):
    """SIGINT while the set is being staged: the folder then holds the whole set or nothing."""
    out = tmp_path / "out"
    argv = [sys.executable, "-m", "napari_histostain.cli"]
    argv += predict_args(small_slide, out, kit, "--export", "all")
    proc = subprocess.Popen(argv, env=cli_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.time() + 120
    while proc.poll() is None and time.time() < deadline:
        if out.exists() and any(p.name.endswith(".histostain-staging") for p in out.iterdir()):
            proc.send_signal(signal.SIGINT)
            break
        time.sleep(0.005)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode in (0, 130), err
    if proc.returncode == 130:
        assert err.decode().strip().endswith("interrupted; no file was left half-written.")
    assert files_in(out) in ([], EXPORT_SET)


def test_a_live_run_holds_the_slide_lock(cli, small_slide, kit, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (out / ".case.histostain-lock").write_text(f"{os.uname().nodename}:{other.pid}")
        r = cli(*predict_args(small_slide, out, kit))
    finally:
        other.kill()
        other.wait()
    assert r.code == 2
    assert r.error_lines == [
        f"histostain: error: another histostain predict run for case (pid {other.pid}) is "
        f"writing to {out}; wait for it to finish or choose another --out folder."
    ]
    assert files_in(out) == [".case.histostain-lock"]  # the other run's lock is left to it
    # once that process is gone its lock is stale: the next run takes it over and removes it
    r = cli(*predict_args(small_slide, out, kit))
    assert r.code == 0 and files_in(out) == [
        ".case.histostain-files.json",
        "case.prediction.json",
        "case.tiles.csv",
    ]


@pytest.mark.slow
def test_two_runs_into_one_folder_never_mix(small_slide, kit, tmp_path):
    """The audit: two runs with different markers left a JSON of one beside exports of another."""
    out = tmp_path / "out"
    runs = []
    for markers in (("p53", "ki67"), ("ki67",)):
        argv = [sys.executable, "-m", "napari_histostain.cli", "predict", str(small_slide)]
        argv += ["--out", str(out), "--quiet", "--export", "all", "--encoder", str(kit["encoder"])]
        for m in markers:
            argv += ["--marker", m, "--model", f"{m}={kit['models'][m]}"]
        runs.append(subprocess.Popen(argv, env=cli_env(), stderr=subprocess.PIPE, text=True))
    results = [(p.wait(timeout=300), p.stderr.read()) for p in runs]
    assert any(code == 0 for code, _ in results)
    for code, err in results:
        assert code == 0 or (code == 2 and "another histostain predict run for case" in err)
    doc = json.loads((out / "case.prediction.json").read_text())
    markers = set(doc["markers"])
    header = (out / "case.tiles.csv").read_text().splitlines()[0]
    assert {c.split("_")[0] for c in header.split(",") if c.endswith("_positivity")} == markers
    assert {f.split(".")[1] for f in files_in(out) if f.endswith(".geojson")} == markers
    assert [f for f in files_in(out) if f.startswith(".")] == [".case.histostain-files.json"]


def test_next_run_replaces_the_whole_previous_set_and_nothing_else(cli, small_slide, kit, tmp_path):
    out = tmp_path / "out"
    assert cli(*predict_args(small_slide, out, kit, "--export", "all")).code == 0
    assert files_in(out) == EXPORT_SET
    (out / "case.my-notes.txt").write_text("mine")
    argv = ["predict", small_slide, "--out", out, "--quiet", "--export", "geojson"]
    argv += [
        "--encoder",
        kit["encoder"],
        "--marker",
        "ki67",
        "--model",
        f"ki67={kit['models']['ki67']}",
    ]
    r = cli(*argv)
    assert r.code == 0
    # one consistent set (ki67 only) and the user's file; the p53 files and the heatmaps of the
    # previous prediction are gone, and the output says so
    assert files_in(out) == [
        ".case.histostain-files.json",
        "case.ki67.tiles.geojson",
        "case.my-notes.txt",
        "case.prediction.json",
        "case.tiles.csv",
    ]
    assert f"removed {out / 'case.p53.tiles.geojson'} (of the previous prediction" in r.out
