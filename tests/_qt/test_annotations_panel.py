"""Annotations in the widget: import QuPath GeoJSON, predict inside, results per region, export."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("pytestqt")
pytestmark = pytest.mark.gui

TIMEOUT_MS = 90_000


def _qupath_file(path):
    """Annotations as QuPath 0.4 exports them (File > Export objects > GeoJSON), level-0 px."""

    def feature(ring, cls, name):
        return {
            "type": "Feature",
            "id": f"5b0d4a8e-4a4b-4d8e-9a53-0c1c7f3f1f0{len(name)}",
            "geometry": {"type": "Polygon", "coordinates": [ring]},
            "properties": {
                "objectType": "annotation",
                "name": name,
                "classification": {"name": cls, "color": [200, 0, 0]},
                "isLocked": False,
            },
        }

    tumour = [[800, 500], [2200, 500], [2200, 1500], [800, 1500], [800, 500]]
    necrosis = [[1300, 800], [1800, 800], [1800, 1250], [1300, 1250], [1300, 800]]
    fc = {
        "type": "FeatureCollection",
        "features": [feature(tumour, "Tumor", "tumour"), feature(necrosis, "Ignore*", "necro")],
    }
    path.write_text(json.dumps(fc))
    return path


def test_predict_inside_imported_regions_and_export_back(
    qtbot, make_napari_viewer, synthetic_slide, tmp_path
):
    from napari_histostain._qt.widget import PredictionWidget
    from napari_histostain.annotations import read_annotations, regions_on_grid
    from napari_histostain.annotations.results import prediction_region_results
    from napari_histostain.engine.model_files import save_model_file, seeded_model
    from napari_histostain.engine.predict import PredictOptions, predict_slide
    from napari_histostain.plugin.reader import read_slide_layer

    viewer = make_napari_viewer()
    data, kw, _ = read_slide_layer(synthetic_slide)
    viewer.add_image(data, **kw)
    widget = PredictionWidget(viewer)
    viewer.window.add_dock_widget(widget, name="HistoStain")
    net, cfg = seeded_model("ki67", seed=3)
    model = save_model_file(tmp_path / "k.pt", net, cfg)
    widget.set_model_files([model])
    widget.set_markers(["ki67"])
    qtbot.waitUntil(lambda: widget.predictor is not None, timeout=TIMEOUT_MS)
    panel = widget.annotations
    layer = panel.import_geojson(_qupath_file(tmp_path / "qupath.geojson"))
    assert len(layer.data) == 2 and list(layer.features["class"]) == ["Tumor", "Ignore*"]
    panel.predict_inside()
    regions = panel.regions()
    assert [r.kind for r in regions] == ["all", "class", "annotation"]
    want = set(regions[0].indices.tolist())  # the tumour minus the necrosis
    anns = read_annotations(tmp_path / "qupath.geojson")
    whole_tumour = set(regions_on_grid(anns[:1], widget.predictor.maps)[0].indices.tolist())
    assert want and want < whole_tumour
    maps = widget.predictor.maps
    qtbot.waitUntil(lambda: set(np.flatnonzero(maps.done).tolist()) >= want, timeout=TIMEOUT_MS)
    qtbot.wait(500)
    assert set(np.flatnonzero(maps.done).tolist()) == want  # only the tumour minus the necrosis
    widget.stop()
    widget._refresh_now()
    assert panel.table.rowCount() == 3
    assert panel.table.item(2, 0).text() == "tumour"
    assert panel.table.item(2, 2).text() == f"{len(want)}/{len(want)}"
    # the numbers of the tumour region minus necrosis equal the headless prediction's
    ref = predict_slide(str(synthetic_slide), ["ki67"], PredictOptions(models={"ki67": model}))
    headless = prediction_region_results(ref, regions_on_grid(anns, ref.grid))
    pos = ref.markers["ki67"].positivity[sorted(want)]
    for got, exp in zip(panel.results, headless, strict=True):
        g, e = got["markers"]["ki67"], exp["markers"]["ki67"]
        assert g["tiles_computed"] == len(want)
        assert g["mean_positivity"] == pytest.approx(e["mean_positivity"], rel=1e-5)
        assert g["mean_positivity"] == pytest.approx(float(pos.mean()), rel=1e-5)
        assert g["probability"] == pytest.approx(e["probability"], rel=1e-4)
    # export back: QuPath GeoJSON with the classes
    out = panel.export_geojson(tmp_path / "back.geojson")
    back = read_annotations(out)
    assert [a.classification for a in back] == ["Tumor", "Ignore*"]
    widget.close_session()
