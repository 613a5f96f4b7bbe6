"""Versioned HistoStainAlign model files: `ModelConfig` + weights, loadable with `weights_only=True`.

A model file is a `torch.save`d dict {format, format_version, config (JSON text), state_dict},
loadable with `weights_only=True`; a human-readable copy of the config sits beside it as .json.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from .. import __version__
from ..defaults import IMAGENET_MEAN, IMAGENET_STD, TILE_MPP, TILE_SIZE
from ..errors import HistostainError
from ..markers import MARKERS
from .slide_model import SlideEncoder

FORMAT = "histostainalign-slide-model"
FORMAT_VERSION = 1
MODELS_DIR = Path(__file__).resolve().parent.parent / "models"


class ModelFileError(HistostainError):
    """A model file is missing, corrupt, of another format or does not fit the request."""


@dataclass
class ModelConfig:
    """Everything needed to use a slide model, stored as JSON inside the model file."""

    marker: str
    encoder_id: str = "efficientnet-lite0"
    embedding_dim: int = 1280
    tile_size: int = TILE_SIZE
    tile_mpp: float = TILE_MPP
    normalisation: dict = field(
        default_factory=lambda: {"mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD)}
    )
    class_names: list = field(default_factory=lambda: ["negative", "positive"])
    positive_class: int = 1
    threshold: float = 0.5
    architecture: dict = field(default_factory=dict)  # SlideEncoder kwargs (filled on save)
    training: dict = field(
        default_factory=dict
    )  # training-data summary (cases, source, simulated?)
    metrics: dict = field(default_factory=dict)  # validation metrics (AUC, accuracy, ...)
    description: str = ""
    #: the foundation-model preset of the tile encoder ("" for the built-in encoders)
    encoder_preset: str = ""
    #: fingerprint of the tile encoder's weights ("sha256:..."; "" in older files: not checked)
    encoder_weights: str = ""
    format_version: int = FORMAT_VERSION
    created: str = ""
    package_version: str = __version__

    @property
    def marker_name(self) -> str:
        return MARKERS.get(self.marker, self.marker)

    def label_for(self, probability: float) -> str | None:
        """The class name called at `probability` of the positive class (None: no probability)."""
        if math.isnan(probability):
            return None
        names = list(self.class_names)
        if probability >= self.threshold:
            return names[self.positive_class]
        others = [c for i, c in enumerate(names) if i != self.positive_class]
        return others[0] if len(others) == 1 else "not " + names[self.positive_class]

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> ModelConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        missing = [k for k in ("marker",) if k not in d]
        if missing:
            raise ModelFileError(f"model config lacks {', '.join(missing)}")
        return cls(**{k: v for k, v in d.items() if k in known})


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
    from ..io.atomic import atomic_path, write_json

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
            "give a model file explicitly (CLI: --model {marker}=PATH; API: models={{...}}).".replace(
                "{marker}", marker
            )
        )
    return load_model_file(p, marker=marker)


def seeded_model(
    marker: str,
    *,
    seed: int = 0,
    in_dim: int = 1280,
    encoder_id: str = "efficientnet-lite0",
    **config: Any,
) -> tuple[Any, ModelConfig]:
    """An untrained SlideEncoder with seeded weights and a config saying so (tests, demos)."""
    arch = config.pop("architecture", {})
    gen_state = torch.random.get_rng_state()
    try:
        torch.manual_seed(seed)
        net = SlideEncoder(in_dim=in_dim, **arch).eval()
    finally:
        torch.random.set_rng_state(gen_state)
    cfg = ModelConfig(
        marker=_check_marker(marker),
        encoder_id=encoder_id,
        embedding_dim=in_dim,
        architecture=net.config,
        training={"kind": "untrained", "note": f"random weights, seed {seed}; not a real model"},
        **config,
    )
    return net, cfg
