"""The encoder registry: names -> factories, NAME:PATH specs, TorchScript files only when allowed,
and a cache per device.

A registry name (a built-in encoder or a foundation-model preset, optionally NAME:WEIGHTS_FILE, or
`timm:<name>` with local weights) builds a known network from weights loaded with
`weights_only=True`. A TorchScript file is a program; `get_encoder` loads one only with
`allow_torchscript=True`, which only an explicit user choice (`--encoder FILE`) passes: a model
file's `encoder_id` can never make the tool run code.
"""

from __future__ import annotations

import functools
import importlib
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .base import EncoderError, TileEncoder
from .torchscript import TORCHSCRIPT_SUFFIXES

DEFAULT_ENCODER = "efficientnet-lite0"

#: Foundation-model presets (`foundation.PRESETS`, in the same order).
PRESET_NAMES = (
    "uni",
    "uni2-h",
    "virchow2",
    "h-optimus-0",
    "h-optimus-1",
    "prov-gigapath",
    "phikon-v2",
    "conch-v1.5",
    "vit-tiny-test",
)

#: Built-in encoders: name -> (module of this package, factory, leading factory arguments),
#: imported on first use. Every module also has `describe(name)` for `histostain encoders`.
BUILTIN: dict[str, tuple[str, str, tuple]] = {
    "efficientnet-lite0": ("efficientnet", "efficientnet_lite0", ()),
    "efficientnet-lite0-texture": ("efficientnet", "efficientnet_lite0_texture", ()),
    "efficientnet-lite0-multiscale": ("efficientnet", "efficientnet_lite0_multiscale", ()),
    **{name: ("foundation", "preset_encoder", (name,)) for name in PRESET_NAMES},
}
_FACTORIES: dict[str, Callable[..., TileEncoder]] = {}
_CACHE: dict[tuple, TileEncoder] = {}
_LOCK = threading.Lock()


def register_encoder(name: str, factory: Callable[..., TileEncoder]) -> None:
    """Make `get_encoder(name, **kwargs)` call `factory(**kwargs)`."""
    _FACTORIES[name] = factory


def available_encoders() -> list[str]:
    return sorted({*BUILTIN, *_FACTORIES}) + [
        "NAME:WEIGHTS_FILE",
        "<TorchScript file> (--encoder FILE only)",
        "timm:<name> (with checkpoint=, needs timm)",
    ]


def is_preset(name: str) -> bool:
    """Whether `name` is a foundation-model preset."""
    return name in PRESET_NAMES


def split_encoder_spec(spec: str | Path) -> tuple[str, Path | None]:
    """ "uni:/data/w.bin" -> ("uni", Path); anything else (a name, a file, "timm:x") -> (spec, None)."""
    text = str(spec)
    name, sep, path = text.partition(":")
    if sep and path and (name in BUILTIN or name in _FACTORIES):
        return name, Path(path).expanduser()
    return text, None


def is_torchscript_file(name: str | Path) -> bool:
    """Whether `name` is not a registry name (or NAME:PATH) but a (TorchScript) file path."""
    text = str(name)
    base, _ = split_encoder_spec(text)
    if _factory(base) is not None or text.startswith("timm:"):
        return False
    return text.lower().endswith(TORCHSCRIPT_SUFFIXES) or Path(text).expanduser().is_file()


def get_encoder(
    name: str | Path = DEFAULT_ENCODER,
    *,
    checkpoint: str | Path | None = None,
    device: Any = "cpu",
    allow_torchscript: bool = False,
) -> TileEncoder:
    """A (cached) tile encoder on `device` (see `engine.device`), by registry name, NAME:PATH
    (a preset or built-in encoder with that weights file), `timm:<name>`, or (only with
    `allow_torchscript`, i.e. the user gave the file) a TorchScript file."""
    from ..device import resolve_device

    script = is_torchscript_file(name)
    if script and not allow_torchscript:
        raise EncoderError(
            f"tile encoder {str(name)!r} is a file, not an encoder name: a TorchScript encoder runs "
            "its own code, so it is loaded only when you give it yourself (--encoder FILE), never "
            f"because a model names it. Encoder names: {', '.join(sorted({*BUILTIN, *_FACTORIES}))}."
        )
    name, spec_path = split_encoder_spec(name)
    checkpoint = checkpoint or spec_path
    dev = resolve_device(device)
    key: tuple = (
        name,
        str(Path(checkpoint).expanduser().resolve()) if checkpoint else None,
        str(dev),
    )
    if script and Path(name).expanduser().is_file():
        from .torchscript import torchscript_fingerprint

        key += (torchscript_fingerprint(name),)  # a file changed in place is loaded again
    with _LOCK:
        if key not in _CACHE:
            encoder = _make_encoder(name, checkpoint)
            _CACHE[key] = encoder if dev.type == "cpu" else encoder.to_device(dev)
        return _CACHE[key]


def describe_encoders() -> list[dict[str, Any]]:
    """One row per built-in encoder: name, dim, tile_size, um_per_px, weights, source, licence."""
    return [
        importlib.import_module(f"{__package__}.{module}").describe(name)
        for name, (module, _, _) in BUILTIN.items()
    ]


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
        module, attr, args = BUILTIN[name]
        factory = getattr(importlib.import_module(f"{__package__}.{module}"), attr)
        return functools.partial(factory, *args) if args else factory
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
