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
        help="address of a running dask scheduler (e.g. tls://host:8786); its TLS credentials "
        "come from --tls-* or dask's configuration (DASK_CONFIG)",
    )
    where.add_argument(
        "--workers",
        type=count,
        default=None,
        metavar="N",
        help="local worker processes (default: one per GPU when predicting on CUDA GPUs, else 2; "
        "0 = no dask, one slide after another)",
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
    for flag, dest, what in (
        ("--tls-ca-file", "tls_ca_file", "CA certificate that signed the scheduler's certificate"),
        ("--tls-cert", "tls_cert", "this client's certificate"),
        ("--tls-key", "tls_key", "this client's private key (if not in --tls-cert)"),
    ):
        p.add_argument(flag, dest=dest, metavar="FILE", help=f"with --scheduler: {what}")
    p.add_argument(
        "--dashboard",
        action="store_true",
        help="serve the local cluster's dask dashboard on 127.0.0.1 (needs bokeh; it has no "
        "login, so other users of this machine can view it)",
    )
    add_prediction_options(p)
    p.add_argument("--force", action="store_true", help="recompute slides that are already done")
    add_quiet(p)
    p.set_defaults(func=run)


def default_workers(device: str) -> int:
    """Local worker processes: one per CUDA GPU the device can use (each worker takes its own GPU,
    `engine.device.worker_device`), else 2."""
    from ..engine.device import gpu_count

    return gpu_count(device) or 2


def scheduler_security(args: argparse.Namespace):
    """The `distributed.security.Security` of --tls-ca-file/--tls-cert/--tls-key (None: none given,
    dask's configuration applies)."""
    from pathlib import Path

    from ..cohort.errors import CohortError

    files = {
        "--tls-ca-file": args.tls_ca_file,
        "--tls-cert": args.tls_cert,
        "--tls-key": args.tls_key,
    }
    given = {k: v for k, v in files.items() if v}
    if not given:
        return None
    if not args.scheduler:
        raise CohortError(
            f"{', '.join(given)} apply to --scheduler; the local cluster makes its own credentials."
        )
    for flag, path in given.items():
        if not Path(path).expanduser().is_file():
            raise CohortError(f"{flag} {path}: no such file.")
    if not (args.tls_ca_file and args.tls_cert):
        raise CohortError("TLS to a scheduler needs --tls-ca-file and --tls-cert (and --tls-key).")
    from distributed.security import Security

    return Security(
        tls_ca_file=str(Path(args.tls_ca_file).expanduser()),
        tls_client_cert=str(Path(args.tls_cert).expanduser()),
        tls_client_key=str(Path(args.tls_key).expanduser()) if args.tls_key else None,
        require_encryption=True,
    )


def run(args: argparse.Namespace) -> int:
    """Entry point of `histostain predict-cohort`."""
    from ..cohort.runner import ClusterOptions, run_cohort
    from ..cohort.slides import cohort_slides
    from ..engine.encoders import is_torchscript_file
    from ..engine.encoders.torchscript import runs_code_note

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
    if args.encoder and is_torchscript_file(args.encoder):
        log.warning(runs_code_note(args.encoder))
    cluster = ClusterOptions(
        scheduler=args.scheduler,
        security=scheduler_security(args),
        dashboard=args.dashboard,
        workers=default_workers(predict.device) if args.workers is None else args.workers,
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
