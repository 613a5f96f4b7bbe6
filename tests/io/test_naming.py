"""One name per slide: predict, predict-cohort, the napari reader, exports and IHC agree."""

from __future__ import annotations

import shutil

import pytest

from napari_histostain.io.naming import slide_name
from shared_data import shared_file


@pytest.mark.parametrize(
    ("path", "name"),
    [
        ("/a/CMU-1.svs", "CMU-1"),
        ("/a/case.v2.svs", "case.v2"),
        ("/a/s.ome.tiff", "s"),
        ("/a/s.OME.TIF", "s"),
        ("/a/case.v2.ome.tif", "case.v2"),
        ("/a/CMU-1-Small-Region/1.2.3.dcm", "CMU-1-Small-Region"),
        ("/a/noext", "noext"),
    ],
)
def test_slide_name_rule(path, name):
    assert slide_name(path) == name


def test_every_output_uses_the_one_name(synthetic_slide, tmp_path):
    """`case.v2.tif` is `case.v2` in predict's files, the cohort's folder, the layer and exports."""
    from napari_histostain.cohort.slides import cohort_slides
    from napari_histostain.engine.model_files import seeded_model
    from napari_histostain.engine.predict import PredictOptions, predict_slide
    from napari_histostain.plugin.reader import read_slide_layer
    from napari_histostain.results.export import export_prediction
    from napari_histostain.results.prediction_files import save_prediction

    slide = tmp_path / "case.v2.tif"
    shutil.copy(synthetic_slide, slide)
    pred = predict_slide(slide, ["p53"], PredictOptions(models={"p53": seeded_model("p53")}))
    files = save_prediction(pred, tmp_path / "out")
    assert [f.name for f in files] == ["case.v2.prediction.json", "case.v2.tiles.csv"]
    exported = export_prediction(tmp_path / "out", pred, what=["geojson", "heatmaps"])
    assert all(f.name.startswith("case.v2.p53") for f in exported)
    assert [s.name for s in cohort_slides([slide])] == ["case.v2"]
    assert read_slide_layer(slide)[1]["name"] == "case.v2"


def test_dicom_file_and_folder_have_the_folder_name():
    from napari_histostain.cohort.slides import cohort_slides
    from napari_histostain.plugin.reader import read_slide_layer

    folder = shared_file("dicom", "CMU-1-Small-Region")
    one = sorted(folder.glob("*.dcm"))[0]
    assert slide_name(folder) == slide_name(one) == "CMU-1-Small-Region"
    assert read_slide_layer(folder)[1]["name"] == "CMU-1-Small-Region"
    assert [s.name for s in cohort_slides([one])] == ["CMU-1-Small-Region"]
