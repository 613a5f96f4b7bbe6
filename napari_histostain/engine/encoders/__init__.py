"""Frozen tile encoders: RGB tiles -> feature vectors, by name (`get_encoder`), on a device.

`base` (the `TileEncoder` interface, CPU and GPU, and its fingerprint), `registry` (names ->
factories), one module per encoder family: `efficientnet` (the bundled ImageNet EfficientNet-Lite0
variants), `foundation` (pathology foundation-model presets: UNI, UNI2-h, Virchow2, H-optimus-0/1,
Prov-GigaPath, Phikon-v2, CONCH v1.5, on the plain-torch ViT of `vit`, from the user's weights:
`checkpoints` reads them, `weights` finds and fingerprints them), `torchscript` (a user's own
TorchScript file, only when given explicitly: it runs code), `timm` (when timm is importable).
"""

from .base import EncoderError, TileEncoder
from .registry import (
    DEFAULT_ENCODER,
    available_encoders,
    describe_encoders,
    encoder_fingerprint,
    get_encoder,
    is_preset,
    is_torchscript_file,
    register_encoder,
    split_encoder_spec,
)

__all__ = [
    "DEFAULT_ENCODER",
    "EncoderError",
    "TileEncoder",
    "available_encoders",
    "describe_encoders",
    "encoder_fingerprint",
    "get_encoder",
    "is_preset",
    "is_torchscript_file",
    "register_encoder",
    "split_encoder_spec",
]
