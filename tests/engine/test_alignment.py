"""Rigid alignment of two sections from their tissue masks."""

from __future__ import annotations

import csv

import numpy as np
import pytest

from napari_histostain.engine.alignment import _rot, align_slides
from napari_histostain.io.slide import slide_from_array
from napari_histostain.io.synthetic import tissue_renderer
from shared_data import shared_file


def _moved(he: np.ndarray, angle: float, shift_px: np.ndarray) -> np.ndarray:
    """`he` as seen on a section rotated by `angle` about the image centre and shifted: the
    IHC pixel p shows the H&E pixel R (p - c) + c + shift."""
    from skimage.transform import warp

    r, c = _rot(angle), np.array(he.shape[:2]) / 2.0

    def inverse_map(xy: np.ndarray) -> np.ndarray:
        return ((xy[:, ::-1] - c) @ r.T + c + shift_px)[:, ::-1]

    return (warp(he, inverse_map, cval=243 / 255, order=1) * 255).astype(np.uint8)


@pytest.mark.parametrize(("angle", "shift_um"), [(23.0, (150.0, -220.0)), (-140.0, (-90.0, 60.0))])
def test_recovers_a_known_rotation_and_shift(angle, shift_um):
    mpp, h, w = 2.0, 1200, 1600
    he = tissue_renderer(h, w, seed=5, n_blobs=4)(0, 0, h, w)
    shift_px = np.array(shift_um) / mpp
    ihc = _moved(he, angle, shift_px)
    a = align_slides(slide_from_array(he, mpp), slide_from_array(ihc, mpp))
    assert abs((a.angle_deg - angle + 180) % 360 - 180) <= 2.0
    # IHC points land where the H&E shows them, within a fraction of one 224 um tile
    rng = np.random.default_rng(0)
    pts_px = rng.uniform([300, 300], [h - 300, w - 300], (20, 2))
    truth_px = (pts_px - np.array([h, w]) / 2) @ _rot(angle).T + np.array([h, w]) / 2 + shift_px
    err = np.linalg.norm(a.apply(pts_px * mpp) - truth_px * mpp, axis=1)
    assert err.max() < 224.0 / 4
    assert a.overlap > 0.9


def test_no_tissue_is_refused():
    blank = np.full((400, 400, 3), 243, np.uint8)
    he = tissue_renderer(400, 400, seed=1)(0, 0, 400, 400)
    with pytest.raises(ValueError, match="no tissue"):
        align_slides(slide_from_array(he, 2.0), slide_from_array(blank, 2.0))


def _landmarks(path) -> np.ndarray:
    """ANHIR landmarks (x, y at 50 % scale) as (y, x) pixels of the 5 % JPEG."""
    with open(path) as fh:
        rows = list(csv.reader(fh))[1:]
    return np.array([[float(r[2]), float(r[1])] for r in rows]) / 10.0


def test_real_anhir_pair_does_not_get_worse():
    """The real lung sections fill their whole field (tissue fraction ~0.9): their silhouettes say
    little, so alignment must at least not move the landmarks apart (see docs/user-guide.md)."""
    from skimage.io import imread

    he_p = shared_file("pairs", "anhir-lung-lesion3", "29-041-Izd2-w35-He-les3.jpg")
    ki_p = he_p.with_name("29-041-Izd2-w35-Ki67-7-les3.jpg")
    mpp = 3.5
    f = _landmarks(he_p.with_suffix(".csv")) * mpp
    m = _landmarks(ki_p.with_suffix(".csv")) * mpp
    n = min(len(f), len(m))
    a = align_slides(slide_from_array(imread(he_p), mpp), slide_from_array(imread(ki_p), mpp))
    before = np.median(np.linalg.norm(m[:n] - f[:n], axis=1))
    after = np.median(np.linalg.norm(a.apply(m[:n]) - f[:n], axis=1))
    assert after <= before + 5.0
