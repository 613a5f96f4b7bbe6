"""Tile predictions as heatmaps on the slide's world coordinates (pure compute, no Qt).

World units are micrometres. Level-0 pixel (x, y) has its centre at world (row, col) =
(y * mpp_y, x * mpp_x). A heatmap has one pixel per tile of the grid; its `scale` is the tile side
in um and its `translate` the centre of tile (row 0, col 0), so the centre of heatmap pixel (r, c)
is exactly the centre of tile (r, c) at any zoom. Pixels without a (tissue) tile are NaN, which the
overlay colormaps draw transparent.

`PredictionMaps` accumulates per-tile results (streamed batches, cached visible-region tiles or a
finished `SlidePrediction`) and keeps the heatmap arrays that the overlay layers show in place.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..engine.tiling import TileLattice
from ..markers import marker_name

#: Overlay kinds: per-tile positivity and attention.
KINDS = ("positivity", "attention")
#: The heatmap key of the out-of-domain overlay (tiles left out of the calls, drawn grey).
OUT_OF_DOMAIN = ("", "out_of_domain")
#: Key of our entry in a napari layer's `metadata`.
META_KEY = "histostain"


@dataclass
class MarkerMaps:
    """Per-tile results of one marker; NaN where a tile has not been computed yet."""

    marker: str
    positivity: np.ndarray
    attention: np.ndarray
    attention_logit: np.ndarray
    probability: float = float("nan")
    label: str = ""
    threshold: float = 0.5
    scope: str = ""
    tile_logits: np.ndarray | None = None  # (N, C) per-tile class logits, NaN rows: not computed
    class_names: tuple[str, ...] = ("negative", "positive")
    positive_class: int = 1
    call_status: str = "call"  # "call" | "no_call" | "forced"
    no_call_reason: str | None = None
    #: the model's calibration (`engine.calibration.calibrate`; regions' calls use it)
    calibration: dict = field(default_factory=dict)
    #: (N,) 1.0 for tiles inside the model's training domain, 0.0 outside, NaN not scored (or the
    #: model has no domain reference); slide and region calls pool the in-domain tiles only
    in_domain: np.ndarray | None = None

    def kept(self) -> np.ndarray | None:
        """(N,) bool: the tiles a call pools (scored in domain), None when none was scored out."""
        if self.in_domain is None or not (self.in_domain == 0).any():
            return None
        return self.in_domain == 1

    @property
    def name(self) -> str:
        return marker_name(self.marker)


@dataclass
class PredictionMaps:
    """Per-tile results on one tile grid, plus the heatmap arrays the overlays show.

    Heatmap arrays (`heatmap(marker, kind)`) are created once and updated in place, so overlay
    layers built on them only need a `refresh()`.
    """

    lattice: TileLattice
    coords: np.ndarray
    rowcol: np.ndarray
    tissue_fraction: np.ndarray
    slide_path: str = ""
    markers: dict[str, MarkerMaps] = field(default_factory=dict)
    done: np.ndarray = field(default_factory=lambda: np.zeros(0, bool))
    info: dict = field(default_factory=dict)
    slide_dimensions: tuple[int, int] = (0, 0)  # level-0 (width, height); (0, 0) when unknown
    #: (N,) each tile's domain score (percentile of held-out training-domain tiles; None: not scored)
    domain_score: np.ndarray | None = None
    _heatmaps: dict = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        self.coords = np.asarray(self.coords, dtype=np.int64).reshape(-1, 2)
        self.rowcol = np.asarray(self.rowcol, dtype=np.int64).reshape(-1, 2)
        self.tissue_fraction = np.asarray(self.tissue_fraction, dtype=np.float32).reshape(-1)
        if len(self.done) != len(self.coords):
            self.done = np.zeros(len(self.coords), bool)

    # -- construction --------------------------------------------------------------------------
    @classmethod
    def from_grid(cls, grid: Any, markers: Iterable[str], slide_path: str = "") -> PredictionMaps:
        """Empty maps on a `TileGrid` for `markers`."""
        n = len(np.asarray(grid.coords).reshape(-1, 2))
        tf = getattr(grid, "tissue_fraction", None)
        dims = getattr(grid, "slide_dimensions", (0, 0))
        maps = cls(
            lattice=grid.lattice,
            coords=grid.coords,
            rowcol=grid.rowcol,
            tissue_fraction=np.ones(n, np.float32) if tf is None else tf,
            slide_path=str(slide_path),
            slide_dimensions=(int(dims[0]), int(dims[1])),
        )
        if getattr(grid, "tile_size", None):
            maps.info["tile_size"] = int(grid.tile_size)
            maps.info["tile_mpp"] = float(grid.tile_mpp)
        for m in markers:
            maps.add_marker(m)
        return maps

    @classmethod
    def from_prediction(cls, prediction: Any) -> PredictionMaps:
        """Maps holding a finished `inference.SlidePrediction`."""
        maps = cls.from_grid(prediction.grid, prediction.markers, str(prediction.slide_path or ""))
        idx = np.arange(len(maps))
        for key, mp in prediction.markers.items():
            maps.update(key, idx, mp.positivity, mp.attention, mp.scores, mp.tile_logits)
            maps.markers[key].class_names = tuple(mp.class_names)
            maps.markers[key].positive_class = int(mp.positive_class)
            cal = (getattr(mp, "model", None) or {}).get("calibration") or {}
            maps.markers[key].calibration = dict(cal)
            if getattr(mp, "in_domain", None) is not None:
                maps.set_in_domain(key, idx, mp.in_domain)
            scope = "region" if getattr(prediction.grid, "region", None) else "whole slide"
            maps.set_slide_call(
                key,
                mp.probability,
                mp.label or "",
                mp.threshold,
                scope=scope,
                call_status=getattr(mp, "call_status", "call"),
                no_call_reason=getattr(mp, "no_call_reason", None),
            )
        maps.info["messages"] = list(getattr(prediction, "messages", []))
        ds = getattr(prediction, "domain_score", None)
        if ds is not None and len(ds) == len(maps):
            maps.domain_score = np.asarray(ds, np.float32)
        maps.set_caveats(prediction)
        return maps

    def set_caveats(self, prediction: Any) -> None:
        """Keep the disclaimer, model identities and domain verdict of a `SlidePrediction` (or of
        its `to_dict()`) in `info["caveats"]` (`results.caveats.prediction_caveats`)."""
        from .caveats import prediction_caveats

        doc = prediction if isinstance(prediction, dict) else prediction.to_dict()
        self.info["caveats"] = prediction_caveats(doc)

    def mark_no_call(self, reason: str) -> None:
        """Every marker gets no call for `reason` (e.g. "cancelled": the run stopped before every
        tile was seen), in its slide call and in the caveats."""
        from .caveats import NO_CALL, call_text, prediction_caveats

        for mm in self.markers.values():
            mm.call_status, mm.no_call_reason, mm.label = NO_CALL, reason, ""
        cav = self.caveats or prediction_caveats({"markers": {m: {} for m in self.markers}})
        for m in self.markers:
            cav.setdefault("markers", {})[m] = {
                "call_status": NO_CALL,
                "no_call_reason": reason,
                "no_call_text": call_text(NO_CALL, reason),
            }
        self.info["caveats"] = cav

    @property
    def caveats(self) -> dict:
        """`info["caveats"]`, or {} when nothing is known of the models (e.g. read from GeoJSON)."""
        cav = self.info.get("caveats")
        return cav if isinstance(cav, dict) else {}

    def add_marker(self, marker: str) -> MarkerMaps:
        if marker not in self.markers:
            nan = np.full(len(self), np.nan, np.float32)
            # attention logits in float64: per-region calls pool them exactly as predict_slide
            logit = np.full(len(self), np.nan, np.float64)
            self.markers[marker] = MarkerMaps(marker, nan.copy(), nan.copy(), logit)
        return self.markers[marker]

    def __len__(self) -> int:
        return len(self.coords)

    @property
    def tile_px0(self) -> float:
        """Tile side in level-0 pixels."""
        return self.lattice.tile_px0

    @property
    def slide_mpp(self) -> tuple[float, float]:
        """The slide's (mpp_x, mpp_y)."""
        return self.lattice.mpp

    # -- updates -------------------------------------------------------------------------------
    def update(
        self,
        marker: str,
        indices: Any,
        positivity: Any,
        attention: Any | None = None,
        attention_logit: Any | None = None,
        tile_logits: Any | None = None,
    ) -> None:
        """Store per-tile results of `marker` for tile `indices` and update its heatmaps in place.

        `tile_logits` (B, C), when given, are kept for per-region slide calls
        (`annotations.results`)."""
        mm = self.add_marker(marker)
        idx = np.asarray(indices, dtype=np.int64).reshape(-1)
        if tile_logits is not None:
            tl = np.asarray(tile_logits, np.float64).reshape(len(idx), -1)
            if mm.tile_logits is None or mm.tile_logits.shape[1] != tl.shape[1]:
                mm.tile_logits = np.full((len(self), tl.shape[1]), np.nan)
            mm.tile_logits[idx] = tl
        mm.positivity[idx] = np.asarray(positivity, np.float32).reshape(-1)
        if attention_logit is not None:
            mm.attention_logit[idx] = np.asarray(attention_logit, np.float64).reshape(-1)
        if attention is not None:
            mm.attention[idx] = np.asarray(attention, np.float32).reshape(-1)
        elif attention_logit is not None:
            mm.attention[:] = softmax_over_finite(mm.attention_logit)
        self.done[idx] = True
        self._refresh_heatmaps(marker)

    def set_in_domain(self, marker: str, indices: Any, in_domain: Any) -> None:
        """Mark tiles `indices` of `marker` in (True) or out of (False) its model's domain."""
        mm = self.add_marker(marker)
        if mm.in_domain is None:
            mm.in_domain = np.full(len(self), np.nan, np.float32)
        idx = np.asarray(indices, dtype=np.int64).reshape(-1)
        mm.in_domain[idx] = np.asarray(in_domain, bool).reshape(-1)
        arr = self._heatmaps.get(OUT_OF_DOMAIN)
        if arr is not None:
            fill_heatmap(arr, self.rowcol, self.out_of_domain())

    def out_of_domain(self) -> np.ndarray:
        """(N,) 1.0 where a tile is out of some marker model's domain, NaN elsewhere (the grey
        overlay: those tiles are left out of the calls)."""
        out = np.full(len(self), np.nan, np.float32)
        for mm in self.markers.values():
            if mm.in_domain is not None:
                out[mm.in_domain == 0] = 1.0
        return out

    def has_domain(self) -> bool:
        """Whether any marker's tiles were scored against a domain reference."""
        return any(mm.in_domain is not None for mm in self.markers.values())

    def set_attention(self, marker: str, attention: Any) -> None:
        """Replace the whole attention vector of `marker` (e.g. re-normalised over all tiles)."""
        mm = self.add_marker(marker)
        mm.attention[:] = np.asarray(attention, np.float32).reshape(-1)
        self._refresh_heatmaps(marker)

    def set_slide_call(
        self,
        marker: str,
        probability: float,
        label: str = "",
        threshold: float = 0.5,
        scope: str = "",
        *,
        call_status: str = "call",
        no_call_reason: str | None = None,
    ) -> None:
        mm = self.add_marker(marker)
        mm.probability = float(probability)
        mm.label = str(label)
        mm.threshold = float(threshold)
        mm.scope = scope
        mm.call_status = call_status
        mm.no_call_reason = no_call_reason

    def _refresh_heatmaps(self, marker: str) -> None:
        for kind in KINDS:
            arr = self._heatmaps.get((marker, kind))
            if arr is not None:
                fill_heatmap(arr, self.rowcol, self.values(marker, kind))

    # -- views ---------------------------------------------------------------------------------
    def values(self, marker: str, kind: str) -> np.ndarray:
        """Per-tile values (N,) of an overlay kind; NaN for tiles not computed."""
        if kind not in KINDS:
            raise ValueError(f"unknown overlay kind {kind!r}; use one of {KINDS}")
        return getattr(self.markers[marker], kind)

    def heatmap(self, marker: str, kind: str) -> np.ndarray:
        """The (n_rows, n_cols) float32 heatmap of `marker`/`kind`, NaN outside computed tiles.

        The same array object is returned every time and updated in place by `update`.
        """
        key = (marker, kind)
        if key not in self._heatmaps:
            arr = np.full(self.lattice.shape, np.nan, np.float32)
            fill_heatmap(arr, self.rowcol, self.values(marker, kind))
            self._heatmaps[key] = arr
        return self._heatmaps[key]

    def out_of_domain_heatmap(self) -> np.ndarray:
        """The (n_rows, n_cols) map of `out_of_domain` (1: out of domain, NaN: not), updated in
        place as tiles are scored."""
        if OUT_OF_DOMAIN not in self._heatmaps:
            arr = np.full(self.lattice.shape, np.nan, np.float32)
            fill_heatmap(arr, self.rowcol, self.out_of_domain())
            self._heatmaps[OUT_OF_DOMAIN] = arr
        return self._heatmaps[OUT_OF_DOMAIN]

    def tile_at(self, world_rc: Any) -> int | None:
        """Index of the grid tile under a world point (um), or None."""
        r, c = self.lattice.world_to_rowcol(world_rc)
        hit = np.flatnonzero((self.rowcol[:, 0] == r) & (self.rowcol[:, 1] == c))
        return int(hit[0]) if len(hit) else None

    def tile_scores(self, index: int) -> dict:
        """A tile's position and per-marker scores, for display."""
        x, y = (int(v) for v in self.coords[index])
        out: dict[str, Any] = {
            "tile": int(index),
            "row": int(self.rowcol[index, 0]),
            "col": int(self.rowcol[index, 1]),
            "x": x,
            "y": y,
            "tissue_fraction": float(self.tissue_fraction[index]),
            "computed": bool(self.done[index]),
        }
        markers: dict[str, dict] = {}
        out["markers"] = markers
        for key, mm in self.markers.items():
            markers[key] = {
                "positivity": float(mm.positivity[index]),
                "attention": float(mm.attention[index]),
            }
        return out

    def positive_fraction(self, marker: str, tile_threshold: float = 0.5) -> float:
        """Tissue-weighted fraction of computed tissue tiles with positivity >= `tile_threshold`,
        over the tiles the call pools (out-of-domain tiles left out; NaN when none is left)."""
        mm = self.markers[marker]
        pos = mm.positivity
        ok = np.isfinite(pos)
        kept = mm.kept()
        if kept is not None:
            ok &= kept
        w = self.tissue_fraction[ok].astype(float)
        if not ok.any() or w.sum() <= 0:
            return float("nan")
        return float(np.sum(w * (pos[ok] >= tile_threshold)) / w.sum())

    def summary(self, tile_threshold: float = 0.5) -> dict:
        """Per-marker slide call, probability and positive-tissue fraction."""
        out = {}
        for key, mm in self.markers.items():
            out[key] = {
                "marker": mm.name,
                "probability": mm.probability,
                "label": mm.label,
                "threshold": mm.threshold,
                "scope": mm.scope,
                "call_status": mm.call_status,
                "no_call_reason": mm.no_call_reason,
                "positive_fraction": self.positive_fraction(key, tile_threshold),
                "tiles_computed": int(np.isfinite(mm.positivity).sum()),
                "tiles_total": len(self),
            }
        return out

    def metadata(self, marker: str, kind: str) -> dict:
        """The `layer.metadata[META_KEY]` entry of an overlay (what writers need)."""
        return {
            "marker": marker,
            "kind": kind,
            "geometry": self.lattice.to_dict(),
            "slide_path": self.slide_path,
            "maps": self,
        }


def fill_heatmap(arr: np.ndarray, rowcol: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Write per-tile `values` into `arr` at `rowcol` (in place); other pixels stay as they are."""
    if len(rowcol):
        arr[rowcol[:, 0], rowcol[:, 1]] = values
    return arr


def heatmap(lattice: TileLattice, rowcol: Any, values: Any) -> np.ndarray:
    """A (n_rows, n_cols) float32 heatmap from per-tile values, NaN where there is no tile."""
    arr = np.full(lattice.shape, np.nan, np.float32)
    return fill_heatmap(
        arr, np.asarray(rowcol, np.int64).reshape(-1, 2), np.asarray(values, np.float32)
    )


def softmax_over_finite(logits: np.ndarray) -> np.ndarray:
    """Softmax over the finite entries (NaN stays NaN): attention normalised over tiles seen."""
    out = np.full(logits.shape, np.nan, np.float32)
    ok = np.isfinite(logits)
    if ok.any():
        z = logits[ok].astype(np.float64)
        e = np.exp(z - z.max())
        out[ok] = e / e.sum()
    return out
