"""benchmarks/bench_gpu.py runs end to end in its --smoke mode (tiny, on the CPU): every part of the
one-command GPU benchmark works before it meets a GPU."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_bench_gpu_smoke_prints_every_figure(tmp_path):
    out = tmp_path / "bench.json"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "benchmarks/bench_gpu.py", "--smoke", "--out", str(out)]
    r = subprocess.run(
        [*cmd, "--slide", str(tmp_path / "slide.tif")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    doc = json.loads(r.stdout)
    assert doc == json.loads(out.read_text())
    assert not [k for k, v in doc.items() if isinstance(v, dict) and "error" in v], doc
    for name in ("efficientnet-lite0", "uni"):
        enc = doc["encoder_only"][name]
        assert enc["net_tiles_per_s"] > 0 and enc["with_upload_tiles_per_s"] > 0
        e2e = doc["end_to_end"][name]
        assert e2e["tiles"] > 0 and e2e["tiles_per_s"] > 0 and e2e["over_encoder_only"] > 0
    assert doc["end_to_end"]["uni"]["tiles"] > doc["end_to_end"]["efficientnet-lite0"]["tiles"]
    assert doc["cohort"]["done"] == doc["cohort"]["slides"] == 2
    assert doc["cohort"]["slides_per_hour"] > 0
    eq = doc["equivalence"]
    assert "skipped" in eq or eq["all_ok"]
