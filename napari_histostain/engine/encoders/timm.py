"""A timm backbone with local weights, when timm is importable (it is not beside the CPU torch build)."""

from __future__ import annotations

from pathlib import Path

from ...defaults import IMAGENET_MEAN, IMAGENET_STD
from .base import EncoderError, TileEncoder


def timm_encoder(model_name: str, checkpoint: str | Path | None) -> TileEncoder:
    """A timm backbone (num_classes=0) with local weights; timm is imported only here."""
    import torch

    try:
        import timm
    except Exception as exc:  # ImportError, or torchvision failing inside timm
        raise EncoderError(
            f"timm:{model_name} needs the timm package, which is not usable here ({exc}). Install "
            "timm, or export your encoder to TorchScript and give its path instead."
        ) from exc
    if checkpoint is None:
        raise EncoderError(f"timm:{model_name} needs a local checkpoint (checkpoint=PATH).")
    try:
        net = timm.create_model(model_name, pretrained=False, num_classes=0)
        state = torch.load(checkpoint, map_location="cpu", weights_only=True)
        state = state.get("state_dict", state) if isinstance(state, dict) else state
        net.load_state_dict(
            {k: v for k, v in state.items() if not k.startswith(("head.fc", "fc.", "classifier."))}
        )
    except Exception as exc:
        raise EncoderError(f"could not build timm:{model_name} from {checkpoint}: {exc}") from exc
    cfg = getattr(net, "pretrained_cfg", {}) or {}
    return TileEncoder(
        net,
        net,
        id=f"timm:{model_name}",
        dim=net.num_features,
        mean=cfg.get("mean", IMAGENET_MEAN),
        std=cfg.get("std", IMAGENET_STD),
    )
