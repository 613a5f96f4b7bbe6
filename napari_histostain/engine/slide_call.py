"""From a slide's accumulated tile outputs to each marker's call: attention pooling over in-domain
tiles, the calibrated probability, the no-call policy's verdict (used by `engine.predict`)."""

from __future__ import annotations

import math

import numpy as np

from .calibration import calibrate, calibration_of
from .prediction import MarkerPrediction


class Pool:
    """Online-softmax attention pooling of tile hidden states (numerically stable, streaming)."""

    def __init__(self, hidden: int):
        self.m = -np.inf
        self.s = 0.0
        self.e = np.zeros(hidden, np.float64)

    def add(self, h: np.ndarray, s: np.ndarray) -> None:
        if not len(s):
            return
        new_m = max(self.m, float(s.max()))
        w = np.exp(s - new_m)
        decay = math.exp(self.m - new_m) if np.isfinite(self.m) else 0.0
        self.e = self.e * decay + w @ h
        self.s = self.s * decay + float(w.sum())
        self.m = new_m

    def embedding(self) -> np.ndarray:
        return self.e / self.s if self.s > 0 else self.e


class Accumulator:
    """Per-marker streaming state: scores and logits per tile, and the slide embedding pooled over
    all tiles and over the in-domain tiles only."""

    def __init__(self, n: int, n_classes: int, hidden: int):
        self.scores = np.empty(n, np.float64)
        self.logits = np.empty((n, n_classes), np.float64)
        self.all = Pool(hidden)
        self.kept = Pool(hidden)

    def add(
        self,
        idx: np.ndarray,
        h: np.ndarray,
        s: np.ndarray,
        tl: np.ndarray,
        keep: np.ndarray | None = None,
    ) -> None:
        self.scores[idx] = s
        self.logits[idx] = tl
        self.all.add(h, s)
        if keep is None:
            self.kept.add(h, s)
        else:
            self.kept.add(h[keep], s[keep])

    def embedding(self, in_domain_only: bool = False) -> np.ndarray:
        return (self.kept if in_domain_only else self.all).embedding()


def slide_domain(verdicts: dict) -> dict | None:
    """The slide's domain verdict over the markers' models: the worst one (out of domain first,
    then the largest out-of-domain share); None when no model has a reference."""
    if not verdicts:
        return None
    return max(verdicts.values(), key=lambda v: (not v["in_domain"], v["score"]))


def call_maps(acc: Accumulator, cfg, keep: np.ndarray | None = None) -> dict:
    """The marker's tile maps; with `keep`, the slide call pools the kept (in-domain) tiles only
    (the others get attention and contribution 0)."""
    from .slide_model import tile_maps

    scores = acc.scores if keep is None else np.where(keep, acc.scores, -np.inf)
    maps = tile_maps(scores, acc.logits, cfg.positive_class)
    if keep is not None:
        maps["contribution"] = np.where(keep, maps["contribution"], 0.0)
    return maps


def model_summary(cfg) -> dict:
    return {
        "encoder_id": cfg.encoder_id,
        "tile_size": cfg.tile_size,
        "tile_mpp": cfg.tile_mpp,
        "created": cfg.created,
        "training": cfg.training,
        "metrics": cfg.metrics,
        "description": cfg.description,
        "calibration": dict(getattr(cfg, "calibration", None) or {}),
    }


def calibrated_probability(slide_logits, cfg) -> float:
    """The positive-class probability of slide logits under the model's calibration (NaN: none)."""
    logits = np.asarray(slide_logits, np.float64)
    if logits.size == 0 or not np.isfinite(logits).all():
        return float("nan")
    pc = int(cfg.positive_class)
    return float(calibrate(logits, calibration_of(cfg), pc)[pc])


def marker_prediction(
    marker: str,
    cfg,
    maps: dict,
    embedding: np.ndarray,
    scores: np.ndarray,
    call: tuple[str, str | None] = ("call", None),
    tile_logits: np.ndarray | None = None,
    in_domain: np.ndarray | None = None,
) -> MarkerPrediction:
    """A marker's prediction: the calibrated probability (the model's calibration of the slide
    logits); no label when there is no call."""
    prob = calibrated_probability(maps["slide_logits"], cfg)
    status, reason = call
    return MarkerPrediction(
        marker=marker,
        probability=prob,
        raw_probability=maps["probability"],
        label=None if status == "no_call" else cfg.label_for(prob),
        call_status=status,
        no_call_reason=reason,
        threshold=float(cfg.threshold),
        positivity=maps["positivity"],
        attention=maps["attention"],
        contribution=maps["contribution"],
        logit=maps["slide_margin"],
        scores=np.asarray(scores, np.float64),
        embedding=embedding.astype(np.float32),
        class_names=tuple(cfg.class_names),
        model=model_summary(cfg),
        tile_logits=None if tile_logits is None else np.asarray(tile_logits, np.float64),
        positive_class=int(cfg.positive_class),
        in_domain=None if in_domain is None else np.asarray(in_domain, bool),
    )


def empty_marker(marker: str, cfg, net) -> MarkerPrediction:
    from .slide_model import tile_maps

    maps = tile_maps(np.zeros(0), np.zeros((0, net.n_classes)), cfg.positive_class)
    return marker_prediction(
        marker,
        cfg,
        maps,
        np.full(net.hidden_dim, np.nan),
        np.zeros(0),
        tile_logits=np.zeros((0, net.n_classes)),
    )
