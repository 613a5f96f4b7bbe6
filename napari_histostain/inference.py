"""Streaming whole-slide inference: tissue tiles -> tile encoder (once) -> one slide model per marker.

Background threads read and decode tiles from the best pyramid level into a bounded queue while
torch embeds the previous batch, so memory does not grow with the slide. Per tile, each marker's
slide model gives an attention score and logits that do not depend on the other tiles; attention
is normalised over all tiles at the end, so results are exact and deterministic (a region's tiles
get the same positivity as in the whole-slide run, and attention equal up to renormalisation).
"""

from __future__ import annotations

import csv
import io
import logging
import math
import time
import warnings
from collections.abc import Callable, Iterable, Mapping
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from . import MARKERS, __version__
from .errors import HistostainError
from .tiling import TileGrid, iter_batches, make_grid
from .tissue import TissueMask, detect_tissue

log = logging.getLogger(__name__)

#: Stain check: IHC slides have (almost) no eosin and/or much DAB in their tissue pixels.
MIN_EOSIN_SHARE = 0.1  # eosin / (haematoxylin + eosin) optical density below this looks like IHC
MAX_DAB_FRACTION = 0.02  # more tissue pixels than this with DAB OD > DAB_OD look like IHC
DAB_OD = 0.15
STAIN_CHECK_TILES = 64


class PredictionCancelled(HistostainError):
    """The prediction was cancelled; nothing was written."""


class StainWarning(UserWarning):
    """The slide does not look like an H&E stain."""


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

    @property
    def name(self) -> str:
        return MARKERS.get(self.marker, self.marker)

    def to_dict(self) -> dict:
        return {
            "marker": self.marker,
            "name": self.name,
            "probability": None if math.isnan(self.probability) else self.probability,
            "label": self.label,
            "threshold": self.threshold,
            "logit": None if math.isnan(self.logit) else self.logit,
            "class_names": list(self.class_names),
            "n_tiles": int(self.positivity.size),
            "mean_positivity": float(self.positivity.mean()) if self.positivity.size else None,
            "attention_weighted_positivity": float(self.attention @ self.positivity)
            if self.positivity.size else None,
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

    @property
    def is_empty(self) -> bool:
        return len(self.grid) == 0

    def to_dict(self) -> dict:
        """Slide-level summary as plain JSON types (no per-tile arrays; see `tile_table`)."""
        return {
            "software": f"napari-histostain {__version__}",
            "disclaimer": "Demonstration software, not for clinical use.",
            "slide": self.slide_path,
            "encoder": self.encoder_id,
            "grid": self.grid.to_dict(),
            "tissue": self.tissue.to_dict() if self.tissue is not None else None,
            "stain_check": self.stain,
            "markers": {k: m.to_dict() for k, m in self.markers.items()},
            "messages": list(self.messages),
            "seconds": round(self.seconds, 3),
        }

    def tile_table(self) -> list[dict]:
        """One row per tile: id, level-0 box, centre in um, tissue fraction, per-marker maps."""
        g = self.grid
        centres = g.centres_um()
        side = g.tile_size_px0
        rows = []
        for i in range(len(g)):
            row = {
                "tile": i, "row": int(g.rowcol[i, 0]), "col": int(g.rowcol[i, 1]),
                "x": int(g.coords[i, 0]), "y": int(g.coords[i, 1]), "width": side, "height": side,
                "x_um": round(float(centres[i, 1]), 3), "y_um": round(float(centres[i, 0]), 3),
                "tissue": round(float(g.tissue_fraction[i]), 4),
            }
            for k, m in self.markers.items():
                row[f"{k}_positivity"] = float(m.positivity[i])
                row[f"{k}_attention"] = float(m.attention[i])
                row[f"{k}_contribution"] = float(m.contribution[i])
            rows.append(row)
        return rows

    def heatmap(self, marker: str, what: str = "positivity") -> np.ndarray:
        """A marker's per-tile `positivity` / `attention` / `contribution` as an (n_rows, n_cols)
        float32 map of the tile lattice (NaN where no tile); one pixel per tile."""
        return self.grid.to_map(getattr(self.markers[marker], what))

    def output_names(self) -> tuple[str, str]:
        """(JSON, CSV) file names: <slide stem>.prediction.json, <slide stem>.tiles.csv."""
        stem = slide_stem(self.slide_path)
        return f"{stem}.prediction.json", f"{stem}.tiles.csv"

    def save(self, out_dir: str | Path) -> list[Path]:
        """Write <slide>.prediction.json and <slide>.tiles.csv atomically into `out_dir`."""
        from ._io import atomic_open, ensure_dir, write_json

        out = ensure_dir(out_dir)
        json_name, csv_name = self.output_names()
        rows = self.tile_table()
        fields = list(rows[0]) if rows else ["tile", "row", "col", "x", "y", "width", "height",
                                              "x_um", "y_um", "tissue"]
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=fields, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        with atomic_open(out / csv_name, "w", encoding="utf-8", newline="") as fh:
            fh.write(buf.getvalue())
        doc = self.to_dict()
        doc["tiles_csv"] = csv_name
        write_json(out / json_name, doc)
        return [out / json_name, out / csv_name]


def slide_stem(path: str | Path) -> str:
    """A slide's name without its suffix (.ome.tif counts as one; a DICOM file gives its folder)."""
    p = Path(path)
    if p.suffix.lower() == ".dcm":
        return p.parent.name or "slide"
    name = p.name
    for suffix in (".ome.tiff", ".ome.tif"):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return p.stem or "slide"


# ------------------------------------------------------------------------------------------------
# Models and encoder
# ------------------------------------------------------------------------------------------------
ModelSpec = Any  # None (bundled) | path | (SlideEncoder, ModelConfig)


def resolve_models(markers: Iterable[str], models: Mapping[str, ModelSpec] | None = None) -> dict:
    """{marker: (SlideEncoder, ModelConfig)} from bundled files, paths or loaded pairs."""
    from .model import ModelFileError, load_bundled_model, load_model_file

    markers = [markers] if isinstance(markers, str) else list(dict.fromkeys(markers))
    if not markers:
        raise HistostainError(f"no marker chosen; choose from: {', '.join(MARKERS)}")
    models = dict(models or {})
    unknown = [m for m in list(markers) + list(models) if m not in MARKERS]
    if unknown:
        raise HistostainError(f"unknown marker {unknown[0]!r}; choose from: {', '.join(MARKERS)}")
    out = {}
    for m in markers:
        spec = models.get(m)
        if spec is None:
            out[m] = load_bundled_model(m)
        elif isinstance(spec, (str, Path)):
            out[m] = load_model_file(spec, marker=m)
        else:
            net, cfg = spec
            if cfg.marker != m:
                raise ModelFileError(f"the model given for {MARKERS[m]} is a {cfg.marker_name} model")
            out[m] = (net.eval(), cfg)
    return out


def _common(configs: dict, attr: str, what: str):
    values = {getattr(c, attr) for c in configs.values()}
    if len(values) > 1:
        detail = ", ".join(f"{m}: {getattr(c, attr)}" for m, c in configs.items())
        raise HistostainError(
            f"the chosen models use different {what} ({detail}); one pass over the tiles serves "
            "all markers, so predict these markers separately."
        )
    return values.pop()


def check_encoder(encoder, configs: dict) -> list[str]:
    """Raise when the encoder's embedding size differs from a model's; note other mismatches."""
    from .encoder import EncoderError

    notes = []
    for m, cfg in configs.items():
        if encoder.dim != cfg.embedding_dim:
            raise EncoderError(
                f"the {MARKERS[m]} model expects {cfg.embedding_dim}-d tile embeddings "
                f"({cfg.encoder_id}) but the tile encoder {encoder.id} gives {encoder.dim}-d. Use "
                "the encoder the model was trained with."
            )
        if encoder.id != cfg.encoder_id:
            notes.append(
                f"the {MARKERS[m]} model was trained on {cfg.encoder_id} features; using "
                f"{encoder.id} (same size) may give meaningless results."
            )
    return notes


# ------------------------------------------------------------------------------------------------
# Stain check
# ------------------------------------------------------------------------------------------------
class StainCheck:
    """Accumulates haematoxylin / eosin / DAB optical densities over tissue pixels of some tiles."""

    def __init__(self, max_tiles: int = STAIN_CHECK_TILES):
        self.max_tiles = max_tiles
        self.tiles = 0
        self.n = 0
        self.sum_h = self.sum_e = 0.0
        self.dab = 0

    def add(self, tiles: np.ndarray) -> None:
        from skimage.color import rgb2hed

        for rgb in tiles:
            if self.tiles >= self.max_tiles:
                return
            self.tiles += 1
            px = rgb[::4, ::4].reshape(-1, 3)
            f = px.astype(np.float32)
            vmax = f.max(1)
            tissue = (vmax - f.min(1)) > 0.1 * np.maximum(vmax, 1)
            if not tissue.any():
                continue
            hed = rgb2hed(px[tissue][None])[0]
            self.n += len(hed)
            self.sum_h += float(np.clip(hed[:, 0], 0, None).sum())
            self.sum_e += float(np.clip(hed[:, 1], 0, None).sum())
            self.dab += int((hed[:, 2] > DAB_OD).sum())

    def result(self) -> dict:
        if not self.n:
            return {"tiles": self.tiles, "pixels": 0, "looks_like": "unknown"}
        share = self.sum_e / max(self.sum_h + self.sum_e, 1e-9)
        dab = self.dab / self.n
        ihc = share < MIN_EOSIN_SHARE or dab > MAX_DAB_FRACTION
        return {
            "tiles": self.tiles, "pixels": self.n, "eosin_share": round(share, 4),
            "dab_fraction": round(dab, 4), "looks_like": "IHC" if ihc else "H&E",
        }


# ------------------------------------------------------------------------------------------------
# Prediction
# ------------------------------------------------------------------------------------------------
class _Accumulator:
    """Per-marker streaming state: scores and logits per tile, online-softmax slide embedding."""

    def __init__(self, n: int, n_classes: int, hidden: int):
        self.scores = np.empty(n, np.float64)
        self.logits = np.empty((n, n_classes), np.float64)
        self.m = -np.inf
        self.s = 0.0
        self.e = np.zeros(hidden, np.float64)

    def add(self, idx: np.ndarray, h: np.ndarray, s: np.ndarray, tl: np.ndarray) -> None:
        self.scores[idx] = s
        self.logits[idx] = tl
        new_m = max(self.m, float(s.max()))
        w = np.exp(s - new_m)
        decay = math.exp(self.m - new_m) if np.isfinite(self.m) else 0.0
        self.e = self.e * decay + w @ h
        self.s = self.s * decay + float(w.sum())
        self.m = new_m

    def embedding(self) -> np.ndarray:
        return self.e / self.s if self.s > 0 else self.e


def predict_slide(
    slide,
    markers: Iterable[str] = ("p53", "pdl1", "ki67"),
    *,
    region: tuple[int, int, int, int] | None = None,
    tile_mpp: float | None = None,
    models: Mapping[str, ModelSpec] | None = None,
    progress: Callable[[int, int], Any] | None = None,
    cancel: Callable[[], bool] | None = None,
    on_batch: Callable[[np.ndarray, dict], Any] | None = None,
    encoder=None,
    mpp: float | tuple[float, float] | None = None,
    tissue: TissueMask | None = None,
    min_tissue: float = 0.25,
    batch_size: int = 32,
    threads: int = 2,
) -> SlidePrediction:
    """Predict `markers` for a slide (a `Slide` or a path) in one streaming pass over its tiles.

    - `models`: {marker: None (bundled) | model file path | (SlideEncoder, ModelConfig)}.
    - `region`: level-0 (x, y, w, h); only tiles intersecting it are predicted.
    - `tile_mpp`: tile resolution (default: the models'); `mpp`: override the slide's pixel size.
    - `encoder`: a TileEncoder or registry name (default: the models' `encoder_id`).
    - `progress(done, total)` after each batch; `cancel()` returning True raises
      `PredictionCancelled` before the next batch; `on_batch(indices, partial)` streams results,
      `partial = {marker: {"positivity": (B,), "score": (B,), "logits": (B, C)}}` (score: the
      pre-softmax attention; `model.tile_maps` turns scores + logits seen so far into maps).
    A slide without tissue gives an empty result with a message; an IHC-looking slide gives a
    `StainWarning` and a message.
    """
    from .slide import open_slide

    t0 = time.perf_counter()
    if isinstance(slide, (str, Path)):
        with open_slide(slide) as s:
            return predict_slide(
                s, markers, region=region, tile_mpp=tile_mpp, models=models, progress=progress,
                cancel=cancel, on_batch=on_batch, encoder=encoder, mpp=mpp, tissue=tissue,
                min_tissue=min_tissue, batch_size=batch_size, threads=threads,
            )
    import torch

    from .encoder import TileEncoder, get_encoder

    messages: list[str] = []
    if mpp is not None:
        slide = slide.with_mpp(mpp)
    elif slide.info.mpp_source == "assumed":
        messages.append(
            f"{slide.path.name} has no pixel size; 1 um/px was assumed, so tiles may be at the wrong "
            "scale. Give the true mpp (CLI: --mpp)."
        )
    loaded = resolve_models(markers, models)
    configs = {m: cfg for m, (_, cfg) in loaded.items()}
    tile_size = int(_common(configs, "tile_size", "tile sizes"))
    model_mpp = float(_common(configs, "tile_mpp", "tile resolutions"))
    if tile_mpp is None:
        tile_mpp = model_mpp
    elif not math.isclose(tile_mpp, model_mpp, rel_tol=1e-3):
        messages.append(f"tiles at {tile_mpp} um/px; the models were trained at {model_mpp} um/px.")
    if encoder is None:
        encoder = get_encoder(_common(configs, "encoder_id", "tile encoders"))
    elif not isinstance(encoder, TileEncoder) and isinstance(encoder, (str, Path)):
        encoder = get_encoder(encoder)
    messages += check_encoder(encoder, configs)

    if tissue is None:
        tissue = detect_tissue(slide)
    grid = make_grid(slide, tile_mpp=tile_mpp, tile_size=tile_size, tissue=tissue,
                     min_tissue=min_tissue, region=region)
    n = len(grid)
    if n == 0:
        where = "in the region" if region is not None else "on the slide"
        messages.append(f"no tissue found {where}: nothing to predict.")
        result = SlidePrediction(str(slide.path), grid, {
            m: _empty_marker(m, cfg, net) for m, (net, cfg) in loaded.items()
        }, tissue, messages, encoder.id, {}, time.perf_counter() - t0)
        return result

    acc = {m: _Accumulator(n, net.n_classes, net.hidden_dim) for m, (net, _) in loaded.items()}
    stain = StainCheck()
    done = 0
    if progress:
        progress(0, n)
    batches = iter_batches(slide, grid, batch_size=batch_size, threads=threads)
    with closing(batches), torch.inference_mode():
        for idx, tiles in batches:
            if cancel is not None and cancel():
                raise PredictionCancelled(f"prediction cancelled after {done} of {n} tiles.")
            stain.add(tiles)
            feats = torch.from_numpy(encoder.embed(tiles))
            partial = {}
            for m, (net, cfg) in loaded.items():
                h, s, tl = net.tile_outputs(feats)
                s_np, tl_np = s.double().numpy(), tl.double().numpy()
                acc[m].add(idx, h.double().numpy(), s_np, tl_np)
                if on_batch is not None:
                    p = np.exp(tl_np - tl_np.max(1, keepdims=True))
                    partial[m] = {"positivity": (p / p.sum(1, keepdims=True))[:, cfg.positive_class],
                                  "score": s_np, "logits": tl_np}
            done += len(idx)
            if on_batch is not None:
                on_batch(idx, partial)
            if progress:
                progress(done, n)
    if cancel is not None and cancel():
        raise PredictionCancelled(f"prediction cancelled after {done} of {n} tiles.")

    stain_result = stain.result()
    if stain_result["looks_like"] == "IHC":
        msg = (
            f"{slide.path.name} looks like an IHC (DAB / haematoxylin) slide, not H&E (eosin share "
            f"{stain_result['eosin_share']:.2f}, DAB pixels {stain_result['dab_fraction']:.1%}); "
            "the models expect H&E, so these predictions are not meaningful."
        )
        messages.append(msg)
        warnings.warn(msg, StainWarning, stacklevel=2)
    preds = {}
    for m, (_net, cfg) in loaded.items():
        maps = _maps(acc[m], cfg)
        preds[m] = _marker_prediction(m, cfg, maps, acc[m].embedding(), acc[m].scores)
    return SlidePrediction(str(slide.path), grid, preds, tissue, messages, encoder.id, stain_result,
                           time.perf_counter() - t0)


def _maps(acc: _Accumulator, cfg) -> dict:
    from .model import tile_maps

    return tile_maps(acc.scores, acc.logits, cfg.positive_class)


def _label(cfg, probability: float) -> str | None:
    if math.isnan(probability):
        return None
    names = list(cfg.class_names)
    if probability >= cfg.threshold:
        return names[cfg.positive_class]
    others = [c for i, c in enumerate(names) if i != cfg.positive_class]
    return others[0] if len(others) == 1 else "not " + names[cfg.positive_class]


def _model_summary(cfg) -> dict:
    return {
        "encoder_id": cfg.encoder_id, "tile_size": cfg.tile_size, "tile_mpp": cfg.tile_mpp,
        "created": cfg.created, "training": cfg.training, "metrics": cfg.metrics,
        "description": cfg.description,
    }


def _marker_prediction(
    marker: str, cfg, maps: dict, embedding: np.ndarray, scores: np.ndarray
) -> MarkerPrediction:
    return MarkerPrediction(
        marker=marker,
        probability=maps["probability"],
        label=_label(cfg, maps["probability"]),
        threshold=float(cfg.threshold),
        positivity=maps["positivity"],
        attention=maps["attention"],
        contribution=maps["contribution"],
        logit=maps["slide_margin"],
        scores=np.asarray(scores, np.float64),
        embedding=embedding.astype(np.float32),
        class_names=tuple(cfg.class_names),
        model=_model_summary(cfg),
    )


def _empty_marker(marker: str, cfg, net) -> MarkerPrediction:
    from .model import tile_maps

    maps = tile_maps(np.zeros(0), np.zeros((0, net.n_classes)), cfg.positive_class)
    return _marker_prediction(marker, cfg, maps, np.full(net.hidden_dim, np.nan), np.zeros(0))
