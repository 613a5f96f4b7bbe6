"""Frozen tile encoders: RGB tiles -> feature vectors, by name (`get_encoder`).

`base` (the `TileEncoder` interface), `registry` (names -> factories), one module per encoder
family: `efficientnet` (the bundled ImageNet EfficientNet-Lite0 variants), `torchscript` (a user's
own TorchScript file, only when given explicitly), `timm` (when timm is importable).
"""

from .base import EncoderError, TileEncoder
from .registry import DEFAULT_ENCODER, available_encoders, get_encoder, register_encoder

__all__ = [
    "DEFAULT_ENCODER",
    "EncoderError",
    "TileEncoder",
    "available_encoders",
    "get_encoder",
    "register_encoder",
]
