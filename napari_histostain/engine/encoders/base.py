"""The tile encoder interface: RGB tiles (uint8 NHWC) -> one feature vector per tile.

An encoder's identity is its `fingerprint`: a hash of what it computes with (its weights file or
TorchScript archive, set by its factory with `files_fingerprint`; else of its weights as loaded).
Predictions record it and cohort resume compares it, so a different encoder under the same name
is never taken for the one a result was made with.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

import numpy as np

from ...defaults import IMAGENET_MEAN, IMAGENET_STD, TILE_SIZE
from ...errors import HistostainError


class EncoderError(HistostainError):
    """A tile encoder cannot be made or does not fit the slide model."""


class TileEncoder:
    """A frozen CNN giving one `dim`-d feature vector per tile.

    `features(x)` maps a normalised float NCHW (channels_last) tensor to (N, dim); `embed` does the
    uint8 -> normalised float conversion, batching and inference_mode around it.
    """

    def __init__(
        self,
        module,
        features: Callable,
        *,
        id: str,
        dim: int,
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
        tile_size: int = TILE_SIZE,
        fingerprint: str | None = None,
    ):
        import torch

        self.module = module.eval().to(memory_format=torch.channels_last)
        for p in self.module.parameters():
            p.requires_grad_(False)
        self._features = features
        self.id = id
        self.dim = int(dim)
        self.tile_size = int(tile_size)
        self.mean = tuple(float(v) for v in mean)
        self.std = tuple(float(v) for v in std)
        self._shift = torch.tensor(self.mean).view(1, 3, 1, 1) * 255.0
        self._scale = 1.0 / (torch.tensor(self.std).view(1, 3, 1, 1) * 255.0)
        self._fingerprint = fingerprint

    @property
    def fingerprint(self) -> str:
        """ "sha256:<hex>" identity of this encoder: given by its factory (`files_fingerprint` of its
        weights file or archive), else a hash of its id and weights as loaded."""
        if self._fingerprint is None:
            self._fingerprint = weights_fingerprint(self.id, self.module)
        return self._fingerprint

    @property
    def normalisation(self) -> dict:
        return {"mean": list(self.mean), "std": list(self.std)}

    def to_tensor(self, batch: np.ndarray):
        """uint8 (N, H, W, 3) -> normalised float32 (N, 3, H, W) in channels_last memory."""
        import torch

        batch = np.asarray(batch)
        if batch.dtype != np.uint8 or batch.ndim != 4 or batch.shape[-1] != 3:
            raise EncoderError(f"tiles must be uint8 (N, H, W, 3), got {batch.dtype} {batch.shape}")
        x = torch.from_numpy(np.ascontiguousarray(batch)).permute(0, 3, 1, 2)  # NHWC memory
        return x.float().sub_(self._shift).mul_(self._scale)

    def forward_tensor(self, x):
        """Features of an already normalised NCHW float tensor (benchmarks, training)."""
        import torch

        with torch.inference_mode():
            return self._features(x.contiguous(memory_format=torch.channels_last))

    def embed(self, batch: np.ndarray) -> np.ndarray:
        """Features (N, dim) float32 of uint8 NHWC tiles."""
        import torch

        if len(batch) == 0:
            return np.zeros((0, self.dim), np.float32)
        with torch.inference_mode():
            feats = self._features(self.to_tensor(batch))
        return feats.float().numpy()

    def __repr__(self) -> str:
        return f"TileEncoder({self.id!r}, dim={self.dim})"


def files_fingerprint(id: str, *paths: str | Path) -> str:
    """The fingerprint of an encoder named `id` computed from these files (weights, archive)."""
    from ...io.fingerprint import file_sha256

    h = hashlib.sha256(id.encode())
    for p in paths:
        h.update(b"\0" + file_sha256(p).encode())
    return "sha256:" + h.hexdigest()


def weights_fingerprint(id: str, module) -> str:
    """The fingerprint of an encoder named `id` from its module's parameters and buffers."""
    import torch

    h = hashlib.sha256(id.encode())
    for name, tensor in sorted(module.state_dict().items()):
        t = tensor.detach().cpu().contiguous().reshape(-1)
        h.update(f"\0{name}\0{t.dtype}\0{tuple(tensor.shape)}\0".encode())
        h.update(t.view(torch.uint8).numpy().tobytes())
    return "sha256:" + h.hexdigest()


def pool_features(y):
    if y.dim() == 4:
        return y.mean(dim=(2, 3))
    if y.dim() != 2:
        raise EncoderError(
            f"the encoder returned shape {tuple(y.shape)}; expected (N, D) or (N, D, h, w)"
        )
    return y
