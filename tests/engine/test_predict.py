"""Streaming whole-slide prediction: exact maps, regions, cancel, streaming, stain and tissue checks.

Most tests use a small real TorchScript encoder (through the encoder registry) to stay fast; one runs
the bundled EfficientNet-Lite0 end to end.
"""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
import torch

from napari_histostain.engine.encoders import EncoderError, get_encoder
from napari_histostain.engine.model_files import seeded_model
from napari_histostain.engine.predict import PredictionCancelled, PredictOptions, predict_slide
from napari_histostain.engine.stain_check import StainWarning
from napari_histostain.io.naming import slide_name
from napari_histostain.io.slide import open_slide
from napari_histostain.io.synthetic import write_slide
from napari_histostain.results.prediction_files import save_prediction
from shared_data import shared_file

MARKERS = ("p53", "ki67")


class TinyEncoder(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 16, 7, stride=4)

    def forward(self, x):
        return torch.relu(self.conv(x))


@pytest.fixture(scope="module")
def tiny_encoder(tmp_path_factory):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("enc") / "tiny.pt"
    torch.jit.save(
        torch.jit.script(TinyEncoder()),
        str(path),
        _extra_files={"histostain.json": json.dumps({"id": "tiny-test"})},
    )
    return get_encoder(path, allow_torchscript=True)


def _models(in_dim=16, encoder_id="torchscript:tiny-test", tile_mpp=0.5):
    out = {}
    for i, m in enumerate(MARKERS):
        net, cfg = seeded_model(m, seed=i, in_dim=in_dim, encoder_id=encoder_id, tile_mpp=tile_mpp)
        with torch.no_grad():
            for p in net.parameters():
                p.mul_(5.0)  # sharpen so attention and positivity vary across tiles
        out[m] = (net, cfg)
    return out


def _opts(encoder, models=None, **kw) -> PredictOptions:
    return PredictOptions(models=_models() if models is None else models, encoder=encoder, **kw)


@pytest.fixture(scope="module")
def slide(synthetic_slide):
    with open_slide(synthetic_slide) as s:
        yield s


@pytest.fixture(scope="module")
def whole(slide, tiny_encoder):
    return predict_slide(slide, MARKERS, _opts(tiny_encoder, batch_size=8))


def test_whole_slide_prediction_is_exact_and_deterministic(slide, tiny_encoder, whole):
    n = len(whole.grid)
    assert n > 20 and whole.grid.level == 0 and whole.messages == []
    for m in MARKERS:
        mp = whole.markers[m]
        assert mp.positivity.shape == mp.attention.shape == mp.contribution.shape == (n,)
        assert mp.attention.sum() == pytest.approx(1.0, abs=1e-9)
        assert mp.contribution.sum() == pytest.approx(mp.logit, abs=1e-9)
        assert mp.positivity.std() > 1e-3 and mp.attention.std() > 1e-4
        assert mp.probability == pytest.approx(1 / (1 + np.exp(-mp.logit)), abs=1e-9)
        assert mp.label == ("positive" if mp.probability >= mp.threshold else "negative")
    # the streaming result equals the slide encoder run on all tile features at once
    from napari_histostain.engine.tile_stream import iter_batches

    feats = torch.cat(
        [
            torch.from_numpy(tiny_encoder.embed(t))
            for _, t in iter_batches(slide, whole.grid, batch_size=64)
        ]
    )
    net, _ = _models()["ki67"]
    with torch.inference_mode():
        out = net(feats)
    np.testing.assert_allclose(whole.markers["ki67"].attention, out.attention.numpy(), atol=1e-5)
    np.testing.assert_allclose(whole.markers["ki67"].embedding, out.embedding.numpy(), atol=1e-4)
    again = predict_slide(slide, MARKERS, _opts(tiny_encoder, batch_size=8))
    for m in MARKERS:
        np.testing.assert_array_equal(again.markers[m].positivity, whole.markers[m].positivity)
        np.testing.assert_array_equal(again.markers[m].attention, whole.markers[m].attention)


def test_region_equals_whole_slide_for_the_same_tiles(slide, tiny_encoder, whole):
    region = (700, 400, 1200, 900)
    part = predict_slide(slide, MARKERS, _opts(tiny_encoder, batch_size=8), region=region)
    idx = whole.grid.index_of(part.grid.rowcol)
    assert 3 < len(part.grid) < len(whole.grid) and (idx >= 0).all()
    for m in MARKERS:
        w, p = whole.markers[m], part.markers[m]
        np.testing.assert_allclose(p.positivity, w.positivity[idx], atol=1e-5)
        np.testing.assert_allclose(p.scores, w.scores[idx], atol=1e-5)
        np.testing.assert_allclose(
            p.attention, w.attention[idx] / w.attention[idx].sum(), atol=1e-5
        )


def test_streaming_callbacks_and_cancel(slide, tiny_encoder, whole, tmp_path):
    seen, progress = [], []

    def on_batch(idx, partial):
        seen.append(idx)
        np.testing.assert_allclose(
            partial["p53"]["positivity"], whole.markers["p53"].positivity[idx], atol=1e-5
        )

    predict_slide(
        slide,
        MARKERS,
        _opts(tiny_encoder, batch_size=8),
        on_batch=on_batch,
        progress=lambda d, n: progress.append((d, n)),
    )
    n = len(whole.grid)
    np.testing.assert_array_equal(np.concatenate(seen), np.arange(n))
    assert progress[0] == (0, n) and progress[-1] == (n, n)

    batches = []
    out = tmp_path / "out"
    with pytest.raises(PredictionCancelled, match="cancelled after 8 of"):
        pred = predict_slide(
            slide,
            MARKERS,
            _opts(tiny_encoder, batch_size=8),
            on_batch=lambda i, p: batches.append(i),
            cancel=lambda: len(batches) >= 1,
        )
        save_prediction(pred, out)
    assert len(batches) == 1  # stopped before the next batch
    assert not out.exists()


def test_saved_outputs(whole, tmp_path):
    files = save_prediction(whole, tmp_path / "out")
    assert [f.name for f in files] == ["synthetic.prediction.json", "synthetic.tiles.csv"]
    doc = json.loads(files[0].read_text())
    assert set(doc["markers"]) == set(MARKERS) and doc["grid"]["n_tiles"] == len(whole.grid)
    assert doc["markers"]["ki67"]["probability"] == pytest.approx(whole.markers["ki67"].probability)
    import csv

    rows = list(csv.DictReader(files[1].open()))
    assert len(rows) == len(whole.grid)
    r = rows[3]
    g = whole.grid
    assert int(r["x"]) == g.coords[3, 0] and int(r["width"]) == 224
    assert float(r["x_um"]) == pytest.approx((g.coords[3, 0] + 223 / 2) * 0.5, abs=1e-3)
    assert float(r["p53_attention"]) == pytest.approx(whole.markers["p53"].attention[3])
    assert not list((tmp_path / "out").glob("*.part"))
    hm = whole.heatmap("ki67", "attention")
    assert hm.shape == (g.n_rows, g.n_cols) and np.isnan(hm).sum() == hm.size - len(g)
    assert hm[g.rowcol[3, 0], g.rowcol[3, 1]] == pytest.approx(whole.markers["ki67"].attention[3])


def test_output_names_follow_the_slide_name():
    assert slide_name("/a/CMU-1.svs") == "CMU-1"
    assert slide_name("/a/case.v2.ome.tiff") == "case.v2"
    assert slide_name("/a/CMU-1-Small-Region/1.2.3.dcm") == "CMU-1-Small-Region"


def test_no_tissue_gives_an_empty_result_with_a_message(tiny_encoder, tmp_path):
    path = write_slide(
        tmp_path / "glass.tif",
        1024,
        1024,
        lambda y, x, h, w: np.full((h, w, 3), 242, np.uint8),
        0.5,
    )
    pred = predict_slide(path, MARKERS, _opts(tiny_encoder))
    assert pred.is_empty and "no tissue" in pred.messages[0]
    assert np.isnan(pred.markers["p53"].probability) and pred.markers["p53"].label is None
    files = save_prediction(pred, tmp_path / "out")
    assert json.loads(files[0].read_text())["markers"]["p53"]["probability"] is None
    assert files[1].read_text().count("\n") == 1  # header only


def test_ihc_slide_triggers_the_stain_warning(tiny_encoder):
    path = shared_file("slides", "OS-2-Ki67-crop.tiff")
    with pytest.warns(StainWarning, match="looks like an IHC"):
        pred = predict_slide(path, MARKERS, _opts(tiny_encoder))
    assert pred.stain["looks_like"] == "IHC"


def test_he_slide_passes_the_stain_check(tiny_encoder):
    path = shared_file("slides", "CMU-1-Small-Region.svs")
    with warnings.catch_warnings():
        warnings.simplefilter("error", StainWarning)
        pred = predict_slide(path, MARKERS, _opts(tiny_encoder, tile_mpp=1.0))
    assert pred.stain["looks_like"] == "H&E" and len(pred.grid) > 10
    assert any("trained at 0.5" in m for m in pred.messages)


def test_encoder_model_mismatch_is_a_clear_error(slide, tiny_encoder):
    with pytest.raises(EncoderError, match="expects 1280-d tile embeddings"):
        predict_slide(
            slide,
            MARKERS,
            _opts(tiny_encoder, _models(in_dim=1280, encoder_id="efficientnet-lite0")),
        )


def test_other_encoder_weights_are_refused_unless_allowed(slide, tiny_encoder):
    own = tiny_encoder.fingerprint
    assert own.startswith("sha256:") and len(own) == 71
    models = _models()
    models["ki67"][1].encoder_weights = "sha256:" + "0" * 64  # trained on other weights
    region = (700, 400, 500, 500)
    with pytest.raises(
        EncoderError, match=r"from weights sha256:000000000000, but .* has weights "
    ):
        predict_slide(slide, MARKERS, _opts(tiny_encoder, models), region=region)
    with pytest.raises(EncoderError, match="--allow-other-encoder-weights"):
        predict_slide(slide, MARKERS, _opts(tiny_encoder, models), region=region)
    pred = predict_slide(
        slide, MARKERS, _opts(tiny_encoder, models, allow_other_encoder_weights=True), region=region
    )
    notes = [m for m in pred.messages if "other weights" in m]
    assert len(notes) == 1 and "Ki-67" in notes[0] and "running anyway" in notes[0]
    models["ki67"][1].encoder_weights = own  # the right weights: nothing to say
    pred = predict_slide(slide, MARKERS, _opts(tiny_encoder, models), region=region)
    assert not [m for m in pred.messages if "weights" in m]


def test_mpp_override_changes_the_grid(slide, tiny_encoder, whole):
    pred = predict_slide(slide, ["p53"], _opts(tiny_encoder, {"p53": _models()["p53"]}, mpp=0.25))
    assert pred.grid.slide_mpp == (0.25, 0.25) and pred.grid.tile_px0 == pytest.approx(448)
    assert slide.mpp == (0.5, 0.5)  # the caller's slide is untouched


def test_bundled_efficientnet_end_to_end(slide):
    models = {m: seeded_model(m, seed=i) for i, m in enumerate(MARKERS)}
    pred = predict_slide(slide, MARKERS, PredictOptions(models=models))
    assert pred.encoder_id == "efficientnet-lite0" and pred.grid.level == 1
    assert len(pred.grid) > 3
    for m in MARKERS:
        assert pred.markers[m].embedding.shape == (256,)
        assert pred.markers[m].contribution.sum() == pytest.approx(pred.markers[m].logit, abs=1e-9)
