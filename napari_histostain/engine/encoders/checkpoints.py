"""Reading foundation-model checkpoints and bringing them to the ViT's (timm's) names and shapes.

`read_state_dict` reads .safetensors (with the safetensors package) and torch.save'd files;
`convert_state_dict` accepts the layouts the models are published or trained in: timm names (as on
the hubs), Hugging Face `Dinov2Model` names (transformers 4 and 5), DINOv2 names (`w12`/`w3`,
`register_tokens`, chunked blocks, `teacher`/`backbone.`), timm's unpacked SwiGLU (`fc1_g`/`fc1_x`),
`{"state_dict": ...}` / `module.` wrappers, and a `pos_embed` made for another grid;
`load_checked` loads with one error listing what is missing, unexpected or mis-shaped.
`compact_shapes` / `expand_shapes` store a published shape list with the repeated blocks once.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .base import EncoderError
from .vit import ViTConfig


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Tensors of a .safetensors file or a torch.save'd (.bin/.pth/.pt) state dict, on the CPU."""
    path = Path(path)
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(path, device="cpu")
        try:
            state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except RuntimeError:  # a legacy (non-zip) file cannot be memory-mapped
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise EncoderError(f"could not read the weights file {path}: {exc}") from exc
    if not isinstance(state, Mapping):
        raise EncoderError(f"{path} holds a {type(state).__name__}, not a state dict")
    return dict(state)


def load_checked(
    model: nn.Module, state: Mapping[str, torch.Tensor], what: str, hint: str = ""
) -> None:
    """`model.load_state_dict(state, assign=True)` after checking every name and shape, raising
    one EncoderError that lists what is missing, unexpected or of the wrong shape."""
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    got = {k: tuple(v.shape) for k, v in state.items()}
    missing = sorted(expected.keys() - got.keys())
    unexpected = sorted(got.keys() - expected.keys())
    wrong = sorted(
        f"{k} {got[k]} (expected {expected[k]})"
        for k in expected.keys() & got.keys()
        if got[k] != expected[k]
    )
    if missing or unexpected or wrong:
        parts = [
            f"{label}: {', '.join(items[:5])}{' ...' if len(items) > 5 else ''}"
            for label, items in (
                ("missing", missing),
                ("unexpected", unexpected),
                ("wrong shape", wrong),
            )
            if items
        ]
        raise EncoderError(f"{what} do not fit the network ({'; '.join(parts)}). {hint}".strip())
    model.load_state_dict(dict(state), strict=True, assign=True)


_WRAPPERS = ("state_dict", "model", "teacher", "module")
_PREFIXES = ("module.", "backbone.", "teacher.", "dinov2.", "model.")
_HF_RULES = [
    (r"^embeddings\.cls_token$", "cls_token"),
    (r"^embeddings\.register_tokens$", "reg_token"),
    (r"^embeddings\.position_embeddings$", "pos_embed"),
    (r"^embeddings\.patch_embeddings\.projection\.", "patch_embed.proj."),
    (r"^encoder\.layer\.(\d+)\.norm([12])\.", r"blocks.\1.norm\2."),
    (r"^encoder\.layer\.(\d+)\.attention\.(?:output\.dense|o_proj)\.", r"blocks.\1.attn.proj."),
    (r"^encoder\.layer\.(\d+)\.layer_scale([12])\.lambda1$", r"blocks.\1.ls\2.gamma"),
    (r"^encoder\.layer\.(\d+)\.mlp\.fc([12])\.", r"blocks.\1.mlp.fc\2."),
    (r"^encoder\.layer\.(\d+)\.mlp\.weights_in\.", r"blocks.\1.mlp.fc1."),
    (r"^encoder\.layer\.(\d+)\.mlp\.(?:weights_out|down_proj)\.", r"blocks.\1.mlp.fc2."),
    (r"^layernorm\.", "norm."),
]


def convert_state_dict(
    state: Mapping[str, Any], cfg: ViTConfig, *, trunk: str = "", resample: str = "bicubic"
) -> dict[str, torch.Tensor]:
    """A checkpoint's tensors under the ViT's (timm's) names and shapes.

    `trunk`: the prefix of the ViT's tensors in the file ("trunk." for CONCH; other tensors pass
    unchanged); `resample`: how a `pos_embed` of another grid is resized ("bicubic", antialiased,
    as timm; "bilinear" as CONCH). Unwraps {"state_dict"|"model"|"teacher": ...} and common
    prefixes, converts Hugging Face `Dinov2Model` names, DINOv2 names and unpacked SwiGLU, drops
    `mask_token` and classifier heads.
    """
    sd = _unwrap(state)
    body = {k[len(trunk) :]: v for k, v in sd.items() if k.startswith(trunk)}
    rest = {k: v for k, v in sd.items() if not k.startswith(trunk)}
    if any(k.startswith("embeddings.") for k in body):
        body = _from_hf_dinov2(body)
    body = _from_dinov2(body, cfg)
    body = _pack_swiglu(body)
    body = {
        k: v
        for k, v in body.items()
        if k != "mask_token" and not k.startswith(("head.", "fc_norm."))
    }
    if "pos_embed" in body:
        body["pos_embed"] = _fit_pos_embed(body["pos_embed"], cfg, resample)
    return {**rest, **{trunk + k: v for k, v in body.items()}}


def _unwrap(state: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    sd: Mapping[str, Any] = state
    for key in _WRAPPERS:
        if isinstance(sd.get(key), Mapping):
            sd = sd[key]
            break
    out = {k: v for k, v in sd.items() if isinstance(v, torch.Tensor)}
    if any(k.startswith("backbone.") for k in out):  # a DINOv2 / SSL checkpoint with its heads
        out = {k: v for k, v in out.items() if k.startswith("backbone.")}
    for prefix in _PREFIXES:
        if out and all(k.startswith(prefix) for k in out):
            out = {k[len(prefix) :]: v for k, v in out.items()}
    return out


def _from_hf_dinov2(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """transformers `Dinov2Model` names, as published (4.x: attention.attention.query, mlp.fc1 or
    mlp.weights_in) or as transformers 5 saves them (attention.q_proj, mlp.gate_proj/up_proj)."""
    out: dict[str, torch.Tensor] = {}
    parts: dict[tuple[str, str, str], dict[str, torch.Tensor]] = {}
    for k, v in sd.items():
        m = re.match(
            r"^encoder\.layer\.(\d+)\.(?:attention\.attention\.(query|key|value)"
            r"|attention\.([qkv])_proj|mlp\.(gate|up)_proj)\.(\w+)$",
            k,
        )
        if m:
            group = "mlp" if m[4] else "attn"
            part = m[2] or {"q": "query", "k": "key", "v": "value"}.get(m[3] or "", m[4])
            parts.setdefault((m[1], group, m[5]), {})[part] = v
            continue
        if k == "embeddings.mask_token":
            continue
        for pattern, repl in _HF_RULES:
            new, n = re.subn(pattern, repl, k)
            if n:
                k = new
                break
        out[k] = v
    for (layer, group, kind), p in parts.items():
        if group == "attn":
            out[f"blocks.{layer}.attn.qkv.{kind}"] = torch.cat([p["query"], p["key"], p["value"]])
        else:
            out[f"blocks.{layer}.mlp.fc1.{kind}"] = torch.cat([p["gate"], p["up"]])
    return out


def _from_dinov2(sd: dict[str, torch.Tensor], cfg: ViTConfig) -> dict[str, torch.Tensor]:
    if any(re.match(r"^blocks\.\d+\.\d+\.", k) for k in sd):  # FSDP block chunks
        sd = {re.sub(r"^blocks\.\d+\.(\d+)\.", r"blocks.\1.", k): v for k, v in sd.items()}
    sd = {
        re.sub(r"\.mlp\.w12\.", ".mlp.fc1.", re.sub(r"\.mlp\.w3\.", ".mlp.fc2.", k)): v
        for k, v in sd.items()
    }
    if "register_tokens" in sd:
        if not cfg.no_embed_class:
            raise EncoderError(
                "a DINOv2 checkpoint with registers needs a preset whose pos_embed covers the "
                "patches only (no_embed_class)"
            )
        sd["reg_token"] = sd.pop("register_tokens")
        pos = sd["pos_embed"]  # DINOv2 adds pos_embed[:, 0] to the class token only
        sd["cls_token"] = sd["cls_token"] + pos[:, :1]
        sd["pos_embed"] = pos[:, 1:]
    return sd


def _pack_swiglu(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    out = {}
    for k, v in sd.items():
        if ".mlp.fc1_x." in k:
            continue
        if ".mlp.fc1_g." in k:
            out[k.replace(".fc1_g.", ".fc1.")] = torch.cat([v, sd[k.replace("_g.", "_x.")]], 0)
        else:
            out[k] = v
    return out


def _fit_pos_embed(pos: torch.Tensor, cfg: ViTConfig, mode: str) -> torch.Tensor:
    num_prefix = 0 if cfg.no_embed_class else cfg.num_prefix_tokens
    n = pos.shape[1] - num_prefix
    g = math.isqrt(max(n, 0))
    if n == cfg.grid**2 or g * g != n:
        return pos  # fits, or not a square grid (load_checked reports the shape)
    grid = pos[:, num_prefix:].float().reshape(1, g, g, -1).permute(0, 3, 1, 2)
    grid = F.interpolate(
        grid,
        size=(cfg.grid, cfg.grid),
        mode=mode,
        align_corners=False,
        antialias=mode == "bicubic",
    )
    grid = grid.permute(0, 2, 3, 1).reshape(1, cfg.grid**2, -1).to(pos.dtype)
    return torch.cat([pos[:, :num_prefix], grid], dim=1)


_BLOCK = re.compile(r"^(blocks|trunk\.blocks|encoder\.layer)\.(\d+)\.(.+)$")


def compact_shapes(params: Mapping[str, list[int]]) -> dict[str, Any]:
    """A shape list with the repeated transformer blocks written once:
    {"params": {name: shape}, "blocks": {"prefix": "blocks", "count": N, "params": {...}}}.
    Raises ValueError unless every block has the same names and shapes (so it is lossless)."""
    rest: dict[str, list[int]] = {}
    blocks: dict[int, dict[str, list[int]]] = {}
    prefixes = set()
    for k, shape in params.items():
        m = _BLOCK.match(k)
        if m:
            prefixes.add(m[1])
            blocks.setdefault(int(m[2]), {})[m[3]] = list(shape)
        else:
            rest[k] = list(shape)
    if not blocks:
        return {"params": rest}
    first = blocks[0]
    if (
        len(prefixes) != 1
        or sorted(blocks) != list(range(len(blocks)))
        or any(b != first for b in blocks.values())
    ):
        raise ValueError("the blocks differ; store the full list")
    out = {
        "params": rest,
        "blocks": {"prefix": prefixes.pop(), "count": len(blocks), "params": first},
    }
    if expand_shapes(out) != {k: list(v) for k, v in params.items()}:
        raise ValueError("compact_shapes is not lossless here")
    return out


def expand_shapes(compact: Mapping[str, Any]) -> dict[str, list[int]]:
    """The full {name: shape} list of a `compact_shapes` result (block names in order)."""
    out = {k: list(v) for k, v in compact["params"].items()}
    b = compact.get("blocks")
    if b:
        for i in range(b["count"]):
            out.update({f"{b['prefix']}.{i}.{k}": list(v) for k, v in b["params"].items()})
    return out
