"""`histostain train`: train a HistoStainAlign slide model on cached embeddings."""

from __future__ import annotations

import argparse
import shlex
import sys

from ..markers import MARKERS
from .options import (
    add_device,
    count,
    fraction,
    int_between,
    nonnegative_float,
    positive_float,
    positive_int,
)


def register(subparsers) -> None:
    t = subparsers.add_parser(
        "train",
        help="train a HistoStainAlign slide model on cached embeddings",
        description="k-fold cross-validation (split by case) on the non-test cases of one marker; "
        "the fold model with the lowest validation loss is saved (engine model-file format).",
    )
    t.add_argument("manifest")
    t.add_argument("--cache", required=True, help="embedding cache folder (histostain embed)")
    t.add_argument("--marker", required=True, choices=list(MARKERS))
    t.add_argument("--out", required=True, help="run folder: model.pt, metrics.csv, train.json")
    t.add_argument("--model-file", help="also write the model here (e.g. a bundled model path)")
    t.add_argument("--classes", help="comma-separated class names, negative first, positive last")
    t.add_argument("--epochs", type=positive_int, default=40)
    t.add_argument("--batch-size", type=positive_int, default=32)
    t.add_argument("--lr", type=positive_float, default=3e-4)
    t.add_argument("--weight-decay", type=nonnegative_float, default=1e-2)
    t.add_argument("--warmup-epochs", type=count, default=3)
    t.add_argument(
        "--n-tokens", type=positive_int, default=4096, help="tiles sampled per slide (4096)"
    )
    t.add_argument("--mask-ratio", type=fraction, default=0.5)
    t.add_argument(
        "--temperature", type=positive_float, default=0.01, help="InfoNCE temperature (0.01)"
    )
    t.add_argument("--contrastive-weight", type=nonnegative_float, default=1.0)
    t.add_argument("--mse-weight", type=nonnegative_float, default=1.0)
    t.add_argument("--ce-weight", type=nonnegative_float, default=1.0)
    t.add_argument(
        "--only-class-loss",
        action="store_true",
        help="the paper's baseline: cross-entropy only (no InfoNCE, no masked MSE)",
    )
    t.add_argument("--hidden-dim", type=positive_int, default=256)
    t.add_argument("--dropout", type=fraction, default=0.0)
    t.add_argument("--folds", type=int_between(2, 1000), default=5)
    t.add_argument(
        "--refit",
        action="store_true",
        help="after cross-validation, train the saved model on all training cases, "
        "stopped at the folds' median best epoch (else: the best fold's model)",
    )
    t.add_argument(
        "--test-fraction",
        type=fraction,
        default=0.25,
        help="fraction of cases held out for testing (ignored with a split column)",
    )
    t.add_argument("--seed", type=count, default=0)
    add_device(t)
    t.add_argument("--quiet", action="store_true")
    t.set_defaults(func=run)


def command_line() -> str:
    return "histostain " + " ".join(shlex.quote(a) for a in sys.argv[1:])


def run(args: argparse.Namespace) -> int:
    from ..training.trainer import TrainConfig
    from ..training.workflow import train_marker

    cfg = TrainConfig(
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        weight_decay=args.weight_decay,
        warmup_epochs=args.warmup_epochs,
        n_tokens=args.n_tokens,
        mask_ratio=args.mask_ratio,
        contrastive_weight=0.0 if args.only_class_loss else args.contrastive_weight,
        mse_weight=0.0 if args.only_class_loss else args.mse_weight,
        ce_weight=args.ce_weight,
        temperature=args.temperature,
        folds=args.folds,
        seed=args.seed,
        device=args.device,
        model_kwargs={"hidden_dim": args.hidden_dim, "dropout": args.dropout},
    )
    classes = [c.strip() for c in args.classes.split(",")] if args.classes else None
    s = train_marker(
        args.manifest,
        args.cache,
        args.out,
        args.marker,
        cfg,
        classes=classes,
        test_fraction=args.test_fraction,
        model_file=args.model_file,
        command=command_line(),
        progress=None if args.quiet else print,
        refit=args.refit,
    )
    cv = s["cv_out_of_fold"]
    msg = (
        f"trained {args.marker} on {s['n_train_cases']} cases ({s['n_test_cases']} held out) "
        f"in {s['train_seconds']:.0f} s; "
        + (
            f"refit on all of them for {s['refit']['epochs']} epochs"
            if s["refit"]
            else f"fold {s['selected_fold']} selected"
        )
    )
    if cv:
        msg += f"; cross-validated weighted F1 {cv['weighted_f1']:.3f}, AUC {cv['auc']:.3f}"
    print(msg + f"; wrote {args.out}")
    return 0
