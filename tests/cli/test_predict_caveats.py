"""`histostain predict` says what a result is worth: disclaimer, model, domain, no-call reason."""

from __future__ import annotations

import csv
import json

from napari_histostain.cli import main
from napari_histostain.results.caveats import DEMO_DISCLAIMER, NO_CALL_TEXT


def test_bundled_model_on_foreign_tissue_prints_and_writes_the_caveats(
    synthetic_slide, tmp_path, capsys
):
    out = tmp_path / "out"
    args = ["predict", str(synthetic_slide), "--out", str(out), "--marker", "ki67"]
    assert main(args) == 0
    printed = capsys.readouterr().out
    # the io.synthetic slide is not the simulator's tissue: out of the bundled model's domain
    assert "Ki-67  probability    n/a  -> no call (out of domain)" in printed
    assert DEMO_DISCLAIMER in printed and "Model: HistoStainAlign Ki-67, version " in printed
    assert "Domain: OUT OF DOMAIN" in printed
    assert f"Ki-67: no call: {NO_CALL_TEXT['out_of_domain']}" in printed
    doc = json.loads((out / "synthetic.prediction.json").read_text())
    assert doc["markers"]["ki67"]["call_status"] == "no_call"
    assert doc["caveats"]["markers"]["ki67"]["no_call_reason"] == "out_of_domain"
    with open(out / "synthetic.tiles.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert rows and all(r["caveats"].startswith(DEMO_DISCLAIMER) for r in rows)

    assert main([*args, "--force-call", "--out", str(tmp_path / "forced")]) == 0
    printed = capsys.readouterr().out
    assert "(forced; would be no call: out of domain)" in printed
    assert "forced call (would be no call: " in printed
