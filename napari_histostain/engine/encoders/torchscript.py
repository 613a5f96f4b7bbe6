"""A user's own encoder as a TorchScript file. It runs code, so it is loaded only from an explicit
`--encoder FILE` (API: `PredictOptions(encoder=FILE)`, `get_encoder(FILE, allow_torchscript=True)`),
never because a model file names it.

Its forward takes normalised float NCHW tiles and returns (N, D) or (N, D, h, w) features; an
optional extra file `histostain.json` in the archive may set {"mean", "std", "tile_size", "id"}.
Its id is always `torchscript:<id or file name>` (an archive cannot pass for a built-in encoder)
and its fingerprint is the archive's SHA-256.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from ...defaults import IMAGENET_MEAN, IMAGENET_STD, TILE_SIZE
from .base import EncoderError, TileEncoder, pool_features

log = logging.getLogger(__name__)

#: File name endings taken for TorchScript archives.
TORCHSCRIPT_SUFFIXES = (".pt", ".pth", ".ts", ".torchscript", ".jit")


def runs_code_note(path: str | Path) -> str:
    """What to tell the user before a TorchScript encoder is loaded."""
    return (
        f"the tile encoder {Path(path).name} is a TorchScript program: loading it runs its code "
        "with your permissions. Use only encoder files you trust."
    )


def torchscript_fingerprint(path: str | Path) -> str:
    """The fingerprint of a TorchScript encoder: "sha256:" + its archive's SHA-256."""
    from ...io.fingerprint import file_sha256

    try:
        return "sha256:" + file_sha256(Path(path).expanduser())
    except OSError as exc:
        raise EncoderError(f"TorchScript encoder {path} cannot be read ({exc}).") from exc


def torchscript_encoder(path: str | Path) -> TileEncoder:
    """A TorchScript tile encoder; its output size is measured with one blank tile."""
    import torch

    p = Path(path).expanduser()
    if not p.is_file():
        raise EncoderError(f"TorchScript encoder {p} not found.")
    log.warning(runs_code_note(p))
    fingerprint = torchscript_fingerprint(p)
    extra = {"histostain.json": ""}
    try:
        module = torch.jit.load(str(p), map_location="cpu", _extra_files=extra)
    except Exception as exc:
        raise EncoderError(
            f"{p.name} is not a TorchScript file ({type(exc).__name__}); export your encoder with "
            "torch.jit.script / torch.jit.trace and torch.jit.save."
        ) from exc
    try:
        meta = json.loads(extra["histostain.json"]) if extra["histostain.json"] else {}
        tile = int(meta.get("tile_size", TILE_SIZE))
        mean, std = meta.get("mean", IMAGENET_MEAN), meta.get("std", IMAGENET_STD)
        name = str(meta.get("id") or p.name)
    except (ValueError, TypeError, AttributeError) as exc:
        raise EncoderError(f"{p.name}: its histostain.json is unreadable ({exc}).") from exc

    def features(x):
        return pool_features(module(x))

    with torch.inference_mode():
        dim = features(torch.zeros(1, 3, tile, tile)).shape[1]
    return TileEncoder(
        module,
        features,
        id=f"torchscript:{name}",
        dim=dim,
        mean=mean,
        std=std,
        tile_size=tile,
        fingerprint=fingerprint,
    )
