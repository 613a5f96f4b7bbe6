"""Rigid alignment (rotation + shift) of two sections of one case from their tissue masks.

Both slides' tissue masks (`tissue.detect_tissue`, ~`target_mpp` um/px) are resampled onto one
micrometre grid; the moving (IHC) mask is rotated about its tissue centroid over a coarse then a fine
set of angles, each rotation is shifted onto the fixed (H&E) mask by phase correlation
(`skimage.registration.phase_cross_correlation`), and the angle whose shifted mask overlaps the
fixed mask best (intersection over union) wins. The result is a 3 x 3 affine in micrometres, in
napari's (y, x) axis order, mapping moving world coordinates onto fixed ones: a napari layer with
`scale` = its um/px takes it as its `affine`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .tissue import TissueMask, detect_tissue


@dataclass(frozen=True)
class RigidAlignment:
    """`matrix` maps moving (y, x) um to fixed (y, x) um; `angle_deg` is counter-clockwise as
    seen on screen (y down), `shift_um` the (dy, dx) of the moving tissue centroid."""

    matrix: np.ndarray
    angle_deg: float
    shift_um: tuple[float, float]
    overlap: float

    def apply(self, points_yx_um: np.ndarray) -> np.ndarray:
        """Moving (y, x) um points mapped into the fixed slide's um."""
        p = np.asarray(points_yx_um, np.float64).reshape(-1, 2)
        return p @ self.matrix[:2, :2].T + self.matrix[:2, 2]


def _rot(angle_deg: float) -> np.ndarray:
    """(y, x) rotation by `angle_deg`, counter-clockwise on screen (y pointing down)."""
    a = np.deg2rad(angle_deg)
    c, s = np.cos(a), np.sin(a)
    return np.array([[c, -s], [s, c]])


def _on_grid(tm: TissueMask, grid_um: float, shape: tuple[int, int]) -> np.ndarray:
    """The mask's local tissue fraction on a `grid_um` um/px grid of `shape` (float 0..1)."""
    from scipy import ndimage as ndi

    k = float(tm.mpp or grid_um) / grid_um  # grid px per mask px
    fine = tm.mask.astype(np.float32)
    if k < 1:  # local tissue fraction over one grid pixel, then sampled
        fine = ndi.uniform_filter(fine, size=max(int(round(1 / k)), 1))
    return ndi.affine_transform(
        fine,
        np.array([1.0 / k, 1.0 / k]),
        offset=(0.5 / k - 0.5),
        output_shape=shape,
        order=1,
        mode="constant",
    )


def _warp(img: np.ndarray, a2: np.ndarray, t: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """`img` moved by p -> a2 @ p + t (pixel (row, col) coordinates), sampled on `shape`."""
    from scipy import ndimage as ndi

    inv = np.linalg.inv(a2)
    return ndi.affine_transform(img, inv, offset=-inv @ t, output_shape=shape, order=1)


def _similarity(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson correlation of two maps (1 = the same up to gain and offset)."""
    a, b = a.ravel() - a.mean(), b.ravel() - b.mean()
    den = float(np.sqrt((a @ a) * (b @ b)))
    return float(a @ b) / den if den > 0 else 0.0


def _best_at(fixed, moving, c_f, c_m, angle, shape):
    """(overlap, shift (rows, cols)) of `moving` rotated by `angle` about c_m onto c_f + shift."""
    from skimage.registration import phase_cross_correlation

    r = _rot(angle)
    warped = _warp(moving, r, c_f - r @ c_m, shape)
    shift, _, _ = phase_cross_correlation(fixed, warped, normalization=None)
    shifted = _warp(warped, np.eye(2), np.asarray(shift, float), shape)
    return _similarity(fixed, shifted), np.asarray(shift, float)


def align_masks(
    fixed: TissueMask,
    moving: TissueMask,
    *,
    coarse_step: float = 5.0,
    fine_step: float = 0.5,
    max_angle: float = 180.0,
) -> RigidAlignment:
    """The rigid transform that lays `moving`'s tissue onto `fixed`'s (see the module docstring)."""
    if fixed.mpp is None or moving.mpp is None:
        raise ValueError("tissue masks need their pixel size (mpp) to be aligned")
    if fixed.is_empty or moving.is_empty:
        raise ValueError("no tissue found on one of the slides; nothing to align")
    g = max(fixed.mpp, moving.mpp)
    ext = [np.array(tm.mask.shape) * tm.mpp / g for tm in (fixed, moving)]
    side = int(np.ceil(np.hypot(*np.maximum(ext[0], ext[1])))) + 4
    shape = (side, side)  # room for any rotation of either mask
    f = _on_grid(fixed, g, shape)
    m = _on_grid(moving, g, shape)
    c_f = np.array(np.nonzero(f > 0.5)).mean(axis=1)
    c_m = np.array(np.nonzero(m > 0.5)).mean(axis=1)

    def search(angles):
        results = [(*_best_at(f, m, c_f, c_m, a, shape), a) for a in angles]
        return max(results, key=lambda x: x[0])

    best = search(np.arange(-max_angle, max_angle, coarse_step))
    a0 = best[2]
    fine = search(np.arange(a0 - coarse_step, a0 + coarse_step + 1e-9, fine_step))
    best = fine if fine[0] > best[0] else best
    overlap, shift, angle = best
    r = _rot(angle)
    # grid px p <-> um (p + 0.5) * g; moving um u -> fixed um: r @ u + t
    cm_um, cf_um = (c_m + 0.5) * g, (c_f + shift + 0.5) * g
    t = cf_um - r @ cm_um
    mat = np.eye(3)
    mat[:2, :2], mat[:2, 2] = r, t
    d = cf_um - cm_um
    return RigidAlignment(mat, float(angle), (float(d[0]), float(d[1])), overlap)


def align_slides(fixed_slide, moving_slide, *, target_mpp: float = 16.0) -> RigidAlignment:
    """`align_masks` on the two slides' tissue masks detected at ~`target_mpp` um/px."""
    return align_masks(
        detect_tissue(fixed_slide, target_mpp=target_mpp),
        detect_tissue(moving_slide, target_mpp=target_mpp),
    )
