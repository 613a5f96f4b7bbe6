"""Per-tile ground truth of a simulated section pair, saved as a compressed .npz.

Tile (r, c) covers level-0 pixels [c * tile_px, (c + 1) * tile_px) x [r * tile_px, ...) of its slide.
Arrays (prefix `he_` on the H&E grid, `ihc_` on the marker's IHC grid):
- `*_n_tumour`: tumour cells in the tile; `ihc_n_positive`: of those, positive in the IHC render;
  `he_expected_positive`: expected positives under the H&E section's cells (local positivity rate);
- `*_positivity`: positive / tumour fraction (NaN where a tile has no tumour cell);
- `*_tissue_fraction`: fraction of the tile covered by tissue.
Cell tables: `ihc_cells_{x,y,kind,positive,dab,membrane}`, `he_cells_{x,y,kind,expected}`.
Scalars: marker, latent, label, true_index (Ki-67 index / P53 positive fraction / PD-L1 TPS),
pattern, tile_px, mpp; for PD-L1 also true_cps (combined positive score, 0-100).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..io.atomic import atomic_path
from .cells import COARSE, TUMOUR_CELL, Cells, Section
from .tissue import FAT, GLASS


def grid_shape(height: int, width: int, tile_px: int) -> tuple[int, int]:
    return -(-height // tile_px), -(-width // tile_px)


def _count(cells: Cells, mask: np.ndarray, weights, tile_px: int, shape) -> np.ndarray:
    r = (cells.y[mask] // tile_px).astype(np.int64)
    c = (cells.x[mask] // tile_px).astype(np.int64)
    flat = r * shape[1] + c
    w = None if weights is None else np.asarray(weights)[mask]
    return np.bincount(flat, w, minlength=shape[0] * shape[1]).reshape(shape)


def tissue_fraction(section: Section, tile_px: int) -> np.ndarray:
    shape = grid_shape(section.height, section.width, tile_px)
    lab = section.labels
    yc = (np.arange(lab.shape[0]) + 0.5) * COARSE
    xc = (np.arange(lab.shape[1]) + 0.5) * COARSE
    r = np.minimum((yc // tile_px).astype(np.int64), shape[0] - 1)
    c = np.minimum((xc // tile_px).astype(np.int64), shape[1] - 1)
    flat = (r[:, None] * shape[1] + c[None, :]).ravel()
    tissue = ((lab != GLASS) & (lab != FAT)).ravel().astype(np.float64)
    num = np.bincount(flat, tissue, minlength=shape[0] * shape[1])
    den = np.bincount(flat, minlength=shape[0] * shape[1])
    return (num / np.maximum(den, 1)).reshape(shape).astype(np.float32)


def expected_positivity(he: Section, marker: str, truth: dict, pattern: str) -> np.ndarray:
    """Expected positivity of each H&E cell, from the case's rate and local heterogeneity."""
    tum = he.cells.kind == TUMOUR_CELL
    exp = np.zeros(len(he.cells), np.float32)
    if not tum.any():
        return exp
    rate = truth.get("true_index", 0.0)
    if marker == "p53" and pattern == "overexpression":
        exp[tum] = rate
        return exp
    w = he.hetero_at_cells(marker)[tum]
    exp[tum] = np.clip(rate * w / max(float(w.mean()), 1e-6), 0.0, 1.0)
    return exp


def save_truth(
    path: Path, he: Section, ihc: Section, marker: str, truth: dict, latent, tile_px: int
) -> Path:
    """Write the tile-level and cell-level truth of one (H&E, IHC) pair."""
    he_shape = grid_shape(he.height, he.width, tile_px)
    ihc_shape = grid_shape(ihc.height, ihc.width, tile_px)
    he_t = he.cells.kind == TUMOUR_CELL
    ihc_t = ihc.cells.kind == TUMOUR_CELL
    expected = expected_positivity(he, marker, truth, latent.pattern)
    he_n = _count(he.cells, he_t, None, tile_px, he_shape)
    he_e = _count(he.cells, he_t, expected, tile_px, he_shape)
    ihc_n = _count(ihc.cells, ihc_t, None, tile_px, ihc_shape)
    ihc_p = _count(ihc.cells, ihc_t & ihc.cells.positive, None, tile_px, ihc_shape)
    with np.errstate(invalid="ignore", divide="ignore"):
        he_pos = np.where(he_n > 0, he_e / he_n, np.nan).astype(np.float32)
        ihc_pos = np.where(ihc_n > 0, ihc_p / ihc_n, np.nan).astype(np.float32)
    arrays = {
        "marker": np.array(marker),
        "latent": np.float64(latent.latent),
        "label": np.int64(latent.label),
        "pattern": np.array(latent.pattern),
        "true_index": np.float64(truth.get("true_index", np.nan)),
        **({"true_cps": np.float64(truth["true_cps"])} if "true_cps" in truth else {}),
        "tile_px": np.int64(tile_px),
        "mpp": np.float64(he.mpp),
        "he_n_tumour": he_n.astype(np.int32),
        "he_expected_positive": he_e.astype(np.float32),
        "he_positivity": he_pos,
        "he_tissue_fraction": tissue_fraction(he, tile_px),
        "ihc_n_tumour": ihc_n.astype(np.int32),
        "ihc_n_positive": ihc_p.astype(np.int32),
        "ihc_positivity": ihc_pos,
        "ihc_tissue_fraction": tissue_fraction(ihc, tile_px),
        "he_cells_x": he.cells.x,
        "he_cells_y": he.cells.y,
        "he_cells_kind": he.cells.kind,
        "he_cells_expected": expected,
        "ihc_cells_x": ihc.cells.x,
        "ihc_cells_y": ihc.cells.y,
        "ihc_cells_kind": ihc.cells.kind,
        "ihc_cells_positive": ihc.cells.positive,
        "ihc_cells_dab": ihc.cells.dab,
        "ihc_cells_membrane": ihc.cells.membrane,
    }
    with atomic_path(path) as tmp:
        _savez_deterministic(tmp, arrays)
    return path


def _savez_deterministic(path: Path, arrays: dict) -> None:
    """Like `np.savez_compressed`, with fixed zip timestamps (same content -> same bytes)."""
    import zipfile

    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, arr in arrays.items():
            info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            with zf.open(info, "w", force_zip64=True) as fh:
                np.lib.format.write_array(fh, np.asanyarray(arr), allow_pickle=False)


def load_truth(path: str | Path) -> dict:
    """The truth arrays of a pair as a dict (scalars as Python values)."""
    with np.load(path, allow_pickle=False) as z:
        out = {}
        for k in z.files:
            v = z[k]
            out[k] = v.item() if v.ndim == 0 else v
    return out
