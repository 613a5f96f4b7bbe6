"""The one no-call policy: which reasons hold for a slide's facts, and what --force-call does."""

from __future__ import annotations

from napari_histostain.engine.no_call import (
    MIN_TISSUE_TILES,
    REASONS,
    SlideFacts,
    call_status,
    decide,
    no_call_reasons,
)


def test_a_plain_slide_is_called():
    facts = SlideFacts(tiles=100, in_domain=True, looks_like="H&E", mpp_source="metadata")
    assert no_call_reasons(facts) == [] and decide(facts) == ("call", None)
    assert decide(SlideFacts(tiles=100, in_domain=None)) == ("call", None)  # no reference


def test_each_reason_on_its_own():
    base = {"tiles": 100, "in_domain": True, "looks_like": "H&E", "mpp_source": "user"}
    cases = {
        "out_of_domain": {"in_domain": False},
        "ihc_input": {"looks_like": "IHC"},
        "assumed_mpp": {"mpp_source": "assumed"},
        "too_few_tiles": {"tiles": MIN_TISSUE_TILES - 1},
        "cancelled": {"cancelled": True},
    }
    assert set(cases) == set(REASONS)
    for code, change in cases.items():
        assert no_call_reasons(SlideFacts(**{**base, **change})) == [code]
        assert decide(SlideFacts(**{**base, **change})) == ("no_call", code)
    assert no_call_reasons(SlideFacts(tiles=MIN_TISSUE_TILES)) == []
    assert no_call_reasons(SlideFacts(tiles=1, min_tiles=1)) == []


def test_several_reasons_are_kept_in_order_and_forcing_keeps_them():
    facts = SlideFacts(tiles=1, looks_like="IHC", mpp_source="assumed", in_domain=False)
    assert no_call_reasons(facts) == ["out_of_domain", "ihc_input", "assumed_mpp", "too_few_tiles"]
    assert decide(facts, force_call=True) == (
        "forced",
        "out_of_domain;ihc_input;assumed_mpp;too_few_tiles",
    )
    assert call_status([], force_call=True) == ("call", None)
