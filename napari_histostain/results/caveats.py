"""Caveats every result carries: the demonstration-model disclaimer, the model's identity, the
domain verdict and the human text of each no-call reason (one wording for widget, files and CLI).

A model is a *demonstration model* when it is a bundled one or was trained on simulated tissue;
results of such a model always carry `DEMO_DISCLAIMER`. Inputs are the model summary dict that
predictions carry (`MarkerPrediction.model`: encoder_id, created, training, metrics, description,
and, in newer files, domain / calibration) and the prediction JSON's fields (`call_status`,
`no_call_reason`, `domain`).
"""

from __future__ import annotations

import math
import shlex
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..markers import MARKERS

#: Shown next to every result of a demonstration model (bundled, or trained on simulated tissue).
DEMO_DISCLAIMER = "Demonstration model, trained on simulated tissue; not for clinical use"

#: Call states of a marker (`MarkerPrediction.call_status`).
CALL, NO_CALL, FORCED = "call", "no_call", "forced"

#: Human text of each no-call code: what happened, then what to do.
NO_CALL_TEXT = {
    "out_of_domain": (
        "the slide does not look like the tissue the model was trained on (out of domain); "
        "use a model trained on slides like this one"
    ),
    "ihc_input": (
        "the input looks like an IHC (DAB) slide, not H&E; give the H&E slide, or quantify the "
        "IHC slide with `histostain quantify`"
    ),
    "assumed_mpp": (
        "the slide has no pixel size in its metadata, so 1 um/px was assumed and the tiles may be "
        "at the wrong scale; give the true pixel size (histostain predict --mpp) or save the "
        "slide with it"
    ),
    "too_few_tiles": (
        "too few tissue tiles for a slide call; check the tissue detection or predict a slide "
        "with more tissue"
    ),
    "cancelled": "the prediction was cancelled before it finished; run it again",
    "forced": "a call was forced although the slide would get no call",
}
#: Short labels of each no-call code (table cells, image titles).
NO_CALL_SHORT = {
    "out_of_domain": "out of domain",
    "ihc_input": "IHC input",
    "assumed_mpp": "pixel size assumed",
    "too_few_tiles": "too few tiles",
    "cancelled": "cancelled",
    "forced": "forced",
}


def no_call_text(code: str | None) -> str:
    """The human text of a no-call code ('' for None; unknown codes are shown as they are; several
    codes joined by ';' give their texts joined by '; and ')."""
    if not code:
        return ""
    return "; and ".join(
        NO_CALL_TEXT.get(c, c.replace("_", " ")) for c in code.split(";") if c.strip()
    )


def no_call_short(code: str | None) -> str:
    """A few words for a no-call code ('' for None)."""
    if not code:
        return ""
    return ", ".join(
        NO_CALL_SHORT.get(c, c.replace("_", " ")) for c in code.split(";") if c.strip()
    )


def _models_dir() -> Path:
    from ..engine.model_files import MODELS_DIR

    return MODELS_DIR


def is_bundled_path(path: str | Path | None) -> bool:
    """Whether `path` is one of the package's bundled model files."""
    if not path:
        return False
    try:
        return Path(path).resolve().parent == _models_dir().resolve()
    except OSError:
        return False


def _training(summary: Mapping[str, Any] | None) -> Mapping[str, Any]:
    t = (summary or {}).get("training")
    return t if isinstance(t, Mapping) else {}


def trained_on_simulated(summary: Mapping[str, Any] | None) -> bool:
    """Whether the model summary says it was trained on simulated tissue."""
    s = summary or {}
    t = _training(s)
    for key in ("simulated", "simulated_data"):
        if t.get(key) is True or s.get(key) is True:
            return True
    words = " ".join(
        str(v) for v in (t.get("data"), t.get("source"), t.get("cohort"), s.get("description")) if v
    ).lower()
    return "simulat" in words or words.startswith("demonstration model")


def is_demonstration_model(
    summary: Mapping[str, Any] | None = None, path: str | Path | None = None
) -> bool:
    """True for a bundled model (by `path`, or `summary["bundled"]`) or one trained on simulated
    tissue (by its summary: training.simulated, a simulated source, a demonstration description)."""
    s = summary or {}
    if s.get("bundled") is True or is_bundled_path(path or s.get("path")):
        return True
    return trained_on_simulated(s)


def training_cohort(summary: Mapping[str, Any] | None) -> str:
    """What the model was trained on, in a few words ('' when the file does not say)."""
    t = _training(summary)
    name = t.get("cohort") or t.get("source") or ""
    if not name and t.get("command"):
        try:
            args = shlex.split(str(t["command"]))
        except ValueError:
            args = str(t["command"]).split()
        manifests = [a for a in args if a.endswith(".csv")]
        if manifests:
            p = Path(manifests[0])
            name = p.parent.parent.name if p.parent.name == "cohort" else p.parent.name
    n = t.get("n_train_cases")
    sim = "simulated " if trained_on_simulated(summary) else ""
    if name and n:
        return f"{name} ({n} {sim}cases)"
    if n:
        return f"{n} {sim}cases"
    return str(name)


def model_identity(summary: Mapping[str, Any] | None, marker: str | None = None) -> str:
    """One line naming a model: name, version, training cohort.

    e.g. "HistoStainAlign P53, version 2026-11-27, trained on cohort367 (272 simulated cases)";
    the version is the summary's `version` when it has one, else the date the model was written.
    """
    s = summary or {}
    marker = marker or s.get("marker")
    name = s.get("name") or (
        f"HistoStainAlign {MARKERS.get(marker, marker)}" if marker else "HistoStainAlign"
    )
    version = s.get("version") or str(s.get("created") or "")[:10]
    parts = [str(name)]
    if version:
        parts.append(f"version {version}")
    cohort = training_cohort(s)
    if cohort:
        parts.append(f"trained on {cohort}")
    return ", ".join(parts)


def models_caveats(models: Mapping[str, Any]) -> dict:
    """`prediction_caveats` before any call: from {marker: (net, ModelConfig)} (or configs)."""
    keys = ("encoder_id", "tile_size", "tile_mpp", "created", "training", "metrics", "description")
    entries = {}
    for m, spec in models.items():
        cfg = spec[1] if isinstance(spec, tuple) else spec
        d = cfg.to_dict() if hasattr(cfg, "to_dict") else dict(cfg)
        entries[m] = {"model": {k: d.get(k) for k in keys}}
    return prediction_caveats({"markers": entries})


def domain_verdict(domain: Mapping[str, Any] | None) -> str:
    """The domain verdict in words ('' when the model has no domain reference); the domain
    `score` is the share of the slide's tiles out of domain, `threshold` the largest share allowed."""
    if not domain:
        return ""
    score = _number(domain.get("score"))
    thr = _number(domain.get("threshold"))
    tiles, ok = domain.get("tiles"), domain.get("in_domain_tiles")
    where = "in domain" if domain.get("in_domain") else "OUT OF DOMAIN"
    bits = []
    if isinstance(ok, int) and isinstance(tiles, int):
        bits.append(f"{ok}/{tiles} tiles in domain")
    if math.isfinite(score) and math.isfinite(thr):
        bits.append(f"{score:.0%} of tiles out of domain (at most {thr:.0%} allowed)")
    mean, mean_thr = _number(domain.get("mean_score")), _number(domain.get("mean_threshold"))
    if math.isfinite(mean) and math.isfinite(mean_thr):
        bits.append(f"mean tile domain score {mean:.0f} (at most {mean_thr:.0f} allowed)")
    return f"{where}" + (f": {'; '.join(bits)}" if bits else "")


def _number(v: Any) -> float:
    return float(v) if isinstance(v, (int, float)) else math.nan


def call_text(call_status: str | None, no_call_reason: str | None) -> str:
    """'' for a plain call; otherwise why there is no call, or that the call was forced."""
    if call_status == NO_CALL:
        return f"no call: {no_call_text(no_call_reason) or 'no reason given'}"
    if call_status == FORCED:
        why = no_call_text(no_call_reason)
        return "forced call" + (f" (would be no call: {why})" if why else "")
    return ""


def marker_caveats(marker: str, entry: Mapping[str, Any]) -> dict:
    """The caveats of one marker from its prediction entry (`MarkerPrediction.to_dict()`-like:
    `model`, `call_status`, `no_call_reason`)."""
    summary = entry.get("model") or {}
    status = entry.get("call_status") or CALL
    reason = entry.get("no_call_reason")
    return {
        "marker": marker,
        "demonstration_model": is_demonstration_model(summary),
        "model_identity": model_identity(summary, marker),
        "call_status": status,
        "no_call_reason": reason,
        "no_call_text": call_text(status, reason),
    }


def prediction_caveats(doc: Mapping[str, Any]) -> dict:
    """Caveats of a whole prediction (the dict of `SlidePrediction.to_dict()`): the disclaimer when
    any model is a demonstration one, each marker's identity and call state, the domain verdict."""
    markers = {
        k: marker_caveats(k, m)
        for k, m in (doc.get("markers") or {}).items()
        if isinstance(m, Mapping)
    }
    demo = any(m["demonstration_model"] for m in markers.values())
    domain = doc.get("domain")
    return {
        "disclaimer": DEMO_DISCLAIMER if demo else "",
        "demonstration_model": demo,
        "models": {k: m["model_identity"] for k, m in markers.items()},
        "domain": dict(domain) if isinstance(domain, Mapping) else None,
        "domain_verdict": domain_verdict(domain if isinstance(domain, Mapping) else None),
        "markers": {
            k: {kk: m[kk] for kk in ("call_status", "no_call_reason", "no_call_text")}
            for k, m in markers.items()
        },
    }


def caveat_lines(caveats: Mapping[str, Any]) -> list[str]:
    """The caveats as short lines of text (image footers, CLI output)."""
    lines = []
    if caveats.get("disclaimer"):
        lines.append(str(caveats["disclaimer"]))
    for ident in (caveats.get("models") or {}).values():
        lines.append(f"Model: {ident}")
    if caveats.get("domain_verdict"):
        lines.append(f"Domain: {caveats['domain_verdict']}")
    by_text: dict[str, list[str]] = {}  # markers with the same reason share a line
    for k, m in (caveats.get("markers") or {}).items():
        if m.get("no_call_text"):
            by_text.setdefault(m["no_call_text"], []).append(MARKERS.get(k, k))
    lines += [f"{', '.join(names)}: {text}" for text, names in by_text.items()]
    return lines


#: The tile-table column holding the caveats (the same text on every row, so a CSV read alone
#: still says what the numbers are).
CAVEATS_COLUMN = "caveats"


def caveats_cell(caveats: Mapping[str, Any]) -> str:
    """The caveats as one CSV cell ('' when there are none)."""
    return " | ".join(caveat_lines(caveats))


def marker_file_caveats(caveats: Mapping[str, Any], marker: str) -> dict:
    """One marker's caveats for a per-marker file (GeoJSON): disclaimer, model, call, domain."""
    m = (caveats.get("markers") or {}).get(marker) or {}
    return {
        "disclaimer": caveats.get("disclaimer", ""),
        "model_identity": (caveats.get("models") or {}).get(marker, ""),
        "call_status": m.get("call_status", CALL),
        "no_call_reason": m.get("no_call_reason"),
        "no_call_text": m.get("no_call_text", ""),
        "domain": caveats.get("domain"),
        "domain_verdict": caveats.get("domain_verdict", ""),
    }
