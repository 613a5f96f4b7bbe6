"""The caveats next to the widget's results, with a real napari viewer (run under xvfb-run):
the demonstration disclaimer and model identity, no-call rows with their reason, 'Force a call'."""

from __future__ import annotations

from html import escape

import pytest

pytest.importorskip("pytestqt")
pytestmark = pytest.mark.gui

TIMEOUT_MS = 120_000


def _widget(make_napari_viewer, slide_path, markers, model_files=()):
    from napari_histostain._qt.widget import PredictionWidget
    from napari_histostain.plugin.reader import read_slide_layer

    viewer = make_napari_viewer()
    data, kwargs, _ = read_slide_layer(slide_path)
    viewer.add_image(data, **kwargs)
    widget = PredictionWidget(viewer)
    viewer.window.add_dock_widget(widget, name="HistoStain")
    if model_files:
        widget.set_model_files(list(model_files))
    widget.set_markers(list(markers))
    widget.set_mode("whole")
    return widget


def _run(qtbot, widget, confirm: bool = False):
    widget.run()
    if confirm:  # an IHC-looking layer is predicted only when Predict is pressed again
        assert widget.predictor is None or not widget.busy
        widget.run()
    qtbot.waitUntil(lambda: widget.predictor is not None and not widget.busy, timeout=TIMEOUT_MS)


def test_bundled_model_shows_disclaimer_and_identity(qtbot, make_napari_viewer, synthetic_slide):
    from napari_histostain.engine.model_files import bundled_model_path, read_model_config
    from napari_histostain.results.caveats import DEMO_DISCLAIMER

    widget = _widget(make_napari_viewer, synthetic_slide, ["ki67"])
    box = widget.results.caveats
    assert not box.disclaimer.isVisibleTo(widget)  # nothing predicted yet: nothing to caveat
    _run(qtbot, widget)
    cfg = read_model_config(bundled_model_path("ki67"))
    assert box.disclaimer.isVisibleTo(widget) and box.disclaimer.text() == DEMO_DISCLAIMER
    assert box.models.text() == (
        f"Model: HistoStainAlign Ki-67, version {cfg.created[:10]}, trained on cohort367 "
        f"({cfg.training['n_train_cases']} simulated cases)"
    )
    # the disclaimer sits right under the results table
    lay = widget.results.layout()
    assert lay.indexOf(box) == lay.indexOf(widget.results.table) + 1
    widget.close_session()


def test_lab_model_has_no_disclaimer(qtbot, make_napari_viewer, synthetic_slide, tmp_path):
    from napari_histostain.engine.model_files import save_model_file, seeded_model

    net, cfg = seeded_model("ki67", seed=3)
    cfg.training = {"cohort": "lab-A", "n_train_cases": 50}
    path = save_model_file(tmp_path / "ki67-lab.pt", net, cfg)
    widget = _widget(make_napari_viewer, synthetic_slide, ["ki67"], [path])
    _run(qtbot, widget)
    box = widget.results.caveats
    assert not box.disclaimer.isVisibleTo(widget)
    assert box.models.text().endswith("trained on lab-A (50 cases)")
    assert widget.results.table.item(0, 1).text() in cfg.class_names
    widget.close_session()


def test_force_call_option(make_napari_viewer, synthetic_slide):
    from napari_histostain._qt.caveats import FORCE_CALL_TIP

    widget = _widget(make_napari_viewer, synthetic_slide, ["ki67"])
    box = widget.results.caveats
    assert box.force_call.text() == "Force a call" and box.force_call.toolTip() == FORCE_CALL_TIP
    assert not widget.results.force_call
    box.force_call.setChecked(True)
    assert widget.results.force_call


def test_no_call_row_shows_the_reason(qtbot, make_napari_viewer, tmp_path):
    """A synthetic (not simulator) slide without a pixel size gets no call from the bundled models
    (out of domain and pixel size assumed) unless 'Force a call' is ticked."""
    from napari_histostain.io.synthetic import write_synthetic_slide
    from napari_histostain.results.caveats import NO_CALL_TEXT

    slide = write_synthetic_slide(tmp_path / "nompp.tif", 1500, 1000, None, seed=2)
    widget = _widget(make_napari_viewer, slide, ["ki67"])
    _run(qtbot, widget)
    table, box = widget.results.table, widget.results.caveats
    assert table.item(0, 1).text() == "no call"
    assert table.item(0, 1).toolTip() == (
        "No call (out of domain, pixel size assumed): "
        f"{NO_CALL_TEXT['out_of_domain']}; and {NO_CALL_TEXT['assumed_mpp']}"
    )
    assert table.item(0, 2).text() == "-"
    text = box.verdict.text()
    assert (
        "Domain: OUT OF DOMAIN" in text
        and f"Ki-67</b>: no call: {NO_CALL_TEXT['out_of_domain']}" in text
    )
    # the verdict's first part in the box, all of it in the tooltip (kept short in the dock)
    assert "tiles out of domain (at most" not in text
    assert "tiles out of domain (at most" in box.verdict.toolTip()
    assert box.disclaimer.isVisibleTo(widget)
    box.force_call.setChecked(True)
    _run(qtbot, widget)
    assert table.item(0, 1).text().endswith("(forced)")
    assert "would be no call" in table.item(0, 1).toolTip()
    assert table.item(0, 2).text() != "-"
    widget.close_session()


@pytest.fixture(scope="module")
def lab_model(tmp_path_factory):
    """A (seeded) Ki-67 lab model without a domain reference: only the other reasons apply."""
    from napari_histostain.engine.model_files import save_model_file, seeded_model

    net, cfg = seeded_model("ki67", seed=3)
    return save_model_file(tmp_path_factory.mktemp("lab") / "ki67-lab.pt", net, cfg)


@pytest.mark.parametrize("reason", ["ihc_input", "too_few_tiles"])
def test_each_reason_in_the_table(qtbot, make_napari_viewer, tmp_path, lab_model, reason):
    from napari_histostain.ihc.synthetic import dab_slide_renderer
    from napari_histostain.io.synthetic import write_slide, write_synthetic_slide
    from napari_histostain.results.caveats import NO_CALL_SHORT, NO_CALL_TEXT

    if reason == "ihc_input":
        slide = write_slide(tmp_path / "ihc.tif", 2000, 2000, dab_slide_renderer(2000, 2000), 0.5)
    else:  # 300 x 250 um: a tile or two of tissue
        slide = write_synthetic_slide(tmp_path / "small.tif", 600, 500, 0.5, seed=3)
    widget = _widget(make_napari_viewer, slide, ["ki67"], [lab_model])
    _run(qtbot, widget, confirm=reason == "ihc_input")
    item = widget.results.table.item(0, 1)
    assert item.text() == "no call"
    assert item.toolTip() == f"No call ({NO_CALL_SHORT[reason]}): {NO_CALL_TEXT[reason]}"
    assert escape(NO_CALL_TEXT[reason], quote=False) in widget.results.caveats.verdict.text()
    assert not widget.results.caveats.disclaimer.isVisibleTo(widget)  # a lab model
    widget.close_session()


def test_cancelled_run_is_no_call(qtbot, make_napari_viewer, synthetic_slide, lab_model):
    from napari_histostain.results.caveats import NO_CALL_TEXT

    widget = _widget(make_napari_viewer, synthetic_slide, ["ki67"], [lab_model])
    widget.batch_size = 1
    widget.run()
    qtbot.waitUntil(lambda: widget.stream_updates >= 2, timeout=TIMEOUT_MS)
    widget.cancel()
    qtbot.waitUntil(lambda: not widget.busy, timeout=TIMEOUT_MS)
    assert "Cancelled" in widget.last_message
    item = widget.results.table.item(0, 1)
    assert item.text() == "no call" and NO_CALL_TEXT["cancelled"] in item.toolTip()
    assert escape(NO_CALL_TEXT["cancelled"], quote=False) in widget.results.caveats.verdict.text()
    # the cancelled state reaches the exports as well
    assert widget.predictor.maps.caveats["markers"]["ki67"]["no_call_reason"] == "cancelled"
    widget.close_session()
