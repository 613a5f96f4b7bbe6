"""Bad model files and configs fail before the slide is read, naming the file and the field; a
model file can never make the tool run code (TorchScript loads only from an explicit --encoder)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from bad_inputs.kit import files_in, predict_args


def _with_config(src: Path, dst: Path, **changes) -> Path:
    """A copy of model file `src` whose config has `changes` (as a hand edit would)."""
    payload = torch.load(src, map_location="cpu", weights_only=True)
    cfg = json.loads(payload["config"])
    cfg.update(changes)
    torch.save({**payload, "config": json.dumps(cfg)}, dst)
    return dst


def _args_with_model(slide, out, kit, ki67_model) -> list[str]:
    args = predict_args(slide, out, kit)
    return [a.replace(str(kit["models"]["ki67"]), str(ki67_model)) for a in args]


def _no_tissue_detection(monkeypatch):
    """Fail the test if the slide's pixels are touched (tissue detection is the first read)."""

    def touched(*_a, **_k):
        raise AssertionError("the slide was read before the model was checked")

    monkeypatch.setattr("napari_histostain.engine.predict.detect_tissue", touched)


BAD_CONFIGS = {
    "threshold not a number": (
        {"threshold": "abc"},
        "the model config has threshold 'abc' (must be a number between 0 and 1)",
    ),
    "threshold out of range": (
        {"threshold": 1.5},
        "threshold 1.5 (must be a number between 0 and 1)",
    ),
    "positive class out of range": (
        {"positive_class": 5},
        "positive_class 5 (must be the index of one of 2 class_names, from 0)",
    ),
    "one class": ({"class_names": ["low"]}, "class_names ['low'] (must be two or more"),
    "tile mpp nan": ({"tile_mpp": float("nan")}, "tile_mpp nan (must be a number > 0)"),
    "unknown marker": ({"marker": "her2"}, "unknown marker 'her2'"),
}


@pytest.mark.parametrize("case", list(BAD_CONFIGS))
def test_bad_config_fails_before_the_slide(case, cli, small_slide, kit, tmp_path, monkeypatch):
    changes, message = BAD_CONFIGS[case]
    bad = _with_config(kit["models"]["ki67"], tmp_path / "edited.pt", **changes)
    _no_tissue_detection(monkeypatch)
    out = tmp_path / "out"
    r = cli(*_args_with_model(small_slide, out, kit, bad))
    assert r.code == 2 and len(r.error_lines) == 1
    line = r.error_lines[0]
    assert line.startswith(f"histostain: error: {bad}: ") and message in line
    assert "The file was damaged or edited" in line
    assert files_in(out) == []


def _truncated(kit, d: Path) -> Path:
    (d / "cut.pt").write_bytes(kit["models"]["ki67"].read_bytes()[:3000])
    return d / "cut.pt"


def _json(kit, d: Path) -> Path:
    (d / "model.pt").write_text('{"marker": "ki67"}')
    return d / "model.pt"


def _state_dict(kit, d: Path) -> Path:
    torch.save({"weight": torch.zeros(3)}, d / "weights.pt")
    return d / "weights.pt"


def _other_marker(kit, d: Path) -> Path:
    return kit["models"]["p53"]


BAD_FILES = {
    "missing": (lambda kit, d: d / "nope.pt", "nope.pt not found. Give the path of a .pt file"),
    "truncated": (_truncated, "is corrupt or not a torch file"),
    "a JSON file": (_json, "is corrupt or not a torch file"),
    "a plain state dict": (_state_dict, "is not a HistoStainAlign slide model file"),
    "another marker's model": (_other_marker, "p53.pt is a P53 model, not Ki-67"),
}


@pytest.mark.parametrize("case", list(BAD_FILES))
def test_bad_model_file_is_one_line(case, cli, small_slide, kit, tmp_path, monkeypatch):
    make, message = BAD_FILES[case]
    model = make(kit, tmp_path)
    _no_tissue_detection(monkeypatch)
    out = tmp_path / "out"
    r = cli(*_args_with_model(small_slide, out, kit, model))
    assert r.code == 2 and len(r.error_lines) == 1 and message in r.error_lines[0]
    assert files_in(out) == []


def test_model_naming_a_torchscript_file_runs_no_code(cli, small_slide, kit, tmp_path, monkeypatch):
    """A model whose encoder_id is a TorchScript file: refused, and the archive is never loaded."""
    loads = []
    real_load = torch.jit.load
    monkeypatch.setattr(torch.jit, "load", lambda *a, **k: loads.append(a) or real_load(*a, **k))
    models = {
        m: _with_config(kit["models"][m], tmp_path / f"{m}.pt", encoder_id=str(kit["encoder"]))
        for m in ("p53", "ki67")
    }
    out = tmp_path / "out"
    argv = ["predict", small_slide, "--out", out, "--quiet"]
    for m, p in models.items():
        argv += ["--marker", m, "--model", f"{m}={p}"]
    r = cli(*argv)  # no --encoder: the models' encoder would be used
    assert r.code == 2 and len(r.error_lines) == 1
    assert f"tile encoder '{kit['encoder']}' is a file, not an encoder name" in r.err
    assert "loaded only when you give it yourself (--encoder FILE)" in r.err
    assert loads == []
    assert files_in(out) == []


def test_torchscript_cannot_pass_for_a_builtin_encoder(cli, small_slide, kit, tmp_path):
    """An archive claiming to be efficientnet-lite0-multiscale is recorded as TorchScript, by hash."""
    from napari_histostain.io.fingerprint import file_sha256

    impostor = tmp_path / "impostor.pt"
    module = torch.jit.load(str(kit["encoder"]))
    torch.jit.save(
        module,
        str(impostor),
        _extra_files={"histostain.json": json.dumps({"id": "efficientnet-lite0-multiscale"})},
    )
    out = tmp_path / "out"
    args = predict_args(small_slide, out, kit)
    args[args.index(str(kit["encoder"]))] = str(impostor)
    r = cli(*args)
    assert r.code == 0
    assert (
        "histostain: warning: the tile encoder impostor.pt is a TorchScript program: loading it "
        "runs its code with your permissions" in r.err
    )
    doc = json.loads((out / "case.prediction.json").read_text())
    assert doc["encoder"] == "torchscript:efficientnet-lite0-multiscale"
    assert doc["encoder_fingerprint"] == "sha256:" + file_sha256(impostor)
    assert files_in(out) == [
        ".case.histostain-files.json",
        "case.prediction.json",
        "case.tiles.csv",
    ]


def test_cohort_with_a_bad_model_config_fails_before_any_slide(cli, small_slide, kit, tmp_path):
    bad = _with_config(kit["models"]["ki67"], tmp_path / "edited.pt", positive_class=5)
    out = tmp_path / "out"
    r = cli(
        "predict-cohort",
        small_slide,
        "--out",
        out,
        "--workers",
        "0",
        "--quiet",
        "--encoder",
        kit["encoder"],
        "--marker",
        "ki67",
        "--model",
        f"ki67={bad}",
    )
    assert r.code == 2 and r.error_lines[-1].startswith(f"histostain: error: {bad}: ")
    assert "positive_class 5" in r.error_lines[-1]
    assert files_in(out) == []
