"""Pathology foundation-model tile encoders: native-torch ViT presets that load the user's weights.

Each `Preset` records one published model: architecture (`vit.ViTConfig`), input size,
normalisation, the resolution its input has under the published pipeline (um/px), its output,
where its weights are published and under which licence. Weights are never downloaded: give a file
(`--encoder NAME:PATH`, `get_encoder(NAME, checkpoint=PATH)`) or put it in the weights folder
(`weights.weights_dir()`). Only torch is needed (no timm, torchvision or safetensors). Facts and
sources: docs/foundation-models.md; equivalence with timm: benchmarks/bench_vit_equivalence.py.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

from torch import nn

from .base import EncoderError, TileEncoder
from .checkpoints import convert_state_dict, load_checked, read_state_dict
from .vit import AttnPoolViT, VisionTransformer, ViTConfig, init_random_
from .weights import find_weights, missing_weights_message

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
HOPTIMUS_MEAN = (0.707223, 0.578729, 0.703617)
HOPTIMUS_STD = (0.211883, 0.230117, 0.177517)


class WeightsNotFoundError(EncoderError):
    """A preset's weights file is not given and not in the weights folder."""


@dataclass(frozen=True)
class Preset:
    """One foundation-model tile encoder as published.

    `tile_size` is the model's input (px); `um_per_px` the resolution of that input under the
    published pipeline (`published_tiling` says which); `files` the file names the hub publishes,
    first one preferred; `timm` the timm model name and keyword arguments that build the same
    network (the reference of benchmarks/bench_vit_equivalence.py and of the shape fixtures;
    "SwiGLUPacked" and "SiLU" stand for timm.layers.SwiGLUPacked and torch.nn.SiLU); `head`
    "conch" adds CONCH's attentional pooler; `load_resample` how a checkpoint's pos_embed of
    another grid is resized on load; `batch_sizes` tiles per batch on (CPU, GPU).
    """

    name: str
    title: str
    vit: ViTConfig
    tile_size: int
    um_per_px: float
    published_tiling: str
    output: str
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    hub: str = ""
    files: tuple[str, ...] = ("pytorch_model.bin", "model.safetensors")
    licence: str = ""
    access: str = ""
    timm: tuple[str, dict[str, Any]] | None = None
    key_format: Literal["timm", "hf-dinov2"] = "timm"
    head: Literal["none", "conch"] = "none"
    load_resample: Literal["bicubic", "bilinear"] = "bicubic"
    batch_sizes: tuple[int, int] = (8, 256)
    random_seed: int | None = None  # test presets: seeded random weights, no file
    sources: tuple[str, ...] = ()

    @property
    def dim(self) -> int:
        return 768 if self.head == "conch" else self.vit.out_dim


_TRIDENT = "mahmoodlab/TRIDENT trident/patch_encoder_models/load.py"
_SWIGLU = {"mlp_layer": "SwiGLUPacked", "act_layer": "SiLU"}
_CC_NC_ND = "CC-BY-NC-ND-4.0 (non-commercial, no derivatives)"
_MAHMOOD_ACCESS = "gated: request access on the hub page (institutional e-mail)"
_AT_20X = "256 px tiles at 20x (0.5 um/px) resized to 224"


def _giant(**kwargs: Any) -> ViTConfig:
    """The ViT-g/H width of UNI2-h and H-optimus: 1536 wide, 24 heads, packed SwiGLU."""
    return ViTConfig(embed_dim=1536, num_heads=24, mlp_ratio=2.66667 * 2, mlp="swiglu", **kwargs)


def _h_optimus(v: int) -> Preset:
    return Preset(
        name=f"h-optimus-{v}",
        title=f"H-optimus-{v} (ViT-g/14, 4 registers, SwiGLU)",
        vit=_giant(patch_size=14, depth=40, init_values=1e-5, reg_tokens=4, no_embed_class=True),
        tile_size=224,
        um_per_px=0.5,
        published_tiling="224 px tiles at 20x (0.5 um/px)",
        output="class token (1536)",
        mean=HOPTIMUS_MEAN,
        std=HOPTIMUS_STD,
        hub=f"bioptimus/H-optimus-{v}",
        licence="Apache-2.0" if v == 0 else "Bioptimus terms (see the hub card)",
        access=(
            "open (agree to share contact details on the hub page)"
            if v == 0
            else "gated: request access on the hub page"
        ),
        timm=(
            "vit_giant_patch14_reg4_dinov2",
            {"img_size": 224, "init_values": 1e-5, "num_classes": 0, "global_pool": "token"},
        ),
        batch_sizes=(4, 256),
        sources=(_TRIDENT + f" HOptimus{v}InferenceEncoder", "README: --patch_size 224 --mag 20"),
    )


PRESETS: dict[str, Preset] = {
    p.name: p
    for p in [
        Preset(
            name="uni",
            title="UNI (ViT-L/16)",
            vit=ViTConfig(patch_size=16, embed_dim=1024, depth=24, num_heads=16, init_values=1e-5),
            tile_size=224,
            um_per_px=0.5 * 256 / 224,
            published_tiling=_AT_20X,
            output="class token (1024)",
            hub="MahmoodLab/UNI",
            licence=_CC_NC_ND,
            access=_MAHMOOD_ACCESS,
            timm=(
                "vit_large_patch16_224",
                {"img_size": 224, "patch_size": 16, "init_values": 1e-5, "num_classes": 0},
            ),
            sources=(_TRIDENT + " UNIInferenceEncoder", "README: --patch_size 256 --mag 20"),
        ),
        Preset(
            name="uni2-h",
            title="UNI2-h (ViT-H/14, 8 registers, SwiGLU)",
            vit=_giant(
                patch_size=14, depth=24, init_values=1e-5, reg_tokens=8, no_embed_class=True
            ),
            tile_size=224,
            um_per_px=0.5 * 256 / 224,
            published_tiling=_AT_20X,
            output="class token (1536)",
            hub="MahmoodLab/UNI2-h",
            licence=_CC_NC_ND,
            access=_MAHMOOD_ACCESS,
            timm=(
                "vit_giant_patch14_224",
                {
                    "img_size": 224,
                    "patch_size": 14,
                    "depth": 24,
                    "num_heads": 24,
                    "init_values": 1e-5,
                    "embed_dim": 1536,
                    "mlp_ratio": 2.66667 * 2,
                    "num_classes": 0,
                    "no_embed_class": True,
                    "reg_tokens": 8,
                    **_SWIGLU,
                },
            ),
            sources=(_TRIDENT + " UNIv2InferenceEncoder", "README: --patch_size 256 --mag 20"),
        ),
        Preset(
            name="virchow2",
            title="Virchow2 (ViT-H/14, 4 registers, SwiGLU)",
            vit=ViTConfig(
                patch_size=14,
                embed_dim=1280,
                depth=32,
                num_heads=16,
                mlp_ratio=5.3375,
                mlp="swiglu",
                init_values=1e-5,
                reg_tokens=4,
                pool="cls+mean",
            ),
            tile_size=224,
            um_per_px=0.5,
            published_tiling="224 px tiles at 20x (0.5 um/px)",
            output="class token + mean of the patch tokens, registers excluded (2560)",
            hub="paige-ai/Virchow2",
            licence=_CC_NC_ND,
            access="gated: accept the terms on the hub page",
            timm=(
                "vit_huge_patch14_224",
                {
                    "img_size": 224,
                    "init_values": 1e-5,
                    "num_classes": 0,
                    "reg_tokens": 4,
                    "mlp_ratio": 5.3375,
                    "global_pool": "",
                    **_SWIGLU,
                },
            ),
            sources=(
                _TRIDENT + " Virchow2InferenceEncoder (output[:, 0], output[:, 5:].mean(1))",
                "README: --patch_size 224 --mag 20",
            ),
        ),
        _h_optimus(0),
        _h_optimus(1),
        Preset(
            name="prov-gigapath",
            title="Prov-GigaPath tile encoder (ViT-g/16, SwiGLU)",
            vit=ViTConfig(
                patch_size=16,
                embed_dim=1536,
                depth=40,
                num_heads=24,
                mlp_ratio=5.33334,
                mlp="swiglu",
                init_values=1e-5,
            ),
            tile_size=224,
            um_per_px=0.5,
            published_tiling="256 px tiles at 20x (0.5 um/px), centre crop 224",
            output="class token (1536)",
            hub="prov-gigapath/prov-gigapath",
            licence="Apache-2.0 on the hub card, research-only terms of access",
            access="gated: accept the terms on the hub page",
            timm=(
                "vit_giant_patch14_dinov2",
                {
                    "img_size": 224,
                    "in_chans": 3,
                    "patch_size": 16,
                    "embed_dim": 1536,
                    "depth": 40,
                    "num_heads": 24,
                    "mlp_ratio": 5.33334,
                    "num_classes": 0,
                },
            ),
            batch_sizes=(4, 256),
            sources=(
                _TRIDENT + " GigaPathInferenceEncoder (Resize 256, CenterCrop 224)",
                "README: --patch_size 256 --mag 20",
            ),
        ),
        Preset(
            name="phikon-v2",
            title="Phikon-v2 (ViT-L/16)",
            vit=ViTConfig(patch_size=16, embed_dim=1024, depth=24, num_heads=16, init_values=1e-5),
            tile_size=224,
            um_per_px=0.5,
            published_tiling="224 px tiles at 20x (0.5 um/px)",
            output="class token of last_hidden_state (1024)",
            hub="owkin/phikon-v2",
            files=("model.safetensors", "pytorch_model.bin"),
            licence="Owkin non-commercial licence (see the hub card)",
            access="open download",
            timm=(
                "vit_large_patch16_224",
                {"img_size": 224, "patch_size": 16, "init_values": 1e-5, "num_classes": 0},
            ),
            key_format="hf-dinov2",
            sources=(
                _TRIDENT + " Phikonv2InferenceEncoder (transformers Dinov2Model)",
                "README: --patch_size 224 --mag 20",
            ),
        ),
        Preset(
            name="conch-v1.5",
            title="CONCH v1.5 image tower (ViT-L/16 + attentional pooler)",
            vit=ViTConfig(
                patch_size=16,
                embed_dim=1024,
                depth=24,
                num_heads=16,
                init_values=1.0,
                pool="tokens",
                pos_interp="dino",
            ),
            tile_size=448,
            um_per_px=0.5 * 512 / 448,
            published_tiling="512 px tiles at 20x (0.5 um/px) resized to 448",
            output="attentional pooler + LayerNorm (768)",
            hub="MahmoodLab/conchv1_5",
            files=("pytorch_model_vision.bin",),
            licence=_CC_NC_ND,
            access=_MAHMOOD_ACCESS,
            head="conch",
            load_resample="bilinear",
            batch_sizes=(2, 128),
            sources=(
                "mahmoodlab/TRIDENT trident/patch_encoder_models/model_zoo/conchv1_5/"
                "conchv1_5.py (CONCHVisionTower, img_size 448)",
                "README: --patch_size 512 --mag 20",
            ),
        ),
        Preset(
            name="vit-tiny-test",
            title="tiny random ViT (tests only; 2 registers, SwiGLU)",
            vit=ViTConfig(
                patch_size=16,
                embed_dim=64,
                depth=2,
                num_heads=4,
                mlp_ratio=2.0,
                mlp="swiglu",
                init_values=0.1,
                reg_tokens=2,
                no_embed_class=True,
                pool="cls+mean",
            ),
            tile_size=224,
            um_per_px=0.5,
            published_tiling="any tile; seeded random weights (no file)",
            output="class token + mean of the patch tokens (128)",
            licence="-",
            access="bundled (random weights, seed 0)",
            timm=(
                "vit_small_patch16_224",
                {
                    "img_size": 224,
                    "patch_size": 16,
                    "embed_dim": 64,
                    "depth": 2,
                    "num_heads": 4,
                    "mlp_ratio": 2.0,
                    "init_values": 0.1,
                    "reg_tokens": 2,
                    "no_embed_class": True,
                    "num_classes": 0,
                    "global_pool": "",
                    **_SWIGLU,
                },
            ),
            batch_sizes=(32, 256),
            random_seed=0,
        ),
    ]
}


def get_preset(preset: Preset | str) -> Preset:
    """A preset by name (an `EncoderError` listing the names when unknown)."""
    if isinstance(preset, Preset):
        return preset
    try:
        return PRESETS[preset]
    except KeyError:
        raise EncoderError(
            f"unknown encoder preset {preset!r}; choose one of: {', '.join(PRESETS)}"
        ) from None


def with_config(preset: Preset | str, **vit_changes: Any) -> Preset:
    """A copy of a preset with some ViTConfig fields changed (tiny test versions of real ones)."""
    p = get_preset(preset)
    return replace(p, vit=replace(p.vit, **vit_changes))


# ------------------------------------------------------------------------------------------------
# Building and loading
# ------------------------------------------------------------------------------------------------
def build_model(preset: Preset | str) -> nn.Module:
    """The preset's network with zero weights (under `torch.device("meta")`: nothing allocated)."""
    p = get_preset(preset)
    return AttnPoolViT(p.vit) if p.head == "conch" else VisionTransformer(p.vit)


def convert_checkpoint(state: Any, preset: Preset | str) -> dict:
    """A checkpoint's tensors under the preset network's names (`checkpoints.convert_state_dict`)."""
    p = get_preset(preset)
    trunk = "trunk." if p.head == "conch" else ""
    return convert_state_dict(state, p.vit, trunk=trunk, resample=p.load_resample)


def load_model(preset: Preset | str, checkpoint: str | Path | None = None) -> nn.Module:
    """The preset's eval-mode float32 network with the weights of `checkpoint` (else the weights
    folder's file); a test preset without a file gets its seeded random weights."""
    import torch

    p = get_preset(preset)
    if checkpoint is None and p.random_seed is not None:
        return init_random_(build_model(p), seed=p.random_seed).eval()
    path = Path(checkpoint).expanduser() if checkpoint else find_weights(p)
    if path is None or not path.is_file():
        raise WeightsNotFoundError(missing_weights_message(p, path))
    state = convert_checkpoint(read_state_dict(path), p)
    with torch.device("meta"):
        model = build_model(p)
    hint = f"Is it {p.files[0]} from {p.hub}?" if p.hub else ""
    load_checked(model, state, what=f"{p.name} weights {path}", hint=hint)
    return model.float().eval()


def preset_encoder(
    name: Preset | str, checkpoint: str | Path | None = None, *, random_weights: bool = False
) -> TileEncoder:
    """A `TileEncoder` for a preset, on the CPU (`TileEncoder.to_device` moves it).

    Weights from `checkpoint`, else the weights folder (a clear `WeightsNotFoundError` saying
    which file, where it is published and under which licence, and where to put it); with
    `random_weights`, seeded random weights (benchmarks: speed only, meaningless features).
    """
    p = get_preset(name)
    if random_weights:
        model = init_random_(build_model(p), seed=p.random_seed or 0).eval()
    else:
        model = load_model(p, checkpoint)
    return TileEncoder(
        model,
        model,
        id=p.name,
        dim=p.dim,
        mean=p.mean,
        std=p.std,
        tile_size=p.tile_size,
        tile_mpp=p.um_per_px,
        batch_sizes=p.batch_sizes,
    )


def weights_status(preset: Preset | str) -> str:
    """ "bundled (random test weights)", "found: PATH" or "missing"."""
    p = get_preset(preset)
    if p.random_seed is not None:
        return "bundled (random test weights)"
    path = find_weights(p)
    return f"found: {path}" if path else "missing"


def describe(name: str) -> dict[str, Any]:
    """A preset's row of `histostain encoders`."""
    p = get_preset(name)
    return {
        "name": p.name,
        "dim": p.dim,
        "tile_size": p.tile_size,
        "um_per_px": round(p.um_per_px, 4),
        "weights": weights_status(p),
        "source": p.hub or "-",
        "licence": p.licence,
    }
