"""`histostain evaluate`: held-out evaluation of a trained model (and the CE-only baseline)."""

from __future__ import annotations

import argparse

from .options import add_device, count


def register(subparsers) -> None:
    e = subparsers.add_parser(
        "evaluate",
        help="held-out evaluation of a trained model (and the CE-only baseline)",
        description="Weighted F1 / AUC / balanced accuracy with bootstrap 95%% CIs, linear probe, "
        "paired-alignment score, Wilcoxon test against the baseline, ROC / confusion / embedding "
        "plots.",
    )
    e.add_argument("manifest")
    e.add_argument("--cache", required=True)
    e.add_argument("--model", required=True, help="model file (histostain train)")
    e.add_argument("--baseline", help="CE-only model file to compare against")
    e.add_argument("--out", required=True, help="report folder")
    e.add_argument("--bootstrap", type=count, default=1000, help="bootstrap resamples (1000)")
    e.add_argument("--seed", type=count, default=0)
    e.add_argument(
        "--no-bayes", action="store_true", help="skip the simulator's Bayes-optimal reference"
    )
    e.add_argument(
        "--external",
        action="store_true",
        help="every case of the manifest is a test case: an external cohort the model "
        "never saw (no linear probe)",
    )
    e.add_argument(
        "--annotate",
        metavar="MODEL_FILE",
        help="write the model with its held-out metrics in its config to this file "
        "(may be the --model file itself)",
    )
    e.add_argument(
        "--metrics-key",
        metavar="KEY",
        help="where --annotate puts the metrics in the model file's `metrics` (default "
        "held_out, or external_test with --external; e.g. a second external cohort's)",
    )
    add_device(e)
    e.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..training.workflow import evaluate_marker, summary_line

    bayes = None
    if not args.no_bayes:
        from ..training.reference import bayes_reference

        bayes = bayes_reference(args.manifest, args.model)
    report = evaluate_marker(
        args.manifest,
        args.cache,
        args.model,
        args.out,
        baseline_path=args.baseline,
        n_bootstrap=args.bootstrap,
        seed=args.seed,
        bayes=bayes,
        external=args.external,
        device=args.device,
    )
    print(summary_line(report))
    if args.annotate:
        from ..training.workflow import annotate_model

        out = annotate_model(args.model, report, args.annotate, key=args.metrics_key)
        print(f"annotated model: {out}")
    print(f"report: {args.out}/report.json")
    return 0
