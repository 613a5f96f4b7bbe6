"""Streaming whole-slide inference: tissue tiles -> tile encoder (once) -> one slide model per marker.

Background threads read and decode tiles from the best pyramid level into a bounded queue while
torch embeds the previous batch, so memory does not grow with the slide. Per tile, each marker's
slide model gives an attention score and logits that do not depend on the other tiles; attention
is normalised over all tiles at the end, so results are exact and deterministic (a region's tiles
get the same positivity as in the whole-slide run, and attention equal up to renormalisation).
"""

from __future__ import annotations

import dataclasses
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

from ..defaults import MAX_TILES, MIN_TISSUE, READER_THREADS
from ..errors import Cancelled, HistostainError
from ..io.overview import overview_plan
from ..markers import MARKERS, check_markers
from ..progress import CancelHook, ProgressHook, cancelled
from .device import DEFAULT_DEVICE, reader_threads_for
from .domain import domain_text, reference_of
from .no_call import SlideFacts, decide
from .prediction import SlidePrediction
from .slide_call import Accumulator, call_maps, empty_marker, marker_prediction, slide_domain
from .stain_check import StainCheck, StainWarning
from .tile_stream import embedded_batches
from .tiling import make_grid
from .tissue import TissueMask, detect_tissue

log = logging.getLogger(__name__)


class PredictionCancelled(Cancelled):
    """The prediction was cancelled; nothing was written."""


# ------------------------------------------------------------------------------------------------
# Models and encoder
# ------------------------------------------------------------------------------------------------
ModelSpec = Any  # None (bundled) | path | (SlideEncoder, ModelConfig)


@dataclass(frozen=True)
class PredictOptions:
    """How slides are predicted: which models and encoder, at which resolution, where, how fast."""

    models: Mapping[str, ModelSpec] = field(
        default_factory=dict
    )  # marker -> model (default bundled)
    encoder: Any = (
        None  # a TileEncoder, registry name, NAME:PATH or TorchScript file (default: the models')
    )
    tile_mpp: float | None = None  # tile resolution (default: the models')
    mpp: float | tuple[float, float] | None = None  # override the slide's pixel size
    min_tissue: float = MIN_TISSUE  # smallest tissue fraction of a predicted tile
    batch_size: int | None = None  # tiles per encoder batch (default: the encoder's)
    reader_threads: int | None = None  # tile reader threads (default: 2; up to 16 on a GPU)
    device: str = DEFAULT_DEVICE  # auto, cpu, cuda, cuda:N, mps (a TileEncoder keeps its own)
    allow_other_encoder_weights: bool = False  # run a model with other weights than its own
    max_tiles: int | None = MAX_TILES  # refuse slides with more tissue tiles (None: no cap)
    #: call a slide even when a no-call reason holds (`engine.no_call`; the reason is kept)
    force_call: bool = False

    #: the options that change results (what makes stored outputs current)
    RESULT_OPTIONS = ("tile_mpp", "mpp", "min_tissue", "encoder", "force_call")

    def result_key(self) -> dict:
        """The options that change results, as plain values (cohort resume compares them); unset
        ones (None, or a False switch) are left out, so older stored keys still match."""
        return {
            k: v
            for k in self.RESULT_OPTIONS
            if (v := getattr(self, k)) is not None and v is not False
        }


def resolve_models(markers: Iterable[str], models: Mapping[str, ModelSpec] | None = None) -> dict:
    """{marker: (SlideEncoder, ModelConfig)} from bundled files, paths or loaded pairs."""
    from .model_files import ModelFileError, load_bundled_model, load_model_file

    markers = check_markers(markers)
    models = dict(models or {})
    check_markers([*markers, *models])
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
                raise ModelFileError(
                    f"the model given for {MARKERS[m]} is a {cfg.marker_name} model"
                )
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


def check_encoder(encoder, configs: dict, *, allow_other_weights: bool = False) -> list[str]:
    """Raise when the encoder's embedding size differs from a model's, or its weights differ from
    those the model was trained with (unless `allow_other_weights`); note other mismatches."""
    from .encoders import EncoderError
    from .encoders.weights import short_fingerprint

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
        trained = getattr(cfg, "encoder_weights", "")
        if trained and encoder.fingerprint != trained:
            msg = (
                f"the {MARKERS[m]} model was trained on {cfg.encoder_id} features from weights "
                f"{short_fingerprint(trained)}, but the tile encoder {encoder.id} has weights "
                f"{short_fingerprint(encoder.fingerprint)}: other weights give other "
                "features, so its predictions would be meaningless"
            )
            if not allow_other_weights:
                raise EncoderError(
                    f"{msg}. Give the weights file the model was trained with (--encoder "
                    f"{cfg.encoder_id}:PATH, or the weights folder), or run anyway with "
                    "--allow-other-encoder-weights."
                )
            notes.append(f"{msg}; running anyway, as asked (--allow-other-encoder-weights).")
    return notes


def resolve_encoder(options: PredictOptions, encoder_id: str):
    """The options' tile encoder on its device: a given `TileEncoder` as it is; the user's explicit
    choice by name or file (TorchScript allowed: they gave it); else the models' `encoder_id`, a
    registry name (a model never names code to run); on `options.device`."""
    from .encoders import TileEncoder, get_encoder

    encoder = options.encoder
    if isinstance(encoder, TileEncoder):
        return encoder
    if encoder is None:
        return get_encoder(encoder_id, device=options.device)
    return get_encoder(encoder, device=options.device, allow_torchscript=True)


def models_on(loaded: dict, device) -> dict:
    """The slide models on `device` (copies when it is not the CPU; the given ones stay put)."""
    import copy

    if device.type == "cpu":
        return loaded
    return {m: (copy.deepcopy(net).to(device), cfg) for m, (net, cfg) in loaded.items()}


# ------------------------------------------------------------------------------------------------
# Prediction
# ------------------------------------------------------------------------------------------------
def predict_slide(
    slide,
    markers: Iterable[str] = tuple(MARKERS),
    options: PredictOptions | None = None,
    *,
    region: tuple[int, int, int, int] | None = None,
    tissue: TissueMask | None = None,
    progress: ProgressHook | None = None,
    cancel: CancelHook | None = None,
    on_batch: Callable[[np.ndarray, dict], Any] | None = None,
) -> SlidePrediction:
    """Predict `markers` for a slide (a `Slide` or a path) in one streaming pass over its tiles.

    - `options`: models, encoder, tile resolution, pixel size, reading (`PredictOptions`).
    - `region`: level-0 (x, y, w, h); only tiles intersecting it are predicted.
    - `tissue`: a tissue mask already detected (else detected here).
    - `progress(done, total)` after each batch; `cancel()` returning True raises
      `PredictionCancelled` before the next batch; `on_batch(indices, partial)` streams results,
      `partial = {marker: {"positivity": (B,), "score": (B,), "logits": (B, C)}}` (score: the
      pre-softmax attention; `slide_model.tile_maps` turns scores + logits seen so far into maps).
    A slide without tissue gives an empty result with a message; an IHC-looking slide gives a
    `StainWarning` and a message.
    """
    from ..io.slide import open_slide

    opts = options or PredictOptions()
    t0 = time.perf_counter()
    if isinstance(slide, (str, Path)):
        with open_slide(slide) as s:
            return predict_slide(
                s,
                markers,
                opts,
                region=region,
                tissue=tissue,
                progress=progress,
                cancel=cancel,
                on_batch=on_batch,
            )
    messages: list[str] = []
    if opts.mpp is not None:
        slide = slide.with_mpp(opts.mpp)
    elif slide.info.mpp_source == "assumed":
        messages.append(
            f"{slide.path.name} has no pixel size; 1 um/px was assumed, so tiles may be at the wrong "
            "scale. Give the true mpp (CLI: --mpp)."
        )
    if tissue is None:  # a slide too large to scan is refused before torch and the models load
        overview_plan(slide)

    import torch

    loaded = resolve_models(markers, opts.models)
    configs = {m: cfg for m, (_, cfg) in loaded.items()}
    tile_size = int(_common(configs, "tile_size", "tile sizes"))
    model_mpp = float(_common(configs, "tile_mpp", "tile resolutions"))
    tile_mpp = model_mpp if opts.tile_mpp is None else float(opts.tile_mpp)
    if not math.isclose(tile_mpp, model_mpp, rel_tol=1e-3):
        messages.append(f"tiles at {tile_mpp} um/px; the models were trained at {model_mpp} um/px.")
    model_encoder = _common(configs, "encoder_id", "tile encoders")

    # the slide's size guards (tissue overview, tile grid) before the encoder is built
    if tissue is None:
        tissue = detect_tissue(slide)
    grid = make_grid(
        slide,
        tile_mpp=tile_mpp,
        tile_size=tile_size,
        tissue=tissue,
        min_tissue=opts.min_tissue,
        region=region,
        max_tiles=opts.max_tiles,
    )
    if grid.extra.get("note"):
        messages.append(grid.extra["note"])
    encoder = resolve_encoder(opts, model_encoder)
    messages += check_encoder(
        encoder, configs, allow_other_weights=opts.allow_other_encoder_weights
    )
    n = len(grid)
    refs = {m: reference_of(cfg) for m, cfg in configs.items()}
    mpp_source = slide.info.mpp_source
    if n == 0:
        where = "in the region" if region is not None else "on the slide"
        messages.append(f"no tissue found {where}: nothing to predict.")
        facts = SlideFacts(tiles=0, mpp_source=mpp_source)
        preds = {}
        for m, (net, cfg) in loaded.items():
            status, reason = decide(facts, force_call=opts.force_call)
            preds[m] = dataclasses.replace(
                empty_marker(m, cfg, net), call_status=status, no_call_reason=reason
            )
        domain = slide_domain({m: r.verdict(np.zeros(0)) for m, r in refs.items() if r})
        result = SlidePrediction(
            str(slide.path),
            grid,
            preds,
            tissue,
            messages,
            encoder.id,
            {},
            time.perf_counter() - t0,
            encoder.fingerprint,
            domain=domain,
            domain_score=np.zeros(0) if domain is not None else None,
        )
        return result

    acc = {m: Accumulator(n, net.n_classes, net.hidden_dim) for m, (net, _) in loaded.items()}
    tile_domain = {m: np.full(n, np.nan) for m, r in refs.items() if r is not None}
    nets = models_on(loaded, encoder.device)
    stain = StainCheck()
    done = 0
    if progress:
        progress(0, n)
    batches = embedded_batches(
        slide,
        grid,
        encoder,
        batch_size=opts.batch_size,
        threads=opts.reader_threads or reader_threads_for(encoder.device, READER_THREADS),
        stop=lambda: cancelled(cancel),
    )
    with closing(batches), torch.inference_mode():
        for idx, tiles, feats in batches:
            if cancelled(cancel):
                raise PredictionCancelled(f"prediction cancelled after {done} of {n} tiles.")
            stain.add(tiles)
            partial = {}
            feats_np = feats.cpu().double().numpy() if tile_domain else None
            for m, (net, cfg) in nets.items():
                h, s, tl = net.tile_outputs(feats)
                s_np, tl_np = s.cpu().double().numpy(), tl.cpu().double().numpy()
                ref = refs[m]
                keep = None
                if ref is not None and feats_np is not None:
                    dscore = ref.score(feats_np)
                    tile_domain[m][idx] = dscore
                    keep = ref.in_domain(dscore)
                acc[m].add(idx, h.cpu().double().numpy(), s_np, tl_np, keep)
                if on_batch is not None:
                    p = np.exp(tl_np - tl_np.max(1, keepdims=True))
                    partial[m] = {
                        "positivity": (p / p.sum(1, keepdims=True))[:, cfg.positive_class],
                        "score": s_np,
                        "logits": tl_np,
                    }
                    if ref is not None:
                        partial[m]["domain_score"] = tile_domain[m][idx]
            done += len(idx)
            if on_batch is not None:
                on_batch(idx, partial)
            if progress:
                progress(done, n)
    if cancelled(cancel):
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
    verdicts = {}
    for m, (_net, cfg) in loaded.items():
        ref = refs[m]
        keep = None
        if ref is not None:
            verdicts[m] = ref.verdict(tile_domain[m])
            keep = ref.in_domain(tile_domain[m])
            keep = keep if keep.any() else None  # no tile in domain: pool over all (forced call)
        facts = SlideFacts(
            tiles=n,
            in_domain=verdicts[m]["in_domain"] if m in verdicts else None,
            looks_like=str(stain_result.get("looks_like", "unknown")),
            mpp_source=mpp_source,
        )
        maps = call_maps(acc[m], cfg, keep)
        status, reason = decide(facts, force_call=opts.force_call)
        preds[m] = marker_prediction(
            m,
            cfg,
            maps,
            acc[m].embedding(in_domain_only=keep is not None),
            acc[m].scores,
            call=(status, reason),
            tile_logits=acc[m].logits,
            in_domain=None if ref is None else ref.in_domain(tile_domain[m]),
        )
    messages += out_of_domain_messages(verdicts)
    domain = slide_domain(verdicts)
    return SlidePrediction(
        str(slide.path),
        grid,
        preds,
        tissue,
        messages,
        encoder.id,
        stain_result,
        time.perf_counter() - t0,
        encoder.fingerprint,
        domain=domain,
        domain_score=np.fmax.reduce(list(tile_domain.values())) if tile_domain else None,
    )


def out_of_domain_messages(verdicts: dict) -> list[str]:
    """One message per distinct out-of-domain verdict, naming the models it applies to (said
    once for all three when they agree: "The P53, PD-L1 and Ki-67 models: ...")."""
    by_text: dict[str, list[str]] = {}
    for m, v in verdicts.items():
        if not v["in_domain"]:
            by_text.setdefault(domain_text(v, plural=True), []).append(m)
    out = []
    for text, markers in by_text.items():
        names = [MARKERS[m] for m in markers]
        if len(names) == 1:
            text = domain_text(verdicts[markers[0]])
            out.append(f"The {names[0]} model: {text}")
        else:
            out.append(f"The {', '.join(names[:-1])} and {names[-1]} models: {text}")
    return out
