"""The bundled models (trained on simulated tissue) refuse every real H&E image of the sample data:
no call, out_of_domain; a simulated slide like their training ones gets a call."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from napari_histostain.engine.predict import predict_slide
from napari_histostain.markers import MARKERS
from shared_data import shared_file

#: (path parts, pixel size for plain images: um/px, None for slides that carry or lack their own)
REAL_HE = [
    (("slides", "CMU-1-Small-Region.svs"), None),
    (("slides", "TCGA-CR-7395-01A-01-TS1.svs"), None),  # no mpp: assumed_mpp as well
    (("dicom", "CMU-1-Small-Region"), None),
    (("images", "he", "tiatoolbox-target_image.png"), 0.5),
    (("images", "he", "stardist-histo.jpg"), 0.5),
    (("images", "he", "histolab-high-nuclei-score-level0.png"), 0.5),
    (("images", "he", "histolab-low-nuclei-score-level0.png"), 0.5),
    (("images", "he", "histolab-medium-nuclei-score-level0.png"), 0.5),
    (("images", "he", "histolab-tissue-level0-4302-10273-4814-10785.png"), 0.5),
    (("images", "he", "histolab-tissue-level0-7352-11762-7864-12274.png"), 0.5),
    # ANHIR: the sections at 5 % scale of ~0.174 um/px scans (about 3.5 um/px)
    (("pairs", "anhir-lung-lesion3", "29-041-Izd2-w35-He-les3.jpg"), 3.5),
]


def _slide(parts, mpp):
    if mpp is None:
        return str(shared_file(*parts))
    from skimage.io import imread

    from napari_histostain.io.slide import slide_from_array

    rgb = imread(shared_file(*parts))[..., :3].astype(np.uint8)
    return slide_from_array(rgb, mpp, name=parts[-1])


@pytest.mark.parametrize(("parts", "mpp"), REAL_HE, ids=[p[-1] for p, _ in REAL_HE])
def test_real_he_gets_no_call_out_of_domain(parts, mpp):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pred = predict_slide(_slide(parts, mpp), tuple(MARKERS))
    assert len(pred.grid) >= 1 and pred.domain is not None
    assert pred.domain["in_domain"] is False
    for m in pred.markers.values():
        assert m.call_status == "no_call" and m.label is None
        assert "out_of_domain" in m.no_call_reason.split(";")


def test_a_simulated_slide_like_the_training_ones_is_called(tmp_path):
    from napari_histostain import simulate

    case = simulate.simulate_case(tmp_path, ["ki67"], case_id="indomain", size_um=1344, seed=77)
    pred = predict_slide(case.he_path, tuple(MARKERS))
    assert pred.domain["in_domain"] is True
    assert pred.domain["in_domain_tiles"] >= 0.8 * pred.domain["tiles"]
    for m in pred.markers.values():
        assert m.call_status == "call" and m.label is not None
        assert 0 < m.probability < 1 and m.raw_probability != m.probability  # calibrated
