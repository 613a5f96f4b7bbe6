"""Per-tile predictions on demand, cached: the compute behind "Visible region" mode (no Qt).

With the additive-attention MIL model, a tile's positivity depends on that tile alone, so tiles can
be computed in any order and cached. Attention is a softmax over a bag: here it is normalised over
the tiles computed so far, and the region probability is the model's slide output over those tiles.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import HistostainError
from ..results.caveats import models_caveats
from ..results.maps import PredictionMaps
from .calibration import calibration_of
from .domain import reference_of

if TYPE_CHECKING:
    from ..io.slide import Slide

#: The model source meaning "the package's bundled model".
BUNDLED = "bundled"


class WidgetError(HistostainError):
    """A prediction cannot start with the widget's current settings."""


def load_models(markers: Sequence[str], model_files: Mapping[str, Any] | None = None) -> dict:
    """{marker: (SlideEncoder, ModelConfig)}: a given file (or loaded pair) per marker, else bundled."""
    from .predict import resolve_models

    files = {m: f for m, f in (model_files or {}).items() if m in markers}
    return resolve_models(markers, files)


def model_tiling(models: Mapping[str, Any]) -> tuple[float, int, str]:
    """(tile_mpp, tile_size, encoder_id) shared by `models`; a clear error when they disagree."""
    seen = {(cfg.tile_mpp, cfg.tile_size, cfg.encoder_id) for _, cfg in models.values()}
    if len(seen) != 1:
        raise WidgetError(
            "the chosen models were trained at different tile settings "
            f"{sorted(seen)}; predict those markers separately."
        )
    mpp, size, enc = seen.pop()
    return float(mpp), int(size), str(enc)


class RegionPredictor:
    """Tile results on the whole-slide grid of one slide, computed on request and cached.

    Thread use: `compute` runs in a worker thread; `store` and the views run in the GUI thread.
    """

    def __init__(
        self,
        slide_path: str | Path | Slide,
        markers: Sequence[str],
        model_files: Mapping[str, Any] | None = None,
        *,
        tile_mpp: float | None = None,
        min_tissue: float = 0.25,
        models: Mapping[str, Any] | None = None,
        device: str = "auto",
    ):
        from ..io.slide import open_slide
        from .encoders import get_encoder
        from .predict import check_encoder
        from .tiling import make_grid
        from .tissue import detect_tissue

        if not markers:
            raise WidgetError("choose at least one marker (P53, PD-L1, Ki-67).")
        self.markers = list(markers)
        self.models = dict(models) if models is not None else load_models(self.markers, model_files)
        model_mpp, self.tile_size, encoder_id = model_tiling(self.models)
        self.encoder = get_encoder(encoder_id, device=device)
        self.notes = check_encoder(self.encoder, {m: cfg for m, (_, cfg) in self.models.items()})
        self.tile_mpp = float(tile_mpp or model_mpp)
        # a path, or an open `Slide` (e.g. `io.slide_from_array` of an image layer), kept open here
        if isinstance(slide_path, (str, Path)):
            self.slide = open_slide(slide_path)
        else:
            self.slide, slide_path = slide_path, slide_path.path
        self.tissue = detect_tissue(self.slide)
        self.grid = make_grid(
            self.slide,
            tile_mpp=self.tile_mpp,
            tile_size=self.tile_size,
            tissue=self.tissue,
            min_tissue=min_tissue,
        )
        self.maps = PredictionMaps.from_grid(self.grid, self.markers, str(slide_path))
        for m, (_, cfg) in self.models.items():  # what per-region calls need (annotations.results)
            mm = self.maps.add_marker(m)
            mm.class_names, mm.positive_class = tuple(cfg.class_names), int(cfg.positive_class)
            mm.calibration = calibration_of(cfg)
        self.maps.info.update(
            tile_mpp=self.tile_mpp,
            tile_size=self.tile_size,
            encoder=encoder_id,
            encoder_fingerprint=self.encoder.fingerprint,
            caveats=models_caveats(self.models),
        )
        n = len(self.grid)
        self._refs = {m: reference_of(cfg) for m, (_, cfg) in self.models.items()}
        self._scores = {m: np.full(n, np.nan, np.float64) for m in self.markers}
        self._domain = {m: np.full(n, np.nan, np.float64) for m in self.markers}
        self._logits = {
            m: np.full((n, net.n_classes), np.nan, np.float64)
            for m, (net, _) in self.models.items()
        }
        self._lock = threading.Lock()
        self.mpp_source = str(getattr(self.slide.info, "mpp_source", "metadata"))
        self.force_call = False  # "tiles seen" calls despite a no-call reason (kept, "forced")
        self.computed_count = 0  # tiles computed by this predictor (never recomputed)

    # -- which tiles ---------------------------------------------------------------------------
    def tiles_in_box(self, box: tuple[float, float, float, float]) -> np.ndarray:
        """Indices of grid tiles intersecting a level-0 (x, y, w, h) box, nearest the centre first."""
        return self.grid.tiles_in_box(box, centre_first=True)

    def pending_of(self, indices: Sequence[int]) -> list[int]:
        """The tiles among `indices` that are not computed yet (cache)."""
        done = self.maps.done
        return [int(i) for i in indices if not done[int(i)]]

    # -- compute (worker thread) ---------------------------------------------------------------
    def warm_up(self) -> None:
        """Run the encoder once so the first visible tile is not slowed by lazy initialisation."""
        self.encoder.embed(np.zeros((1, self.tile_size, self.tile_size, 3), np.uint8))

    def compute(self, indices: Sequence[int]) -> dict:
        """{marker: (scores (B,), tile_logits (B, C), domain scores (B,) or None)} of tiles
        `indices` (read, embed, model, domain reference)."""
        import torch

        from .tiling import read_tile

        idx = [int(i) for i in indices]
        tiles = np.stack([read_tile(self.slide, self.grid, i) for i in idx])
        feats = torch.from_numpy(self.encoder.embed(tiles))
        out = {}
        with torch.inference_mode():
            for m, (net, _) in self.models.items():
                _, s, logits = net.tile_outputs(feats)
                ref = self._refs.get(m)
                dscore = None if ref is None else ref.score(feats.double().numpy())
                out[m] = (s.double().numpy(), logits.double().numpy(), dscore)
        return out

    # -- store (GUI thread) --------------------------------------------------------------------
    def store(self, indices: Sequence[int], result: Mapping[str, tuple]) -> None:
        """Cache `compute` results; update positivity per tile and attention over tiles seen."""
        idx = np.asarray(indices, np.int64)
        new = int((~self.maps.done[idx]).sum())
        with self._lock:
            for m, (scores, logits, *domain) in result.items():
                self._scores[m][idx] = scores
                self._logits[m][idx] = logits
                self._store_domain(m, idx, domain[0] if domain else None)
                self._refresh_marker(m, idx)
        self.computed_count += new

    def store_partial(self, indices: Sequence[int], partial: Mapping[str, Mapping]) -> None:
        """Cache a streamed `predict_slide` batch ({marker: {"positivity", "score", "logits"}})."""
        idx = np.asarray(indices, np.int64)
        with self._lock:
            for m, part in partial.items():
                net, cfg = self.models[m]
                self._scores[m][idx] = part["score"]
                if part.get("logits") is not None:
                    self._logits[m][idx] = part["logits"]
                elif net.n_classes == 2:  # a 2-class margin is the logit of the tile positivity
                    p = np.clip(np.asarray(part["positivity"], np.float64), 1e-12, 1 - 1e-12)
                    logits = np.zeros((len(idx), 2))
                    logits[:, cfg.positive_class] = np.log(p / (1 - p))
                    self._logits[m][idx] = logits
                self._store_domain(m, idx, part.get("domain_score"))
                self._refresh_marker(m, idx, positivity=part["positivity"])

    def _store_domain(self, m: str, idx: np.ndarray, domain_score: Any) -> None:
        """Mark tiles `idx` in or out of marker `m`'s model domain from their domain scores."""
        ref = self._refs.get(m)
        if ref is not None and domain_score is not None:
            ds = np.asarray(domain_score, np.float64)
            self._domain[m][idx] = ds
            self.maps.set_in_domain(m, idx, ref.in_domain(ds))

    def store_prediction(self, prediction: Any) -> np.ndarray:
        """Take a finished `SlidePrediction` on this grid (whole-slide call, exact attention)."""
        idx = self.grid.index_of(prediction.grid.rowcol)
        if (idx < 0).any():
            raise WidgetError("the prediction's tiles do not match this slide's tile grid.")
        with self._lock:
            for m, mp in prediction.markers.items():
                self._scores[m][idx] = mp.scores
                if mp.tile_logits is not None:
                    self._logits[m][idx] = mp.tile_logits
                self.maps.update(m, idx, mp.positivity, None, mp.scores, mp.tile_logits)
                if getattr(mp, "in_domain", None) is not None:
                    self.maps.set_in_domain(m, idx, mp.in_domain)
                    ds = getattr(prediction, "domain_score", None)
                    if ds is not None and len(ds) == len(idx):  # the worst marker's scores
                        self._domain[m][idx] = ds
                if len(idx) == len(self.grid):
                    self.maps.set_attention(m, mp.attention)
                    self.maps.set_slide_call(
                        m,
                        mp.probability,
                        mp.label or "",
                        mp.threshold,
                        scope="whole slide",
                        call_status=getattr(mp, "call_status", "call"),
                        no_call_reason=getattr(mp, "no_call_reason", None),
                    )
                else:
                    self._refresh_marker(m, idx, positivity=mp.positivity)
            if len(idx) == len(self.grid):
                self.maps.set_caveats(prediction)
        return idx

    def _refresh_marker(self, m: str, idx: np.ndarray, positivity: Any = None) -> None:
        from .slide_call import calibrated_probability
        from .slide_model import tile_maps

        _, cfg = self.models[m]
        seen = np.isfinite(self._scores[m]) & np.isfinite(self._logits[m]).all(axis=1)
        mm = self.maps.markers[m]
        scored = None if mm.in_domain is None else np.isfinite(mm.in_domain) & seen
        pooled = seen
        if scored is not None and scored.any():  # pool the in-domain tiles (as predict_slide)
            inside = seen & (mm.in_domain == 1)
            pooled = inside if inside.any() else seen
        # tile positivity does not depend on the pool: one pass unless tiles are left out of it
        tm = tile_maps(self._scores[m][seen], self._logits[m][seen], cfg.positive_class)
        pos = np.full(len(self.grid), np.nan)
        att = np.full(len(self.grid), np.nan)
        pos[seen] = tm["positivity"]
        if not np.array_equal(pooled, seen):
            tm = tile_maps(self._scores[m][pooled], self._logits[m][pooled], cfg.positive_class)
        att[pooled] = tm["attention"]
        self.maps.update(
            m,
            idx,
            pos[idx] if positivity is None else positivity,
            None,
            self._scores[m][idx],
            self._logits[m][idx],
        )
        self.maps.set_attention(m, att)
        prob = calibrated_probability(tm["slide_logits"], cfg)
        status, reason = self._seen_call(m, seen, scored)
        label = "" if status == "no_call" else cfg.label_for(prob) or ""
        self.maps.set_slide_call(
            m,
            prob,
            label,
            cfg.threshold,
            scope=f"tiles seen ({int(seen.sum())})",
            call_status=status,
            no_call_reason=reason,
        )

    def _seen_call(
        self, m: str, seen: np.ndarray, scored: np.ndarray | None
    ) -> tuple[str, str | None]:
        """The no-call policy over the tiles seen so far: out of the model's domain (its slide rule
        on the scored tiles) or too few tiles; forced with `force_call`."""
        from .no_call import SlideFacts, decide

        ref = self._refs.get(m)
        in_domain = None
        scored = None if scored is None else scored & np.isfinite(self._domain[m])
        if ref is not None and scored is not None and scored.any():
            in_domain = ref.verdict(self._domain[m][scored])["in_domain"]
        facts = SlideFacts(tiles=int(seen.sum()), in_domain=in_domain, mpp_source=self.mpp_source)
        return decide(facts, force_call=self.force_call)

    def close(self) -> None:
        self.slide.close()
