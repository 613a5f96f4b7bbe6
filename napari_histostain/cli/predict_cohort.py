"""`histostain predict-cohort`: predict many slides on a dask cluster, resumably."""

from __future__ import annotations

import argparse
import logging
import sys

from .options import (
    add_markers,
    add_prediction_options,
    add_quiet,
    chosen_markers,
    count,
    memory_size,
    positive_int,
    prediction_options,
)

log = logging.getLogger(__name__)


def register(subparsers) -> None:
    """Add `histostain predict-cohort`."""
    from ..cohort.summary import SUMMARY_CSV, SUMMARY_JSON

    p = subparsers.add_parser(
        "predict-cohort",
        help="predict many slides on a dask cluster (resumable)",
        description="Predict IHC positivity for a cohort of slides, one dask task per slide. "
        "Each slide's outputs go to OUT/<slide name>/ (as `histostain predict` writes them); the "
        f"summary to OUT/{SUMMARY_CSV} and OUT/{SUMMARY_JSON}. Re-running skips slides whose "
        "outputs are complete and current; unreadable slides are recorded as failed.",
    )
    p.add_argument("slides", nargs="*", metavar="SLIDE", help="slide files (or DICOM folders)")
    p.add_argument(
        "--manifest",
        metavar="FILE",
        help="CSV with a slide/path/he_path column (and optional case_id), or one path per line",
    )
    add_markers(p)
    p.add_argument("--out", "-o", required=True, metavar="DIR", help="output folder")
    where = p.add_mutually_exclusive_group()
    where.add_argument(
        "--scheduler",
        metavar="ADDRESS",
        help="address of a running dask scheduler (e.g. tcp://host:8786)",
    )
    where.add_argument(
        "--workers",
        type=count,
        default=None,
        metavar="N",
        help="local worker processes (default: 2; 0 = no dask, one slide after another)",
    )
    p.add_argument(
        "--threads-per-worker",
        type=positive_int,
        default=1,
        metavar="M",
        help="slides run at once in each local worker (default 1)",
    )
    p.add_argument(
        "--inference-threads",
        type=positive_int,
        default=None,
        metavar="T",
        help="torch threads per slide task (default: local CPU cores / (workers x "
        "threads per worker); 1 with --scheduler)",
    )
    p.add_argument(
        "--memory-limit",
        type=memory_size,
        default="auto",
        metavar="SIZE",
        help="memory cap per local worker, e.g. 4GB (default: auto = RAM / workers; none: no "
        "cap); a worker over it is restarted and its slide retried",
    )
    p.add_argument(
        "--retries",
        type=count,
        default=2,
        help="resubmissions of a slide whose worker died (default 2)",
    )
    add_prediction_options(p)
    p.add_argument("--force", action="store_true", help="recompute slides that are already done")
    add_quiet(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Entry point of `histostain predict-cohort`."""
    from ..cohort.runner import ClusterOptions, run_cohort
    from ..cohort.slides import cohort_slides

    if not getattr(args, "verbose", False):  # dask logs every worker start and stop at INFO
        import distributed  # noqa: F401 - importing it sets its log levels; override them after

        logging.getLogger("distributed").setLevel(logging.ERROR)
    if args.scheduler and args.memory_limit != "auto":
        log.warning(
            "--memory-limit applies to local workers; set it when starting the dask workers"
        )
    slides = cohort_slides(args.slides, args.manifest)
    markers = chosen_markers(args)
    predict = prediction_options(args, markers, must_exist=True)
    cluster = ClusterOptions(
        scheduler=args.scheduler,
        workers=2 if args.workers is None else args.workers,
        threads_per_worker=args.threads_per_worker,
        memory_limit=args.memory_limit,
        inference_threads=args.inference_threads,
        retries=args.retries,
    )
    bar = None

    def on_start(link, n_run, n_skipped):
        nonlocal bar
        n = len(slides)
        print(
            f"{n} slide{'s' * (n != 1)}: {n_skipped} already done, {n_run} to predict",
            file=sys.stderr,
        )
        if link:
            print(f"dask dashboard: {link}", file=sys.stderr)
        if n_run and not args.quiet:
            from tqdm.auto import tqdm

            bar = tqdm(total=n_run, unit="slide", file=sys.stderr)

    def progress(row):
        if bar is not None:
            bar.update(1)
            bar.set_postfix_str(f"{row['name']}: {row['status']}")
            if bar.n >= bar.total:
                bar.close()  # before the cluster shuts down
        if row["status"] == "failed":
            msg = f"{row['name']}: failed: {row['error']}"
            (bar.write if bar is not None else print)(msg, file=sys.stderr)

    try:
        result = run_cohort(
            slides,
            args.out,
            markers,
            predict=predict,
            cluster=cluster,
            force=args.force,
            progress=progress,
            on_start=on_start,
        )
    finally:
        if bar is not None:
            bar.close()
    c = result.counts
    print(
        f"done {c['done']}, skipped {c['skipped']}, failed {c['failed']} in {result.seconds:.1f} s; "
        f"summary: {result.summary_csv}",
        file=sys.stderr,
    )
    return 0 if result.ok else 1
