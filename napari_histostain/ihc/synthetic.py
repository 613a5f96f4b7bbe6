"""A small hematoxylin-DAB renderer with known truth, for tests and benchmarks of `ihc`.

Cells on a jittered lattice (Beer-Lambert mixing of the standard hematoxylin and DAB vectors):
negative nuclei blue, positive nuclei brown at a chosen DAB density, optional DAB membranes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class DabTruth:
    """What was rendered: cell centres (row, col) px, nuclear DAB density, membrane flag."""

    centres: np.ndarray
    dab: np.ndarray
    membrane: np.ndarray

    @property
    def positive_fraction(self) -> float:
        return float((self.dab > 0).mean()) if len(self.dab) else 0.0


def render_dab(
    height: int,
    width: int,
    mpp: float = 0.5,
    *,
    positive_fraction: float = 0.3,
    dab_levels: tuple[float, float] = (0.35, 1.0),
    membrane_fraction: float = 0.0,
    cell_um: float = 14.0,
    seed: int = 0,
    origin: tuple[int, int] = (0, 0),
    tissue_box: tuple[int, int, int, int] | None = None,
) -> tuple[np.ndarray, DabTruth]:
    """RGB uint8 (height, width, 3) of DAB IHC tissue and its truth.

    Cells lie on a global lattice (period `cell_um`) anchored at pixel (0, 0); `origin` = (y0, x0)
    renders the window of that global image starting there, so strips of one slide agree.
    A cell's state depends only on its lattice position and `seed`.
    `tissue_box` = (y, x, h, w) in global px limits cells to a box (glass elsewhere).
    """
    y0, x0 = origin
    period = cell_um / mpp
    r_nuc = 3.6 / mpp
    gy0, gx0 = int(np.floor(y0 / period)) - 1, int(np.floor(x0 / period)) - 1
    gy1, gx1 = int(np.ceil((y0 + height) / period)) + 1, int(np.ceil((x0 + width) / period)) + 1
    gy, gx = np.mgrid[gy0:gy1, gx0:gx1]
    gy, gx = gy.ravel(), gx.ravel()
    # per-cell random numbers from a hash of the lattice position (window independent)
    h = np.sin(gy * 12.9898 + gx * 78.233 + seed * 3.7) * 43758.5453
    u = [(h * k) - np.floor(h * k) for k in (1.0, 1.37, 1.71, 2.13, 2.57, 3.11)]
    cy = (gy + 0.5 + (u[0] - 0.5) * 0.3) * period
    cx = (gx + 0.5 + (u[1] - 0.5) * 0.3) * period
    positive = u[2] < positive_fraction
    dab = np.where(positive, dab_levels[0] + (dab_levels[1] - dab_levels[0]) * u[3], 0.0)
    membrane = u[4] < membrane_fraction
    radius = r_nuc * (0.85 + 0.3 * u[5])
    if tissue_box is not None:
        by, bx, bh, bw = tissue_box
        inside = (cy >= by) & (cy < by + bh) & (cx >= bx) & (cx < bx + bw)
        cy, cx, dab, membrane, radius = (
            cy[inside],
            cx[inside],
            dab[inside],
            membrane[inside],
            radius[inside],
        )

    yy = np.arange(y0, y0 + height, dtype=np.float32)[:, None]
    xx = np.arange(x0, x0 + width, dtype=np.float32)[None, :]
    c_h = np.zeros((height, width), np.float32)
    c_d = np.zeros((height, width), np.float32)
    if tissue_box is None:
        c_h += 0.06  # cytoplasm / stroma counterstain
    else:
        by, bx, bh, bw = tissue_box
        c_h += 0.06 * ((yy >= by) & (yy < by + bh) & (xx >= bx) & (xx < bx + bw))
    reach = period * 0.55
    for k in range(len(cy)):
        ys = slice(
            max(int(cy[k] - reach) - y0, 0), max(min(int(cy[k] + reach) + 1 - y0, height), 0)
        )
        xs = slice(max(int(cx[k] - reach) - x0, 0), max(min(int(cx[k] + reach) + 1 - x0, width), 0))
        if ys.start >= ys.stop or xs.start >= xs.stop:
            continue
        d2 = (yy[ys] - cy[k]) ** 2 + (xx[:, xs] - cx[k]) ** 2
        nuc = d2 <= radius[k] ** 2
        c_h[ys, xs] += np.where(nuc, 0.45 - 0.25 * min(dab[k], 1.0), 0.0)
        c_d[ys, xs] += np.where(nuc, dab[k], 0.0)
        if membrane[k]:
            ring = np.abs(np.sqrt(d2) - radius[k] * 1.7) <= 0.8 / mpp
            c_d[ys, xs] += np.where(ring & ~nuc, 0.5, 0.0)
    from skimage.color import rgb_from_hdx

    h_vec = rgb_from_hdx[0] / np.linalg.norm(rgb_from_hdx[0])
    d_vec = rgb_from_hdx[1] / np.linalg.norm(rgb_from_hdx[1])
    od = c_h[..., None] * h_vec + c_d[..., None] * d_vec + 0.02
    rng = np.random.default_rng([seed, y0, x0])
    od += rng.normal(0, 0.015, od.shape)
    rgb = np.clip(255.0 * np.power(10.0, -od), 0, 255).astype(np.uint8)
    vis = (
        (cy >= y0 - r_nuc)
        & (cy < y0 + height + r_nuc)
        & (cx >= x0 - r_nuc)
        & (cx < x0 + width + r_nuc)
    )
    truth = DabTruth(np.stack([cy[vis] - y0, cx[vis] - x0], axis=1), dab[vis], membrane[vis])
    return rgb, truth


def dab_slide_renderer(height: int, width: int, mpp: float = 0.5, **kwargs):
    """A `render(y0, x0, h, w)` for `synthetic.write_slide`: tissue in the central 80 % box."""
    box = (int(height * 0.1), int(width * 0.1), int(height * 0.8), int(width * 0.8))

    def render(y0: int, x0: int, h: int, w: int) -> np.ndarray:
        return render_dab(h, w, mpp, origin=(y0, x0), tissue_box=box, **kwargs)[0]

    return render
