"""Encoder weights the user provides: the weights folder, the missing-weights message, fingerprints.

Nothing is ever downloaded. A foundation-model preset's file is given explicitly (`--encoder
NAME:PATH`) or found in the weights folder: `$HISTOSTAIN_WEIGHTS_DIR`, else
`<user data folder>/napari-histostain/weights` (platformdirs), as `<folder>/<preset>/<file>` or
`<folder>/<preset>.<suffix>`. A fingerprint names weights independently of the file format: the
sha256 of the tensors' names, shapes and float32 values.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

WEIGHTS_ENV = "HISTOSTAIN_WEIGHTS_DIR"
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pth", ".pt")


class PublishedWeights(Protocol):
    """What the weights lookup needs to know about a preset (`foundation.Preset`)."""

    @property
    def name(self) -> str: ...
    @property
    def title(self) -> str: ...
    @property
    def hub(self) -> str: ...
    @property
    def files(self) -> tuple[str, ...]: ...
    @property
    def licence(self) -> str: ...
    @property
    def access(self) -> str: ...


def weights_dir() -> Path:
    """`$HISTOSTAIN_WEIGHTS_DIR`, else `<user data folder>/napari-histostain/weights`."""
    env = os.environ.get(WEIGHTS_ENV)
    if env:
        return Path(env).expanduser()
    from platformdirs import user_data_dir

    return Path(user_data_dir("napari-histostain", appauthor=False)) / "weights"


def weights_candidates(preset: PublishedWeights) -> list[Path]:
    """Where the weights folder may hold the preset's file, in the order they are tried."""
    root = weights_dir()
    return [root / preset.name / f for f in preset.files] + [
        root / f"{preset.name}{s}" for s in WEIGHT_SUFFIXES
    ]


def find_weights(preset: PublishedWeights) -> Path | None:
    """The preset's weights file in the weights folder, or None."""
    return next((c for c in weights_candidates(preset) if c.is_file()), None)


def missing_weights_message(preset: PublishedWeights, given: Path | None = None) -> str:
    """Which file is needed, where it is published, under which licence, and where to put it."""
    what = f"weights file {given} not found" if given else "no weights file"
    return (
        f"{preset.title}: {what}. It needs {preset.files[0]} from the Hugging Face repository "
        f"{preset.hub} (https://huggingface.co/{preset.hub}; licence: {preset.licence}, read the hub card "
        f"before use; access: {preset.access}). Download it yourself and put it at "
        f"{weights_dir() / preset.name / preset.files[0]} (the weights folder is "
        f"${WEIGHTS_ENV}, else the user data folder), or pass --encoder {preset.name}:PATH."
    )


def state_dict_fingerprint(state: Mapping[str, Any] | Any) -> str:
    """ "sha256:<hex>" of a state dict (or a module's): names, shapes and values, floating-point
    tensors as float32 (so the same weights in bf16, fp16 or fp32 files agree), sorted names."""
    import torch

    if isinstance(state, torch.nn.Module):
        state = state.state_dict()
    h = hashlib.sha256()
    for k in sorted(state):
        v = state[k].detach()
        if v.is_floating_point():
            v = v.float()
        v = v.cpu().contiguous()
        h.update(f"{k}:{v.dtype}:{tuple(v.shape)};".encode())
        h.update(v.numpy().tobytes())
    return f"sha256:{h.hexdigest()}"


_FILE_FINGERPRINTS: dict[tuple[str, int, int], str] = {}
_LOCK = threading.Lock()


def checkpoint_fingerprint(path: str | Path) -> str:
    """`state_dict_fingerprint` of a torch.save'd state dict file (cached by path, size, mtime)."""
    import torch

    p = Path(path).expanduser().resolve()
    st = p.stat()
    key = (str(p), st.st_size, st.st_mtime_ns)
    with _LOCK:
        if key not in _FILE_FINGERPRINTS:
            state = torch.load(p, map_location="cpu", weights_only=True)
            _FILE_FINGERPRINTS[key] = state_dict_fingerprint(state)
        return _FILE_FINGERPRINTS[key]


def short_fingerprint(fingerprint: str) -> str:
    """The first 12 hex digits of a fingerprint, for messages."""
    kind, _, digest = fingerprint.partition(":")
    return f"{kind}:{digest[:12]}" if digest else fingerprint
