"""`histostain train` stores a domain reference and a temperature; `histostain add-domain` adds
them to an existing model file (a new file, or in place after a backup), from a cached cohort."""

from __future__ import annotations

import json

import numpy as np
import pytest

from napari_histostain.cli import main
from napari_histostain.engine.domain import reference_of
from napari_histostain.engine.model_files import load_model_file, save_model_file, seeded_model
from napari_histostain.training.cache import EmbeddingCache, SlideEmbeddings
from napari_histostain.training.synthetic_bags import synthetic_cases


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    """64 cases of 32-d synthetic tile embeddings in a cache, with a manifest."""
    d = tmp_path_factory.mktemp("cohort")
    cases = synthetic_cases(64, dim=32, seed=11)
    cache = EmbeddingCache(d / "cache", encoder_id="synthetic-32", encoder_version="1", root=d)
    cache.check_or_create()
    lines = ["case_id,marker,he_path,ihc_path,label"]
    for c in cases:
        he, ihc = d / "slides" / f"{c.case_id}_HE.tif", d / "slides" / f"{c.case_id}_ki67.tif"
        for p, f in ((he, c.he), (ihc, c.ihc)):
            n = len(f)
            cache.save(p, SlideEmbeddings(f, np.zeros((n, 2), np.int64), np.ones(n, np.float32)))
        lines.append(f"{c.case_id},ki67,slides/{he.name},slides/{ihc.name},{c.label}")
    (d / "manifest.csv").write_text("\n".join(lines) + "\n")
    return d, np.concatenate([c.he for c in cases])


def test_train_stores_the_reference_and_temperature(cohort, tmp_path):
    d, tiles = cohort
    args = ["train", str(d / "manifest.csv"), "--cache", str(d / "cache"), "--marker", "ki67"]
    args += ["--epochs", "4", "--folds", "2", "--n-tokens", "32", "--batch-size", "8"]
    args += ["--hidden-dim", "32", "--out", str(tmp_path / "run"), "--quiet"]
    assert main(args) == 0
    _, cfg = load_model_file(tmp_path / "run" / "model.pt")
    assert cfg.calibration["method"] == "temperature" and cfg.calibration["temperature"] > 0
    assert "validation fold" in cfg.domain["fitted_on"] and cfg.domain["heldout_slides"] >= 5
    ref = reference_of(cfg)
    assert np.median(ref.score(tiles)) < 75 and (ref.score(tiles + 5.0) > ref.tile_cut).all()
    summary = json.loads((tmp_path / "run" / "train.json").read_text())
    assert summary["guard"]["calibration"]["cases"] == cfg.calibration["cases"]


def test_add_domain_writes_a_new_file_or_in_place_with_a_backup(cohort, tmp_path, capsys):
    d, tiles = cohort
    net, cfg = seeded_model("ki67", in_dim=32, encoder_id="synthetic-32")
    cfg.training = {"label_values": ["0", "1"]}
    model = save_model_file(tmp_path / "m.pt", net, cfg)
    before = model.read_bytes()
    common = ["--manifest", str(d / "manifest.csv"), "--cache", str(d / "cache")]
    out = tmp_path / "annotated.pt"
    assert main(["add-domain", str(model), *common, "--out", str(out), "--keep-back", "0.3"]) == 0
    report = json.loads(capsys.readouterr().out.rsplit("}", 1)[0] + "}")
    assert report["kept_back"]["slides"] == 19 and report["calibration"]["cases"] == 45
    assert model.read_bytes() == before  # the original is untouched
    _, new = load_model_file(out)
    assert new.domain["kept_back_slides"] == 19 and new.calibration["cases"] == 45
    assert reference_of(new).verdict(reference_of(new).score(tiles[:40]))["in_domain"]
    assert (tmp_path / "annotated.json").is_file()  # the readable sidecar
    # an existing --out is refused; --in-place backs the original up first
    assert main(["add-domain", str(model), *common, "--out", str(out)]) == 2
    assert "exists" in capsys.readouterr().err
    assert main(["add-domain", str(model), *common, "--in-place", "--no-calibration"]) == 0
    backup = tmp_path / "m.before-add-domain.pt"
    assert backup.read_bytes() == before
    _, cfg2 = load_model_file(model)
    assert cfg2.domain and not cfg2.calibration
    assert main(["add-domain", str(model), *common, "--in-place"]) == 2  # backup exists
    assert "backup" in capsys.readouterr().err and backup.read_bytes() == before


def test_add_domain_refuses_a_cache_of_another_encoder(cohort, tmp_path, capsys):
    d, _ = cohort
    net, cfg = seeded_model("ki67", in_dim=32, encoder_id="efficientnet-lite0")
    model = save_model_file(tmp_path / "m.pt", net, cfg)
    args = ["add-domain", str(model), "--manifest", str(d / "manifest.csv")]
    assert main([*args, "--cache", str(d / "cache"), "--out", str(tmp_path / "x.pt")]) == 2
    assert "synthetic-32 embeddings" in capsys.readouterr().err
    assert not (tmp_path / "x.pt").exists()


def test_add_domain_chooses_the_calibration_and_can_fit_it_on_every_case(cohort, tmp_path, capsys):
    d, _ = cohort
    net, cfg = seeded_model("ki67", in_dim=32, encoder_id="synthetic-32")
    cfg.training = {"label_values": ["0", "1"]}
    model = save_model_file(tmp_path / "m.pt", net, cfg)
    common = ["--manifest", str(d / "manifest.csv"), "--cache", str(d / "cache")]
    out = tmp_path / "all.pt"
    args = ["add-domain", str(model), *common, "--out", str(out), "--keep-back", "0.3"]
    assert main([*args, "--calibrate-on-all"]) == 0  # --calibration auto is the default
    report = json.loads(capsys.readouterr().out.rsplit("}", 1)[0] + "}")
    assert report["kept_back"]["slides"] == 19 and "calibration" not in report["kept_back"]
    _, new = load_model_file(out)
    cal = new.calibration
    assert cal["cases"] == 64 and "all 64 fit the calibration" in cal["fitted_on"]
    assert cal["method"] in ("temperature", "platt") and "cross-validated" in cal["chosen_by"]
    assert cal["method"] == min(cal["cv_log_loss"], key=cal["cv_log_loss"].get)
