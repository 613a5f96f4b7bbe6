"""The caveats' wording: disclaimer, model identity, demonstration models, no-call reasons."""

from __future__ import annotations

import pytest

from napari_histostain.engine.model_files import (
    bundled_model_path,
    load_bundled_model,
    read_model_config,
    save_model_file,
    seeded_model,
)
from napari_histostain.results.caveats import (
    DEMO_DISCLAIMER,
    NO_CALL_TEXT,
    call_text,
    caveat_lines,
    domain_verdict,
    is_demonstration_model,
    model_identity,
    models_caveats,
    no_call_text,
    prediction_caveats,
)

CODES = ("out_of_domain", "ihc_input", "assumed_mpp", "too_few_tiles", "cancelled", "forced")


def test_disclaimer_wording():
    assert (
        DEMO_DISCLAIMER == "Demonstration model, trained on simulated tissue; not for clinical use"
    )


@pytest.mark.parametrize("marker", ["p53", "pdl1", "ki67"])
def test_bundled_models_are_demonstration_models_with_an_identity(marker):
    cfg = read_model_config(bundled_model_path(marker))
    assert is_demonstration_model(cfg.to_dict())
    assert is_demonstration_model({}, path=bundled_model_path(marker))
    ident = model_identity(cfg.to_dict(), marker)
    assert ident.startswith(f"HistoStainAlign {cfg.marker_name}, version {cfg.created[:10]}")
    n = cfg.training["n_train_cases"]
    assert f"trained on cohort367 ({n} simulated cases)" in ident


def test_a_lab_model_is_not_a_demonstration_model(tmp_path):
    net, cfg = seeded_model("p53", in_dim=8, encoder_id="x")
    cfg.training = {"n_train_cases": 120, "cohort": "lab-A 2025", "command": "histostain train"}
    path = save_model_file(tmp_path / "lab.pt", net, cfg)
    d = read_model_config(path).to_dict()
    assert not is_demonstration_model(d, path=path)
    assert model_identity(d).endswith("trained on lab-A 2025 (120 cases)")
    # the same file trained on simulated tissue is one
    d["training"]["simulated"] = True
    assert is_demonstration_model(d)


@pytest.mark.parametrize("code", CODES)
def test_every_no_call_code_has_text(code):
    assert no_call_text(code) == NO_CALL_TEXT[code]
    assert len(NO_CALL_TEXT[code]) > 20
    assert call_text("no_call", code).startswith("no call: ")


def test_call_text_of_each_state():
    assert call_text("call", None) == ""
    assert "would be no call" in call_text("forced", "out_of_domain")
    assert no_call_text("new_reason") == "new reason"
    assert no_call_text(None) == ""


def test_prediction_caveats_from_a_prediction_dict():
    _, cfg = load_bundled_model("p53")
    doc = {
        "domain": {
            "in_domain": False,
            "score": 0.925,
            "threshold": 0.2,
            "tiles": 40,
            "in_domain_tiles": 3,
        },
        "markers": {
            "p53": {
                "model": cfg.to_dict(),
                "call_status": "no_call",
                "no_call_reason": "out_of_domain",
            }
        },
    }
    cav = prediction_caveats(doc)
    assert cav["disclaimer"] == DEMO_DISCLAIMER
    assert (
        cav["domain_verdict"]
        == "OUT OF DOMAIN: 3/40 tiles in domain; 92% of tiles out of domain (at most 20% allowed)"
    )
    assert cav["markers"]["p53"]["no_call_reason"] == "out_of_domain"
    lines = caveat_lines(cav)
    assert lines[0] == DEMO_DISCLAIMER
    assert any(line.startswith("P53: no call: the slide does not look like") for line in lines)
    assert domain_verdict(None) == ""


def test_models_caveats_before_any_call():
    cav = models_caveats({"ki67": load_bundled_model("ki67")})
    assert cav["demonstration_model"] and cav["markers"]["ki67"]["call_status"] == "call"
    net, cfg = seeded_model("ki67", in_dim=8, encoder_id="x")
    assert models_caveats({"ki67": (net, cfg)})["disclaimer"] == ""


def test_several_reasons_at_once():
    text = no_call_text("ihc_input;assumed_mpp")
    assert text == NO_CALL_TEXT["ihc_input"] + "; and " + NO_CALL_TEXT["assumed_mpp"]
    from napari_histostain.results.caveats import no_call_short

    assert no_call_short("ihc_input;too_few_tiles") == "IHC input, too few tiles"
