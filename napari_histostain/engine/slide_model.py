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
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch
from torch import nn


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
            nn.Linear(in_dim, hidden_dim),
            nn.GELU(),
            nn.Dropout(dropout),
            nn.Linear(hidden_dim, hidden_dim),
            nn.GELU(),
        )
        self.attn_v = nn.Linear(hidden_dim, attn_dim)  # tanh branch
        self.attn_u = nn.Linear(hidden_dim, attn_dim)  # sigmoid gate
        self.attn_w = nn.Linear(attn_dim, 1)
        self.head = nn.Linear(hidden_dim, n_classes)

    @property
    def config(self) -> dict:
        """Constructor arguments (stored in model files)."""
        return {
            "in_dim": self.in_dim,
            "hidden_dim": self.hidden_dim,
            "attn_dim": self.attn_dim,
            "n_classes": self.n_classes,
            "dropout": self.dropout,
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
        return {
            "attention": empty,
            "positivity": empty,
            "contribution": empty,
            "slide_logits": np.full(c, np.nan),
            "slide_margin": float("nan"),
            "probability": float("nan"),
        }
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
        "slide_margin": float(
            slide_logits[positive_class] - np.delete(slide_logits, positive_class).mean()
        ),
        "probability": float(sp[positive_class]),
    }
