"""Every no-call reason through `histostain predict` (JSON, tile table) and `predict-cohort` (the
cohort summary), and --force-call keeping the reason; tiny real models with domain references."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from tiny_models import write_tiny_kit

from napari_histostain.cli import main
from napari_histostain.engine.domain import fit_reference
from napari_histostain.engine.encoders import get_encoder
from napari_histostain.engine.model_files import load_model_file, save_model_file
from napari_histostain.io.synthetic import write_slide, write_synthetic_slide
from napari_histostain.training.cache import embed_slide


@pytest.fixture(scope="module")
def kit(tmp_path_factory):
    """Tiny encoder; p53 model whose reference is fitted on synthetic H&E (in domain), ki67 model
    whose reference is fitted on shifted features (every slide out of its domain); slides."""
    from napari_histostain.ihc.synthetic import dab_slide_renderer

    d = tmp_path_factory.mktemp("nocall")
    k = write_tiny_kit(d)
    enc = get_encoder(k["encoder"], allow_torchscript=True)
    slides = {
        "he": write_synthetic_slide(d / "he.tif", 3000, 2000, 0.5, seed=1),
        "nompp": write_synthetic_slide(d / "nompp.tif", 1500, 1000, None, seed=2),
        "ihc": write_slide(d / "ihc.tif", 2000, 2000, dab_slide_renderer(2000, 2000), 0.5),
    }
    feats = [
        embed_slide(
            write_synthetic_slide(d / f"ref{i}.tif", 3000, 2000, 0.5, seed=i), enc
        ).features.astype(np.float32)
        for i in range(1, 5)
    ]
    tiles = np.concatenate(feats)
    heldout = np.array_split(tiles, 8)
    for marker, shift in (("p53", 0.0), ("ki67", 50.0)):
        net, cfg = load_model_file(k["models"][marker])
        ref = fit_reference(tiles + shift, [h + shift for h in heldout], fitted_on=f"{marker}")
        cfg.domain, cfg.domain_arrays = ref.to_config()
        save_model_file(k["models"][marker], net, cfg)
    return k, slides


def _predict(kit, slide, out, *extra):
    k, slides = kit
    args = ["predict", str(slides[slide]), "--out", str(out), "--encoder", str(k["encoder"])]
    for m, p in k["models"].items():
        args += ["--marker", m, "--model", f"{m}={p}"]
    assert main([*args, "--quiet", *extra]) == 0
    name = slides[slide].stem
    doc = json.loads((out / f"{name}.prediction.json").read_text())
    with open(out / f"{name}.tiles.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    return doc, rows


def test_in_domain_and_out_of_domain_models(kit, tmp_path):
    doc, rows = _predict(kit, "he", tmp_path)
    p53, ki67 = doc["markers"]["p53"], doc["markers"]["ki67"]
    assert p53["call_status"] == "call" and p53["no_call_reason"] is None
    assert p53["label"] in ("wild-type", "aberrant", "negative", "positive")
    assert ki67["call_status"] == "no_call" and ki67["no_call_reason"] == "out_of_domain"
    assert ki67["label"] is None and ki67["probability"] is not None  # kept, not called
    dom = doc["domain"]
    assert dom["in_domain"] is False and dom["tiles"] == len(rows) and dom["in_domain_tiles"] == 0
    scores = np.array([float(r["domain_score"]) for r in rows])
    assert len(rows) >= 8 and (scores == 100).all()  # max over the models: ki67's, all far
    assert any(
        m.startswith("The Ki-67 model:") and "out of its domain" in m for m in doc["messages"]
    )


@pytest.mark.parametrize(
    ("slide", "extra", "code"),
    [
        ("he", ("--region", "0,0,700,700"), "too_few_tiles"),
        ("nompp", (), "assumed_mpp"),
        ("ihc", (), "ihc_input"),
    ],
)
def test_each_reason_through_the_json(kit, tmp_path, slide, extra, code):
    doc, _ = _predict(kit, slide, tmp_path, *extra)
    p53 = doc["markers"]["p53"]
    assert p53["call_status"] == "no_call" and p53["label"] is None
    assert code in p53["no_call_reason"].split(";")


def test_force_call_keeps_the_reason(kit, tmp_path):
    doc, _ = _predict(kit, "ihc", tmp_path, "--force-call")
    for m in ("p53", "ki67"):
        entry = doc["markers"][m]
        assert entry["call_status"] == "forced" and entry["label"] is not None
        assert "ihc_input" in entry["no_call_reason"]


def test_cohort_summary_has_call_status_reason_and_warnings(kit, tmp_path):
    k, slides = kit
    args = ["predict-cohort", *(str(slides[s]) for s in ("he", "nompp", "ihc"))]
    args += ["--out", str(tmp_path), "--workers", "0", "--encoder", str(k["encoder"])]
    for m, p in k["models"].items():
        args += ["--marker", m, "--model", f"{m}={p}"]
    assert main([*args, "--quiet"]) == 0
    with open(tmp_path / "cohort-summary.csv", newline="") as fh:
        rows = {r["name"]: r for r in csv.DictReader(fh)}
    assert {r["status"] for r in rows.values()} == {"done"}
    assert all(r["call_status"] == "no_call" for r in rows.values())
    assert rows["he"]["no_call_reason"] == "out_of_domain"  # ki67's model
    assert "assumed_mpp" in rows["nompp"]["no_call_reason"].split(";")
    assert "ihc_input" in rows["ihc"]["no_call_reason"].split(";")
    assert "IHC" in rows["ihc"]["warnings"] and rows["ihc"]["p53_call"] == ""
