"""Huge declared sizes and tile grids: refused quickly, in bounded memory, with a message that says
what to do, before anything is written."""

from __future__ import annotations

import re
import sys

import numpy as np
import pytest

from bad_inputs.kit import cli_env, files_in, predict_args


def _sparse_ome_tiff(path, width: int, height: int, *, real_tiles: int = 4):
    """A tiled OME-TIFF declaring width x height px with only its first tiles stored: a few MB on
    disk (the tile offset tables) however large the image claims to be."""
    import tifffile

    tile = np.full((256, 256, 3), 200, np.uint8)
    n = -(-width // 256) * -(-height // 256)

    def tiles():
        for i in range(n):
            yield tile if i < real_tiles else None

    tifffile.imwrite(
        path,
        tiles(),
        shape=(height, width, 3),
        dtype=np.uint8,
        tile=(256, 256),
        photometric="rgb",
        ome=True,
        bigtiff=True,
        metadata={"axes": "YXS", "PhysicalSizeX": 0.5, "PhysicalSizeY": 0.5},
    )
    return path


#: The process's own peak resident memory in KiB. Not ``ru_maxrss``: on Linux a child inherits its
#: parent's high-water mark across fork/exec, so under a 1.4 GB pytest it reads 1.4 GB for any child.
PEAK_KIB = "int(next(l for l in open('/proc/self/status') if l.startswith('VmHWM')).split()[1])"

#: Runs the CLI, then reports its own run time and peak memory (VmHWM, KiB) on stderr.
MEASURED_CLI = (
    "import sys, time\n"
    "t = time.perf_counter()\n"
    "from napari_histostain.cli import main\n"
    "code = main(sys.argv[1:])\n"
    f"peak = {PEAK_KIB}\n"
    "print(f'@measured {time.perf_counter() - t:.3f} {peak}', file=sys.stderr)\n"
    "sys.exit(code)\n"
)


@pytest.mark.slow
def test_200000_px_declared_ome_tiff_is_refused_in_seconds_and_little_memory(kit, tmp_path):
    """The audit's 9.7 MB OME-TIFF declaring 200000 x 200000 px took 4 GB and no progress in 150 s."""
    import subprocess

    slide = _sparse_ome_tiff(tmp_path / "huge.ome.tif", 200_000, 200_000)
    assert slide.stat().st_size < 20 << 20
    out = tmp_path / "out"
    r = subprocess.run(
        [sys.executable, "-c", MEASURED_CLI, *predict_args(slide, out, kit)],
        capture_output=True,
        text=True,
        timeout=120,
        env=cli_env(),
    )
    seconds, peak_kib = re.search(r"@measured (\S+) (\d+)", r.stderr).groups()
    lines = [ln for ln in r.stderr.splitlines() if not ln.startswith("@measured")]
    assert r.returncode == 2 and len(lines) == 1
    assert lines[0].startswith(
        "histostain: error: huge.ome.tif: detecting tissue reads the whole slide at low "
        "resolution, but its smallest level is 200000 x 200000 px: it would decode 40.0 gigapixels"
    )
    assert "convert it to a tiled pyramidal TIFF" in lines[0]
    assert float(seconds) < 10.0, seconds
    assert int(peak_kib) < 1 << 20, f"peak memory {int(peak_kib) / 1024:.0f} MiB"
    assert files_in(out) == []


def test_long_thin_declared_image_is_refused(cli, kit, tmp_path):
    """The audit's 1,000,000 x 4096 px file took 6.3 GB and was then called corrupt."""
    slide = _sparse_ome_tiff(tmp_path / "long.ome.tif", 1_000_000, 4096)
    out = tmp_path / "out"
    r = cli(*predict_args(slide, out, kit))
    assert r.code == 2 and len(r.error_lines) == 1
    assert "its smallest level is 1000000 x 4096 px: it would decode 4.1 gigapixels" in r.err
    assert files_in(out) == []


def test_image_stored_as_one_huge_block_is_refused_at_open(cli, kit, tmp_path, monkeypatch):
    """A stripped image in one strip is decoded whole by any read: refused before decoding."""
    import tifffile

    slide = tmp_path / "block.ome.tif"
    tifffile.imwrite(
        slide,
        np.full((1024, 2048, 3), 220, np.uint8),
        photometric="rgb",
        rowsperstrip=1024,
        compression="zlib",
        ome=True,
        metadata={"axes": "YXS", "PhysicalSizeX": 0.5, "PhysicalSizeY": 0.5},
    )
    monkeypatch.setenv("HISTOSTAIN_READ_BUDGET", "4MB")  # the one block decodes to 8 MiB
    out = tmp_path / "out"
    r = cli(*predict_args(slide, out, kit))
    assert r.code == 2 and len(r.error_lines) == 1
    assert (
        "block.ome.tif: level 0 (2048 x 1024 px) is stored in blocks of 2048 x 1024 px; decoding "
        "one needs 8 MiB, more than the 4 MiB read budget" in r.err
    )
    assert files_in(out) == []


#: extra options -> what the one error line says
BAD_GRIDS = {
    "tiles far finer than the pixels": (
        ("--tile-mpp", "0.001"),
        "tiles at 0.001 um/px are more than 4x finer than the slide's pixels (0.5 um/px)",
    ),
    "one tile larger than the slide": (
        ("--tile-mpp", "1000"),
        "one 224 px tile at 1000.0 um/px spans 448000 slide pixels",
    ),
    "more tiles than the cap": (
        ("--max-tiles", "2"),
        "more than 2 tiles of 224 px at 1 um/px on this slide (1024 x 768 px at 0.5 um/px)",
    ),
}


@pytest.mark.parametrize("case", list(BAD_GRIDS))
def test_bad_tile_grids_are_refused_before_reading_tiles(case, cli, small_slide, kit, tmp_path):
    extra, message = BAD_GRIDS[case]
    out = tmp_path / "out"
    r = cli(*predict_args(small_slide, out, kit, *extra))
    assert r.code == 2 and len(r.error_lines) == 1 and message in r.error_lines[0]
    assert files_in(out) == []


def test_tile_read_over_the_budget_is_refused(cli, small_slide, kit, tmp_path, monkeypatch):
    monkeypatch.setenv("HISTOSTAIN_READ_BUDGET", "1MB")
    out = tmp_path / "out"
    r = cli(*predict_args(small_slide, out, kit, "--tile-mpp", "8"))
    assert r.code == 2 and len(r.error_lines) == 1
    assert "reading 1792 x 1792 px at level 1 needs" in r.err and "read budget" in r.err
    assert files_in(out) == []


def test_the_cap_can_be_raised(cli, small_slide, kit, tmp_path):
    out = tmp_path / "out"
    r = cli(*predict_args(small_slide, out, kit, "--max-tiles", "3"))
    assert r.code == 0 and r.out.startswith("3 tissue tiles")
    assert files_in(out) == [
        ".case.histostain-files.json",
        "case.prediction.json",
        "case.tiles.csv",
    ]


@pytest.mark.slow
def test_tissue_detection_of_a_wide_single_level_image_streams(tmp_path):
    """200000 x 2048 px in one level, under the scan budget: read in 2048 px blocks (the old strips
    of 2048 rows x the whole width took 3.7 GB)."""
    import subprocess

    slide = _sparse_ome_tiff(tmp_path / "wide.ome.tif", 200_000, 2048)
    code = (
        "from napari_histostain.engine.tissue import detect_tissue\n"
        "from napari_histostain.io.slide import open_slide\n"
        f"with open_slide({str(slide)!r}) as s:\n"
        "    mask = detect_tissue(s).mask\n"
        f"print(mask.shape, {PEAK_KIB})\n"
    )
    r = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300, env=cli_env()
    )
    assert r.returncode == 0, r.stderr
    shape, peak_kib = r.stdout.rsplit(")", 1)
    assert shape == "(128, 12500"
    assert int(peak_kib) < 600 << 10, f"peak memory {int(peak_kib) / 1024:.0f} MiB"
