"""Simulated tiles fall inside the stain / nuclei ranges of the real slides (../shared/data)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from napari_histostain.io.slide import open_slide
from napari_histostain.simulate import load_truth, simulate_case
from napari_histostain.simulate.realism import slide_tile_stats, tile_stats
from shared_data import SHARED_DATA

pytestmark = pytest.mark.slow  # simulated slides, clusters or whole cohorts: seconds each

SLIDES = SHARED_DATA / "slides"


def _stats(path, key, max_tiles=120):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TCGA slide has no mpp
        with open_slide(path) as s:
            return np.array([t[key] for t in slide_tile_stats(s, 0.5, max_tiles=max_tiles)])


@pytest.fixture(scope="module")
def sim_case(tmp_path_factory):
    if not SLIDES.is_dir():
        pytest.skip(f"real sample data not available: {SLIDES}")
    return simulate_case(tmp_path_factory.mktemp("real"), ["ki67"], size_um=1024, seed=2024)


def _inside(sim: np.ndarray, lo: float, hi: float) -> None:
    med = float(np.nanmedian(sim))
    assert lo <= med <= hi, f"simulated median {med:.4f} outside real range [{lo:.4f}, {hi:.4f}]"
    width = hi - lo
    frac = np.mean((sim >= lo - 0.25 * width) & (sim <= hi + 0.25 * width))
    assert frac >= 0.8, f"only {frac:.0%} of simulated tiles inside the real range"


@pytest.mark.parametrize("key", ["h_od", "e_od"])
def test_he_optical_density_in_real_range(sim_case, key):
    real = np.concatenate(
        [
            _stats(SLIDES / "CMU-1-Small-Region.svs", key),
            _stats(SLIDES / "TCGA-CR-7395-01A-01-TS1.svs", key),
        ]
    )
    lo, hi = np.nanpercentile(real, [5, 95])
    _inside(_stats(sim_case.he_path, key), lo, hi)


def test_he_nuclei_density_in_real_range(sim_case):
    # CMU-1 only: the TCGA slide has no pixel size, so its nuclei per mm^2 are unknown
    real = _stats(SLIDES / "CMU-1-Small-Region.svs", "nuclei_per_mm2")
    lo, hi = np.nanpercentile(real, [5, 95])
    _inside(_stats(sim_case.he_path, "nuclei_per_mm2"), lo, hi)


def _tumour_tile_stats(case, key):
    """Stats of the simulated IHC's tumour-rich truth tiles (the real Ki-67 crop is all tumour)."""
    truth = load_truth(case.truth_paths["ki67"])
    n = truth["ihc_n_tumour"]
    tile = int(truth["tile_px"])
    rows, cols = np.nonzero(n >= np.percentile(n[n > 0], 60))
    with open_slide(case.ihc_paths["ki67"]) as s:
        return np.array(
            [
                tile_stats(s.read_region((int(c) * tile, int(r) * tile), 0, (tile, tile)), 0.5)[key]
                for r, c in zip(rows, cols)
            ]
        )


@pytest.mark.parametrize("key", ["h_od", "dab_od"])
def test_ki67_ihc_optical_density_in_real_range(sim_case, key):
    real = _stats(SLIDES / "OS-2-Ki67-crop.tiff", key)
    lo, hi = np.nanpercentile(real, [5, 95])
    _inside(_tumour_tile_stats(sim_case, key), lo, hi)
