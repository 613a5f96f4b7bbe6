"""The tile grid (levels, regions, tissue filter) and streaming tile reads."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from napari_histostain.engine.tile_stream import iter_batches, iter_tiles
from napari_histostain.engine.tiling import TilingError, make_grid, read_tile
from napari_histostain.engine.tissue import detect_tissue
from napari_histostain.io.slide import open_slide
from shared_data import shared_file


@pytest.fixture(scope="module")
def slide(synthetic_slide):
    with open_slide(synthetic_slide) as s:
        yield s


def test_grid_reads_from_the_closest_level(slide):
    assert slide.level_downsamples[:3] == pytest.approx((1, 2, 4))
    g = make_grid(slide, tile_mpp=1.0)
    assert (g.level, g.read_size, g.tile_px0) == (1, 224, pytest.approx(448.0))
    g = make_grid(slide, tile_mpp=0.5)
    assert (g.level, g.read_size) == (0, 224)
    g = make_grid(slide, tile_mpp=1.5)  # between levels 1 and 2: read at 1, shrink 336 -> 224
    assert (g.level, g.read_size) == (1, 336)
    assert read_tile(slide, g, 0).shape == (224, 224, 3)
    g = make_grid(slide, tile_mpp=2.0, tile_size=112)
    assert (g.level, g.read_size) == (2, 112)


def test_grid_lattice_and_tissue_filter(slide):
    tissue = detect_tissue(slide)
    full = make_grid(slide, tile_mpp=1.0, tissue=tissue, min_tissue=0)
    kept = make_grid(slide, tile_mpp=1.0, tissue=tissue, min_tissue=0.25)
    W, H = slide.dimensions
    assert (full.n_cols, full.n_rows) == (int(np.ceil(W / 448)), int(np.ceil(H / 448)))
    assert len(full) == full.n_rows * full.n_cols
    assert 0 < len(kept) < len(full)
    assert (kept.tissue_fraction >= 0.25).all()
    np.testing.assert_array_equal(kept.coords, np.round(kept.rowcol[:, ::-1] * 448.0))
    centres = kept.centres_um()
    np.testing.assert_allclose(centres[:, 1], (kept.coords[:, 0] + (448 - 1) / 2) * 0.5)
    np.testing.assert_allclose(centres[:, 0], (kept.coords[:, 1] + (448 - 1) / 2) * 0.5)


def test_region_grid_is_a_subset_of_the_whole_grid(slide):
    tissue = detect_tissue(slide)
    whole = make_grid(slide, tissue=tissue)
    region = (900, 500, 1000, 700)
    part = make_grid(slide, tissue=tissue, region=region)
    assert 0 < len(part) < len(whole)
    idx = whole.index_of(part.rowcol)
    assert (idx >= 0).all()
    np.testing.assert_array_equal(whole.coords[idx], part.coords)
    x, y = part.coords.T
    assert ((x < 1900) & (x + 448 > 900) & (y < 1200) & (y + 448 > 500)).all()
    with pytest.raises(TilingError, match="outside"):
        make_grid(slide, tissue=tissue, region=(5000, 5000, 10, 10))


def test_iter_tiles_streams_in_order_with_a_bounded_queue(slide):
    grid = make_grid(slide, tile_mpp=2.0, tile_size=64, min_tissue=0)
    lock = threading.Lock()
    state = {"read": 0, "most_ahead": 0}

    class Counting:  # the real slide, counting reads to see how far readers run ahead
        def __init__(self, s):
            self.s = s

        def read_level_region(self, *a):
            with lock:
                state["read"] += 1
            return self.s.read_level_region(*a)

    consumed = 0
    for k, (i, rgb) in enumerate(iter_tiles(Counting(slide), grid, threads=2, queue_size=4)):
        assert i == k
        np.testing.assert_array_equal(rgb, read_tile(slide, grid, i))
        consumed += 1
        with lock:
            state["most_ahead"] = max(state["most_ahead"], state["read"] - consumed)
    assert consumed == len(grid)
    assert state["most_ahead"] <= 4
    sub = [5, 1, 3]
    assert [i for i, _ in iter_tiles(slide, grid, sub)] == sub
    batches = list(iter_batches(slide, grid, batch_size=7))
    assert [len(b) for b, _ in batches][:-1] == [7] * (len(batches) - 1)
    np.testing.assert_array_equal(np.concatenate([b for b, _ in batches]), np.arange(len(grid)))
    assert batches[0][1].shape == (7, 64, 64, 3)


def test_single_level_slide_is_read_at_level_zero_and_shrunk():
    with open_slide(shared_file("slides", "CMU-1-Small-Region.svs")) as s:
        g = make_grid(s, tile_mpp=1.0)
        assert g.level == 0 and g.read_size == round(224 / 0.499)
        assert len(g) > 10
        assert read_tile(s, g, 0).shape == (224, 224, 3)


def test_bad_tile_parameters(slide):
    with pytest.raises(TilingError):
        make_grid(slide, tile_size=0)
    with pytest.raises(TilingError, match="no area"):
        make_grid(slide, region=(0, 0, 0, 10))


def test_image_smaller_than_one_tile_is_one_tile_with_a_note():
    from napari_histostain.io.slide import slide_from_array

    rng = np.random.default_rng(1)
    field = rng.integers(60, 200, (512, 400, 3), np.uint8)  # 128 x 100 um at 0.25 um/px
    for rgb in (field, np.full_like(field, 255)):  # tissue or glass: the chosen field is analysed
        slide = slide_from_array(rgb, 0.25)
        grid = make_grid(slide, tile_mpp=1.0, tile_size=224)
        assert len(grid) == 1 and grid.tile_px0 == pytest.approx(896)
        assert (
            "smaller than one tile" in grid.extra["note"] and "100 x 128 um" in grid.extra["note"]
        )
        tile = read_tile(slide, grid, 0)
        assert tile.shape == (224, 224, 3) and (tile[130:, :] == 255).all()  # glass beyond it
    big = slide_from_array(rng.integers(0, 255, (1000, 1000, 3), np.uint8), 0.25)
    assert "note" not in make_grid(big, tile_mpp=1.0, tile_size=224, min_tissue=0).extra
