"""The tile encoder interface: RGB tiles (uint8 NHWC) -> one feature vector per tile, on a device.

On the CPU a batch is normalised on the host and run in float32. On a GPU (`to_device`) the uint8
tiles are uploaded from page-locked host memory (`host_batch`) without waiting, normalised there
and run under bf16 / fp16 autocast; `features` returns before the GPU has finished, so the caller
can prepare the next batch meanwhile (`engine.tile_stream.embedded_batches`).

An encoder's identity is its `fingerprint`: a hash of its name and of what it computes with (its
weights, independent of the file format, or a TorchScript archive's bytes). Model files, embedding
caches and predictions record it, and predicting or resuming compares it, so other weights under
the same name are never taken for the ones a result was made with.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any

import numpy as np

from ...defaults import BATCH_SIZE, IMAGENET_MEAN, IMAGENET_STD, TILE_SIZE
from ...errors import HistostainError

#: Tiles per batch on a GPU unless the encoder says otherwise.
GPU_BATCH_SIZE = 256


class EncoderError(HistostainError):
    """A tile encoder cannot be made or does not fit the slide model."""


class TileEncoder:
    """A frozen network giving one `dim`-d feature vector per tile.

    `features(x)` maps a normalised float NCHW (channels_last) tensor to (N, dim); `embed` does the
    uint8 -> normalised float conversion, batching and inference_mode around it. `tile_size` and
    `tile_mpp` are the input the network was made for (`tile_mpp` None: no fixed resolution);
    `batch_sizes` the (CPU, GPU) batch sizes it runs best at; `fingerprint` its identity, or a
    function giving it (default: `encoder_identity` of its id and state dict, computed when first
    asked for).
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
        tile_mpp: float | None = None,
        batch_sizes: tuple[int, int] = (BATCH_SIZE, GPU_BATCH_SIZE),
        fingerprint: str | Callable[[], str] | None = None,
    ):
        import torch

        self.module = module.eval().to(memory_format=torch.channels_last)
        for p in self.module.parameters():
            p.requires_grad_(False)
        self._features = features
        self.id = id
        self.dim = int(dim)
        self.tile_size = int(tile_size)
        self.tile_mpp = None if tile_mpp is None else float(tile_mpp)
        self.batch_sizes = (int(batch_sizes[0]), int(batch_sizes[1]))
        self.mean = tuple(float(v) for v in mean)
        self.std = tuple(float(v) for v in std)
        self._shift = torch.tensor(self.mean).view(1, 3, 1, 1) * 255.0
        self._scale = 1.0 / (torch.tensor(self.std).view(1, 3, 1, 1) * 255.0)
        self._fingerprint = fingerprint
        self.device = torch.device("cpu")
        self.amp_dtype: Any = None

    @property
    def normalisation(self) -> dict:
        return {"mean": list(self.mean), "std": list(self.std)}

    @property
    def batch_size(self) -> int:
        """Tiles per batch on this encoder's device."""
        return self.batch_sizes[0] if self.device.type == "cpu" else self.batch_sizes[1]

    @property
    def fingerprint(self) -> str:
        """ "sha256:<hex>" identity of this encoder (computed on first use, then kept)."""
        if not isinstance(self._fingerprint, str):
            from .weights import state_dict_fingerprint

            make = self._fingerprint
            self._fingerprint = (
                make()
                if make is not None
                else encoder_identity(self.id, state_dict_fingerprint(self.module))
            )
        return self._fingerprint

    def to_device(self, device, *, amp: Any = True) -> TileEncoder:
        """Run on `device` (a torch.device; see `engine.device.resolve_device`). `amp`: True
        runs under the device's autocast dtype (bf16 / fp16 on CUDA, none elsewhere), False in
        float32, a torch dtype under that autocast. Moves this encoder and returns it."""
        import torch

        from ..device import autocast_dtype

        device = torch.device(device)
        self.module.to(device)
        self._shift = self._shift.to(device)
        self._scale = self._scale.to(device)
        self.device = device
        self.amp_dtype = autocast_dtype(device) if amp is True else (amp or None)
        return self

    def host_batch(self, n: int, size: int) -> np.ndarray:
        """An uninitialised uint8 (n, size, size, 3) array to gather tiles in: page-locked
        (pinned) memory on CUDA, so that its upload does not wait; plain memory otherwise."""
        if self.device.type == "cuda":
            import torch

            return torch.empty((n, size, size, 3), dtype=torch.uint8, pin_memory=True).numpy()
        return np.empty((n, size, size, 3), np.uint8)

    def to_tensor(self, batch: np.ndarray):
        """uint8 (N, H, W, 3) -> normalised float32 (N, 3, H, W) in channels_last memory."""
        import torch

        batch = _check_tiles(batch)
        x = torch.from_numpy(np.ascontiguousarray(batch)).permute(0, 3, 1, 2)  # NHWC memory
        if self.device.type != "cpu":
            x = x.to(self.device, non_blocking=True)
        return x.float().sub_(self._shift).mul_(self._scale)

    def forward_tensor(self, x):
        """Features of an already normalised NCHW float tensor (benchmarks, training)."""
        import torch

        x = x.to(self.device).contiguous(memory_format=torch.channels_last)
        with torch.inference_mode(), self._autocast():
            return self._features(x)

    def features(self, batch: np.ndarray):
        """Features (N, dim) float32 of uint8 NHWC tiles, as a torch tensor on this encoder's
        device. On a GPU the work may still be running: keep `batch` alive until the result is
        read (`.cpu()` waits for it)."""
        import torch

        with torch.inference_mode(), self._autocast():
            feats = self._features(self.to_tensor(batch))
        return feats.float().contiguous()

    def embed(self, batch: np.ndarray) -> np.ndarray:
        """Features (N, dim) float32 of uint8 NHWC tiles."""
        if len(batch) == 0:
            return np.zeros((0, self.dim), np.float32)
        return self.features(batch).cpu().numpy()

    def _autocast(self):
        import contextlib

        import torch

        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.amp_dtype)

    def __repr__(self) -> str:
        return f"TileEncoder({self.id!r}, dim={self.dim}, device={str(self.device)!r})"


def _check_tiles(batch: np.ndarray) -> np.ndarray:
    batch = np.asarray(batch)
    if batch.dtype != np.uint8 or batch.ndim != 4 or batch.shape[-1] != 3:
        raise EncoderError(f"tiles must be uint8 (N, H, W, 3), got {batch.dtype} {batch.shape}")
    return batch


def encoder_identity(id: str, weights: str) -> str:
    """The fingerprint of the encoder `id` computing with weights whose fingerprint is `weights`
    (`weights.state_dict_fingerprint`): two encoders sharing weights but not features differ."""
    return "sha256:" + hashlib.sha256(f"{id}\0{weights}".encode()).hexdigest()


def pool_features(y):
    if y.dim() == 4:
        return y.mean(dim=(2, 3))
    if y.dim() != 2:
        raise EncoderError(
            f"the encoder returned shape {tuple(y.shape)}; expected (N, D) or (N, D, h, w)"
        )
    return y
