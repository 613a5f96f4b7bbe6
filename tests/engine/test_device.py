"""Devices: `--device` values, auto / missing GPUs, one GPU per cohort worker, and the encoder's
device path (host buffers, autocast, one batch in flight) exercised on the CPU."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_histostain.engine.device import (
    DeviceError,
    check_device,
    reader_threads_for,
    resolve_device,
    worker_device,
)
from napari_histostain.engine.encoders import foundation
from napari_histostain.engine.tile_stream import embedded_batches
from napari_histostain.engine.tiling import make_grid


def test_device_values_are_checked_up_front():
    assert check_device(" CUDA:1 ") == "cuda:1" and check_device("auto") == "auto"
    for bad in ("gpu", "cuda:x", "cuda:-1", "cpu:0", ""):
        with pytest.raises(DeviceError, match="is not one of auto, cpu, cuda, cuda:N, mps"):
            check_device(bad)


def test_auto_takes_a_gpu_only_when_there_is_one():
    mps = getattr(torch.backends, "mps", None)
    expected = (
        "cuda"
        if torch.cuda.is_available()
        else "mps"
        if mps is not None and mps.is_available()
        else "cpu"
    )
    assert resolve_device("auto").type == expected
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device(torch.device("cpu")) == torch.device("cpu")
    if not torch.cuda.is_available():
        with pytest.raises(DeviceError, match=r"no CUDA GPU.*--device cpu"):
            resolve_device("cuda")
    else:
        with pytest.raises(DeviceError, match="there are"):
            resolve_device(f"cuda:{torch.cuda.device_count()}")


def test_one_gpu_per_cohort_worker():
    assert worker_device("auto", 3, gpus=2) == "cuda:1"
    assert worker_device("cuda", 4, gpus=4) == "cuda:0"
    assert worker_device("cuda:1", 3, gpus=2) == "cuda:1"  # an explicit GPU stays
    assert worker_device("auto", None, gpus=2) == "auto"  # not in a dask worker
    assert worker_device("auto", 5, gpus=1) == "auto"  # one GPU: every worker uses it
    assert worker_device("cpu", 3, gpus=2) == "cpu"
    if not torch.cuda.is_available():
        assert worker_device("auto", 3) == "auto"
    assert reader_threads_for(torch.device("cpu"), 2) == 2
    assert reader_threads_for(torch.device("cuda"), 2) >= 2


def _tiny_vit():
    """A fresh (uncached) tiny ViT encoder at 112 px: the foundation presets' code path."""
    p = foundation.with_config("vit-tiny-test", img_size=112)
    return foundation.preset_encoder(p)


def test_autocast_path_runs_on_the_cpu_and_float32_comes_back_exactly():
    enc = _tiny_vit()
    tiles = np.random.default_rng(0).integers(0, 256, (3, 112, 112, 3), dtype=np.uint8)
    ref = enc.embed(tiles)
    enc.to_device("cpu", amp=torch.bfloat16)  # what CUDA runs under, on the CPU's autocast
    low = enc.embed(tiles)
    err = np.abs(low - ref).max()
    assert low.dtype == np.float32 and 0 < err < 0.1 * np.abs(ref).max()
    enc.to_device("cpu")
    assert enc.amp_dtype is None and np.array_equal(enc.embed(tiles), ref)
    assert enc.host_batch(4, 112).shape == (4, 112, 112, 3) and enc.batch_size == 32


def test_embedded_batches_give_each_batch_its_features_in_order(synth_slide):
    enc = _tiny_vit()
    grid = make_grid(synth_slide, tile_mpp=2.0, tile_size=112)
    assert len(grid) > 6 and len(grid) % 3  # several batches of 3, the last one shorter
    seen = []
    for idx, tiles, feats in embedded_batches(synth_slide, grid, enc, batch_size=3):
        assert isinstance(feats, torch.Tensor) and feats.shape == (len(idx), 128)
        assert torch.equal(feats, torch.from_numpy(enc.embed(tiles)))
        seen.append(idx)
    np.testing.assert_array_equal(np.concatenate(seen), np.arange(len(grid)))
    assert list(embedded_batches(synth_slide, grid, enc, stop=lambda: True)) == []
