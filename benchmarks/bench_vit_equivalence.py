"""Foundation-model presets vs their reference implementations, on the same random weights.

For each preset: build the timm model with the preset's published timm kwargs and seeded random
weights, write its state dict under the key names the hub checkpoint uses (timm names; Hugging
Face `Dinov2Model` names for Phikon-v2; `trunk.` + pooler for CONCH v1.5), load that through our
own loader (`convert_state_dict` + `load_checked`) and compare the pooled outputs on a float32
batch. Phikon-v2 is also compared with transformers' `Dinov2Model` when transformers is importable.
CONCH v1.5's reference is timm's ViT-L at 448 px with the DINO-interpolated pos_embed, then
`nn.MultiheadAttention` as the attentional pooler (TRIDENT's CONCHVisionTower, written out).

    PYTHONPATH=. python benchmarks/bench_vit_equivalence.py [--presets uni,virchow2] [--batch 2]
        [--tiny] [--device cuda]
    PYTHONPATH=. python benchmarks/bench_vit_equivalence.py \
        --write-shapes napari_histostain/engine/encoders/shapes   # the tests' shape fixtures

Run it with a Python where timm imports (timm's torchvision does not load beside the CPU build of
torch in the project's environment; any other torch + timm environment will do) and this checkout
first on PYTHONPATH. Prints one JSON object: per preset the max abs difference (pass: <= 1e-4) and
seconds; skips (JSON "skipped") where timm cannot be imported. On a GPU (--device cuda) both sides
run in float32 with TF32 off.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's package first
from napari_histostain.engine.encoders import foundation as P
from napari_histostain.engine.encoders.checkpoints import compact_shapes, load_checked

TOLERANCE = 1e-4
TINY_DIM = 96


def timm_model(preset: P.Preset, **overrides: Any) -> nn.Module:
    """The preset's timm model (random init), from its published timm name and kwargs."""
    import timm

    arch, kwargs = preset.timm
    kwargs = {**kwargs, **overrides}
    named = {"SwiGLUPacked": timm.layers.SwiGLUPacked, "SiLU": nn.SiLU}
    kwargs = {
        k: named.get(v, v) if isinstance(v, str) and k.endswith("_layer") else v
        for k, v in kwargs.items()
    }
    return timm.create_model(arch, pretrained=False, **kwargs)


def randomise_(model: nn.Module, seed: int) -> nn.Module:
    """Seeded random parameters with O(1) LayerScale and norm weights, so every block matters."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            r = torch.randn(p.shape, generator=gen)
            if name.endswith(".gamma") or name.endswith("lambda1"):
                p.copy_(0.2 + 0.05 * r)
            elif p.ndim == 1 and ("norm" in name or name.startswith(("ln_", "layernorm"))):
                p.copy_((1.0 if name.endswith("weight") else 0.0) + 0.1 * r)
            else:
                p.copy_(0.02 * r)
    return model


def conch_pooler_shapes(context: int = 1024) -> dict[str, list[int]]:
    """CONCH v1.5's pooler and final norm (TRIDENT CONCHVisionTower: AttentionalPooler(d_model=768,
    context_dim=1024, n_head=8, n_queries=1) and LayerNorm(768))."""
    return {
        "attn_pool_contrast.query": [1, 768],
        "attn_pool_contrast.ln_k.weight": [context],
        "attn_pool_contrast.ln_k.bias": [context],
        "attn_pool_contrast.ln_q.weight": [768],
        "attn_pool_contrast.ln_q.bias": [768],
        "attn_pool_contrast.to_q.weight": [768, 768],
        "attn_pool_contrast.to_kv.weight": [1536, context],
        "attn_pool_contrast.to_out.weight": [768, 768],
        "ln_contrast.weight": [768],
        "ln_contrast.bias": [768],
    }


def to_hf_dinov2(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """timm ViT names -> transformers Dinov2Model names (independent of our converter)."""
    out = {"embeddings.mask_token": torch.zeros(1, sd["cls_token"].shape[-1])}
    simple = {
        "cls_token": "embeddings.cls_token",
        "pos_embed": "embeddings.position_embeddings",
        "patch_embed.proj.weight": "embeddings.patch_embeddings.projection.weight",
        "patch_embed.proj.bias": "embeddings.patch_embeddings.projection.bias",
        "norm.weight": "layernorm.weight",
        "norm.bias": "layernorm.bias",
    }
    for k, v in sd.items():
        if k in simple:
            out[simple[k]] = v
            continue
        _, i, rest = k.split(".", 2)
        pre = f"encoder.layer.{i}."
        if rest.startswith("attn.qkv."):
            kind = rest.rsplit(".", 1)[1]
            for name, part in zip(("query", "key", "value"), v.chunk(3, dim=0)):
                out[f"{pre}attention.attention.{name}.{kind}"] = part
        else:
            rest = (
                rest.replace("attn.proj.", "attention.output.dense.")
                .replace("ls1.gamma", "layer_scale1.lambda1")
                .replace("ls2.gamma", "layer_scale2.lambda1")
            )
            out[pre + rest] = v
    return out


def installed_transformers_names(
    state: dict[str, torch.Tensor], hf: nn.Module
) -> dict[str, torch.Tensor]:
    """Published (transformers 4) Dinov2 names -> the installed transformers' names (5.x renamed
    attention.attention.query to attention.q_proj, attention.output.dense to attention.o_proj)."""
    if any(".attention.attention." in k for k in hf.state_dict()):
        return state
    renames = [
        (".attention.attention.query.", ".attention.q_proj."),
        (".attention.attention.key.", ".attention.k_proj."),
        (".attention.attention.value.", ".attention.v_proj."),
        (".attention.output.dense.", ".attention.o_proj."),
    ]
    out = {}
    for k, v in state.items():
        for a, b in renames:
            k = k.replace(a, b)
        out[k] = v
    return out


def hf_dinov2_model(preset: P.Preset) -> nn.Module:
    from transformers import Dinov2Config, Dinov2Model

    c = preset.vit
    cfg = Dinov2Config(
        hidden_size=c.embed_dim,
        num_hidden_layers=c.depth,
        num_attention_heads=c.num_heads,
        mlp_ratio=int(c.mlp_ratio),
        image_size=c.img_size,
        patch_size=c.patch_size,
        layerscale_value=c.init_values,
        layer_norm_eps=c.norm_eps,
        qkv_bias=True,
        use_swiglu_ffn=False,
        hidden_act="gelu",
    )
    return Dinov2Model(cfg)


def published_state(preset: P.Preset, ref: nn.Module, seed: int) -> dict[str, torch.Tensor]:
    """The reference weights under the names of the preset's published checkpoint."""
    sd = ref.state_dict()
    if preset.key_format == "hf-dinov2":
        return to_hf_dinov2(sd)
    if preset.head == "conch":
        gen = torch.Generator().manual_seed(seed + 1)
        pool = {
            k: (
                torch.randn(s, generator=gen) * (0.1 if len(s) == 1 else 0.05)
                + (
                    1.0
                    if k.endswith("ln_k.weight")
                    or k.endswith("ln_q.weight")
                    or k == "ln_contrast.weight"
                    else 0.0
                )
            )
            for k, s in conch_pooler_shapes(preset.vit.embed_dim).items()
        }
        return {**{"trunk." + k: v for k, v in sd.items()}, **pool}
    return sd


def reference_output(
    preset: P.Preset, ref: nn.Module, state: dict[str, torch.Tensor], x: torch.Tensor
) -> torch.Tensor:
    """What the published pipeline returns for `x` (TRIDENT's forward for the preset)."""
    if preset.head == "conch":
        return conch_reference(preset, ref, state, x)
    out = ref(x)
    if preset.vit.pool == "cls+mean":  # Virchow2: global_pool='' gives every token
        return torch.cat([out[:, 0], out[:, preset.vit.num_prefix_tokens :].mean(1)], dim=1)
    return out


def conch_reference(
    preset: P.Preset, trunk224: nn.Module, state: dict[str, torch.Tensor], x: torch.Tensor
) -> torch.Tensor:
    """timm ViT-L at the input size with iBOT's interpolate_pos_encoding, then MHA pooling."""
    g = preset.vit.grid
    new = x.shape[-1] // preset.vit.patch_size
    big = timm_model(preset_with_timm(preset), img_size=x.shape[-1]).to(x.device)
    sd = {k: v for k, v in trunk224.state_dict().items()}
    pos = sd["pos_embed"]
    grid = pos[:, 1:].reshape(1, g, g, -1).permute(0, 3, 1, 2)
    grid = F.interpolate(grid, scale_factor=((new + 0.1) / g, (new + 0.1) / g), mode="bicubic")
    grid = grid.permute(0, 2, 3, 1).reshape(1, -1, pos.shape[-1])
    sd["pos_embed"] = torch.cat([pos[:, :1], grid], dim=1)
    big.load_state_dict(sd)
    tokens = big.eval().forward_features(x)
    s = {k.split(".", 1)[1]: v for k, v in state.items() if k.startswith("attn_pool_contrast.")}
    c = preset.vit.embed_dim
    mha = nn.MultiheadAttention(768, 8, bias=False, kdim=c, vdim=c, batch_first=True).to(x.device)
    k_w, v_w = s["to_kv.weight"].chunk(2, dim=0)
    mha.q_proj_weight.data = s["to_q.weight"]
    mha.k_proj_weight.data, mha.v_proj_weight.data = k_w, v_w
    mha.out_proj.weight.data = s["to_out.weight"]
    ctx = F.layer_norm(tokens, (c,), s["ln_k.weight"], s["ln_k.bias"])
    q = F.layer_norm(s["query"], (768,), s["ln_q.weight"], s["ln_q.bias"])
    q = q.expand(x.shape[0], -1, -1)
    pooled = mha.eval()(q, ctx, ctx, need_weights=False)[0][:, 0]
    return F.layer_norm(pooled, (768,), state["ln_contrast.weight"], state["ln_contrast.bias"])


def preset_with_timm(preset: P.Preset) -> P.Preset:
    """CONCH's trunk as a timm model: ViT-L/16, qkv bias, LayerScale 1.0 (TRIDENT vit_large)."""
    if preset.timm is not None:
        return preset
    from dataclasses import replace

    v = preset.vit
    return replace(
        preset,
        timm=(
            "vit_large_patch16_224",
            {
                "img_size": v.img_size,
                "patch_size": v.patch_size,
                "embed_dim": v.embed_dim,
                "depth": v.depth,
                "num_heads": v.num_heads,
                "init_values": v.init_values,
                "num_classes": 0,
            },
        ),
    )


def compare(preset: P.Preset, batch: int, seed: int = 0, device: str = "cpu") -> dict[str, Any]:
    """Our preset vs its reference on the same random weights, float32 on `device`."""
    t0 = time.perf_counter()
    torch.manual_seed(seed)
    ref = randomise_(timm_model(preset_with_timm(preset)), seed).eval()
    state = published_state(preset, ref, seed)
    with torch.device("meta"):
        ours = P.build_model(preset)
    load_checked(ours, P.convert_checkpoint(state, preset), what=preset.name)
    ours.eval()
    x = torch.randn(
        batch, 3, preset.tile_size, preset.tile_size, generator=torch.Generator().manual_seed(seed)
    )
    dev = torch.device(device)
    if dev.type != "cpu":
        ref, ours, x = ref.to(dev), ours.to(dev), x.to(dev)
        state = {k: v.to(dev) for k, v in state.items()}
    with torch.no_grad():
        expected = reference_output(preset, ref, state, x)
        got = ours(x.contiguous(memory_format=torch.channels_last))
    row: dict[str, Any] = {
        "reference": f"timm {preset_with_timm(preset).timm[0]}",
        "shape": list(got.shape),
        "max_abs_diff": _diff(got, expected),
        "ref_max_abs": float(expected.abs().max()),
    }
    if preset.key_format == "hf-dinov2":
        try:
            hf = hf_dinov2_model(preset).eval()
            hf.load_state_dict(installed_transformers_names(state, hf))
            hf.to(x.device)
            with torch.no_grad():
                row["max_abs_diff_transformers"] = _diff(got, hf(x).last_hidden_state[:, 0])
        except ImportError:
            row["max_abs_diff_transformers"] = None
    row["seconds"] = round(time.perf_counter() - t0, 1)
    diffs = (row["max_abs_diff"], row.get("max_abs_diff_transformers"))
    row["ok"] = all(d is None or d <= TOLERANCE for d in diffs)
    del ref, ours, state
    return row


def _diff(a: torch.Tensor, b: torch.Tensor) -> float:
    if a.shape != b.shape:
        raise AssertionError(f"shapes differ: {tuple(a.shape)} vs {tuple(b.shape)}")
    return float((a - b).abs().max())


def tiny(preset: P.Preset) -> P.Preset:
    """The preset with depth 2 and width 96 (same code paths, seconds on a CPU; 96 keeps the
    SwiGLU hidden sizes even)."""
    from dataclasses import replace

    small = P.with_config(preset, depth=2, embed_dim=TINY_DIM, num_heads=4)
    if preset.timm is None:
        return small
    arch, kwargs = preset.timm
    return replace(
        small, timm=(arch, {**kwargs, "depth": 2, "embed_dim": TINY_DIM, "num_heads": 4})
    )


def write_shapes(folder: Path) -> None:
    """shapes/<preset>.json: every parameter name and shape of the published checkpoint."""
    import timm

    folder.mkdir(parents=True, exist_ok=True)
    for name, preset in P.PRESETS.items():
        if preset.random_seed is not None:
            continue
        p = preset_with_timm(preset)
        with torch.device("meta"):
            ref = timm_model(p)
            if preset.key_format == "hf-dinov2":
                sd = to_hf_dinov2(ref.state_dict())
                source = (
                    f"timm {timm.__version__} {p.timm[0]} {json.dumps(p.timm[1])} under "
                    "transformers 4 Dinov2Model names (as published)"
                )
            else:
                sd = ref.state_dict()
                source = f"timm {timm.__version__} {p.timm[0]} {json.dumps(p.timm[1])}"
        params = {k: list(v.shape) for k, v in sd.items()}
        if preset.head == "conch":
            params = {
                **{"trunk." + k: s for k, s in params.items()},
                **conch_pooler_shapes(preset.vit.embed_dim),
            }
            source += " as trunk. + TRIDENT CONCHVisionTower pooler"
        doc = {"preset": name, "hub": preset.hub, "source": source, **compact_shapes(params)}
        (folder / f"{name}.json").write_text(json.dumps(doc, indent=1) + "\n")
        print(f"{name}: {len(params)} tensors -> {folder / (name + '.json')}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--presets", default="", help="comma-separated (default: all)")
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--tiny", action="store_true", help="depth 2, width 96 versions")
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--device", default="cpu", help="cpu or cuda (float32, TF32 off)")
    ap.add_argument("--write-shapes", type=Path, default=None)
    args = ap.parse_args(argv)
    try:
        import timm
    except Exception as exc:  # ImportError, or torchvision failing inside timm
        print(json.dumps({"skipped": f"timm is not importable: {exc}"}))
        return 0
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    if args.write_shapes:
        write_shapes(args.write_shapes)
        return 0
    names = [n for n in (args.presets.split(",") if args.presets else P.PRESETS) if n]
    results: dict[str, Any] = {
        "torch": torch.__version__,
        "timm": timm.__version__,
        "batch": args.batch,
        "tiny": args.tiny,
        "dtype": "float32",
        "device": args.device,
        "tolerance": TOLERANCE,
        "presets": {},
    }
    for name in names:
        preset = P.PRESETS[name]
        row = compare(tiny(preset) if args.tiny else preset, args.batch, device=args.device)
        results["presets"][name] = row
        print(f"{name}: {row}", file=sys.stderr, flush=True)
    results["all_ok"] = all(r["ok"] for r in results["presets"].values())
    print(json.dumps(results, indent=1))
    return 0 if results["all_ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
