"""Every file a prediction writes carries the caveats: report JSON + PNG, GeoJSON, CSV, JSON."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from napari_histostain.engine.model_files import load_bundled_model, seeded_model
from napari_histostain.engine.predict import PredictOptions, predict_slide
from napari_histostain.results.caveats import DEMO_DISCLAIMER, NO_CALL_TEXT, prediction_caveats
from napari_histostain.results.export import export_prediction, export_predictions
from napari_histostain.results.maps import PredictionMaps
from napari_histostain.results.prediction_files import save_prediction
from napari_histostain.results.report import LEGEND, _marker_title, report_image

REGION = (0, 0, 1400, 1000)


@pytest.fixture(scope="module")
def bundled_prediction(synth_slide):
    """A real prediction of the bundled P53 model on a small region."""
    return predict_slide(synth_slide, ["p53"], PredictOptions(), region=REGION)


@pytest.fixture(scope="module")
def lab_prediction(synth_slide):
    """The same with a (seeded) model that is not a demonstration model."""
    options = PredictOptions(models={"p53": seeded_model("p53", seed=5)})
    return predict_slide(synth_slide, ["p53"], options, region=REGION)


def _csv(path):
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def test_bundled_model_files_carry_the_disclaimer_and_identity(
    tmp_path, synth_slide, bundled_prediction
):
    pred = bundled_prediction
    _, cfg = load_bundled_model("p53")
    ident = f"HistoStainAlign P53, version {cfg.created[:10]}, trained on cohort367"
    json_path, csv_path = save_prediction(pred, tmp_path / "pred")
    doc = json.loads(json_path.read_text())
    assert doc["caveats"]["disclaimer"] == DEMO_DISCLAIMER
    assert doc["caveats"]["models"]["p53"].startswith(ident)
    rows = _csv(csv_path)
    assert len(rows) == len(pred.grid)
    assert all(r["caveats"].startswith(DEMO_DISCLAIMER) for r in rows)
    assert f"Model: {ident}" in rows[0]["caveats"]

    export_prediction(tmp_path / "exp", pred, slide=synth_slide)
    rep = json.loads((tmp_path / "exp" / "synthetic.report.json").read_text())
    assert rep["caveats"]["disclaimer"] == DEMO_DISCLAIMER
    fc = json.loads((tmp_path / "exp" / "synthetic.p53.tiles.geojson").read_text())
    meta = fc["histostain"]
    assert meta["disclaimer"] == DEMO_DISCLAIMER and meta["model_identity"].startswith(ident)
    assert meta["call_status"] in ("call", "forced", "no_call")
    exp_rows = _csv(tmp_path / "exp" / "synthetic.tiles.csv")
    assert [r["caveats"] for r in exp_rows] == [r["caveats"] for r in rows]


def test_lab_model_files_have_no_disclaimer(tmp_path, lab_prediction):
    json_path, csv_path = save_prediction(lab_prediction, tmp_path)
    doc = json.loads(json_path.read_text())
    assert doc["caveats"]["disclaimer"] == "" and not doc["caveats"]["demonstration_model"]
    assert DEMO_DISCLAIMER not in csv_path.read_text()
    assert all(r["caveats"].startswith("Model: HistoStainAlign P53") for r in _csv(csv_path))


def _no_call_maps(pred) -> PredictionMaps:
    """Maps of `pred` marked no call (out of domain), as the domain guard marks them."""
    maps = PredictionMaps.from_prediction(pred)
    mp = pred.markers["p53"]
    maps.set_slide_call(
        "p53", mp.probability, "", mp.threshold, "region", call_status="no_call",
        no_call_reason="out_of_domain",
    )  # fmt: skip
    doc = pred.to_dict()
    doc["markers"]["p53"].update(call_status="no_call", no_call_reason="out_of_domain")
    doc["domain"] = {"in_domain": False, "score": 1.0, "threshold": 0.2, "tiles": 20,
                     "in_domain_tiles": 0}  # fmt: skip
    maps.set_caveats(doc)
    return maps


def test_no_call_reaches_report_geojson_and_csv(tmp_path, synth_slide, bundled_prediction):
    maps = _no_call_maps(bundled_prediction)
    export_predictions(tmp_path, maps, slide=synth_slide)
    rep = json.loads((tmp_path / "synthetic.report.json").read_text())
    assert rep["markers"]["p53"]["call_status"] == "no_call"
    assert rep["caveats"]["markers"]["p53"]["no_call_reason"] == "out_of_domain"
    assert rep["caveats"]["domain_verdict"].startswith("OUT OF DOMAIN: 0/20 tiles in domain")
    meta = json.loads((tmp_path / "synthetic.p53.tiles.geojson").read_text())["histostain"]
    assert meta["no_call_reason"] == "out_of_domain" and meta["domain"]["in_domain"] is False
    cell = _csv(tmp_path / "synthetic.tiles.csv")[0]["caveats"]
    assert "Domain: OUT OF DOMAIN" in cell and NO_CALL_TEXT["out_of_domain"] in cell


def test_panel_titles_say_the_call_state():
    s = {"probability": 0.97, "label": "aberrant", "positive_fraction": 0.5}
    assert _marker_title("p53", {**s, "call_status": "call"}).startswith("P53: aberrant p=0.97")
    assert _marker_title("p53", {**s, "call_status": "forced"}).endswith(
        "(forced)  pos. tissue 50%"
    )
    no = {**s, "label": None, "call_status": "no_call", "no_call_reason": "ihc_input"}
    assert _marker_title("p53", no) == "P53: no call (IHC input)"


def test_report_png_has_colour_bar_and_caveat_lines(synth_slide, bundled_prediction):
    thumb = synth_slide.thumbnail(384)
    maps = PredictionMaps.from_prediction(bundled_prediction)
    summary = maps.summary()
    bare = report_image(thumb, synth_slide.dimensions, maps, ["p53"], summary, caveats={})
    img = report_image(thumb, synth_slide.dimensions, maps, ["p53"], summary)
    th = thumb.shape[0]
    assert bare.shape[0] > th + 60  # the colour bar and its legend below the panels
    assert img.shape[0] > bare.shape[0]  # plus disclaimer and model lines
    foot = img[th + 20 :]
    # the colour bar shows both ends of the ramp: glass-blue (0) and DAB-brown (1)
    blue = np.all(np.abs(foot.astype(int) - [64, 115, 217]) < 12, axis=-1)
    brown = np.all(np.abs(foot.astype(int) - [115, 38, 13]) < 12, axis=-1)
    assert blue.any() and brown.any()
    red = (foot[..., 0] > 120) & (foot[..., 1] < 40) & (foot[..., 2] < 40)
    assert red.sum() > 50  # the disclaimer is drawn in red
    assert not ((bare[th + 20 :, :, 0] > 120) & (bare[th + 20 :, :, 1] < 40)).sum() > 50
    assert "0 = negative" in LEGEND


def test_prediction_caveats_of_a_real_prediction(bundled_prediction):
    cav = prediction_caveats(bundled_prediction.to_dict())
    assert cav["demonstration_model"] and cav["models"]["p53"].startswith("HistoStainAlign P53")


def test_out_of_domain_tiles_are_grey_in_the_report(synth_slide, bundled_prediction):
    from napari_histostain.engine.domain import TILE_CUT
    from napari_histostain.results.report import LEGEND_DOMAIN, overlay_thumbnail

    maps = PredictionMaps.from_prediction(bundled_prediction)
    assert maps.domain_score is not None and len(maps.domain_score) == len(maps)
    out = maps.domain_score > TILE_CUT
    assert out.any()  # the io.synthetic slide is not simulator tissue
    thumb = synth_slide.thumbnail(384)
    grey = overlay_thumbnail(thumb, synth_slide.dimensions, maps, "p53").astype(int)
    maps.domain_score = None
    plain = overlay_thumbnail(thumb, synth_slide.dimensions, maps, "p53").astype(int)
    changed = np.any(grey != plain, axis=-1)
    assert changed.any()
    spread = lambda im: (im.max(-1) - im.min(-1))[changed].mean()  # noqa: E731
    assert spread(grey) < spread(plain)  # greyer where tiles are out of domain
    assert "grey" in LEGEND_DOMAIN


def test_positive_fraction_leaves_out_of_domain_tiles_out(bundled_prediction):
    maps = PredictionMaps.from_prediction(bundled_prediction)
    n = len(maps)
    pos = np.linspace(0.0, 1.0, n, dtype=np.float32)  # the upper half positive
    maps.markers["p53"].positivity = pos
    maps.tissue_fraction = np.ones(n, np.float32)
    maps.set_in_domain("p53", np.arange(n), np.ones(n, bool))
    everything = maps.positive_fraction("p53")
    assert everything == pytest.approx(np.mean(pos >= 0.5))
    maps.set_in_domain("p53", np.arange(n), pos < 0.5)  # the positive tiles out of domain
    assert maps.positive_fraction("p53") == 0.0
    maps.set_in_domain("p53", np.arange(n), np.zeros(n, bool))  # all out: nothing to report
    assert np.isnan(maps.positive_fraction("p53"))
    assert maps.summary()["p53"]["positive_fraction"] != everything
