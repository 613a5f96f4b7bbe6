"""A plain-torch Vision Transformer for foundation-model tile encoders.

Parameter names and shapes are those of timm's `VisionTransformer` (`cls_token`, `reg_token`,
`pos_embed`, `patch_embed.proj`, `blocks.N.{norm1,attn.qkv,attn.proj,ls1.gamma,norm2,mlp.fc1,
mlp.fc2,ls2.gamma}`, `norm`), so the timm-style checkpoints published on the hubs load as they are;
`AttnPoolViT` adds CONCH v1.5's attentional pooling head under its own names (`trunk.`,
`attn_pool_contrast.`, `ln_contrast.`). Needs only torch: attention is
`F.scaled_dot_product_attention`, and nothing casts, so bf16/fp16 autocast works on a GPU.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

MlpKind = Literal["gelu", "swiglu"]
Pool = Literal["cls", "cls+mean", "tokens"]
PosInterp = Literal["timm", "dino"]


@dataclass(frozen=True)
class ViTConfig:
    """Architecture of one ViT; field names follow timm's keyword arguments.

    `mlp="swiglu"` is timm's `SwiGLUPacked` (fc1 gives [gate, value], fc2 takes half of
    `int(embed_dim * mlp_ratio)`); `no_embed_class` means `pos_embed` covers the patches only;
    `pool` is what `forward` returns: the class token, the class token followed by the mean of
    the patch tokens (registers excluded), or every token. `pos_interp` is how `pos_embed` is
    resized for another input size: "timm" (bicubic to the new grid, antialiased) or "dino"
    (DINO / iBOT: bicubic by a scale factor of (grid + 0.1) / old grid).
    """

    img_size: int = 224
    patch_size: int = 16
    embed_dim: int = 768
    depth: int = 12
    num_heads: int = 12
    mlp_ratio: float = 4.0
    mlp: MlpKind = "gelu"
    qkv_bias: bool = True
    init_values: float | None = None
    reg_tokens: int = 0
    no_embed_class: bool = False
    norm_eps: float = 1e-6
    pool: Pool = "cls"
    pos_interp: PosInterp = "timm"

    @property
    def grid(self) -> int:
        return self.img_size // self.patch_size

    @property
    def num_prefix_tokens(self) -> int:
        return 1 + self.reg_tokens

    @property
    def mlp_hidden(self) -> int:
        """fc1's output size, computed as timm does."""
        return int(self.embed_dim * self.mlp_ratio)

    @property
    def out_dim(self) -> int:
        return self.embed_dim * (2 if self.pool == "cls+mean" else 1)


class Attention(nn.Module):
    """Multi-head self-attention with a packed qkv projection."""

    def __init__(self, dim: int, num_heads: int, qkv_bias: bool = True) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        qkv = self.qkv(x).view(b, n, 3, self.num_heads, c // self.num_heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)
        x = F.scaled_dot_product_attention(q, k, v)
        return self.proj(x.transpose(1, 2).reshape(b, n, c))


class Mlp(nn.Module):
    """fc1 -> GELU (exact) -> fc2."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x)))


class SwiGLUPacked(nn.Module):
    """fc1 -> [gate, value] -> silu(gate) * value -> fc2 (timm SwiGLUPacked; DINOv2 w12, w3)."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        if hidden % 2:
            raise ValueError(f"a packed SwiGLU needs an even hidden size, got {hidden}")
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden // 2, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate, value = self.fc1(x).chunk(2, dim=-1)
        return self.fc2(F.silu(gate) * value)


class LayerScale(nn.Module):
    """Per-channel residual-branch scale (`gamma`)."""

    def __init__(self, dim: int, init_values: float) -> None:
        super().__init__()
        self.gamma = nn.Parameter(torch.full((dim,), float(init_values)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gamma


class Block(nn.Module):
    """Pre-norm transformer block with optional LayerScale."""

    def __init__(self, cfg: ViTConfig) -> None:
        super().__init__()
        dim = cfg.embed_dim
        self.norm1 = nn.LayerNorm(dim, eps=cfg.norm_eps)
        self.attn = Attention(dim, cfg.num_heads, cfg.qkv_bias)
        self.ls1 = LayerScale(dim, cfg.init_values) if cfg.init_values else nn.Identity()
        self.norm2 = nn.LayerNorm(dim, eps=cfg.norm_eps)
        mlp = SwiGLUPacked if cfg.mlp == "swiglu" else Mlp
        self.mlp = mlp(dim, cfg.mlp_hidden)
        self.ls2 = LayerScale(dim, cfg.init_values) if cfg.init_values else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.ls1(self.attn(self.norm1(x)))
        return x + self.ls2(self.mlp(self.norm2(x)))


class PatchEmbed(nn.Module):
    """Non-overlapping patches -> embed_dim channels (NCHW out)."""

    def __init__(self, patch_size: int, embed_dim: int, in_chans: int = 3) -> None:
        super().__init__()
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x)


def resample_pos_embed(
    pos: torch.Tensor, new_grid: tuple[int, int], num_prefix: int, mode: PosInterp = "timm"
) -> torch.Tensor:
    """`pos` (1, num_prefix + g*g, D) for a square grid g, resized to `new_grid` (h, w).

    "timm": bicubic to the new size, antialiased, unchanged when the size already fits (timm's
    `resample_abs_pos_embed`); "dino": bicubic by the scale factor (new + 0.1) / g, no antialias,
    unchanged when the token count fits and the grid is square (DINO / iBOT / CONCH v1.5).
    """
    prefix, grid = pos[:, :num_prefix], pos[:, num_prefix:]
    n, dim = grid.shape[1], grid.shape[2]
    g = math.isqrt(n)
    if g * g != n:
        raise ValueError(f"pos_embed has {n} patch positions, not a square grid")
    if n == new_grid[0] * new_grid[1] and new_grid[0] == new_grid[1]:
        return pos
    img = grid.float().reshape(1, g, g, dim).permute(0, 3, 1, 2)
    if mode == "dino":
        scale = ((new_grid[0] + 0.1) / g, (new_grid[1] + 0.1) / g)
        img = F.interpolate(img, scale_factor=scale, mode="bicubic")
    else:
        img = F.interpolate(img, size=new_grid, mode="bicubic", antialias=True)
    if tuple(img.shape[-2:]) != tuple(new_grid):
        raise ValueError(f"pos_embed resized to {tuple(img.shape[-2:])}, expected {new_grid}")
    grid = img.permute(0, 2, 3, 1).reshape(1, -1, dim).to(pos.dtype)
    return torch.cat([prefix, grid], dim=1)


class VisionTransformer(nn.Module):
    """timm-compatible ViT: normalised NCHW images -> pooled features (see `ViTConfig.pool`).

    Inputs of another size than `img_size` (a multiple of the patch size) get a resized
    `pos_embed` (`ViTConfig.pos_interp`).
    """

    def __init__(self, cfg: ViTConfig) -> None:
        super().__init__()
        self.cfg = cfg
        dim = cfg.embed_dim
        self.patch_embed = PatchEmbed(cfg.patch_size, dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        regs = cfg.reg_tokens
        self.reg_token = nn.Parameter(torch.zeros(1, regs, dim)) if regs else None
        embed_len = cfg.grid**2 + (0 if cfg.no_embed_class else cfg.num_prefix_tokens)
        self.pos_embed = nn.Parameter(torch.zeros(1, embed_len, dim))
        self.blocks = nn.Sequential(*[Block(cfg) for _ in range(cfg.depth)])
        self.norm = nn.LayerNorm(dim, eps=cfg.norm_eps)

    @property
    def out_dim(self) -> int:
        return self.cfg.out_dim

    def _pos_embed_for(self, grid: tuple[int, int]) -> torch.Tensor:
        cfg = self.cfg
        num_prefix = 0 if cfg.no_embed_class else cfg.num_prefix_tokens
        return resample_pos_embed(self.pos_embed, grid, num_prefix, cfg.pos_interp)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """All tokens after the final norm: (B, 1 + reg_tokens + patches, D)."""
        x = self.patch_embed(x)
        grid = (x.shape[-2], x.shape[-1])
        x = x.flatten(2).transpose(1, 2)
        prefix = [self.cls_token.expand(x.shape[0], -1, -1)]
        if self.reg_token is not None:
            prefix.append(self.reg_token.expand(x.shape[0], -1, -1))
        pos = self._pos_embed_for(grid)
        if self.cfg.no_embed_class:
            x = torch.cat([*prefix, x + pos], dim=1)
        else:
            x = torch.cat([*prefix, x], dim=1) + pos
        return self.norm(self.blocks(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.forward_features(x)
        if self.cfg.pool == "tokens":
            return x
        if self.cfg.pool == "cls+mean":
            return torch.cat([x[:, 0], x[:, self.cfg.num_prefix_tokens :].mean(dim=1)], dim=1)
        return x[:, 0]


class AttentionalPooler(nn.Module):
    """Learned queries attending over the tokens (CONCH's `attn_pool_contrast`)."""

    def __init__(self, dim: int, context_dim: int, num_heads: int = 8, n_queries: int = 1) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.query = nn.Parameter(torch.zeros(n_queries, dim))
        self.ln_k = nn.LayerNorm(context_dim)
        self.ln_q = nn.LayerNorm(dim)
        self.to_q = nn.Linear(dim, dim, bias=False)
        self.to_kv = nn.Linear(context_dim, dim * 2, bias=False)
        self.to_out = nn.Linear(dim, dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, h = x.shape[0], self.num_heads
        q = self.to_q(self.ln_q(self.query)).expand(b, -1, -1)
        k, v = self.to_kv(self.ln_k(x)).chunk(2, dim=-1)
        q, k, v = (t.unflatten(-1, (h, -1)).transpose(1, 2) for t in (q, k, v))
        out = F.scaled_dot_product_attention(q, k, v)
        return self.to_out(out.transpose(1, 2).flatten(2))


class AttnPoolViT(nn.Module):
    """A ViT trunk (all tokens) -> attentional pooler -> LayerNorm: CONCH v1.5's image tower."""

    def __init__(self, cfg: ViTConfig, out_dim: int = 768, num_heads: int = 8) -> None:
        super().__init__()
        if cfg.pool != "tokens":
            raise ValueError("the trunk of an AttnPoolViT must return all tokens (pool='tokens')")
        self.trunk = VisionTransformer(cfg)
        self.attn_pool_contrast = AttentionalPooler(out_dim, cfg.embed_dim, num_heads)
        self.ln_contrast = nn.LayerNorm(out_dim)
        self._out_dim = out_dim

    @property
    def out_dim(self) -> int:
        return self._out_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.ln_contrast(self.attn_pool_contrast(self.trunk(x))[:, 0])


def init_random_(model: nn.Module, seed: int = 0, std: float = 0.02) -> nn.Module:
    """Seeded random weights (truncated normal-ish: normal * std; norms 1/0, LayerScale 0.1)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith(".gamma"):
                p.fill_(0.1)
            elif isinstance(_owner(model, name), nn.LayerNorm):
                p.fill_(1.0 if name.endswith("weight") else 0.0)
            elif name.endswith("bias"):
                p.zero_()
            else:
                p.copy_(torch.randn(p.shape, generator=gen) * std)
    return model


def _owner(model: nn.Module, param_name: str) -> nn.Module:
    return model.get_submodule(param_name.rpartition(".")[0]) if "." in param_name else model
