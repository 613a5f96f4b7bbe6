"""`histostain add-domain`: add a domain reference and a calibration to an existing model file.

For model files trained elsewhere (or before references existed): the cases of a manifest whose
H&E slides are in an embedding cache, none of which the model trained on, are split by case into
fitting cases (PCA + covariance), held-out cases (percentiles, the tile cut and slide rules, the
calibration) and, with --keep-back, untouched cases that only measure the slide false-flag rate and
the calibration.
"""

from __future__ import annotations

import argparse
import json

from ..errors import HistostainError
from .options import add_model_output, fraction, model_output_path


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "add-domain",
        help="add a domain reference and calibration to a model file",
        description="Fit a domain reference (which tiles look like the training data) and a "
        "probability calibration (temperature or Platt) from cached embeddings of training-domain cases the model did "
        "not train on, and store them in a model file (a new file, or --in-place with a backup).",
    )
    p.add_argument("model", help="model file (.pt) to annotate")
    p.add_argument("--manifest", required=True, help="cohort manifest of the cached cases")
    p.add_argument("--cache", required=True, help="embedding cache of the manifest's slides")
    add_model_output(p)
    p.add_argument(
        "--fit-fraction",
        type=fraction,
        default=0.4,
        help="share of cases that fit the PCA and covariance (default 0.4)",
    )
    p.add_argument(
        "--keep-back",
        type=fraction,
        default=0.0,
        help="share of cases kept back, only to measure the false-flag rate and calibration "
        "(default 0)",
    )
    p.add_argument("--no-calibration", action="store_true", help="store the domain reference only")
    p.add_argument(
        "--calibration",
        choices=("temperature", "platt", "auto"),
        default="auto",
        help="temperature scaling (one parameter), Platt scaling (temperature and a bias on the "
        "positive class: also corrects a shift in the rate of positives) or auto: the one with the "
        "lower cross-validated log-loss on the calibration cases (default auto)",
    )
    p.add_argument(
        "--calibrate-on-all",
        action="store_true",
        help="fit the calibration on every case, the kept-back ones too (they then measure only "
        "the false-flag rate; measure the calibration on another cohort)",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the case split (default 0)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..engine.model_files import load_model_file, save_model_file
    from ..training.guard import add_domain

    net, cfg = load_model_file(args.model)
    out = model_output_path(args)
    if args.fit_fraction + args.keep_back >= 0.9:
        raise HistostainError(
            "--fit-fraction plus --keep-back leave fewer than 10 % of the cases to set the "
            "thresholds; lower one of them."
        )
    report = add_domain(
        net,
        cfg,
        args.manifest,
        args.cache,
        fit_fraction=args.fit_fraction,
        keep_back=args.keep_back,
        calibrate=not args.no_calibration,
        seed=args.seed,
        method=args.calibration,
        calibrate_on_all=args.calibrate_on_all,
    )
    save_model_file(out, net, cfg)
    print(json.dumps(report, indent=2))
    print(f"wrote {out}")
    return 0
