"""The encoder registry: names -> factories, TorchScript files only when allowed, and a cache.

A registry name (or `timm:<name>` with local weights) builds a known network from weights loaded
with `weights_only=True`. A TorchScript file is a program; `get_encoder` loads one only with
`allow_torchscript=True`, which only an explicit user choice (`--encoder FILE`) passes: a model
file's `encoder_id` can never make the tool run code.
"""

from __future__ import annotations

import importlib
import threading
from collections.abc import Callable
from pathlib import Path

from .base import EncoderError, TileEncoder
from .torchscript import TORCHSCRIPT_SUFFIXES

DEFAULT_ENCODER = "efficientnet-lite0"

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
        "<TorchScript file> (--encoder FILE only)",
        "timm:<name> (with checkpoint=, needs timm)",
    ]


def is_torchscript_file(name: str | Path) -> bool:
    """Whether `name` is not a registry name but a (TorchScript) file path."""
    text = str(name)
    if _factory(text) is not None or text.startswith("timm:"):
        return False
    return text.lower().endswith(TORCHSCRIPT_SUFFIXES) or Path(text).expanduser().is_file()


def get_encoder(
    name: str | Path = DEFAULT_ENCODER,
    *,
    checkpoint: str | Path | None = None,
    allow_torchscript: bool = False,
) -> TileEncoder:
    """A (cached) tile encoder by registry name, `timm:<name>`, or (only with
    `allow_torchscript`, i.e. the user gave the file) a TorchScript file."""
    if is_torchscript_file(name) and not allow_torchscript:
        raise EncoderError(
            f"tile encoder {str(name)!r} is a file, not an encoder name: a TorchScript encoder runs "
            "its own code, so it is loaded only when you give it yourself (--encoder FILE), never "
            f"because a model names it. Encoder names: {', '.join(sorted({*BUILTIN, *_FACTORIES}))}."
        )
    key: tuple = (str(name), str(checkpoint) if checkpoint else None)
    if is_torchscript_file(name) and Path(name).expanduser().is_file():
        from .torchscript import torchscript_fingerprint

        key += (torchscript_fingerprint(name),)  # a file changed in place is loaded again
    with _LOCK:
        if key not in _CACHE:
            _CACHE[key] = _make_encoder(str(name), checkpoint)
        return _CACHE[key]


def encoder_fingerprint(name: str | Path, *, allow_torchscript: bool = False) -> str:
    """The fingerprint the encoder `name` has, without running a TorchScript file (its archive's
    hash); a registry encoder is built (cached) to ask it."""
    if is_torchscript_file(name) and allow_torchscript:
        from .torchscript import torchscript_fingerprint

        return torchscript_fingerprint(name)
    return get_encoder(name, allow_torchscript=allow_torchscript).fingerprint


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
    if is_torchscript_file(name):
        from .torchscript import torchscript_encoder

        return torchscript_encoder(name)
    raise EncoderError(
        f"unknown tile encoder {name!r}; choose one of: {', '.join(available_encoders())}."
    )
