"""The HistoStainAlign slide encoder and its versioned model files.

`SlideEncoder` (one per marker, shared by H&E and IHC inputs during training):

    tile features x_i (D) -> projection MLP -> h_i (H)
    gated attention (Ilse et al. 2018): s_i = w . (tanh(V h_i) * sigmoid(U h_i)),  a = softmax(s)
    slide embedding z = sum_i a_i h_i                  (aligned H&E <-> IHC with InfoNCE in training)
    tile logits l_i = W h_i + b                         (linear class head)
    slide logits L = sum_i a_i l_i = W z + b            (additive MIL, Javed et al. 2022)

Because the head is linear and the attention weights sum to one, classifying the slide embedding
and summing attention-weighted tile logits are the same number: the per-tile maps are exact, not
post-hoc. Positivity of a tile is the class probability of its own logits, attention is a_i, and the
contribution a_i * (l_i[pos] - mean of the other classes' l_i) sums exactly to the slide margin (the
slide log-odds for two classes).

A model file is a `torch.save`d dict {format, format_version, config (JSON text), state_dict},
loadable with `weights_only=True`; a human-readable copy of the config sits beside it as .json.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import nn

from . import MARKERS, __version__
from .errors import HistostainError

FORMAT = "histostainalign-slide-model"
FORMAT_VERSION = 1
MODELS_DIR = Path(__file__).resolve().parent / "models"
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class ModelFileError(HistostainError):
    """A model file is missing, corrupt, of another format or does not fit the request."""


@dataclass
class ModelConfig:
    """Everything needed to use a slide model, stored as JSON inside the model file."""

    marker: str
    encoder_id: str = "efficientnet-lite0"
    embedding_dim: int = 1280
    tile_size: int = 224
    tile_mpp: float = 1.0
    normalisation: dict = field(
        default_factory=lambda: {"mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD)}
    )
    class_names: list = field(default_factory=lambda: ["negative", "positive"])
    positive_class: int = 1
    threshold: float = 0.5
    architecture: dict = field(default_factory=dict)  # SlideEncoder kwargs (filled on save)
    training: dict = field(default_factory=dict)  # training-data summary (cases, source, simulated?)
    metrics: dict = field(default_factory=dict)  # validation metrics (AUC, accuracy, ...)
    description: str = ""
    format_version: int = FORMAT_VERSION
    created: str = ""
    package_version: str = __version__

    @property
    def marker_name(self) -> str:
        return MARKERS.get(self.marker, self.marker)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> ModelConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        missing = [k for k in ("marker",) if k not in d]
        if missing:
            raise ModelFileError(f"model config lacks {', '.join(missing)}")
        return cls(**{k: v for k, v in d.items() if k in known})


class SlideOutput(NamedTuple):
    """Outputs of `SlideEncoder.forward`."""

    logits: torch.Tensor  # (B, C) slide logits = sum_i a_i * tile_logits_i
    embedding: torch.Tensor  # (B, H) attention-pooled projected features
    attention: torch.Tensor  # (B, N) softmax of scores over the bag
    scores: torch.Tensor  # (B, N) pre-softmax attention scores (bag-independent)
    tile_logits: torch.Tensor  # (B, N, C)


class SlideEncoder(nn.Module):
    """Projection MLP -> gated attention -> slide embedding -> linear head (additive MIL).

    `forward(x, mask=None)` takes tile features (N, D) or (B, N, D) (`mask` (B, N) bool marks real
    tiles in padded bags) and returns a `SlideOutput`; unbatched input gives unbatched outputs.
    """

    def __init__(
        self,
        in_dim: int = 1280,
        hidden_dim: int = 256,
        attn_dim: int = 128,
        n_classes: int = 2,
        dropout: float = 0.0,
    ):
        super().__init__()
        if n_classes < 2:
            raise ValueError("n_classes must be >= 2 (softmax over classes)")
        self.in_dim, self.hidden_dim, self.attn_dim = in_dim, hidden_dim, attn_dim
        self.n_classes, self.dropout = n_classes, dropout
        self.project = nn.Sequential(
            nn.Linear(in_dim, hidden_dim), nn.GELU(), nn.Dropout(dropout),
            nn.Linear(hidden_dim, hidden_dim), nn.GELU(),
        )
        self.attn_v = nn.Linear(hidden_dim, attn_dim)  # tanh branch
        self.attn_u = nn.Linear(hidden_dim, attn_dim)  # sigmoid gate
        self.attn_w = nn.Linear(attn_dim, 1)
        self.head = nn.Linear(hidden_dim, n_classes)

    @property
    def config(self) -> dict:
        """Constructor arguments (stored in model files)."""
        return {
            "in_dim": self.in_dim, "hidden_dim": self.hidden_dim, "attn_dim": self.attn_dim,
            "n_classes": self.n_classes, "dropout": self.dropout,
        }

    def tile_outputs(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Per-tile (projected h, attention score s, tile logits l); each tile independently."""
        h = self.project(x)
        s = self.attn_w(torch.tanh(self.attn_v(h)) * torch.sigmoid(self.attn_u(h))).squeeze(-1)
        return h, s, self.head(h)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> SlideOutput:
        single = x.dim() == 2
        if single:
            x = x.unsqueeze(0)
            mask = None if mask is None else mask.unsqueeze(0)
        h, s, tile_logits = self.tile_outputs(x)
        if mask is not None:
            s = s.masked_fill(~mask, float("-inf"))
        a = torch.softmax(s, dim=1)
        if mask is not None:
            a = torch.nan_to_num(a, nan=0.0)  # an all-masked bag has no attention
        z = torch.einsum("bn,bnh->bh", a, h)
        logits = torch.einsum("bn,bnc->bc", a, tile_logits)
        out = SlideOutput(logits, z, a, s, tile_logits)
        return SlideOutput(*(t.squeeze(0) for t in out)) if single else out

    @torch.inference_mode()
    def explain(self, x: torch.Tensor, positive_class: int = 1) -> dict:
        """Per-tile attention / positivity / contribution of one bag (N, D): see `tile_maps`."""
        out = self.forward(x)
        return tile_maps(out.scores, out.tile_logits, positive_class)


def tile_maps(scores, tile_logits, positive_class: int = 1) -> dict:
    """Exact per-tile maps from attention scores (N,) and tile logits (N, C) (tensors or arrays).

    Returns numpy float64: `attention` (softmax of scores), `positivity` (softmax of each tile's own
    logits, positive class), `contribution` (a_i * margin_i, summing to `slide_margin`), plus
    `slide_logits` (C,), `slide_margin` and `probability` (softmax of the slide logits).
    """
    s = np.asarray(scores.detach().cpu() if hasattr(scores, "detach") else scores, np.float64)
    tl = np.asarray(
        tile_logits.detach().cpu() if hasattr(tile_logits, "detach") else tile_logits, np.float64
    )
    if tl.ndim != 2 or tl.shape[0] == 0:
        c = tl.shape[1] if tl.ndim == 2 else 2
        empty = np.zeros(0, np.float64)
        return {"attention": empty, "positivity": empty, "contribution": empty,
                "slide_logits": np.full(c, np.nan), "slide_margin": float("nan"),
                "probability": float("nan")}
    a = np.exp(s - s.max())
    a /= a.sum()
    p = np.exp(tl - tl.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    margin = tl[:, positive_class] - np.delete(tl, positive_class, axis=1).mean(axis=1)
    slide_logits = a @ tl
    sp = np.exp(slide_logits - slide_logits.max())
    sp /= sp.sum()
    return {
        "attention": a,
        "positivity": p[:, positive_class],
        "contribution": a * margin,
        "slide_logits": slide_logits,
        "slide_margin": float(slide_logits[positive_class]
                              - np.delete(slide_logits, positive_class).mean()),
        "probability": float(sp[positive_class]),
    }


# ------------------------------------------------------------------------------------------------
# Model files
# ------------------------------------------------------------------------------------------------
def _check_marker(marker: str) -> str:
    if marker not in MARKERS:
        raise ModelFileError(f"unknown marker {marker!r}; choose one of: {', '.join(MARKERS)}")
    return marker


def bundled_model_path(marker: str) -> Path:
    """Where the package's default model for `marker` lives: models/histostainalign-<marker>.pt."""
    return MODELS_DIR / f"histostainalign-{_check_marker(marker)}.pt"


def save_model_file(
    path: str | Path, model, config: ModelConfig | dict, *, sidecar: bool = True
) -> Path:
    """Write `model` (a SlideEncoder) and its config atomically; return the path.

    The architecture is taken from the model; the embedding size and number of classes are checked
    against the config. With `sidecar`, a readable copy of the config is written as <path>.json.
    """
    from ._io import atomic_path, write_json

    cfg = config if isinstance(config, ModelConfig) else ModelConfig.from_dict(dict(config))
    cfg = dataclasses.replace(cfg, architecture=dict(model.config), format_version=FORMAT_VERSION)
    if not cfg.created:
        cfg.created = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    _check_marker(cfg.marker)
    if model.in_dim != cfg.embedding_dim:
        raise ModelFileError(
            f"model takes {model.in_dim}-d tile features but the config says embedding_dim="
            f"{cfg.embedding_dim}"
        )
    if model.n_classes != len(cfg.class_names) or not 0 <= cfg.positive_class < model.n_classes:
        raise ModelFileError(
            f"model has {model.n_classes} classes but the config names {cfg.class_names} "
            f"(positive_class={cfg.positive_class})"
        )
    state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    payload = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "config": json.dumps(cfg.to_dict()),
        "state_dict": state,
    }
    path = Path(path)
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)
    if sidecar:
        write_json(path.with_suffix(".json"), {"format": FORMAT, **cfg.to_dict()})
    return path


def _read_payload(path: str | Path) -> tuple[Path, dict]:
    p = Path(path).expanduser()
    if not p.is_file():
        raise ModelFileError(
            f"model file {p} not found. Give the path of a .pt file written by histostain training, "
            "or reinstall napari-histostain to restore the bundled models."
        )
    try:
        payload = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ModelFileError(
            f"model file {p} is corrupt or not a torch file ({type(exc).__name__}). Copy it again or "
            "re-run training to write a new one."
        ) from exc
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise ModelFileError(
            f"{p} is not a HistoStainAlign slide model file (no '{FORMAT}' header). Model files are "
            "written by `histostain train` / napari_histostain.model.save_model_file."
        )
    version = payload.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise ModelFileError(
            f"{p} has model format version {version}; this napari-histostain reads up to "
            f"{FORMAT_VERSION}. Upgrade napari-histostain."
        )
    return p, payload


def read_model_config(path: str | Path) -> ModelConfig:
    """The validated config of a model file (without building the model)."""
    p, payload = _read_payload(path)
    try:
        return ModelConfig.from_dict(json.loads(payload["config"]))
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelFileError(f"{p}: the model config is missing or unreadable ({exc}).") from exc


def load_model_file(
    path: str | Path, *, marker: str | None = None, embedding_dim: int | None = None
) -> tuple[Any, ModelConfig]:
    """Load and validate a model file -> (SlideEncoder in eval mode, ModelConfig).

    `marker` / `embedding_dim`, when given, must match the file (clear `ModelFileError` otherwise).
    """
    p, payload = _read_payload(path)
    cfg = read_model_config(p)
    if marker is not None and cfg.marker != marker:
        raise ModelFileError(
            f"{p.name} is a {MARKERS.get(cfg.marker, cfg.marker)} model, not "
            f"{MARKERS.get(marker, marker)}. Pick the model file for {MARKERS.get(marker, marker)}."
        )
    if embedding_dim is not None and cfg.embedding_dim != embedding_dim:
        raise ModelFileError(
            f"{p.name} expects {cfg.embedding_dim}-d tile embeddings ({cfg.encoder_id}) but the tile "
            f"encoder gives {embedding_dim}-d; use the encoder the model was trained with."
        )
    try:
        net = SlideEncoder(**cfg.architecture)
        net.load_state_dict(payload["state_dict"], strict=True)
    except (TypeError, RuntimeError, KeyError, ValueError) as exc:
        raise ModelFileError(
            f"{p.name}: weights do not match the declared architecture {cfg.architecture} ({exc}). "
            "The file is damaged or was edited; write it again with save_model_file."
        ) from exc
    if net.in_dim != cfg.embedding_dim or net.n_classes != len(cfg.class_names):
        raise ModelFileError(f"{p.name}: config and weights disagree on sizes; rewrite the file.")
    net.eval()
    return net, cfg


def load_bundled_model(marker: str) -> tuple[Any, ModelConfig]:
    """The package's default model for `marker` (clear error when it is not installed)."""
    p = bundled_model_path(marker)
    if not p.is_file():
        raise ModelFileError(
            f"no bundled {MARKERS[marker]} model: {p} is missing. Reinstall napari-histostain, or "
            "give a model file explicitly (CLI: --model {marker}=PATH; API: models={{...}})."
            .replace("{marker}", marker)
        )
    return load_model_file(p, marker=marker)


def seeded_model(marker: str, *, seed: int = 0, in_dim: int = 1280, encoder_id: str =
                 "efficientnet-lite0", **config: Any) -> tuple[Any, ModelConfig]:
    """An untrained SlideEncoder with seeded weights and a config saying so (tests, demos)."""
    arch = config.pop("architecture", {})
    gen_state = torch.random.get_rng_state()
    try:
        torch.manual_seed(seed)
        net = SlideEncoder(in_dim=in_dim, **arch).eval()
    finally:
        torch.random.set_rng_state(gen_state)
    cfg = ModelConfig(
        marker=_check_marker(marker), encoder_id=encoder_id, embedding_dim=in_dim,
        architecture=net.config,
        training={"kind": "untrained", "note": f"random weights, seed {seed}; not a real model"},
        **config,
    )
    return net, cfg
