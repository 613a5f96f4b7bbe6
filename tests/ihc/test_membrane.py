"""PD-L1 membrane coverage over each cell's territory (napari_histostain.ihc.membrane)."""

from __future__ import annotations

import numpy as np
import pytest

from napari_histostain.ihc.membrane import membrane_coverage
from napari_histostain.ihc.params import IHCParams

MPP = 0.5


def _field(centres, rings, size=120, nucleus_px=6, ring_px=11):
    """Labels of disk nuclei at `centres` (y, x) and a DAB image with a membrane circle of radius
    `ring_px` around those whose `rings` entry is "full", "part" (a third, facing right) or ""."""
    yy, xx = np.mgrid[:size, :size]
    labels = np.zeros((size, size), np.int32)
    dab = np.zeros((size, size))
    for k, ((cy, cx), ring) in enumerate(zip(centres, rings), start=1):
        d = np.hypot(yy - cy, xx - cx)
        labels[d <= nucleus_px] = k
        on = np.abs(d - ring_px) <= 1.0
        if ring == "part":
            on &= xx >= cx + ring_px / 2
        if ring:
            dab[on] = 0.6
    return labels, dab, np.asarray(centres, float)


def test_full_ring_part_ring_and_none():
    labels, dab, c = _field([(30, 30), (30, 90), (90, 30)], ["full", "part", ""])
    cov = membrane_coverage(labels, dab, c, MPP, IHCParams())
    assert cov[0] == pytest.approx(1.0)
    assert 0.25 <= cov[1] <= 0.45
    assert cov[2] == 0.0
    positive = cov >= IHCParams().membrane_coverage
    assert positive.tolist() == [True, False, False]


def test_membrane_far_from_a_small_nucleus_is_found():
    # the membrane lies 5 um (10 px) beyond a 2 um nucleus: a fixed 2.5 um ring would miss it
    labels, dab, c = _field([(60, 60)], ["full"], nucleus_px=4, ring_px=14)
    assert membrane_coverage(labels, dab, c, MPP, IHCParams())[0] == pytest.approx(1.0)
    short = IHCParams(membrane_reach_um=2.5)
    assert membrane_coverage(labels, dab, c, MPP, short)[0] == 0.0


def test_unstained_cell_between_stained_neighbours_is_negative():
    # a row of cells 22 px apart: the middle one unstained, its two neighbours ringed; their
    # membranes touch its border on two sides only
    centres = [(60, 16), (60, 38), (60, 60), (60, 82), (60, 104)]
    labels, dab, c = _field(centres, ["full", "full", "", "full", "full"], ring_px=10)
    cov = membrane_coverage(labels, dab, c, MPP, IHCParams())
    assert cov[2] < IHCParams().membrane_coverage
    assert (cov[[0, 1, 3, 4]] >= IHCParams().membrane_coverage).all()


def test_no_nuclei():
    empty = np.zeros((8, 8), np.int32)
    assert membrane_coverage(empty, np.zeros((8, 8)), np.zeros((0, 2)), MPP).size == 0


def test_membrane_at_the_edge_of_an_overgrown_nucleus_region_is_found():
    # stained cytoplasm let the nucleus' region grow up to its membrane (ring on the region's edge)
    labels, dab, c = _field([(60, 60)], ["full"], nucleus_px=12, ring_px=11)
    params = IHCParams()
    assert membrane_coverage(labels, dab, c, MPP, params)[0] == pytest.approx(1.0)
    outside_only = IHCParams(membrane_nucleus_rim_um=0.0)
    assert membrane_coverage(labels, dab, c, MPP, outside_only)[0] < 0.5


def test_hematoxylin_seen_as_dab_on_a_nucleus_rim_is_no_membrane():
    # a dark nucleus whose rim reads DAB 0.3 through stain cross-talk, under 1.2 hematoxylin
    labels, _, c = _field([(60, 60)], [""], nucleus_px=10)
    dab = np.where(labels > 0, 0.3, 0.0)
    hema = np.where(labels > 0, 1.2, 0.05)
    assert membrane_coverage(labels, dab, c, MPP, IHCParams())[0] == pytest.approx(1.0)
    assert membrane_coverage(labels, dab, c, MPP, IHCParams(), hema)[0] == 0.0
