"""`histostain embed`, `histostain train` and `histostain evaluate` (heavy imports inside `run_*`)."""

from __future__ import annotations

import argparse
import shlex
import sys

from napari_histostain import MARKERS


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "embed", help="embed the tissue tiles of a cohort's slides into a resumable cache",
        description="Embed every slide of a cohort manifest (H&E and IHC) with the tile encoder, "
        "one cache file per slide; finished slides are skipped, so an interrupted run resumes.")
    p.add_argument("manifest", help="cohort CSV (case_id, marker, he_path, ihc_path, label)")
    p.add_argument("--cache", required=True, help="embedding cache folder")
    p.add_argument("--marker", choices=list(MARKERS), help="only this marker's slides")
    p.add_argument("--encoder", default="efficientnet-lite0", help="tile encoder name")
    p.add_argument("--tile-mpp", type=float, default=1.0, help="tile resolution, um/px (1.0)")
    p.add_argument("--tile-size", type=int, default=224, help="tile side in pixels (224)")
    p.add_argument("--min-tissue", type=float, default=0.25, help="min tissue fraction of a tile")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--threads", type=int, default=2, help="tile reader threads")
    p.add_argument("--limit", type=int, help="embed at most this many new slides, then stop")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run_embed)

    t = subparsers.add_parser(
        "train", help="train a HistoStainAlign slide model on cached embeddings",
        description="k-fold cross-validation (split by case) on the non-test cases of one marker; "
        "the fold model with the lowest validation loss is saved (engine model-file format).")
    t.add_argument("manifest")
    t.add_argument("--cache", required=True, help="embedding cache folder (histostain embed)")
    t.add_argument("--marker", required=True, choices=list(MARKERS))
    t.add_argument("--out", required=True, help="run folder: model.pt, metrics.csv, train.json")
    t.add_argument("--model-file", help="also write the model here (e.g. a bundled model path)")
    t.add_argument("--classes", help="comma-separated class names, negative first, positive last")
    t.add_argument("--epochs", type=int, default=40)
    t.add_argument("--batch-size", type=int, default=32)
    t.add_argument("--lr", type=float, default=3e-4)
    t.add_argument("--weight-decay", type=float, default=1e-2)
    t.add_argument("--warmup-epochs", type=int, default=3)
    t.add_argument("--n-tokens", type=int, default=4096, help="tiles sampled per slide (4096)")
    t.add_argument("--mask-ratio", type=float, default=0.5)
    t.add_argument("--temperature", type=float, default=0.01, help="InfoNCE temperature (0.01)")
    t.add_argument("--contrastive-weight", type=float, default=1.0)
    t.add_argument("--mse-weight", type=float, default=1.0)
    t.add_argument("--ce-weight", type=float, default=1.0)
    t.add_argument("--only-class-loss", action="store_true",
                   help="the paper's baseline: cross-entropy only (no InfoNCE, no masked MSE)")
    t.add_argument("--hidden-dim", type=int, default=256)
    t.add_argument("--dropout", type=float, default=0.0)
    t.add_argument("--folds", type=int, default=5)
    t.add_argument("--refit", action="store_true",
                   help="after cross-validation, train the saved model on all training cases, "
                        "stopped at the folds' median best epoch (else: the best fold's model)")
    t.add_argument("--test-fraction", type=float, default=0.25,
                   help="fraction of cases held out for testing (ignored with a split column)")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--device", default="auto", help="auto (GPU when present), cpu or cuda")
    t.add_argument("--quiet", action="store_true")
    t.set_defaults(func=run_train)

    e = subparsers.add_parser(
        "evaluate", help="held-out evaluation of a trained model (and the CE-only baseline)",
        description="Weighted F1 / AUC / balanced accuracy with bootstrap 95%% CIs, linear probe, "
        "paired-alignment score, Wilcoxon test against the baseline, ROC / confusion / embedding "
        "plots.")
    e.add_argument("manifest")
    e.add_argument("--cache", required=True)
    e.add_argument("--model", required=True, help="model file (histostain train)")
    e.add_argument("--baseline", help="CE-only model file to compare against")
    e.add_argument("--out", required=True, help="report folder")
    e.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples (1000)")
    e.add_argument("--seed", type=int, default=0)
    e.add_argument("--no-bayes", action="store_true",
                   help="skip the simulator's Bayes-optimal reference")
    e.add_argument("--external", action="store_true",
                   help="every case of the manifest is a test case: an external cohort the model "
                   "never saw (no linear probe)")
    e.add_argument("--annotate", metavar="MODEL_FILE",
                   help="write the model with its held-out metrics in its config to this file "
                   "(may be the --model file itself)")
    e.add_argument("--metrics-key", metavar="KEY",
                   help="where --annotate puts the metrics in the model file's `metrics` (default "
                   "held_out, or external_test with --external; e.g. a second external cohort's)")
    e.set_defaults(func=run_evaluate)


def _command() -> str:
    return "histostain " + " ".join(shlex.quote(a) for a in sys.argv[1:])


def run_embed(args: argparse.Namespace) -> int:
    from napari_histostain.encoder import get_encoder

    from .cache import EmbeddingCache, embed_slides, encoder_version
    from .manifest import load_manifest

    manifest = load_manifest(args.manifest, marker=args.marker)
    encoder = get_encoder(args.encoder)
    cache = EmbeddingCache(args.cache, encoder_id=encoder.id, encoder_version=encoder_version(encoder),
                           tile_mpp=args.tile_mpp, tile_size=args.tile_size,
                           min_tissue=args.min_tissue, root=manifest.path.parent)
    s = embed_slides(manifest.slide_paths(), cache, encoder, batch_size=args.batch_size,
                     threads=args.threads, progress=not args.quiet, limit=args.limit,
                     ihc_slides={c.ihc_path for c in manifest.cases})
    print(f"embedded {len(s.embedded)} slide(s) ({s.tiles} tiles, {s.tiles_per_second:.1f} tiles/s), "
          f"{len(s.skipped)} already cached, into {cache.folder}")
    return 0


def run_train(args: argparse.Namespace) -> int:
    from .trainer import TrainConfig
    from .workflow import train_marker

    cfg = TrainConfig(
        epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, weight_decay=args.weight_decay,
        warmup_epochs=args.warmup_epochs, n_tokens=args.n_tokens, mask_ratio=args.mask_ratio,
        contrastive_weight=0.0 if args.only_class_loss else args.contrastive_weight,
        mse_weight=0.0 if args.only_class_loss else args.mse_weight, ce_weight=args.ce_weight,
        temperature=args.temperature, folds=args.folds, seed=args.seed, device=args.device,
        model_kwargs={"hidden_dim": args.hidden_dim, "dropout": args.dropout})
    classes = [c.strip() for c in args.classes.split(",")] if args.classes else None
    s = train_marker(args.manifest, args.cache, args.out, args.marker, cfg, classes=classes,
                     test_fraction=args.test_fraction, model_file=args.model_file,
                     command=_command(), progress=None if args.quiet else print, refit=args.refit)
    cv = s["cv_out_of_fold"]
    msg = f"trained {args.marker} on {s['n_train_cases']} cases ({s['n_test_cases']} held out) " \
          f"in {s['train_seconds']:.0f} s; " + (
              f"refit on all of them for {s['refit']['epochs']} epochs" if s["refit"]
              else f"fold {s['selected_fold']} selected")
    if cv:
        msg += f"; cross-validated weighted F1 {cv['weighted_f1']:.3f}, AUC {cv['auc']:.3f}"
    print(msg + f"; wrote {args.out}")
    return 0


def run_evaluate(args: argparse.Namespace) -> int:
    from .workflow import evaluate_marker, summary_line

    bayes = None
    if not args.no_bayes:
        from .reference import bayes_reference

        bayes = bayes_reference(args.manifest, args.model)
    report = evaluate_marker(args.manifest, args.cache, args.model, args.out,
                             baseline_path=args.baseline, n_bootstrap=args.bootstrap, seed=args.seed,
                             bayes=bayes, external=args.external)
    print(summary_line(report))
    if args.annotate:
        from .workflow import annotate_model

        out = annotate_model(args.model, report, args.annotate, key=args.metrics_key)
        print(f"annotated model: {out}")
    print(f"report: {args.out}/report.json")
    return 0
