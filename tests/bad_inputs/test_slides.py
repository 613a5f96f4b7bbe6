"""Bad slide files given to `histostain predict`: one clear line, exit 2, nothing left in --out;
and slides that are readable but doubtful (IHC for H&E, no pixel size, one tile): a note, the
usual outputs and nothing else."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from bad_inputs.kit import files_in, predict_args


def _missing(d: Path, slide: Path) -> Path:
    return d / "nope.svs"


def _empty(d: Path, slide: Path) -> Path:
    (d / "empty.svs").touch()
    return d / "empty.svs"


def _text(d: Path, slide: Path) -> Path:
    (d / "notes.svs").write_text("this is a note, not a slide\n")
    return d / "notes.svs"


def _random(d: Path, slide: Path) -> Path:
    (d / "noise.svs").write_bytes(np.random.default_rng(0).bytes(100_000))
    return d / "noise.svs"


def _truncated(d: Path, slide: Path) -> Path:
    data = slide.read_bytes()
    (d / "cut.tif").write_bytes(data[: len(data) // 3])
    return d / "cut.tif"


def _corrupt(d: Path, slide: Path) -> Path:
    """Garbage inside the JPEG tiles of the overview level (all but its first tile)."""
    import tifffile

    with tifffile.TiffFile(slide) as tif:
        page = tif.pages[1]
        chunks = list(zip(page.dataoffsets, page.databytecounts))[1:]
    data = bytearray(slide.read_bytes())
    rng = np.random.default_rng(0)
    for offset, count in chunks:
        data[offset + 20 : offset + count - 2] = rng.bytes(count - 22)
    (d / "garbled.tif").write_bytes(bytes(data))
    return d / "garbled.tif"


def _folder(d: Path, slide: Path) -> Path:
    (d / "dicom").mkdir()
    (d / "dicom" / "readme.txt").write_text("no images here")
    return d / "dicom"


#: case -> (make the file, what the message says is wrong, what it says to do)
BAD_SLIDES = {
    "nonexistent": (_missing, "nope.svs: no such file or folder", "Check the path."),
    "empty": (_empty, "empty.svs: the file is empty (0 bytes)", "Copy the slide again"),
    "text file named .svs": (_text, "notes.svs: the name says .svs slide, but", "Copy it again"),
    "random bytes": (_random, "noise.svs: the name says .svs slide, but", "Copy it again"),
    "truncated": (_truncated, "cut.tif: the name says .tif slide, but", "Copy it again"),
    "corrupt tiles": (_corrupt, "garbled.tif: could not read pixels", "copy it again"),
    "folder without DICOM": (_folder, "this folder holds no DICOM (.dcm) files", "Open a whole"),
}


@pytest.mark.parametrize("case", list(BAD_SLIDES))
def test_bad_slide_is_one_line_exit_2_and_nothing_written(case, cli, small_slide, kit, tmp_path):
    make, wrong, todo = BAD_SLIDES[case]
    slide = make(tmp_path, small_slide)
    out = tmp_path / "out"
    r = cli(*predict_args(slide, out, kit))
    assert r.code == 2
    # one line, ours: no library log line (tifffile's "invalid page offset") and no traceback
    assert len(r.error_lines) == 1 and r.error_lines[0].startswith("histostain: error: ")
    assert wrong in r.error_lines[0] and todo in r.error_lines[0]
    assert files_in(out) == []


def _prediction(out: Path, name: str) -> dict:
    return json.loads((out / f"{name}.prediction.json").read_text())


def test_ihc_slide_given_as_he_is_predicted_with_a_note(cli, kit, tmp_path):
    from napari_histostain.ihc.synthetic import dab_slide_renderer
    from napari_histostain.io.synthetic import write_slide

    slide = write_slide(
        tmp_path / "ki67-ihc.tif",
        768,
        768,
        dab_slide_renderer(768, 768, 0.5, positive_fraction=0.4, seed=2),
        0.5,
    )
    out = tmp_path / "out"
    r = cli(*predict_args(slide, out, kit))
    assert r.code == 0
    assert "looks like an IHC (DAB / haematoxylin) slide, not H&E" in r.out
    assert files_in(out) == [
        ".ki67-ihc.histostain-files.json",
        "ki67-ihc.prediction.json",
        "ki67-ihc.tiles.csv",
    ]
    assert any("looks like an IHC" in m for m in _prediction(out, "ki67-ihc")["messages"])


def test_slide_without_pixel_size_is_predicted_with_a_note(cli, kit, tmp_path):
    from napari_histostain.io.synthetic import write_synthetic_slide

    slide = write_synthetic_slide(tmp_path / "nompp.tif", 1024, 768, None, seed=3)
    out = tmp_path / "out"
    r = cli(*predict_args(slide, out, kit))
    assert r.code == 0
    assert "nompp.tif has no pixel size; 1 um/px was assumed" in r.out
    assert "Give the true mpp (CLI: --mpp)" in r.out
    assert files_in(out) == [
        ".nompp.histostain-files.json",
        "nompp.prediction.json",
        "nompp.tiles.csv",
    ]
    again = cli(*predict_args(slide, out, kit, "--mpp", "0.5"))  # the note's advice works
    assert again.code == 0 and "no pixel size" not in again.out


def test_one_tile_slide_gives_one_tile(cli, kit, tmp_path):
    from napari_histostain.io.synthetic import write_synthetic_slide

    slide = write_synthetic_slide(tmp_path / "tiny.tif", 400, 400, 0.5, seed=5, levels=1)
    out = tmp_path / "out"
    r = cli(*predict_args(slide, out, kit))
    lines = r.out.splitlines()
    assert r.code == 0 and "1 tissue tiles at 1 um/px" in r.out
    assert lines[0].startswith(
        "note: the image (400 x 400 px, 200 x 200 um) is smaller than one tile"
    )
    assert files_in(out) == [
        ".tiny.histostain-files.json",
        "tiny.prediction.json",
        "tiny.tiles.csv",
    ]
    assert _prediction(out, "tiny")["grid"]["n_tiles"] == 1


def test_library_log_lines_never_reach_stderr_outside_the_cli(small_slide, tmp_path):
    """In a dask worker or a script (no logging set up), a truncated file used to print tifffile's
    '<tifffile.TiffPages @8> invalid page offset' line by Python's last-resort handler."""
    import subprocess
    import sys

    from bad_inputs.kit import cli_env

    cut = _truncated(tmp_path, small_slide)
    code = (
        "import sys\n"
        "from napari_histostain.io.slide import SlideError, open_slide\n"
        "try:\n"
        f"    open_slide({str(cut)!r})\n"
        "except SlideError as exc:\n"
        "    print(exc)\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=cli_env())
    assert r.returncode == 0 and "the name says .tif slide" in r.stdout
    assert r.stderr == ""
