"""The result of `predict_slide`: a slide's tile grid and, per marker, the call and exact tile maps."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from .. import __version__
from ..markers import marker_name
from .tiling import TileGrid
from .tissue import TissueMask


def call_label(
    probability: float, class_names: Sequence[str], positive_class: int, threshold: float
) -> str | None:
    """The class name called at `probability` of the positive class (None: no probability)."""
    if math.isnan(probability):
        return None
    names = list(class_names)
    if probability >= threshold:
        return names[positive_class]
    others = [c for i, c in enumerate(names) if i != positive_class]
    return others[0] if len(others) == 1 else "not " + names[positive_class]


def _number(v: float) -> float | None:
    """A JSON number: None for NaN."""
    return None if v is None or math.isnan(v) else float(v)


@dataclass
class MarkerPrediction:
    """One marker's slide-level call and exact per-tile maps (arrays aligned with the grid)."""

    marker: str
    probability: float  # slide probability of the positive class (nan without tissue)
    label: str | None  # class name at `threshold`; None without tissue
    threshold: float
    positivity: np.ndarray  # (N,) each tile's own positive-class probability
    attention: np.ndarray  # (N,) attention weights, sum 1
    contribution: np.ndarray  # (N,) a_i * tile margin; sums to `logit`
    logit: float  # slide margin (log-odds for two classes)
    scores: np.ndarray  # (N,) pre-softmax attention scores (bag-independent)
    embedding: np.ndarray  # (H,) attention-pooled slide embedding
    class_names: tuple[str, ...] = ("negative", "positive")
    model: dict = field(default_factory=dict)  # config summary of the model used
    tile_logits: np.ndarray | None = None  # (N, C) each tile's class logits (regions pool them)
    positive_class: int = 1
    #: "call", "no_call" (label None; see `no_call_reason`) or "forced" (called although a
    #: no-call reason holds: `--force-call`; the reason is kept)
    call_status: str = "call"
    #: why there is no call (`engine.no_call` codes: out_of_domain, ihc_input, assumed_mpp,
    #: too_few_tiles, cancelled; several joined by ";"), or None
    no_call_reason: str | None = None
    #: slide probability before calibration (`probability` is the calibrated one)
    raw_probability: float = float("nan")
    #: (N,) bool: the tiles inside the model's training domain, which the call pools (None: the
    #: model has no domain reference)
    in_domain: np.ndarray | None = None

    @property
    def name(self) -> str:
        return marker_name(self.marker)

    def to_dict(self) -> dict:
        return {
            "marker": self.marker,
            "name": self.name,
            "call_status": self.call_status,
            "no_call_reason": self.no_call_reason,
            "probability": _number(self.probability),
            "raw_probability": _number(self.raw_probability),
            "label": self.label,
            "threshold": self.threshold,
            "logit": None if math.isnan(self.logit) else self.logit,
            "class_names": list(self.class_names),
            "n_tiles": int(self.positivity.size),
            "mean_positivity": float(self.positivity.mean()) if self.positivity.size else None,
            "attention_weighted_positivity": float(self.attention @ self.positivity)
            if self.positivity.size
            else None,
            "model": self.model,
        }


@dataclass
class SlidePrediction:
    """Result of `predict_slide`: the tile grid, per-marker predictions, tissue mask, messages."""

    slide_path: str
    grid: TileGrid
    markers: dict[str, MarkerPrediction]
    tissue: TissueMask | None
    messages: list[str] = field(default_factory=list)
    encoder_id: str = ""
    stain: dict = field(default_factory=dict)
    seconds: float = 0.0
    encoder_fingerprint: str = ""  # the encoder's identity (`TileEncoder.fingerprint`)
    #: the domain verdict {"in_domain", "score", "threshold", "tiles", "in_domain_tiles"} (None:
    #: no model has a domain reference); see `engine.domain`
    domain: dict | None = None
    #: (N,) each tile's domain score: percentile 0-100 of held-out training-domain tiles (higher =
    #: farther from the training data); None: not scored
    domain_score: np.ndarray | None = None

    @property
    def is_empty(self) -> bool:
        return len(self.grid) == 0

    def to_dict(self) -> dict:
        """Slide-level summary as plain JSON types (per-tile values: `results.tile_table`)."""
        return {
            "software": f"napari-histostain {__version__}",
            "disclaimer": "Demonstration software, not for clinical use.",
            "slide": self.slide_path,
            "encoder": self.encoder_id,
            "encoder_fingerprint": self.encoder_fingerprint,
            "grid": self.grid.to_dict(),
            "tissue": self.tissue.to_dict() if self.tissue is not None else None,
            "stain_check": self.stain,
            "domain": self.domain,
            "markers": {k: m.to_dict() for k, m in self.markers.items()},
            "messages": list(self.messages),
            "seconds": round(self.seconds, 3),
        }

    def heatmap(self, marker: str, what: str = "positivity") -> np.ndarray:
        """A marker's per-tile `positivity` / `attention` / `contribution` as an (n_rows, n_cols)
        float32 map of the tile lattice (NaN where no tile); one pixel per tile."""
        return self.grid.to_map(getattr(self.markers[marker], what))
