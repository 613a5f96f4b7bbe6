"""Which tiles fall in each region: centre and area rules, holes and exclusions."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import shapely

from napari_histostain.annotations import (
    Annotation,
    AnnotationError,
    read_annotations,
    region_column,
    regions_on_grid,
    tiles_in,
)
from napari_histostain.engine.tiling import make_grid

DATA = Path(__file__).parent / "data"


@pytest.fixture(scope="module")
def grid(synth_slide):
    """Every tile of the 3000 x 2000 px slide: 7 x 5 tiles of 448 px (224 px at 1 um/px)."""
    g = make_grid(synth_slide, tile_mpp=1.0, tile_size=224, min_tissue=0)
    assert (g.n_cols, g.n_rows, len(g), g.tile_px0) == (7, 5, 35, 448.0)
    return g


def _cells(grid, idx) -> set[tuple[int, int]]:
    return {(int(r), int(c)) for r, c in grid.rowcol[idx]}


def test_fixture_regions_honour_holes_and_exclusions(grid):
    regions = {
        r.key: r
        for r in regions_on_grid(read_annotations(DATA / "qupath-0.4-annotations.geojson"), grid)
    }
    # tile centres lie at 224 + 448 k; Tumor (100..1900, 100..1500) holds rows 0-2, cols 0-3;
    # its hole (600..1100, 500..1000) removes (1, 1), the Ignore* fold (1300..1800, 900..1400) (2, 3)
    tumour = regions["2f6c7a6e-54a1-4d0f-9c3e-8b1f0a2d4e61"]
    expected = {(r, c) for r in range(3) for c in range(4)} - {(1, 1), (2, 3)}
    assert _cells(grid, tumour.indices) == expected and tumour.name == "Tumour core"
    assert regions["class:Tumor"].indices.tolist() == tumour.indices.tolist()
    # Stroma (2000..2900 x 100..700 and 1000..1900): rows 0-1 and 2-4, cols 4-6; the last row and
    # column overhang the slide (3000 x 2000) and count by their part on it (centres 1896, 2844)
    stroma = regions["class:Stroma"]
    assert _cells(grid, stroma.indices) == {(r, c) for r in range(5) for c in (4, 5, 6)}
    assert regions["class:"].name == "Unclassified" and len(regions["class:"].indices) == 0
    assert len(regions["all"].indices) == 10 + 15
    assert "class:Ignore*" not in regions  # exclusions are not regions of their own
    d = tumour.describe((0.5, 0.5))
    assert d["n_tiles"] == 10
    assert d["area_um2"] == pytest.approx((1800 * 1400 - 500 * 500 - 500 * 500) * 0.25)
    column = region_column(list(regions.values()), len(grid))
    i = int(grid.index_of(np.array([[0, 0]]))[0])
    assert column[i] == "Tumour core" and column[int(grid.index_of(np.array([[1, 1]]))[0])] == ""


def test_only_exclusions_leave_the_rest_of_the_slide(grid):
    (excl,) = [a for a in read_annotations(DATA / "qupath-0.2-annotations.json") if a.is_exclude]
    (everything,) = regions_on_grid([excl], grid)
    assert everything.name == "slide minus exclusions"
    assert _cells(grid, everything.indices) == _cells(grid, np.arange(35)) - {(2, 3)}


def test_area_rule(grid):
    # a box covering the whole of tile (0, 0), 3/4 of tile (0, 1) and 1/4 of tile (0, 2)
    box = shapely.box(0, 0, 448 + 336, 448)
    box = box.union(shapely.box(896, 0, 896 + 112, 448))
    assert _cells(grid, tiles_in(grid, box, rule="area", min_fraction=0.5)) == {(0, 0), (0, 1)}
    assert _cells(grid, tiles_in(grid, box, rule="area", min_fraction=0.75)) == {(0, 0), (0, 1)}
    assert _cells(grid, tiles_in(grid, box, rule="area", min_fraction=1.0)) == {(0, 0)}
    assert _cells(grid, tiles_in(grid, box, rule="area", min_fraction=0.2)) == {
        (0, 0),
        (0, 1),
        (0, 2),
    }
    assert _cells(grid, tiles_in(grid, box)) == {(0, 0), (0, 1)}  # centres 224, 672 in; 1120 out
    with pytest.raises(AnnotationError, match="unknown tile rule"):
        tiles_in(grid, box, rule="corner")


def test_a_whole_slide_annotation_holds_every_tile(grid):
    whole = Annotation(shapely.box(0, 0, 3000, 2000), "Tumor")
    for rule in ("centre", "area"):
        assert len(tiles_in(grid, whole.geometry, rule=rule, min_fraction=1.0)) == len(grid) == 35
    # the last row (1792..2240 on a 2000 px slide) is half in a box ending at y = 1896
    half = shapely.box(0, 0, 3000, 1896)
    assert len(tiles_in(grid, half, rule="area", min_fraction=0.5)) == 35
    assert len(tiles_in(grid, half, rule="area", min_fraction=0.51)) == 28


def test_no_annotations_is_an_error(grid):
    with pytest.raises(AnnotationError, match="no annotations"):
        regions_on_grid([], grid)


def test_overlapping_annotations_of_one_class(grid):
    a = Annotation(shapely.box(0, 0, 900, 900), "Tumor", name="a")
    b = Annotation(shapely.box(448, 448, 1344, 1344), "Tumor", name="b")
    regions = {r.key: r for r in regions_on_grid([a, b], grid)}
    both = _cells(grid, regions[a.id].indices) | _cells(grid, regions[b.id].indices)
    assert _cells(grid, regions["class:Tumor"].indices) == both
    assert len(both) == 4 + 4 - 1
    col = region_column(list(regions.values()), len(grid))
    assert col[int(grid.index_of(np.array([[1, 1]]))[0])] == "a; b"
