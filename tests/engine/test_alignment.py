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


def _rigid_to_case(t: dict, h: int, w: int, mpp: float, p: np.ndarray) -> np.ndarray:
    """Case (v, u) um of section pixels p (y, x): the simulator's section transform, rigid part."""
    a = np.deg2rad(t["angle_deg"])
    v, u = (p[:, 0] - (h - 1) / 2) * mpp, (p[:, 1] - (w - 1) / 2) * mpp
    return np.stack(
        [
            np.sin(a) * u + np.cos(a) * v + t["shift_um"][0],
            np.cos(a) * u - np.sin(a) * v + t["shift_um"][1],
        ],
        axis=1,
    )


def test_simulated_consecutive_sections_recover_the_simulators_transform(tmp_path):
    """`simulate_case` cuts the IHC section rotated (up to 20 deg), shifted and elastically warped
    against the H&E, and records the transforms: alignment must find the rigid part."""
    import json

    from napari_histostain.io.slide import open_slide
    from napari_histostain.simulate import simulate_case

    simulate_case(tmp_path, ["ki67"], case_id="s", size_um=1600.0, mpp=0.5, seed=3)
    he = open_slide(next(tmp_path.rglob("s_HE.tiff")))
    ki = open_slide(next(tmp_path.rglob("s_ki67.tiff")))
    sections = json.loads(next(tmp_path.rglob("s.json")).read_text())["sections"]
    t_he, t_ki = sections["HE"]["transform"], sections["ki67"]["transform"]
    a = align_slides(he, ki)
    want = -(t_ki["angle_deg"] - t_he["angle_deg"])  # the simulator turns the other way
    assert abs(a.angle_deg - want) <= 2.0
    w, h = ki.dimensions
    mpp = float(ki.mpp[0])
    rng = np.random.default_rng(1)
    p_ki = rng.uniform([0.3 * h, 0.3 * w], [0.7 * h, 0.7 * w], (20, 2))
    case = _rigid_to_case(t_ki, h, w, mpp, p_ki)
    # invert the H&E's (rigid, unwarped) transform numerically: solve the 2 x 2 linear map
    o = _rigid_to_case(t_he, h, w, mpp, np.zeros((1, 2)))[0]
    ey = _rigid_to_case(t_he, h, w, mpp, np.array([[1.0, 0.0]]))[0] - o
    ex = _rigid_to_case(t_he, h, w, mpp, np.array([[0.0, 1.0]]))[0] - o
    p_he = np.linalg.solve(np.stack([ey, ex], axis=1), (case - o).T).T
    err = np.linalg.norm(a.apply(p_ki * mpp) - p_he * mpp, axis=1)
    assert np.median(err) < 224.0 / 4  # well within one tile (elastic warp up to 12 um aside)
