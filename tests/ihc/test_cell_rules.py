"""Which nuclei count (napari_histostain.ihc.cell_rules): the stroma rule beside PD-L1 membranes."""

from __future__ import annotations

import numpy as np

from napari_histostain.ihc.cell_rules import exclusion_codes
from napari_histostain.ihc.params import EXCLUSION_NAMES, IHCParams

STROMA = EXCLUSION_NAMES.index("stroma")


def _tumour(n_pos: int, n_neg: int, n_stroma: int):
    """Tumour-sized round nuclei: membrane-stained ones in darker surroundings (their membranes),
    unstained tumour ones in paler, and small stromal ones in the palest."""
    n = n_pos + n_neg + n_stroma
    rng = np.random.default_rng(0)
    area = np.r_[np.full(n_pos + n_neg, 60.0), np.full(n_stroma, 40.0)] + rng.uniform(0, 5, n)
    context = np.r_[np.full(n_pos, 0.17), np.full(n_neg, 0.12), np.full(n_stroma, 0.05)]
    membrane = np.r_[np.ones(n_pos, bool), np.zeros(n_neg + n_stroma, bool)]
    ones = np.ones(n)
    return area, ones * 1.2, ones * 7.0, ones * 0.3, ones * 0.05, context, membrane


def test_unstained_tumour_cells_beside_stained_ones_are_not_stroma():
    area, elong, width, hema, dab, context, membrane = _tumour(60, 30, 20)
    params = IHCParams()
    with_membranes = exclusion_codes(
        area, elong, width, hema, dab, params, context=context, membrane=membrane
    )
    assert (with_membranes[:90] == 0).all()  # all tumour cells count
    assert (with_membranes[90:] == STROMA).all()  # the stromal ones do not
    # judged against the stained cells' surroundings, the unstained tumour cells look like stroma
    without = exclusion_codes(area, elong, width, hema, dab, params, context=context)
    assert (without[60:90] == STROMA).all()


def test_unstained_nuclei_mostly_in_stroma_are_judged_against_the_tumour():
    # stained tumour cells and unstained stromal nuclei only (the real skimage PD-L1 field's case):
    # judged among themselves the stromal nuclei would all count
    area, elong, width, hema, dab, context, membrane = _tumour(60, 0, 40)
    area[60:] = 60.0  # as large as the tumour nuclei: only their surroundings tell them apart
    codes = exclusion_codes(
        area, elong, width, hema, dab, IHCParams(), context=context, membrane=membrane
    )
    assert (codes[:60] == 0).all() and (codes[60:] == STROMA).all()
    always_split = IHCParams(stroma_unstained_ratio=0.0)
    codes = exclusion_codes(
        area, elong, width, hema, dab, always_split, context=context, membrane=membrane
    )
    assert (codes[60:] == 0).all()
