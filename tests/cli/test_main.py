"""The `histostain` CLI, the installed npe2 manifest, and README/CI consistency."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from napari_histostain.cli import main

ROOT = Path(__file__).resolve().parents[2]


def test_info_prints_levels_and_mpp(synthetic_slide, capsys):
    assert main(["info", str(synthetic_slide)]) == 0
    out = capsys.readouterr().out
    assert "3000 x 2000 px" in out and "0.5000 x 0.5000 um/px (metadata)" in out
    assert "generic-tiff" in out and "tile 256 x 256" in out


def test_info_json(synthetic_slide, capsys):
    assert main(["info", "--json", str(synthetic_slide)]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["level_dimensions"][0] == [3000, 2000] and d["mpp"] == [0.5, 0.5]


def test_info_bad_file_is_one_clear_line(tmp_path, capsys):
    bad = tmp_path / "broken.svs"
    bad.write_bytes(b"garbage")
    assert main(["info", str(bad)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("histostain: error:") and "corrupt" in err[0]


def test_console_script_installed():
    exe = Path(sys.executable).parent / "histostain"
    assert exe.exists(), "the histostain console script is not installed"
    out = subprocess.run([str(exe), "--help"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and "info" in out.stdout


def test_importing_package_and_cli_is_cheap():
    """The manifest's module and the CLI parser must not import torch, napari or Qt."""
    code = (
        "import sys, napari_histostain, napari_histostain.plugin.reader, napari_histostain.cli as c;"
        "c.build_parser();"
        "heavy=[m for m in ('torch','napari','PyQt5','PyQt6','PySide6','dask.distributed') if m in sys.modules];"
        "print(','.join(heavy))"
    )
    # run outside the checkout, so the installed package is imported (not the source folder)
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=Path(sys.executable).parent,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "", f"heavy modules imported eagerly: {out.stdout}"


def test_npe2_validates_installed_manifest():
    pytest.importorskip("npe2")
    from npe2 import PluginManifest

    manifest = PluginManifest.from_distribution("napari-histostain")
    assert manifest.name == "napari-histostain"
    assert {r.command for r in manifest.contributions.readers} >= {
        "napari-histostain.get_slide_reader"
    }
    npe2 = Path(sys.executable).parent / "npe2"
    out = subprocess.run(
        [str(npe2), "validate", "napari-histostain"], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "valid" in out.stdout.lower()


def test_installed_manifest_is_the_repository_file():
    from importlib.resources import files

    installed = files("napari_histostain").joinpath("napari.yaml").read_text()
    assert installed == (ROOT / "napari.yaml").read_text()


def test_readme_test_command_is_what_ci_runs():
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    ci_cmd = [ln for ln in ci.splitlines() if ln.strip() and not ln.startswith("#")][-1].strip()
    assert re.search(re.escape(ci_cmd), readme), (
        f"README does not give CI's test command {ci_cmd!r}"
    )
