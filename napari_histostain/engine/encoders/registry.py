"""The encoder registry: names -> factories, TorchScript files given explicitly, and a cache."""

from __future__ import annotations

import importlib
import threading
from collections.abc import Callable
from pathlib import Path

from .base import EncoderError, TileEncoder

DEFAULT_ENCODER = "efficientnet-lite0"
TORCHSCRIPT_SUFFIXES = (".pt", ".pth", ".ts", ".torchscript", ".jit")

#: Built-in encoders: name -> (module of this package, factory), imported on first use.
BUILTIN: dict[str, tuple[str, str]] = {
    "efficientnet-lite0": ("efficientnet", "efficientnet_lite0"),
    "efficientnet-lite0-texture": ("efficientnet", "efficientnet_lite0_texture"),
    "efficientnet-lite0-multiscale": ("efficientnet", "efficientnet_lite0_multiscale"),
}
_FACTORIES: dict[str, Callable[..., TileEncoder]] = {}
_CACHE: dict[tuple, TileEncoder] = {}
_LOCK = threading.Lock()


def register_encoder(name: str, factory: Callable[..., TileEncoder]) -> None:
    """Make `get_encoder(name, **kwargs)` call `factory(**kwargs)`."""
    _FACTORIES[name] = factory


def available_encoders() -> list[str]:
    return sorted({*BUILTIN, *_FACTORIES}) + [
        "<TorchScript file>",
        "timm:<name> (with checkpoint=, needs timm)",
    ]


def get_encoder(
    name: str | Path = DEFAULT_ENCODER, *, checkpoint: str | Path | None = None
) -> TileEncoder:
    """A (cached) tile encoder by registry name, TorchScript path or `timm:<name>`."""
    key = (str(name), str(checkpoint) if checkpoint else None)
    with _LOCK:
        if key not in _CACHE:
            _CACHE[key] = _make_encoder(str(name), checkpoint)
        return _CACHE[key]


def _factory(name: str) -> Callable[..., TileEncoder] | None:
    if name in _FACTORIES:
        return _FACTORIES[name]
    if name in BUILTIN:
        module, attr = BUILTIN[name]
        return getattr(importlib.import_module(f"{__package__}.{module}"), attr)
    return None


def _make_encoder(name: str, checkpoint) -> TileEncoder:
    factory = _factory(name)
    if factory is not None:
        return factory(checkpoint=checkpoint) if checkpoint else factory()
    if name.startswith("timm:"):
        from .timm import timm_encoder

        return timm_encoder(name[5:], checkpoint)
    if name.lower().endswith(TORCHSCRIPT_SUFFIXES) or Path(name).is_file():
        from .torchscript import torchscript_encoder

        return torchscript_encoder(name)
    raise EncoderError(
        f"unknown tile encoder {name!r}; choose one of: {', '.join(available_encoders())}."
    )
