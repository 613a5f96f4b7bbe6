"""README's main job, headless: `histostain demo --headless` simulates the sample case and predicts it."""

from __future__ import annotations

import json

import pytest

from napari_histostain.cli import main
from napari_histostain.markers import MARKERS


@pytest.mark.slow
def test_demo_headless_predicts_the_sample_case(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("NAPARI_HISTOSTAIN_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "out"
    assert main(["demo", "--headless", "--out", str(out)]) == 0
    [pred] = list(out.glob("*.prediction.json"))
    doc = json.loads(pred.read_text())
    assert set(doc["markers"]) == set(MARKERS)
    assert doc["grid"]["n_tiles"] > 0
    assert all(0.0 <= m["probability"] <= 1.0 for m in doc["markers"].values())
    assert (out / pred.name.replace(".prediction.json", ".tiles.csv")).exists()
    printed = capsys.readouterr().out
    assert "Ki-67" in printed and "wrote" in printed
    # the second run reuses the cached sample case instead of simulating it again
    cached = sorted((tmp_path / "cache").rglob("*.tiff"))
    mtimes = [p.stat().st_mtime_ns for p in cached]
    assert main(["demo", "--headless", "--out", str(out)]) == 0
    assert [p.stat().st_mtime_ns for p in cached] == mtimes
