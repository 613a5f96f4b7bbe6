"""A user's corrections of an `IHCResult`: other 1+/2+/3+ DAB thresholds and nuclei re-classed by
hand (positive / negative / not counted), applied to the nuclei already found, without detecting
them again, so the scores follow at once; saved as `<stem>.ihc_corrections.json` beside the results.

With new thresholds each nucleus' class is its mean DAB OD against them, and which nuclei count is
judged again over the whole slide (`Nuclei.exclusions`), as a fresh `quantify_slide` with those
thresholds would, with one limit: a nucleus measured as positive has no inscribed circle
(`Nuclei.inscribed_um` is NaN), so raising the 1+ threshold above it cannot make it "merged
lymphocytes" (it stays counted). Not recomputed (it needs the pixels): the positive-pixel fraction. An override
wins over both: "positive" / "negative" make a nucleus count (Ki-67/p53: class at least 1+ / 0;
PD-L1: membrane positive / negative), "not counted" leaves it out ("by hand").
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..io.atomic import write_json
from ..io.naming import slide_name
from .errors import IHCError
from .nuclei import Nuclei
from .params import EXCLUSION_NAMES, with_thresholds
from .results import IHCResult

#: what a click can make a nucleus
OVERRIDE_CLASSES = ("positive", "negative", "not counted")
#: file format version of the corrections JSON
FORMAT_VERSION = 1
#: a saved nucleus matches a nucleus of the result within this many level-0 px
MATCH_PX = 2.0
BY_HAND = EXCLUSION_NAMES.index("by hand")


@dataclass
class Corrections:
    """Thresholds (None: the result's own) and per-nucleus overrides (index -> `OVERRIDE_CLASSES`)."""

    marker: str
    slide: str  # the slide's name (`io.naming.slide_name`)
    thresholds: tuple[float, float, float] | None = None
    overrides: dict[int, str] = field(default_factory=dict)

    def set(self, index: int, value: str | None) -> None:
        """Override nucleus `index` with `value` (None: back to the automatic call)."""
        if value is None:
            self.overrides.pop(int(index), None)
            return
        if value not in OVERRIDE_CLASSES:
            raise IHCError(f"a nucleus can be made one of {OVERRIDE_CLASSES}, not {value!r}.")
        self.overrides[int(index)] = value

    def to_dict(self, result: IHCResult) -> dict:
        """JSON-ready, with each overridden nucleus' position (level-0 px) to find it again."""
        xy = result.nuclei.xy
        return {
            "format": "histostain-ihc-corrections",
            "version": FORMAT_VERSION,
            "slide": self.slide,
            "marker": self.marker,
            "n_nuclei": len(result.nuclei),
            "thresholds": None if self.thresholds is None else list(self.thresholds),
            "overrides": [
                {"id": i, "x": round(float(xy[i, 0]), 2), "y": round(float(xy[i, 1]), 2), "as": v}
                for i, v in sorted(self.overrides.items())
            ],
        }


def corrections_for(result: IHCResult) -> Corrections:
    """Empty corrections of `result` (its own thresholds, no overrides)."""
    return Corrections(result.marker, slide_name(result.source_path))


def reclassify(
    nuclei: Nuclei, params, marker: str, overrides: dict[int, str] | None = None
) -> Nuclei:
    """`nuclei` classed by `params.thresholds`, counted by the slide-wide rules, then overridden."""
    nuc = nuclei.replace(cls=np.digitize(nuclei.dab, params.thresholds))
    nuc = nuc.replace(excluded=nuc.exclusions(params))
    if not overrides:
        return nuc
    idx = np.fromiter(overrides, np.int64, len(overrides))
    if idx.min() < 0 or idx.max() >= len(nuc):
        raise IHCError(
            f"corrections name nucleus {int(idx.max())}, but the result has {len(nuc)} nuclei; "
            "load corrections saved for this slide and marker."
        )
    what = np.asarray([overrides[int(i)] for i in idx])
    cls, excluded, membrane = nuc.cls.copy(), nuc.excluded.copy(), nuc.membrane.copy()
    pos, neg, out = idx[what == "positive"], idx[what == "negative"], idx[what == "not counted"]
    if marker == "pdl1":
        membrane[pos], membrane[neg] = True, False
    else:
        cls[pos] = np.maximum(cls[pos], 1)
        cls[neg] = 0
    excluded[pos], excluded[neg], excluded[out] = 0, 0, BY_HAND
    return nuc.replace(cls=cls, excluded=excluded, membrane=membrane)


def apply_corrections(result: IHCResult, corrections: Corrections) -> IHCResult:
    """A new `IHCResult` with `corrections` applied to `result`'s nuclei (not detected again);
    `reported` is left empty (`reporting.add_reported_scores` fills it)."""
    if corrections.marker != result.marker:
        raise IHCError(
            f"these corrections are for {corrections.marker}, the result is {result.marker}."
        )
    params = result.params
    if corrections.thresholds is not None:
        params = with_thresholds(params, corrections.thresholds)
    nuc = reclassify(result.nuclei, params, result.marker, corrections.overrides)
    n_tiles = len(result.counts)
    counted = nuc.counted
    tile = nuc.tile.astype(np.int64)
    counts = np.bincount(tile[counted] * 4 + nuc.cls[counted], minlength=n_tiles * 4)
    membrane = np.bincount(tile[counted & nuc.membrane], minlength=n_tiles)
    messages = [m for m in result.messages if not m.startswith("corrected:")]
    if corrections.thresholds is not None or corrections.overrides:
        messages.append(
            f"corrected: thresholds {', '.join(f'{t:g}' for t in params.thresholds)}; "
            f"{len(corrections.overrides)} nuclei re-classed by hand"
        )
    return dataclasses.replace(
        result,
        params=params,
        counts=counts.reshape(n_tiles, 4).astype(np.int64),
        membrane_positive=membrane.astype(np.int64),
        nuclei=nuc,
        messages=messages,
        reported={},
        annotations=[dict(a) for a in result.annotations],
    )


def corrections_path(out_dir: str | Path, result: IHCResult) -> Path:
    """`<out_dir>/<slide>.<marker>.ihc_corrections.json` (beside `IHCResult.save`'s files)."""
    return Path(out_dir) / f"{slide_name(result.source_path)}.{result.marker}.ihc_corrections.json"


def save_corrections(path: str | Path, corrections: Corrections, result: IHCResult) -> Path:
    """Write `corrections` of `result` as JSON, atomically."""
    return write_json(path, corrections.to_dict(result))


def load_corrections(path: str | Path, result: IHCResult) -> Corrections:
    """Read corrections saved for `result`'s slide and marker; each override finds its nucleus by
    id and position, or else by the nearest position within `MATCH_PX` level-0 px."""
    try:
        d = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise IHCError(
            f"cannot read corrections {path}: {exc}; choose a saved corrections JSON."
        ) from exc
    if d.get("format") != "histostain-ihc-corrections":
        raise IHCError(f"{path} is not a histostain corrections file.")
    if d.get("marker") != result.marker:
        raise IHCError(f"{path} corrects {d.get('marker')}, the result is {result.marker}.")
    name = slide_name(result.source_path)
    if d.get("slide") != name:
        raise IHCError(f"{path} corrects slide {d.get('slide')!r}, not {name!r}.")
    thresholds = d.get("thresholds")
    xy = result.nuclei.xy.astype(np.float64)
    overrides: dict[int, str] = {}
    for o in d.get("overrides", []):
        i, at = int(o["id"]), np.array([o["x"], o["y"]], np.float64)
        if not (0 <= i < len(xy) and np.hypot(*(xy[i] - at)) <= MATCH_PX):
            dist = np.hypot(*(xy - at).T) if len(xy) else np.array([np.inf])
            i = int(np.argmin(dist))
            if dist[i] > MATCH_PX:
                raise IHCError(
                    f"{path}: no nucleus at ({at[0]:.1f}, {at[1]:.1f}); were the corrections "
                    "saved for another measurement (region, settings) of this slide?"
                )
        overrides[i] = str(o["as"])
    c = Corrections(result.marker, name, None if thresholds is None else tuple(thresholds))
    for i, v in overrides.items():
        c.set(i, v)
    return c
