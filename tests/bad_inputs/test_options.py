"""Every command-line value is checked before any work: nan, negative, zero, out-of-range and
unparseable values give one argparse error line and exit 2, and no output folder is made."""

from __future__ import annotations

import pytest

from bad_inputs.kit import files_in

#: (command and options, the error line's end); OUT is replaced by the output folder
BAD_VALUES = [
    (["predict", "S", "--tile-mpp", "nan"], "argument --tile-mpp: 'nan' is not a finite number"),
    (["predict", "S", "--tile-mpp", "-1"], "argument --tile-mpp: -1 must be greater than 0"),
    (["predict", "S", "--tile-mpp", "0"], "argument --tile-mpp: 0 must be greater than 0"),
    (["predict", "S", "--mpp", "inf"], "argument --mpp: 'inf' is not a finite number"),
    (["predict", "S", "--min-tissue", "2"], "argument --min-tissue: 2 must be between 0 and 1"),
    (["predict", "S", "--min-tissue", "-1"], "argument --min-tissue: -1 must be between 0 and 1"),
    (["predict", "S", "--batch-size", "0"], "argument --batch-size: 0 must be at least 1"),
    (["predict", "S", "--batch-size", "1e9"], "argument --batch-size: '1e9' is not a number"),
    (
        ["predict", "S", "--reader-threads", "-2"],
        "--reader-threads/--threads: -2 must be at least 1",
    ),
    (["predict", "S", "--max-tiles", "0"], "argument --max-tiles: 0 must be at least 1"),
    (["predict", "S", "--marker", "her2"], "argument --marker/-m: invalid choice: 'her2'"),
    (["predict-cohort", "S", "--memory-limit", "foo"], "is not a memory size; write e.g. 4GB"),
    (["predict-cohort", "S", "--workers", "-1"], "argument --workers: -1 must be 0 or more"),
    (["predict-cohort", "S", "--retries", "-1"], "argument --retries: -1 must be 0 or more"),
    (["predict-cohort", "S", "--threads-per-worker", "0"], "--threads-per-worker: 0 must be at"),
    (["predict-cohort", "S", "--inference-threads", "0"], "--inference-threads: 0 must be at"),
    (["embed", "M", "--cache", "OUT", "--tile-size", "0"], "--tile-size: 0 must be at least 1"),
    (["quantify", "S", "--mpp", "nan"], "argument --mpp: 'nan' is not a finite number"),
    (["quantify", "S", "--ki67-cutoff", "101"], "must be a percentage (0-100)"),
    (["simulate", "OUT", "--quality", "0"], "argument --quality: 0 must be between 1 and 100"),
    (["simulate", "OUT", "--cases", "0"], "argument -n/--cases: 0 must be at least 1"),
    (["simulate", "OUT", "--mpp", "-0.5"], "argument --mpp: -0.5 must be greater than 0"),
    (["train", "M", "--cache", "C", "--marker", "ki67", "--out", "OUT", "--lr", "nan"], "'nan'"),
    (["train", "M", "--cache", "C", "--marker", "ki67", "--out", "OUT", "--folds", "1"], "2 and"),
    (["evaluate", "M", "--cache", "C", "--model", "X", "--out", "OUT", "--bootstrap", "-1"], "-1"),
]


@pytest.mark.parametrize("argv, message", BAD_VALUES, ids=[" ".join(a[2:]) for a, _ in BAD_VALUES])
def test_bad_value_is_one_argparse_line_and_exit_2(argv, message, cli, tmp_path):
    out = tmp_path / "out"
    argv = [str(out) if a == "OUT" else a for a in argv]
    if "--out" not in argv and argv[0] not in ("simulate", "embed"):
        argv += ["--out", str(out)]
    r = cli(*argv)
    assert r.code == 2
    last = r.error_lines[-1]
    assert last.startswith(f"histostain {argv[0]}: error: ") and message in last
    assert "Traceback" not in r.err
    assert not out.exists() and files_in(tmp_path) == []


@pytest.mark.parametrize(
    "region, message",
    [
        ("0,0,inf,5", "write four finite numbers X,Y,W,H (level-0 pixels)"),
        ("1,2,3", "write four finite numbers X,Y,W,H (level-0 pixels)"),
        ("0,0,0,10", "the width and height must be at least 1 pixel"),
    ],
)
def test_bad_region_is_one_line(region, message, cli, small_slide, tmp_path):
    out = tmp_path / "out"
    r = cli("predict", small_slide, "--out", out, "--region", region)
    assert r.code == 2 and r.error_lines == [f"histostain: error: --region {region!r}: {message}"]
    assert files_in(out) == []
