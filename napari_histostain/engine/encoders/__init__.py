"""Frozen tile encoders: RGB tiles -> feature vectors, by name (`get_encoder`).

`base` (the `TileEncoder` interface), `registry` (names -> factories), one module per encoder
family: `efficientnet` (the bundled ImageNet EfficientNet-Lite0 variants), `torchscript` (a user's
own TorchScript file, only when given explicitly: it runs code), `timm` (when timm is importable).
"""

from .base import EncoderError, TileEncoder
from .registry import (
    DEFAULT_ENCODER,
    available_encoders,
    encoder_fingerprint,
    get_encoder,
    is_torchscript_file,
    register_encoder,
)

__all__ = [
    "DEFAULT_ENCODER",
    "EncoderError",
    "TileEncoder",
    "available_encoders",
    "encoder_fingerprint",
    "get_encoder",
    "is_torchscript_file",
    "register_encoder",
]
