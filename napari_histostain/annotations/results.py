"""Results per region: the slide call restricted to a region's tiles, and per-region IHC sums.

The slide model is additive MIL (`engine.slide_model`): each tile has an attention score s_i and
class logits l_i that do not depend on the other tiles, and the slide logits are
sum_i softmax(s)_i l_i. A region's call is the same pooling over the region's tiles only, from the
stored scores and logits: exact, with no tile read or embedded again. `prediction_region_results`
(a finished `SlidePrediction`, the CLI) and `maps_region_results` (`PredictionMaps`, the widget)
share `marker_region_result`, so both give the same numbers.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ..engine.calibration import calibrate
from ..engine.prediction import call_label
from .regions import Region


def region_call(
    slide_status: str, slide_reason: str | None, tiles: int, in_domain_tiles: int | None = None
) -> tuple[str, str | None]:
    """A region's (call_status, no_call_reason) under `engine.no_call`: the slide's reasons, plus
    `too_few_tiles` when the region itself has fewer tiles than a call needs, or `out_of_domain`
    when it has enough tiles but too few of them inside the model's domain; forced when the
    slide's call was forced."""
    from ..engine.no_call import MIN_TISSUE_TILES, REASONS, call_status

    reasons = {r for r in (slide_reason or "").split(";") if r and slide_status != "call"}
    if tiles < MIN_TISSUE_TILES:
        reasons.add("too_few_tiles")
    elif in_domain_tiles is not None and in_domain_tiles < MIN_TISSUE_TILES:
        reasons.add("out_of_domain")
    ordered = [r for r in REASONS if r in reasons] + sorted(reasons - set(REASONS))
    return call_status(ordered, force_call=slide_status == "forced")


def marker_region_result(
    indices: np.ndarray,
    scores: np.ndarray,
    tile_logits: np.ndarray | None,
    positivity: np.ndarray,
    tissue_fraction: np.ndarray,
    *,
    positive_class: int = 1,
    class_names: Sequence[str] = ("negative", "positive"),
    threshold: float = 0.5,
    tile_threshold: float = 0.5,
    calibration: dict | None = None,
    call_status: str = "call",
    no_call_reason: str | None = None,
    kept: np.ndarray | None = None,
) -> dict:
    """One marker's results over the tiles `indices` (NaN tiles, not computed, are left out).

    `probability` / `logit` / `label`: the slide model's call pooled over those tiles only, the
    probability under the model's `calibration` (`engine.calibration.calibrate`); a slide without a call (`call_status`
    "no_call", e.g. out of domain) gives its regions no label either;
    `mean_positivity`; `positive_fraction`: tissue-weighted share of tiles with positivity >=
    `tile_threshold`. None where the region has no computed tile (or, for the call, no logits).
    With `kept` ((N,) bool: the tiles inside the model's domain) the call pools the region's kept
    tiles only, as `predict_slide` does, and needs enough of them."""
    from ..engine.slide_model import tile_maps

    idx = np.asarray(indices, np.int64)
    pos = np.asarray(positivity, np.float32)[idx]
    s = np.asarray(scores, np.float64)[idx]
    ok = np.isfinite(pos) & np.isfinite(s)
    out: dict[str, Any] = {
        "tiles_computed": int(ok.sum()),
        "tiles_in_domain": None,
        "probability": None,
        "logit": None,
        "label": None,
        "call_status": call_status,
        "no_call_reason": no_call_reason,
        "mean_positivity": None,
        "positive_fraction": None,
    }
    if not ok.any():
        return out
    w = np.asarray(tissue_fraction, np.float64)[idx][ok]
    p = pos[ok].astype(np.float64)
    out["mean_positivity"] = float(p.mean())
    if w.sum() > 0:
        out["positive_fraction"] = float(np.sum(w * (p >= tile_threshold)) / w.sum())
    if tile_logits is not None:
        tl = np.asarray(tile_logits, np.float64)[idx][ok]
        if np.isfinite(tl).all():
            pool = np.ones(len(tl), bool)
            if kept is not None:
                k = np.asarray(kept, bool)[idx][ok]
                pool = k if k.any() else pool  # no tile in domain: pool all (as predict_slide)
            m = tile_maps(s[ok][pool], tl[pool], positive_class)
            prob = float(calibrate(m["slide_logits"], calibration, positive_class)[positive_class])
            out["probability"] = prob
            out["logit"] = float(m["slide_margin"])
            n_in = None if kept is None else int(np.asarray(kept, bool)[idx][ok].sum())
            out["tiles_in_domain"] = n_in
            status, reason = region_call(call_status, no_call_reason, int(ok.sum()), n_in)
            out["call_status"], out["no_call_reason"] = status, reason
            if status != "no_call":
                out["label"] = call_label(prob, class_names, positive_class, threshold)
    return out


def prediction_region_results(
    prediction: Any, regions: Sequence[Region], *, tile_threshold: float = 0.5
) -> list[dict]:
    """Per-region results of a finished `SlidePrediction` (its grid is the regions' grid): those
    of its `PredictionMaps`, so the CLI and the widget share one path."""
    from ..results.maps import PredictionMaps

    return maps_region_results(
        PredictionMaps.from_prediction(prediction), regions, tile_threshold=tile_threshold
    )


def maps_region_results(
    maps: Any, regions: Sequence[Region], *, tile_threshold: float = 0.5
) -> list[dict]:
    """Per-region results of `PredictionMaps` (the viewer's tiles so far); the same numbers as
    `prediction_region_results` once every tile is computed."""
    out = []
    for r in regions:
        d = r.describe(maps.slide_mpp)
        d["markers"] = {
            key: marker_region_result(
                r.indices,
                mm.attention_logit,
                mm.tile_logits,
                mm.positivity,
                maps.tissue_fraction,
                positive_class=mm.positive_class,
                class_names=mm.class_names,
                threshold=mm.threshold,
                tile_threshold=tile_threshold,
                calibration=mm.calibration,
                call_status=mm.call_status,
                no_call_reason=mm.no_call_reason,
                kept=mm.kept(),
            )
            for key, mm in maps.markers.items()
        }
        out.append(d)
    return out


def ihc_region_results(result: Any, regions: Sequence[Region]) -> list[dict]:
    """Per-region IHC indices of an `ihc.IHCResult`: its nucleus counts summed over each region's
    tiles (the same tiles as the predictions' regions), scored as the whole slide is."""
    from ..ihc.scores import summarise, weak_label

    out = []
    for r in regions:
        idx = np.asarray(r.indices, np.int64)
        s = summarise(
            result.counts[idx].sum(axis=0),
            int(result.membrane_positive[idx].sum()),
            int(result.tissue_px[idx].sum()),
            int(result.positive_px[idx].sum()),
            result.params,
        )
        s["marker"] = result.marker
        s["label"] = weak_label(result.marker, s, result.params) if len(idx) else None
        d = r.describe(result.mpp)
        d["ihc"] = {
            k: (None if isinstance(v, float) and not np.isfinite(v) else v) for k, v in s.items()
        }
        out.append(d)
    return out
