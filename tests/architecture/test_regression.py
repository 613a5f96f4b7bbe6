"""Results recorded before the package was reorganised stay the same (to 1e-5 relative, 1e-6 absolute).

`fixtures/regression.json` holds the bundled models' predictions (probability, logit, per-tile
positivity and attention) on a synthetic slide, the simulated Ki-67 sample case and, with the real
sample data, CMU-1-Small-Region; and `histostain quantify`'s Ki-67 summaries of the simulated IHC of
seeds 0-19 (and PD-L1 of seeds 0-2). A deliberate change of results updates the fixture in the
same commit, saying why (`python tests/architecture/test_regression.py --record`).

Floats are compared to 1e-5 relative (1e-6 absolute), not bit for bit: torch's CPU kernels may sum in another order
on another machine or thread count (seen: 1e-9 differences on a fresh machine), which is not a change
of results; labels, tiles and IHC counts must match exactly.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest

from shared_data import SHARED_DATA, shared_file

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "regression.json"
MARKERS = ("p53", "pdl1", "ki67")
IHC_KEYS = (
    "n_nuclei",
    "ki67_index",
    "h_score",
    "pdl1_tps",
    "strong_fraction",
    "p53_pattern",
    "positive_pixel_fraction",
    "label",
)


def predictions(path) -> dict:
    from napari_histostain.engine.predict import predict_slide

    p = predict_slide(str(path), MARKERS)
    out = {"n_tiles": len(p.grid), "coords": p.grid.coords.tolist(), "markers": {}}
    for k, m in p.markers.items():
        out["markers"][k] = {
            "probability": m.probability,
            "logit": m.logit,
            "label": m.label,
            "positivity": m.positivity.tolist(),
            "attention": m.attention.tolist(),
        }
    return out


def ihc_summary(folder, marker: str, seed: int) -> dict:
    from napari_histostain import ihc, simulate

    case = simulate.simulate_case(
        folder, [marker], case_id=f"{marker}{seed}", size_um=768, seed=seed
    )
    r = ihc.quantify_slide(case.ihc_paths[marker], marker)
    s = r.summary()
    out = {k: s[k] for k in IHC_KEYS}
    out["nuclei_class_sum"] = int(r.nuclei.cls.sum())
    out["n_counted"] = int(r.nuclei.counted.sum())
    return out


@pytest.fixture(scope="module")
def recorded() -> dict:
    return json.loads(FIXTURE.read_text())


def _synthetic(folder: Path) -> Path:
    from napari_histostain.io.synthetic import write_synthetic_slide

    return write_synthetic_slide(folder / "synthetic.tif", 3000, 2000, 0.5, seed=1)


def _sample() -> Path:
    from napari_histostain.plugin.sample_data import sample_case_paths

    return sample_case_paths("ki67")[0]


def _assert_same_prediction(now: dict, then: dict) -> None:
    assert now["n_tiles"] == then["n_tiles"] and now["coords"] == then["coords"]
    for m in MARKERS:
        a, b = now["markers"][m], then["markers"][m]
        assert a["label"] == b["label"]
        close = {"rtol": 1e-5, "atol": 1e-6}
        np.testing.assert_allclose(a["probability"], b["probability"], **close)
        np.testing.assert_allclose(a["logit"], b["logit"], **close)
        np.testing.assert_allclose(a["positivity"], b["positivity"], **close)
        np.testing.assert_allclose(a["attention"], b["attention"], **close)


@pytest.mark.slow
def test_bundled_predictions_unchanged(recorded, tmp_path):
    _assert_same_prediction(predictions(_synthetic(tmp_path)), recorded["predictions"]["synthetic"])
    _assert_same_prediction(predictions(_sample()), recorded["predictions"]["sample_ki67"])


@pytest.mark.slow
def test_bundled_predictions_on_real_slide_unchanged(recorded):
    path = shared_file("slides", "CMU-1-Small-Region.svs")
    _assert_same_prediction(predictions(path), recorded["predictions"]["cmu1"])


@pytest.mark.slow
@pytest.mark.parametrize("key", [f"ki67-{s}" for s in range(20)] + [f"pdl1-{s}" for s in range(3)])
def test_ihc_results_unchanged(recorded, tmp_path, key):
    marker, seed = key.split("-")
    now = ihc_summary(tmp_path, marker, int(seed))
    then = recorded["ihc"][key]
    keys = [k for k in now if k in then]
    assert {k: now[k] for k in keys} == {k: then[k] for k in keys}, key


def record(path: Path = FIXTURE) -> None:
    """Write the fixture from the code as it is now."""
    out: dict = {"predictions": {}, "ihc": {}}
    with tempfile.TemporaryDirectory() as tmp:
        out["predictions"]["synthetic"] = predictions(_synthetic(Path(tmp)))
        out["predictions"]["sample_ki67"] = predictions(_sample())
        cmu1 = SHARED_DATA / "slides" / "CMU-1-Small-Region.svs"
        if cmu1.exists():
            out["predictions"]["cmu1"] = predictions(cmu1)
        for seed in range(20):
            out["ihc"][f"ki67-{seed}"] = ihc_summary(tmp, "ki67", seed)
        for seed in range(3):
            out["ihc"][f"pdl1-{seed}"] = ihc_summary(tmp, "pdl1", seed)
    path.write_text(json.dumps(out))


if __name__ == "__main__" and "--record" in sys.argv:
    record()
