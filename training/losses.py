"""HistoStainAlign losses: symmetric InfoNCE (H&E <-> IHC), masked-bag MSE, cross-entropy."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class LossWeights:
    """Weights of the three loss terms; `only_class()` gives the paper's CE-only baseline."""

    contrastive: float = 1.0
    masked_mse: float = 1.0
    classification: float = 1.0
    temperature: float = 0.01

    @classmethod
    def only_class(cls, temperature: float = 0.01) -> LossWeights:
        return cls(contrastive=0.0, masked_mse=0.0, classification=1.0, temperature=temperature)

    @property
    def is_baseline(self) -> bool:
        return self.contrastive == 0 and self.masked_mse == 0


def info_nce(he: torch.Tensor, ihc: torch.Tensor, temperature: float = 0.01) -> torch.Tensor:
    """Symmetric InfoNCE between paired slide embeddings (B, E): row i of `he` pairs with row i of `ihc`.

    Cosine similarities divided by `temperature`; mean of the H&E->IHC and IHC->H&E cross-entropies.
    """
    if he.shape != ihc.shape or he.ndim != 2:
        raise ValueError(
            f"info_nce needs two (B, E) tensors of one shape, got {he.shape} and {ihc.shape}"
        )
    logits = F.normalize(he, dim=1) @ F.normalize(ihc, dim=1).T / temperature
    target = torch.arange(he.shape[0], device=he.device)
    return 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target))


def masked_mse(full: torch.Tensor, masked: torch.Tensor) -> torch.Tensor:
    """Intra-modality consistency: mean squared difference of a bag's embedding and its masked bag's."""
    return F.mse_loss(full, masked)


def class_loss(
    logits: torch.Tensor, labels: torch.Tensor, weight: torch.Tensor | None = None
) -> torch.Tensor:
    """Cross-entropy of the class head on the H&E slide embedding."""
    return F.cross_entropy(logits, labels, weight=weight)


def total_loss(
    weights: LossWeights,
    *,
    he: torch.Tensor,
    ihc: torch.Tensor | None,
    he_masked: torch.Tensor | None,
    logits: torch.Tensor,
    labels: torch.Tensor,
    class_weight: torch.Tensor | None = None,
) -> tuple[torch.Tensor, dict[str, float]]:
    """Weighted sum of the terms and a dict of each term's value (for the metrics log)."""
    parts: dict[str, torch.Tensor] = {"ce": class_loss(logits, labels, class_weight)}
    if weights.contrastive and ihc is not None and he.shape[0] > 1:
        parts["infonce"] = info_nce(he, ihc, weights.temperature)
    if weights.masked_mse and he_masked is not None:
        parts["mse"] = masked_mse(he, he_masked)
    total = weights.classification * parts["ce"]
    if "infonce" in parts:
        total = total + weights.contrastive * parts["infonce"]
    if "mse" in parts:
        total = total + weights.masked_mse * parts["mse"]
    return total, {k: float(v.detach()) for k, v in parts.items()}
