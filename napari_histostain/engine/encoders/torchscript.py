"""A user's own encoder as a TorchScript file (it runs code: only from an explicit --encoder FILE).

Its forward takes normalised float NCHW tiles and returns (N, D) or (N, D, h, w) features; an
optional extra file `histostain.json` in the archive may set {"mean", "std", "tile_size", "id"}.
"""

from __future__ import annotations

import json
from pathlib import Path

from ...defaults import IMAGENET_MEAN, IMAGENET_STD, TILE_SIZE
from .base import EncoderError, TileEncoder, pool_features


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
    tile = int(meta.get("tile_size", TILE_SIZE))

    def features(x):
        return pool_features(module(x))

    with torch.inference_mode():
        dim = features(torch.zeros(1, 3, tile, tile)).shape[1]
    return TileEncoder(
        module,
        features,
        id=meta.get("id", f"torchscript:{p.name}"),
        dim=dim,
        mean=meta.get("mean", IMAGENET_MEAN),
        std=meta.get("std", IMAGENET_STD),
        tile_size=tile,
    )
