"""Versioned HistoStainAlign model files: `ModelConfig` + weights, loadable with `weights_only=True`.

A model file is a `torch.save`d dict {format, format_version, config (JSON text), state_dict},
loadable with `weights_only=True`; a human-readable copy of the config sits beside it as .json.
"""

from __future__ import annotations

import copy
import dataclasses
import datetime as _dt
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .. import __version__
from ..defaults import IMAGENET_MEAN, IMAGENET_STD, TILE_MPP, TILE_SIZE
from ..errors import HistostainError
from ..markers import MARKERS
from .prediction import call_label
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
    #: the domain reference's summary (method, dims, thresholds, false-flag rate, fitted on);
    #: empty in older files: no domain check (`engine.domain`)
    domain: dict = field(default_factory=dict)
    #: probability calibration {"method": "temperature" | "platt", "temperature", "bias"
    #: (platt), "fitted_on", "cases"};
    #: empty in older files: probabilities as the model gives them (`engine.calibration`)
    calibration: dict = field(default_factory=dict)
    format_version: int = FORMAT_VERSION
    created: str = ""
    package_version: str = __version__
    #: the domain reference's arrays (name -> float32 array); kept in the model file's payload next
    #: to the weights, not in the JSON config
    domain_arrays: dict = field(default_factory=dict, repr=False, compare=False)

    @property
    def marker_name(self) -> str:
        return MARKERS.get(self.marker, self.marker)

    def label_for(self, probability: float) -> str | None:
        """The class name called at `probability` of the positive class (None: no probability)."""
        return call_label(probability, self.class_names, self.positive_class, self.threshold)

    def to_dict(self) -> dict:
        """The JSON form (without the domain arrays, which live in the payload)."""
        return {
            f.name: copy.deepcopy(getattr(self, f.name))
            for f in dataclasses.fields(self)
            if f.name != "domain_arrays"
        }

    @classmethod
    def from_dict(cls, d: dict) -> ModelConfig:
        """A config from its JSON form, validated (`validate`)."""
        if not isinstance(d, dict):
            raise ModelFileError(f"the model config is a {type(d).__name__}, not a JSON object")
        known = {f.name for f in dataclasses.fields(cls)} - {"domain_arrays"}
        missing = [k for k in ("marker",) if k not in d]
        if missing:
            raise ModelFileError(f"model config lacks {', '.join(missing)}")
        return cls(**{k: v for k, v in d.items() if k in known}).validate()

    def validate(self) -> ModelConfig:
        """Check every field's type and range (`ModelFileError` naming the field); return self.

        Run when a model file is read, so a damaged or hand-edited config fails before any slide
        is read, not when the slide's call is made.
        """
        problems = _config_problems(self)
        if problems:
            raise ModelFileError("the model config has " + "; ".join(problems))
        return self


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _is_whole(value: Any, low: int = 1) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= low


def _config_problems(cfg: ModelConfig) -> list[str]:
    """What is wrong with a config's fields, as phrases (empty: nothing)."""
    out = []
    if cfg.marker not in MARKERS:
        out.append(f"unknown marker {cfg.marker!r} (choose one of {', '.join(MARKERS)})")
    if not isinstance(cfg.encoder_id, str) or not cfg.encoder_id.strip():
        out.append(f"encoder_id {cfg.encoder_id!r} (must name a tile encoder)")
    for name in ("embedding_dim", "tile_size"):
        if not _is_whole(getattr(cfg, name)):
            out.append(f"{name} {getattr(cfg, name)!r} (must be a whole number >= 1)")
    if not (_is_number(cfg.tile_mpp) and cfg.tile_mpp > 0):
        out.append(f"tile_mpp {cfg.tile_mpp!r} (must be a number > 0)")
    names = cfg.class_names
    if (
        not isinstance(names, list)
        or len(names) < 2
        or not all(isinstance(c, str) and c for c in names)
        or len(set(names)) != len(names)
    ):
        out.append(f"class_names {names!r} (must be two or more different names)")
    elif not (_is_whole(cfg.positive_class, 0) and cfg.positive_class < len(names)):
        out.append(
            f"positive_class {cfg.positive_class!r} (must be the index of one of {len(names)} "
            "class_names, from 0)"
        )
    if not (_is_number(cfg.threshold) and 0.0 < cfg.threshold < 1.0):
        out.append(f"threshold {cfg.threshold!r} (must be a number between 0 and 1)")
    norm = cfg.normalisation
    if not (
        isinstance(norm, dict)
        and all(
            isinstance(norm.get(k), list)
            and len(norm[k]) == 3
            and all(_is_number(v) for v in norm[k])
            for k in ("mean", "std")
        )
        and all(v > 0 for v in norm["std"])
    ):
        out.append(
            f"normalisation {norm!r} (must be {{'mean': [3 numbers], 'std': [3 numbers > 0]}})"
        )
    for name in ("architecture", "training", "metrics", "domain", "calibration"):
        if not isinstance(getattr(cfg, name), dict):
            out.append(f"{name} of type {type(getattr(cfg, name)).__name__} (must be an object)")
    cal = cfg.calibration
    if isinstance(cal, dict) and cal:
        t: Any = cal.get("temperature")
        if not (_is_number(t) and t > 0):
            out.append(f"calibration temperature {t!r} (must be a number > 0)")
        b: Any = cal.get("bias", 0.0)
        if not (_is_number(b) and math.isfinite(b)):
            out.append(f"calibration bias {b!r} (must be a finite number)")
        if cal.get("method", "temperature") not in ("temperature", "platt"):
            out.append(f"calibration method {cal.get('method')!r} (temperature or platt)")
    if not isinstance(cfg.description, str):
        out.append("a description that is not text")
    return out


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
    cfg.validate()
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
    if cfg.domain_arrays:
        payload["domain_arrays"] = {
            k: torch.as_tensor(np.asarray(v)).clone() for k, v in cfg.domain_arrays.items()
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
    except ModelFileError as exc:
        raise ModelFileError(
            f"{p}: {exc}. The file was damaged or edited; use the model file as training wrote it."
        ) from exc
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
    cfg.domain_arrays = _domain_arrays(p, payload)
    net.eval()
    return net, cfg


def _domain_arrays(p: Path, payload: dict) -> dict:
    """The payload's domain-reference arrays as numpy (empty: none stored)."""
    arrays = payload.get("domain_arrays") or {}
    if not isinstance(arrays, dict) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in arrays.items()
    ):
        raise ModelFileError(f"{p.name}: the domain reference is unreadable; rewrite the file.")
    return {k: v.numpy() for k, v in arrays.items()}


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
