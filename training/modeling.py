"""Adapter between the trainer and the inference engine's `SlideEncoder` and model files."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def build_slide_encoder(in_dim: int, n_classes: int, **kwargs: Any):
    """A fresh `napari_histostain.model.SlideEncoder` for `in_dim`-d tiles and `n_classes` classes."""
    from napari_histostain.engine.slide_model import SlideEncoder

    return SlideEncoder(in_dim=in_dim, n_classes=n_classes, **kwargs)


def embed_bags(model, x, mask=None):
    """(B, N, D) tile embeddings -> (B, E) slide embeddings (attention-pooled projections);
    `mask` (B, N) bool marks real tiles of padded bags."""
    return model(x, mask).embedding


def class_logits(model, emb):
    """(B, E) slide embeddings -> (B, C) class logits (the engine's head is linear, so this equals
    the attention-weighted sum of tile logits used at inference)."""
    return model.head(emb)


def model_init_kwargs(model) -> dict[str, Any]:
    return dict(model.config)


def save_model(path: str | Path, model, config: dict[str, Any]) -> Path:
    """Write a model file in the engine's format from the trainer's config dict."""
    from napari_histostain.engine.encoders import is_preset
    from napari_histostain.engine.model_files import ModelConfig, save_model_file

    classes = list(config["classes"])
    names = list(config.get("class_names") or classes)
    training = {**config.get("training", {}), "label_values": classes}
    cv = training.get("cv_out_of_fold") or {}
    mcfg = ModelConfig(
        marker=config["marker"],
        encoder_id=config["encoder"],
        embedding_dim=int(model.in_dim),
        tile_size=int(config["tile_size"]),
        tile_mpp=float(config["tile_mpp"]),
        class_names=names,
        positive_class=len(classes) - 1,
        threshold=0.5,
        training={
            **training,
            "encoder_version": config.get("encoder_version"),
            "min_tissue": config.get("min_tissue"),
        },
        metrics={"cv_out_of_fold": cv},
        description=config.get("description", ""),
        encoder_preset=config["encoder"] if is_preset(config["encoder"]) else "",
        encoder_weights=config.get("encoder_weights") or "",
        domain=dict(config.get("domain") or {}),
        calibration=dict(config.get("calibration") or {}),
        domain_arrays=dict(config.get("domain_arrays") or {}),
    )
    return save_model_file(path, model, mcfg)


def load_model(path: str | Path):
    """(SlideEncoder in eval mode, trainer-style config dict) from a model file."""
    from napari_histostain.engine.model_files import load_model_file

    net, cfg = load_model_file(path)
    training = dict(cfg.training)
    classes = list(training.get("label_values") or cfg.class_names)
    return net, {
        "marker": cfg.marker,
        "classes": classes,
        "class_names": list(cfg.class_names),
        "encoder": cfg.encoder_id,
        "encoder_version": training.get("encoder_version"),
        "encoder_weights": cfg.encoder_weights,
        "tile_mpp": cfg.tile_mpp,
        "tile_size": cfg.tile_size,
        "training": training,
        "metrics": cfg.metrics,
        "calibration": dict(getattr(cfg, "calibration", None) or {}),
        "positive_class": int(cfg.positive_class),
    }
