"""HistoStainAlign slide encoder (exact additive maps) and model files (save, load, clear errors)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from napari_histostain.engine import model_files as model_mod
from napari_histostain.engine.model_files import (
    FORMAT_VERSION,
    ModelConfig,
    ModelFileError,
    bundled_model_path,
    load_bundled_model,
    load_model_file,
    read_model_config,
    save_model_file,
    seeded_model,
)
from napari_histostain.engine.slide_model import SlideEncoder, tile_maps


@pytest.fixture
def feats():
    return torch.randn(50, 64, generator=torch.Generator().manual_seed(0))


def _trained_like(in_dim=64, n_classes=2, seed=0):
    torch.manual_seed(seed)
    net = SlideEncoder(in_dim=in_dim, hidden_dim=32, attn_dim=16, n_classes=n_classes).eval()
    with torch.no_grad():  # spread the weights so attention and logits are far from uniform
        for p in net.parameters():
            p.mul_(4.0)
    return net


@pytest.mark.parametrize("n_classes", [2, 3])
def test_additive_maps_are_exact(feats, n_classes):
    net = _trained_like(n_classes=n_classes)
    with torch.inference_mode():
        out = net(feats)
    assert out.logits.shape == (n_classes,) and out.attention.shape == (50,)
    assert out.embedding.shape == (32,) and out.tile_logits.shape == (50, n_classes)
    assert float(out.attention.sum()) == pytest.approx(1.0, abs=1e-6)
    assert float(out.attention.max()) > 3 / 50  # not uniform: the test could fail
    # classifying the slide embedding == attention-weighted sum of tile logits
    with torch.inference_mode():
        head_of_embedding = net.head(out.embedding)
    torch.testing.assert_close(head_of_embedding, out.logits, atol=1e-5, rtol=1e-5)
    m = net.explain(feats)
    assert m["contribution"].sum() == pytest.approx(m["slide_margin"], abs=1e-6)
    np.testing.assert_allclose(m["slide_logits"], out.logits.numpy(), atol=1e-5)
    np.testing.assert_allclose(m["attention"], out.attention.numpy(), atol=1e-6)
    p_tile = torch.softmax(out.tile_logits, -1)[:, 1].numpy()
    np.testing.assert_allclose(m["positivity"], p_tile, atol=1e-6)
    assert m["probability"] == pytest.approx(float(torch.softmax(out.logits, -1)[1]), abs=1e-6)
    if n_classes == 2:
        assert m["slide_margin"] == pytest.approx(float(out.logits[1] - out.logits[0]), abs=1e-5)


def test_padded_batch_matches_single_bags(feats):
    net = _trained_like()
    bags = [feats[:20], feats[20:50]]
    x = torch.zeros(2, 30, 64)
    mask = torch.zeros(2, 30, dtype=torch.bool)
    for i, b in enumerate(bags):
        x[i, : len(b)] = b
        mask[i, : len(b)] = True
    with torch.inference_mode():
        batched = net(x, mask)
        for i, b in enumerate(bags):
            single = net(b)
            torch.testing.assert_close(batched.logits[i], single.logits, atol=1e-5, rtol=1e-5)
            torch.testing.assert_close(batched.embedding[i], single.embedding, atol=1e-5, rtol=1e-5)
            assert float(batched.attention[i, len(b) :].sum()) == 0.0


def test_tile_maps_of_an_empty_bag():
    m = tile_maps(np.zeros(0), np.zeros((0, 2)))
    assert m["attention"].size == 0 and np.isnan(m["probability"])


def test_save_load_roundtrip(tmp_path, feats):
    net = _trained_like()
    cfg = ModelConfig(
        marker="ki67",
        embedding_dim=64,
        encoder_id="test",
        threshold=0.4,
        training={"cases": 3},
        metrics={"auc": 0.9},
    )
    path = save_model_file(tmp_path / "m.pt", net, cfg)
    assert path.exists() and not list(tmp_path.glob("*.part"))
    sidecar = json.loads((tmp_path / "m.json").read_text())
    assert sidecar["marker"] == "ki67" and sidecar["architecture"]["hidden_dim"] == 32
    loaded, lcfg = load_model_file(path, marker="ki67", embedding_dim=64)
    assert not loaded.training
    assert lcfg.threshold == 0.4 and lcfg.metrics == {"auc": 0.9}
    assert lcfg.format_version == FORMAT_VERSION and lcfg.created
    assert read_model_config(path).architecture == net.config
    with torch.inference_mode():
        torch.testing.assert_close(loaded(feats).logits, net(feats).logits)


def test_save_rejects_inconsistent_config(tmp_path):
    net = _trained_like()
    with pytest.raises(ModelFileError, match="64-d"):
        save_model_file(tmp_path / "m.pt", net, ModelConfig(marker="p53", embedding_dim=1280))
    with pytest.raises(ModelFileError, match="classes"):
        save_model_file(
            tmp_path / "m.pt",
            net,
            {"marker": "p53", "embedding_dim": 64, "class_names": ["a", "b", "c"]},
        )
    with pytest.raises(ModelFileError, match="unknown marker"):
        save_model_file(tmp_path / "m.pt", net, ModelConfig(marker="her2", embedding_dim=64))
    assert not list(tmp_path.iterdir())


def test_bad_model_files_give_clear_errors(tmp_path):
    net, cfg = seeded_model("p53", in_dim=64)
    good = save_model_file(tmp_path / "good.pt", net, cfg)
    with pytest.raises(ModelFileError, match="not found"):
        load_model_file(tmp_path / "nope.pt")
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(good.read_bytes()[:2000])
    with pytest.raises(ModelFileError, match="corrupt"):
        load_model_file(corrupt)
    other = tmp_path / "other.pt"
    torch.save(net.state_dict(), other)
    with pytest.raises(ModelFileError, match="not a HistoStainAlign"):
        load_model_file(other)
    with pytest.raises(ModelFileError, match="P53 model, not Ki-67"):
        load_model_file(good, marker="ki67")
    with pytest.raises(ModelFileError, match="64-d tile embeddings"):
        load_model_file(good, embedding_dim=1280)
    payload = torch.load(good, weights_only=True)
    newer = tmp_path / "newer.pt"
    torch.save({**payload, "format_version": FORMAT_VERSION + 1}, newer)
    with pytest.raises(ModelFileError, match="Upgrade"):
        load_model_file(newer)
    bad_shape = tmp_path / "bad_shape.pt"
    sd = dict(payload["state_dict"])
    sd["head.weight"] = torch.zeros(3, 256)
    torch.save({**payload, "state_dict": sd}, bad_shape)
    with pytest.raises(ModelFileError, match="do not match"):
        load_model_file(bad_shape)


def test_bundled_model_paths(tmp_path, monkeypatch):
    assert bundled_model_path("pdl1").name == "histostainalign-pdl1.pt"
    assert bundled_model_path("ki67").parent.name == "models"
    with pytest.raises(ModelFileError, match="unknown marker"):
        bundled_model_path("her2")
    monkeypatch.setattr(model_mod, "MODELS_DIR", tmp_path)
    with pytest.raises(ModelFileError, match="no bundled Ki-67 model"):
        load_bundled_model("ki67")
    net, cfg = seeded_model("ki67", in_dim=64)
    save_model_file(bundled_model_path("ki67"), net, cfg)
    assert load_bundled_model("ki67")[1].marker == "ki67"
