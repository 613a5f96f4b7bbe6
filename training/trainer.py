"""Trainer: AdamW, linear warmup + cosine decay, k-fold cross-validation by case, best by val loss.

Works on in-memory tile embeddings (`CaseData`), so it runs on cached features; uses the GPU when
present. Every epoch appends a row to a CSV metrics log.
"""

from __future__ import annotations

import copy
import csv
import hashlib
import logging
import math
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .losses import LossWeights
from .sampling import DEFAULT_TOKENS, paired_bags

log = logging.getLogger(__name__)

METRIC_COLUMNS = (
    "fold",
    "epoch",
    "lr",
    "train_loss",
    "train_ce",
    "train_infonce",
    "train_mse",
    "val_loss",
    "val_ce",
    "val_infonce",
    "val_auc",
    "val_weighted_f1",
    "seconds",
)


@dataclass
class CaseData:
    """One case of one marker: its label (class index) and tile embeddings of its two slides."""

    case_id: str
    label: int
    he: np.ndarray  # (n_tiles, D)
    ihc: np.ndarray  # (m_tiles, D)


@dataclass
class TrainConfig:
    """Hyper-parameters of one training run (saved in the model file)."""

    epochs: int = 40
    batch_size: int = 32
    lr: float = 3e-4
    weight_decay: float = 1e-2
    warmup_epochs: int = 3
    n_tokens: int = DEFAULT_TOKENS
    mask_ratio: float = 0.5
    contrastive_weight: float = 1.0
    mse_weight: float = 1.0
    ce_weight: float = 1.0
    temperature: float = 0.01
    folds: int = 5
    seed: int = 0
    device: str = "auto"
    balance_classes: bool = True
    model_kwargs: dict[str, Any] = field(default_factory=dict)

    @property
    def loss_weights(self) -> LossWeights:
        return LossWeights(
            self.contrastive_weight, self.mse_weight, self.ce_weight, self.temperature
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class FoldResult:
    fold: int
    model: Any  # torch.nn.Module, best epoch's weights, on CPU
    best_epoch: int
    best_val_loss: float
    val_case_ids: list[str]
    history: list[dict[str, float]]


def set_seed(seed: int) -> None:
    """Seed python, numpy and torch (CPU and CUDA)."""
    import torch

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def pick_device(name: str = "auto"):
    """The torch device for `name` (auto, cpu, cuda, cuda:N, mps): `engine.device.resolve_device`."""
    from napari_histostain.engine.device import resolve_device

    return resolve_device(name)


def lr_factor(step: int, warmup_steps: int, total_steps: int, floor: float = 0.01) -> float:
    """Learning-rate multiplier: linear warmup from ~0 to 1, then cosine decay to `floor`."""
    if warmup_steps > 0 and step < warmup_steps:
        return (step + 1) / warmup_steps
    span = max(1, total_steps - warmup_steps)
    progress = min(1.0, (step - warmup_steps) / span)
    return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))


def stable_fraction(case_id: str, seed: int = 0) -> float:
    """A number in [0, 1) fixed by the case id (same split for every marker, machine and run)."""
    digest = hashlib.sha256(f"{seed}:{case_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def kfold_by_case(
    case_ids: Sequence[str],
    labels: Sequence[int],
    k: int,
    seed: int = 0,
    given: Sequence[int | None] | None = None,
) -> list[int]:
    """Fold index (0..k-1) per case, stratified by label; a manifest's own fold column wins."""
    if given is not None and all(f is not None for f in given):
        return [int(f) % k for f in given]  # type: ignore[arg-type]
    folds = [0] * len(case_ids)
    for lab in sorted(set(labels)):
        idx = [i for i, y in enumerate(labels) if y == lab]
        idx.sort(key=lambda i: stable_fraction(case_ids[i], seed))
        for j, i in enumerate(idx):
            folds[i] = j % k
    return folds


def _class_weight(labels: Sequence[int], n_classes: int):
    import torch

    counts = np.bincount(np.asarray(labels), minlength=n_classes).astype(np.float64)
    w = np.where(counts > 0, counts.sum() / (n_classes * np.maximum(counts, 1)), 0.0)
    return torch.tensor(w, dtype=torch.float32)


def slide_embeddings(model, features: Sequence[np.ndarray], device, chunk: int = 256):
    """(N, E) embeddings and (N, C) logits of whole slides (all their tiles), no gradient.

    Slides are padded into batches of `chunk` with a tile mask (the engine's masked attention), so
    each slide's result equals that of the slide alone.
    """
    import torch

    from .modeling import class_logits, embed_bags

    model.eval()
    embs, logits = [], []
    with torch.no_grad():
        for s in range(0, len(features), chunk):
            part = [np.asarray(f, dtype=np.float32) for f in features[s : s + chunk]]
            n = max(len(f) for f in part)
            x = np.zeros((len(part), n, part[0].shape[1]), np.float32)
            mask = np.zeros((len(part), n), bool)
            for i, f in enumerate(part):
                x[i, : len(f)] = f
                mask[i, : len(f)] = True
            e = embed_bags(model, torch.from_numpy(x).to(device), torch.from_numpy(mask).to(device))
            embs.append(e)
            logits.append(class_logits(model, e))
    return torch.cat(embs), torch.cat(logits)


def _validate(model, cases: Sequence[CaseData], cfg: TrainConfig, device, class_weight):
    import torch

    from .evaluate import roc_auc, weighted_f1
    from .losses import class_loss, info_nce

    he, logits = slide_embeddings(model, [c.he for c in cases], device)
    labels = torch.tensor([c.label for c in cases], device=device)
    ce = float(class_loss(logits, labels, class_weight.to(device)))
    out = {"val_ce": ce, "val_infonce": float("nan")}
    loss = cfg.ce_weight * ce
    w = cfg.loss_weights
    if w.contrastive and len(cases) > 1:
        ihc, _ = slide_embeddings(model, [c.ihc for c in cases], device)
        nce = float(info_nce(he, ihc, w.temperature))
        out["val_infonce"] = nce
        loss += w.contrastive * nce
    prob = torch.softmax(logits, dim=1).cpu().numpy()
    y = labels.cpu().numpy()
    out["val_loss"] = loss
    out["val_auc"] = roc_auc(y, prob)
    out["val_weighted_f1"] = weighted_f1(y, prob.argmax(1))
    return out


def train_one(
    train_cases: Sequence[CaseData],
    val_cases: Sequence[CaseData],
    n_classes: int,
    cfg: TrainConfig,
    *,
    fold: int = 0,
    log_rows: Callable[[dict[str, float]], None] | None = None,
    progress: Callable[[str], None] | None = None,
    stop_after: int | None = None,
) -> FoldResult:
    """Train one model; keep the epoch with the lowest validation loss (the last one if no val set).

    `stop_after=n` ends after n epochs of the `cfg.epochs`-long schedule (a refit that stops where
    cross-validation found the best epochs).
    """
    import torch

    from .losses import total_loss
    from .modeling import build_slide_encoder, class_logits, embed_bags

    if len(train_cases) < 2:
        raise ValueError("training needs at least two cases")
    set_seed(cfg.seed + fold)
    device = pick_device(cfg.device)
    dim = int(train_cases[0].he.shape[1])
    model = build_slide_encoder(dim, n_classes, **cfg.model_kwargs).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    rng = np.random.default_rng(cfg.seed * 1000 + fold)
    weights = cfg.loss_weights
    cw = (
        _class_weight([c.label for c in train_cases], n_classes)
        if cfg.balance_classes
        else torch.ones(n_classes)
    )
    cw_dev = cw.to(device)
    bs = min(cfg.batch_size, len(train_cases))
    steps_per_epoch = max(
        1, len(train_cases) // bs
    )  # drop the ragged last batch (InfoNCE needs >1)
    total_steps = steps_per_epoch * cfg.epochs
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: lr_factor(s, steps_per_epoch * cfg.warmup_epochs, total_steps)
    )
    best = (math.inf, -1, None)
    history = []
    for epoch in range(cfg.epochs if stop_after is None else min(stop_after, cfg.epochs)):
        t0 = time.perf_counter()
        model.train()
        order = rng.permutation(len(train_cases))
        sums: dict[str, float] = {}
        for s in range(steps_per_epoch):
            batch = [train_cases[i] for i in order[s * bs : (s + 1) * bs]]
            he, ihc, masked = paired_bags(
                [c.he for c in batch], [c.ihc for c in batch], cfg.n_tokens, rng, cfg.mask_ratio
            )
            labels = torch.tensor([c.label for c in batch], device=device)
            he_e = embed_bags(model, torch.from_numpy(he).to(device))
            ihc_e = (
                embed_bags(model, torch.from_numpy(ihc).to(device)) if weights.contrastive else None
            )
            masked_e = (
                embed_bags(model, torch.from_numpy(masked).to(device))
                if weights.masked_mse
                else None
            )
            loss, parts = total_loss(
                weights,
                he=he_e,
                ihc=ihc_e,
                he_masked=masked_e,
                logits=class_logits(model, he_e),
                labels=labels,
                class_weight=cw_dev,
            )
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            sums["loss"] = sums.get("loss", 0.0) + float(loss.detach())
            for k, v in parts.items():
                sums[k] = sums.get(k, 0.0) + v
        row = {
            "fold": fold,
            "epoch": epoch,
            "lr": opt.param_groups[0]["lr"],
            "train_loss": sums["loss"] / steps_per_epoch,
            "train_ce": sums.get("ce", math.nan) / steps_per_epoch,
            "train_infonce": sums.get("infonce", math.nan) / steps_per_epoch,
            "train_mse": sums.get("mse", math.nan) / steps_per_epoch,
        }
        if val_cases:
            row.update(_validate(model, val_cases, cfg, device, cw))
            score = row["val_loss"]
        else:
            row.update({k: math.nan for k in METRIC_COLUMNS if k.startswith("val_")})
            score = -epoch  # no validation set: keep the last epoch
        row["seconds"] = time.perf_counter() - t0
        history.append(row)
        if log_rows:
            log_rows(row)
        if progress:
            progress(
                f"fold {fold} epoch {epoch + 1}/{cfg.epochs}: train {row['train_loss']:.4f} "
                f"val {row['val_loss']:.4f} auc {row['val_auc']:.3f}"
            )
        if score < best[0]:
            best = (score, epoch, copy.deepcopy(model.state_dict()))
    model.load_state_dict(best[2])
    model.to("cpu").eval()
    best_loss = float(best[0]) if val_cases else math.nan
    return FoldResult(fold, model, best[1], best_loss, [c.case_id for c in val_cases], history)


class MetricsLog:
    """Append-only CSV of per-epoch metrics (header written once, flushed every row)."""

    def __init__(self, path: str | Path):
        from napari_histostain.io.atomic import ensure_dir

        self.path = Path(path)
        ensure_dir(self.path.parent)
        self._fh = open(self.path, "w", newline="", encoding="utf-8")  # noqa: SIM115 - kept open
        self._writer = csv.DictWriter(self._fh, fieldnames=METRIC_COLUMNS, extrasaction="ignore")
        self._writer.writeheader()

    def __call__(self, row: dict[str, float]) -> None:
        self._writer.writerow(
            {k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()}
        )
        self._fh.flush()

    def close(self) -> None:
        self._fh.close()


def cross_validate(
    cases: Sequence[CaseData],
    n_classes: int,
    cfg: TrainConfig,
    *,
    given_folds: Sequence[int | None] | None = None,
    log_rows: Callable[[dict[str, float]], None] | None = None,
    progress: Callable[[str], None] | None = None,
) -> list[FoldResult]:
    """k-fold cross-validation split by case (stratified by label); one best model per fold."""
    if cfg.folds < 2:
        return [train_one(cases, [], n_classes, cfg, log_rows=log_rows, progress=progress)]
    folds = kfold_by_case(
        [c.case_id for c in cases], [c.label for c in cases], cfg.folds, cfg.seed, given_folds
    )
    results = []
    for k in range(cfg.folds):
        tr = [c for c, f in zip(cases, folds) if f != k]
        va = [c for c, f in zip(cases, folds) if f == k]
        if not va:
            continue
        results.append(
            train_one(tr, va, n_classes, cfg, fold=k, log_rows=log_rows, progress=progress)
        )
    return results
