"""Ki-67 as reported (napari_histostain.ihc.ki67_report): global and hot-spot scores, the
`insufficient` flag, WHO neuroendocrine grades."""

from __future__ import annotations

import math

import numpy as np
import pytest

from napari_histostain import ihc
from napari_histostain.ihc.ki67_report import (
    MIN_CELLS,
    find_hotspot,
    global_score,
    ki67_report,
    net_grade,
)
from napari_histostain.ihc.synthetic import render_dab

MPP = 0.5
#: the planted hot spot: centre (x, y) um and radius um, on a 1000 x 700 um field
SPOT_UM, SPOT_R_UM = (700.0, 330.0), 170.0


@pytest.fixture(scope="module")
def planted():
    """A rendered field at 10 % positivity with a disc of 70 % positivity (same cell lattice),
    quantified."""
    h, w = int(700 / MPP), int(1000 / MPP)
    low, _ = render_dab(h, w, MPP, positive_fraction=0.1, seed=5)
    high, _ = render_dab(h, w, MPP, positive_fraction=0.7, seed=5)
    yy, xx = np.mgrid[0:h, 0:w]
    disc = (xx * MPP - SPOT_UM[0]) ** 2 + (yy * MPP - SPOT_UM[1]) ** 2 <= SPOT_R_UM**2
    rgb = np.where(disc[..., None], high, low)
    result = ihc.quantify_image(rgb, MPP, "ki67")
    return result


def _distance_um(spot) -> float:
    return math.hypot(spot.x_um - SPOT_UM[0], spot.y_um - SPOT_UM[1])


def test_hotspot_found_at_planted_region(planted):
    rep = ki67_report(planted)
    spot = rep.hotspot
    assert spot is not None
    # a 0.2 mm^2 field is larger than the planted disc: every field holding the whole disc is
    # about as hot, so the one found holds it (within a cell's spacing, 14 um)
    assert _distance_um(spot) + SPOT_R_UM <= spot.radius_um + 14, spot
    assert spot.area_mm2 == pytest.approx(0.2)
    assert spot.radius_um == pytest.approx(math.sqrt(0.2e6 / math.pi))
    # level-0 px and um agree
    assert spot.x_px * MPP == pytest.approx(spot.x_um) and spot.y_px * MPP == pytest.approx(
        spot.y_um
    )
    # the field holds the disc (70 %) and a rim of 10 %: its index is far above the global one
    assert spot.index > rep.global_index + 15
    assert rep.n_cells >= MIN_CELLS and not rep.insufficient
    # the cells in the hot spot are the counted nuclei within its radius
    xy = planted.nuclei.xy[planted.nuclei.counted] * MPP
    inside = np.hypot(xy[:, 0] - spot.x_um, xy[:, 1] - spot.y_um) <= spot.radius_um
    assert spot.n_cells == int(inside.sum())
    assert spot.n_positive == int((planted.nuclei.cls[planted.nuclei.counted][inside] > 0).sum())


def test_hotspot_of_a_cell_count(planted):
    rep = ki67_report(planted, hotspot_cells=MIN_CELLS)
    spot = rep.hotspot
    assert spot.n_cells == MIN_CELLS and not spot.insufficient
    assert _distance_um(spot) < SPOT_R_UM
    # 500 cells (14 um apart: about 0.1 mm^2) fit inside the disc (0.09 mm^2) nearly whole
    assert spot.index > 50
    # a field smaller than the disc lies inside it
    smaller = ki67_report(planted, hotspot_area_mm2=0.05).hotspot
    assert smaller.area_mm2 == pytest.approx(0.05)
    assert _distance_um(smaller) + smaller.radius_um <= SPOT_R_UM + 14, smaller
    assert smaller.index > 55


def test_global_is_area_weighted_over_fields():
    counts = np.array([[90, 10, 0, 0], [5, 5, 0, 0], [0, 0, 0, 0]])
    area = np.array([3000, 1000, 500])
    g, pooled, n, pos, fields = global_score(counts, area)
    assert (n, pos, fields) == (110, 15, 2)
    assert g == pytest.approx((10.0 * 3000 + 50.0 * 1000) / 4000)
    assert pooled == pytest.approx(15 / 110 * 100)
    g1, *_ = global_score(counts, area, tiles=np.array([1]))
    assert g1 == pytest.approx(50.0)
    assert math.isnan(global_score(counts, area, tiles=np.array([2]))[0])


def test_insufficient_below_500_cells():
    rgb, _ = render_dab(320, 320, MPP, positive_fraction=0.3, seed=1)
    result = ihc.quantify_image(rgb, MPP, "ki67")
    rep = ki67_report(result, grade=True)
    assert 0 < rep.n_cells < MIN_CELLS
    assert rep.insufficient and rep.hotspot.insufficient
    assert rep.net_grade == "insufficient"
    d = rep.to_dict()
    assert d["insufficient"] is True and d["hotspot"]["insufficient"] is True


def test_hotspot_insufficient_flag_follows_cell_count():
    rng = np.random.default_rng(0)
    xy = rng.uniform(0, 2000, (3000, 2))  # 750 cells / mm^2: 150 in 0.2 mm^2
    spot = find_hotspot(xy, rng.uniform(size=3000) < 0.2)
    assert spot.n_cells < MIN_CELLS and spot.insufficient
    dense = rng.uniform(0, 600, (4000, 2))
    spot = find_hotspot(dense, rng.uniform(size=4000) < 0.2)
    assert spot.n_cells >= MIN_CELLS and not spot.insufficient
    assert find_hotspot(np.zeros((0, 2)), np.zeros(0, bool)) is None


@pytest.mark.parametrize(
    ("index", "cells", "grade"),
    [
        (0.0, 500, "G1"),
        (2.99, 800, "G1"),
        (3.0, 800, "G2"),
        (20.0, 800, "G2"),
        (20.01, 800, "G3"),
        (80.0, 500, "G3"),
        (80.0, 499, "insufficient"),
        (float("nan"), 0, "insufficient"),
    ],
)
def test_net_grade_cutoffs(index, cells, grade):
    assert net_grade(index, cells) == grade


def test_bad_hotspot_settings():
    xy = np.zeros((3, 2))
    with pytest.raises(ihc.IHCError, match="area"):
        find_hotspot(xy, np.ones(3, bool), area_mm2=0)
    with pytest.raises(ihc.IHCError, match="cell count"):
        find_hotspot(xy, np.ones(3, bool), n_cells=0)
