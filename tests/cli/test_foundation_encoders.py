"""A foundation-model encoder end to end through the commands: `histostain encoders`, embed a small
cohort with the tiny ViT preset (the real code path of every preset), train, evaluate, predict; the
model records the preset and its weights' fingerprint, and other weights are refused unless asked.
"""

from __future__ import annotations

import json

import pytest
import torch

from napari_histostain.cli import main
from napari_histostain.engine.encoders import foundation, get_encoder
from napari_histostain.engine.model_files import read_model_config


def test_encoders_lists_every_encoder_and_where_weights_go(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("HISTOSTAIN_WEIGHTS_DIR", str(tmp_path))
    (tmp_path / "uni").mkdir()
    (tmp_path / "uni" / "pytorch_model.bin").write_bytes(b"")
    assert main(["encoders"]) == 0
    out = capsys.readouterr().out
    lines = {line.split()[0]: line for line in out.splitlines() if line.strip()}
    assert lines["uni"].split()[1:5] == ["1024", "224", "0.5714", "found:"]
    assert lines["conch-v1.5"].split()[1:5] == ["768", "448", "0.5714", "missing"]
    assert lines["efficientnet-lite0-multiscale"].split()[1:5] == ["1744", "224", "-", "bundled"]
    assert str(tmp_path) in out
    assert main(["encoders", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert {r["name"] for r in doc["encoders"]} >= set(foundation.PRESETS)


def test_missing_weights_and_bad_devices_are_one_line_errors(
    synthetic_slide, tmp_path, monkeypatch, capsys
):
    monkeypatch.setenv("HISTOSTAIN_WEIGHTS_DIR", str(tmp_path / "weights"))
    args = ["predict", str(synthetic_slide), "--marker", "ki67", "--out", str(tmp_path / "out")]
    assert main([*args, "--encoder", "uni"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "MahmoodLab/UNI" in err and "CC-BY-NC-ND-4.0" in err
    assert str(tmp_path / "weights" / "uni" / "pytorch_model.bin") in err
    assert not (tmp_path / "out" / "synthetic.prediction.json").exists()
    assert main([*args, "--device", "gpu"]) == 2
    assert "device 'gpu' is not one of" in capsys.readouterr().err
    if not torch.cuda.is_available():
        assert main([*args, "--device", "cuda"]) == 2
        assert "no CUDA GPU" in capsys.readouterr().err


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    """16 cases of small synthetic H&E / 'IHC' slides at 0.5 um/px, labels alternating."""
    from napari_histostain.io.synthetic import write_synthetic_slide

    d = tmp_path_factory.mktemp("vit-cohort")
    lines = ["case_id,marker,he_path,ihc_path,label"]
    for i in range(16):
        for kind in ("HE", "ki67"):
            write_synthetic_slide(d / f"c{i}_{kind}.tif", 640, 640, 0.5, seed=100 * i + len(kind))
        lines.append(f"c{i},ki67,c{i}_HE.tif,c{i}_ki67.tif,{i % 2}")
    (d / "manifest.csv").write_text("\n".join(lines) + "\n")
    return d


@pytest.mark.slow
def test_train_and_predict_on_a_foundation_encoder(cohort, tmp_path, capsys):
    d = cohort
    cache, run = tmp_path / "cache", tmp_path / "run"
    embed = ["embed", str(d / "manifest.csv"), "--cache", str(cache), "--encoder", "vit-tiny-test"]
    assert main([*embed, "--min-tissue", "0.05", "--device", "cpu", "--quiet"]) == 0
    settings = json.loads((cache / "cache.json").read_text())
    encoder = get_encoder("vit-tiny-test")
    assert settings["tile_mpp"] == 0.5 and settings["tile_size"] == 224  # the preset's
    assert settings["encoder_weights"] == encoder.fingerprint
    train = ["train", str(d / "manifest.csv"), "--cache", str(cache), "--marker", "ki67"]
    small = ["--epochs", "2", "--folds", "2", "--n-tokens", "8", "--batch-size", "4"]
    assert main([*train, *small, "--hidden-dim", "16", "--out", str(run), "--quiet"]) == 0
    cfg = read_model_config(run / "model.pt")
    assert cfg.encoder_id == cfg.encoder_preset == "vit-tiny-test" and cfg.embedding_dim == 128
    assert cfg.encoder_weights == encoder.fingerprint and cfg.tile_mpp == 0.5
    evaluate = ["evaluate", str(d / "manifest.csv"), "--cache", str(cache), "--no-bayes"]
    assert (
        main(
            [
                *evaluate,
                "--model",
                str(run / "model.pt"),
                "--out",
                str(tmp_path / "ev"),
                "--bootstrap",
                "20",
                "--device",
                "cpu",
            ]
        )
        == 0
    )
    capsys.readouterr()

    slide = d / "c0_HE.tif"
    predict = ["predict", str(slide), "--marker", "ki67", "--model", f"ki67={run / 'model.pt'}"]
    assert main([*predict, "--out", str(tmp_path / "p"), "--device", "cpu", "--quiet"]) == 0
    assert "other weights" not in capsys.readouterr().out
    doc = json.loads((tmp_path / "p" / "c0_HE.prediction.json").read_text())
    assert doc["encoder"] == "vit-tiny-test" and doc["grid"]["tile_mpp"] == 0.5

    other = tmp_path / "other.bin"  # the same network with other weights, as a user's file
    net = foundation.preset_encoder("vit-tiny-test", random_weights=True).module
    with torch.no_grad():
        net.norm.bias.add_(0.01)
    torch.save(net.state_dict(), other)
    with_other = [*predict, "--encoder", f"vit-tiny-test:{other}", "--out", str(tmp_path / "o")]
    assert main(with_other) == 2
    err = capsys.readouterr().err
    assert "trained on vit-tiny-test features from weights sha256:" in err
    assert "--allow-other-encoder-weights" in err and not list((tmp_path / "o").iterdir())
    assert main([*with_other, "--allow-other-encoder-weights", "--quiet"]) == 0
    assert "running anyway" in capsys.readouterr().out
