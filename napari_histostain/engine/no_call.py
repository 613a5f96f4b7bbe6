"""The one no-call policy: when a slide gets no call, and why.

A model's call means something only for slides like those it was trained on. A slide gets **no
call** (label None, the reason kept) when any of these holds, checked in this order:

- `out_of_domain`: too few of its tiles look like the model's training tiles (`engine.domain`);
- `ihc_input`: the stain check says it looks like an IHC slide, not H&E (`engine.stain_check`);
- `assumed_mpp`: its pixel size was assumed, not read from the metadata nor given (`io.metadata`);
- `too_few_tiles`: fewer than `MIN_TISSUE_TILES` tissue tiles (one tile is no slide);
- `cancelled`: the prediction was stopped before every tile was seen.

With `force_call` a slide is called anyway, with `call_status` "forced" and the reasons kept.
"""

from __future__ import annotations

from dataclasses import dataclass

#: fewest tissue tiles a slide needs for a call (at the models' 1 um/px: about 0.4 mm^2 of tissue)
MIN_TISSUE_TILES = 8
#: the no-call codes, in the order they are reported
REASONS = ("out_of_domain", "ihc_input", "assumed_mpp", "too_few_tiles", "cancelled")
#: call states of a marker's prediction
CALL_STATES = ("call", "no_call", "forced")


@dataclass(frozen=True)
class SlideFacts:
    """What the policy looks at for one slide (and one model's domain verdict)."""

    tiles: int  # tissue tiles kept
    in_domain: bool | None = None  # the model's domain verdict (None: the model has no reference)
    looks_like: str = "unknown"  # the stain check's verdict: "H&E", "IHC" or "unknown"
    mpp_source: str = "metadata"  # `SlideInfo.mpp_source`: metadata, objective-power, user, assumed
    cancelled: bool = False  # stopped before every tile was seen
    min_tiles: int = MIN_TISSUE_TILES


def no_call_reasons(facts: SlideFacts) -> list[str]:
    """The no-call codes that hold for `facts` (empty: the slide may be called), in `REASONS`
    order."""
    held = {
        "out_of_domain": facts.in_domain is False,
        "ihc_input": facts.looks_like == "IHC",
        "assumed_mpp": facts.mpp_source == "assumed",
        "too_few_tiles": facts.tiles < facts.min_tiles,
        "cancelled": facts.cancelled,
    }
    return [code for code in REASONS if held[code]]


def call_status(reasons: list[str], *, force_call: bool = False) -> tuple[str, str | None]:
    """(call_status, no_call_reason) for the reasons that hold: ("call", None) without any;
    ("no_call", "a;b") with some; ("forced", "a;b") with some and `force_call`."""
    if not reasons:
        return "call", None
    return ("forced" if force_call else "no_call"), ";".join(reasons)


def decide(facts: SlideFacts, *, force_call: bool = False) -> tuple[str, str | None]:
    """`call_status(no_call_reasons(facts), force_call=...)`."""
    return call_status(no_call_reasons(facts), force_call=force_call)
