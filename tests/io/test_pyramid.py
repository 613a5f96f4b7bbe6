"""Lazy pyramid: pixel equality with OpenSlide, native-tile chunks, laziness and the bounded cache."""

from __future__ import annotations

import numpy as np
import openslide
import pytest

from napari_histostain.io.pyramid import TileCache, level_arrays, slide_pyramid
from napari_histostain.io.slide import open_slide
from napari_histostain.io.synthetic import write_synthetic_slide
from shared_data import shared_file


def _assert_random_regions_equal(path, n=6, seed=0):
    slide = open_slide(path)
    ref = openslide.OpenSlide(str(path))
    pyramid = slide_pyramid(slide)
    rng = np.random.default_rng(seed)
    for level, arr in enumerate(pyramid):
        H, W = arr.shape[:2]
        ds = slide.level_downsamples[level]
        th, tw = arr.chunksize[:2]
        for _ in range(n):
            y, x = int(rng.integers(0, H - 1)), int(rng.integers(0, W - 1))
            h, w = (
                int(rng.integers(1, min(700, H - y) + 1)),
                int(rng.integers(1, min(700, W - x) + 1)),
            )
            if abs(ds - round(ds)) > 1e-9:
                # OpenSlide resamples when x * ds is not an integer: compare on native tile origins
                y, x = (y // th) * th, (x // tw) * tw
                h, w = min(th, H - y), min(tw, W - x)
            mine = np.asarray(arr[y : y + h, x : x + w])
            theirs = ref.read_region((round(x * ds), round(y * ds)), level, (w, h))
            theirs = np.asarray(theirs)
            bg = np.array(slide.background, np.float32)
            a = theirs[..., 3:4].astype(np.float32) / 255
            theirs = (theirs[..., :3] * a + bg * (1 - a) + 0.5).astype(np.uint8)
            assert np.array_equal(mine, theirs), (path.name, level, x, y, w, h)


def test_pixel_equality_synthetic_every_level(synthetic_slide):
    _assert_random_regions_equal(synthetic_slide)


def test_pixel_equality_rgba(tmp_path):
    p = write_synthetic_slide(tmp_path / "rgba.tif", 1500, 1100, 0.5, rgba=True, seed=3)
    _assert_random_regions_equal(p)


@pytest.mark.parametrize(
    "name", ["CMU-1-Small-Region.svs", "OS-2-Ki67-crop.tiff", "TCGA-CR-7395-01A-01-TS1.svs"]
)
def test_pixel_equality_real(name):
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _assert_random_regions_equal(shared_file("slides", name), n=3)


def test_chunks_are_native_tiles(synthetic_slide):
    slide = open_slide(synthetic_slide)
    pyramid = slide_pyramid(slide)
    assert len(pyramid) == slide.level_count
    for level, arr in enumerate(pyramid):
        tw, th = slide.info.tile_sizes[level]
        assert arr.chunksize[:2] == (min(th, arr.shape[0]), min(tw, arr.shape[1]))
        assert arr.shape == (slide.level_dimensions[level][1], slide.level_dimensions[level][0], 3)


def test_nothing_read_until_asked_and_big_slide_opens_fast(tmp_path, monkeypatch):
    """Opening builds graphs only; a 100k x 100k description costs no reads."""
    import time

    monkeypatch.setenv("HISTOSTAIN_DIRECT_TILES", "0")  # count reads at the reference reader
    p = write_synthetic_slide(tmp_path / "s.tif", 2048, 2048, 0.5)
    slide = open_slide(p)
    arrays = level_arrays(slide)
    calls = []
    original = slide._backend.read_region
    slide._backend.read_region = lambda *a: calls.append(a) or original(*a)
    t0 = time.perf_counter()
    pyramid = slide_pyramid(slide)
    assert time.perf_counter() - t0 < 1.0
    assert calls == []
    np.asarray(pyramid[0][:10, :10])
    assert len(calls) == 1  # one native tile
    assert arrays[0].shape == (2048, 2048, 3)


def test_cache_serves_repeated_reads_and_stays_bounded(synthetic_slide):
    slide = open_slide(synthetic_slide)
    arrays = level_arrays(slide, cache_bytes=5 * 256 * 256 * 3)
    cache = arrays[0].cache
    tile = arrays[0][0:256, 0:256]
    again = arrays[0][0:256, 0:256]
    assert cache.hits == 1 and np.array_equal(tile, again)
    for ty in range(0, 1792, 256):
        arrays[0][ty : ty + 256, 256:512]
    assert cache.nbytes <= cache.max_bytes


def test_tilecache_rejects_oversized_item():
    c = TileCache(100)
    c.put("k", np.zeros(1000, np.uint8))
    assert c.get("k") is None


def test_integer_indexing(synthetic_slide):
    arr = level_arrays(open_slide(synthetic_slide))[1]
    full = arr[0:20, 0:30]
    assert np.array_equal(arr[5, 0:30], full[5])
    assert np.array_equal(arr[0:20, 7], full[:, 7])
    assert np.array_equal(arr[0:20:2, 0:30:3, 1], full[::2, ::3, 1])


def test_views_are_one_task_and_match_the_per_tile_graph(synthetic_slide):
    """A basic-slice view is one task; fancy or stepped indexing takes dask's per-tile graph."""
    import dask

    level = slide_pyramid(open_slide(synthetic_slide))[0]
    view = level[100:900, 37:1000]
    assert view.numblocks == (1, 1, 1)
    plain = dask.array.Array(
        level.dask, level.name, level.chunks, meta=level._meta
    )  # per-tile graph
    for key in [
        (slice(100, 900), slice(37, 1000)),
        (5, slice(None)),
        (slice(-300, None), -1, 1),
        (Ellipsis, 2),
        (slice(0, 600, 3), slice(10, 700, 2)),
        (slice(None, None, -1),),
        ([3, 1, 2], slice(0, 5)),
    ]:
        assert np.array_equal(np.asarray(level[key]), np.asarray(plain[key])), key


def test_views_decode_on_dask_num_workers_threads(synthetic_slide):
    import threading

    import dask

    slide = open_slide(synthetic_slide)
    level = slide_pyramid(slide, cache_bytes=0)[0]
    seen = set()
    original = slide.read_region
    slide.read_region = lambda *a: seen.add(threading.current_thread().name) or original(*a)
    with dask.config.set(scheduler="threads", num_workers=1):
        np.asarray(level[:1024, :1024])
    assert len(seen) == 1
    seen.clear()
    with dask.config.set(scheduler="threads", num_workers=2):
        np.asarray(level[:1024, :1024])
    assert len(seen) == 2


def test_asarray_reads_in_this_thread_without_dask_scheduler(synthetic_slide):
    """napari's np.asarray of a view or a small level runs no dask scheduler (its overhead, and
    importing `distributed` on first use, stalled the GUI thread); compute() still uses it."""
    import dask

    levels = slide_pyramid(open_slide(synthetic_slide))
    expected_view = levels[0][100:900, 37:1000:2].compute()
    expected_level = levels[-1].compute()
    calls = []

    def scheduler(dsk, keys, **kwargs):
        calls.append(keys)
        return dask.threaded.get(dsk, keys, **kwargs)

    with dask.config.set(scheduler=scheduler):
        view = np.asarray(levels[0][100:900, 37:1000:2])
        small = np.asarray(levels[-1])
        assert calls == []
        assert np.array_equal(view, expected_view)
        assert np.array_equal(small, expected_level)
        assert levels[0][5:9, 3:4].compute().shape == (4, 1, 3)
        assert calls  # compute() went through the scheduler
