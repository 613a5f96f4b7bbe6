"""Cohort-scale prediction on dask.distributed: one task per slide, resumable, failure-tolerant.

`run_cohort(slides, out_dir, markers)` submits one task per slide to a dask cluster (a LocalCluster
of worker processes by default, or an existing scheduler). Each task predicts its slide into the
run's private staging folder, writes a done-marker and moves the files into place
(`OUT/<slide name>/`, keeping any other file there), so a slide's outputs are either complete or
absent. The cohort summary (`cohort-summary.csv` / `.json`) is rewritten atomically as results
arrive. A re-run skips slides whose done-marker matches the slide's fingerprint, the markers, the
models, the encoder's fingerprint and the options; a slide that cannot be read is recorded as
failed and the cohort goes on; a slide whose worker died is resubmitted up to `retries` times.

The local cluster listens on 127.0.0.1 only, with TLS and a fresh certificate per run
(`distributed.security.Security.temporary()`), so other users of the machine cannot connect to it;
its HTTP endpoints serve nothing unless the dashboard is asked for (see docs/security.md).
"""

from __future__ import annotations

import logging
import os
import shutil
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from .. import __version__
from ..engine.predict import PredictOptions
from ..io.atomic import ensure_dir
from ..io.lock import OutputLock
from ..markers import MARKERS, check_markers
from .errors import CohortError
from .jobs import (
    DONE_MARKER,
    SlideJob,
    SlideTask,
    completed_row,
    error_message,
    process_slide,
    staging_root,
    stale_staging,
)
from .slides import CohortSlide, cohort_slides, encoder_identity, model_version
from .summary import (
    SUMMARY_CSV,
    SUMMARY_JSON,
    CohortResult,
    CohortSummary,
    base_row,
    failed_row,
    iso_time,
)

log = logging.getLogger(__name__)

LOCK_FILE = ".histostain-cohort.lock"
#: Resubmissions (not counted as retries) of a slide that was queued on a worker that died.
MAX_REQUEUES = 10
#: How long to keep trying to reach a remote scheduler.
SCHEDULER_TIMEOUT = "20s"


@dataclass(frozen=True)
class ClusterOptions:
    """Where and how the slide tasks run.

    `client` (a distributed Client), else `scheduler` (address of a running scheduler, reached with
    `security`: a `distributed.security.Security`, default dask's configuration), else a new
    LocalCluster of `workers` processes x `threads_per_worker` task threads; `workers=0` runs the
    slides one after another in this process (no dask). `memory_limit` caps each local worker (dask
    restarts a worker over it; None: no cap); `inference_threads` sets torch's threads in each task
    (default: local cores / task slots; 1 on a given cluster); `retries`: resubmissions of a slide
    whose worker died; `dashboard`: serve the local cluster's dashboard (on 127.0.0.1, needs bokeh).
    """

    client: Any = None
    scheduler: str | None = None
    security: Any = None
    workers: int = 2
    threads_per_worker: int = 1
    memory_limit: str | float | None = "auto"
    inference_threads: int | None = None
    retries: int = 2
    dashboard: bool = False

    @property
    def local(self) -> bool:
        """No dask: slides one after another in this process."""
        return self.client is None and self.scheduler is None and int(self.workers) <= 0

    def task_threads(self) -> int:
        """Torch threads per task that fill this machine's cores without oversubscribing them.

        Local runs share the cores among all task slots; on a given cluster (whose cores we do not
        know) each task gets one thread, matching dask's default of one task slot per core.
        """
        if self.inference_threads:
            return int(self.inference_threads)
        if self.client is not None or self.scheduler is not None:
            return 1
        slots = (
            max(1, int(self.workers)) * max(1, int(self.threads_per_worker))
            if int(self.workers) > 0
            else 1
        )
        return max(1, (os.cpu_count() or 1) // slots)


def local_security():
    """TLS with a fresh self-signed certificate for this run (`Security.temporary()`), or None
    (with a warning) when the `cryptography` package it needs is missing."""
    from distributed.security import Security

    try:
        return Security.temporary()
    except ImportError:
        log.warning(
            "the cryptography package is not installed, so the local dask cluster runs without "
            "TLS: other users of this machine could connect to it (on 127.0.0.1) and run code as "
            "you. Install it (pip install cryptography), or use --workers 0 (no cluster)."
        )
        return None


def make_cluster(
    workers: int = 2,
    threads_per_worker: int = 1,
    *,
    memory_limit: str | float | None = "auto",
    dashboard: bool = False,
):
    """A LocalCluster of worker processes for cohort runs, reachable only by this user.

    Every listening socket (scheduler, nannies, workers, their HTTP servers) is on 127.0.0.1; the
    comms use TLS with temporary credentials (`local_security`), so a client needs this run's
    certificate; the HTTP servers serve no routes unless `dashboard` (then dask's dashboard, which
    has no login, on a free 127.0.0.1 port; needs bokeh). A worker that dies fails its tasks at once
    (`allowed-failures` 0); `run_cohort` resubmits them itself, which works the same on a remote
    scheduler. `memory_limit` None: no cap.
    """
    import dask
    from distributed import LocalCluster

    security = local_security()
    config: dict[str, Any] = {"distributed.scheduler.allowed-failures": 0}
    if not dashboard:  # the HTTP servers cannot be switched off: give them nothing to serve
        config["distributed.scheduler.http.routes"] = []
        config["distributed.worker.http.routes"] = []
    with dask.config.set(config):
        return LocalCluster(
            n_workers=int(workers),
            threads_per_worker=int(threads_per_worker),
            processes=True,
            host="127.0.0.1",
            protocol="tls" if security is not None else "tcp",
            security=security,
            memory_limit=memory_limit if memory_limit is not None else 0,  # None: no cap
            dashboard_address="127.0.0.1:0",  # a free port: never clashes with another cluster
            scheduler_kwargs={"dashboard": bool(dashboard)},
            silence_logs=logging.ERROR,
        )


def run_cohort(
    slides: Sequence[CohortSlide | str | Path],
    out_dir: str | Path,
    markers: Sequence[str] = tuple(MARKERS),
    *,
    predict: PredictOptions | None = None,
    cluster: ClusterOptions | None = None,
    task: SlideTask | None = None,
    force: bool = False,
    progress: Callable[[dict], None] | None = None,
    on_start: Callable[[str | None, int, int], None] | None = None,
) -> CohortResult:
    """Predict every slide of a cohort, one dask task per slide; return the summary.

    `predict`: how each slide is predicted (model files, not loaded models: they travel to the
    workers); `cluster`: where the tasks run. `task` replaces `jobs.predict_and_save`. `force`
    recomputes finished slides. `progress(row)` is called after each slide; `on_start(dashboard_link,
    n_to_run, n_skipped)` once before the first task.
    """
    t0 = time.time()
    markers = tuple(check_markers(markers))
    cluster = cluster or ClusterOptions()
    predict = predict or PredictOptions()
    if all(isinstance(s, CohortSlide) for s in slides):
        cohort = [s for s in slides if isinstance(s, CohortSlide)]
    else:
        cohort = cohort_slides([s.path if isinstance(s, CohortSlide) else s for s in slides])
    if not cohort:
        raise CohortError("no slides given: pass slide files and/or --manifest FILE.")
    if len({s.name for s in cohort}) != len(cohort):
        raise CohortError("two slides share an output name; build the list with cohort_slides().")
    out = ensure_dir(Path(out_dir).expanduser().resolve())  # workers may run in another folder
    models = {
        m: str(Path(p).expanduser().resolve()) if isinstance(p, (str, Path)) else p
        for m, p in predict.models.items()
    }
    predict = replace(predict, models=models)
    if isinstance(predict.encoder, (str, Path)) and Path(predict.encoder).expanduser().is_file():
        predict = replace(predict, encoder=str(Path(predict.encoder).expanduser().resolve()))
    if task is None:  # every model config is checked before any slide is read
        check_models(markers, models)
    mversion = model_version(markers, models)
    meta = {
        "histostain_version": __version__,
        "markers": list(markers),
        "model_version": mversion,
        "out_dir": str(out),
        "started": iso_time(t0),
    }
    with OutputLock(out / LOCK_FILE, "predict-cohort run", CohortError):
        clean_staging(out)
        # resume checks the encoder by its fingerprint (built only when there is a result to check)
        resumable = task is None and not force
        efp = (
            encoder_identity(markers, predict)
            if resumable and any((out / s.name / DONE_MARKER).is_file() for s in cohort)
            else ""
        )
        run_root = str(staging_root(out, uuid.uuid4().hex[:12]))
        summary = CohortSummary(out, cohort, markers, meta)
        jobs = []
        for s in cohort:
            job = SlideJob(
                slide=s,
                out_dir=str(out / s.name),
                markers=markers,
                predict=predict,
                inference_threads=cluster.task_threads(),
                model_version=mversion,
                encoder_fingerprint=efp,
                staging_root=run_root,
            )
            done = None if force else completed_row(job)
            if done is not None:
                done["case_id"] = s.case_id or done.get("case_id", "")
                summary.set(done)
            else:
                summary.set(base_row(job))
                jobs.append(job.again())
        summary.write()
        n_skipped = len(cohort) - len(jobs)

        def report(row: dict) -> None:
            summary.set(row)
            summary.write()
            if progress is not None:
                progress(row)

        def started(link: str | None) -> None:
            if on_start is not None:
                on_start(link, len(jobs), n_skipped)

        link = None
        try:
            if not jobs:
                started(None)
            elif cluster.local:
                started(None)
                for job in jobs:
                    report(process_slide(job, task))
            else:
                link = _run_distributed(jobs, task, report, cluster, started)
        finally:
            summary.write()
            clean_staging(out)
    return CohortResult(
        rows=list(summary.rows.values()),
        summary_csv=summary.csv,
        summary_json=summary.json,
        seconds=time.time() - t0,
        dashboard_link=link,
    )


def _run_distributed(
    jobs: list[SlideJob],
    task: SlideTask | None,
    report: Callable[[dict], None],
    cluster: ClusterOptions,
    started: Callable[[str | None], None],
) -> str | None:
    from distributed import Client, as_completed
    from distributed.scheduler import KilledWorker

    own_cluster = own_client = None
    client = cluster.client
    try:
        if client is None:
            if cluster.scheduler:
                client = own_client = connect_scheduler(cluster.scheduler, cluster.security)
            else:
                own_cluster = _start_local_cluster(cluster)
                client = own_client = Client(
                    own_cluster, security=own_cluster.security, set_as_default=False
                )
        link = (
            _dashboard_link(client)
            if own_cluster is None or (cluster.dashboard and _has_bokeh())
            else None
        )
        started(link)
        pending = {}
        for job in jobs:
            fut = _submit(client, job, task)
            pending[fut.key] = (job, fut)
        seq = as_completed([fut for _, fut in pending.values()], loop=client.loop)
        try:
            for fut in seq:
                job, _ = pending.pop(fut.key)
                try:
                    row = fut.result()
                except KilledWorker as exc:
                    if not job.staging.exists() and job.requeued < MAX_REQUEUES:
                        # queued on a worker that died because of another slide: not its fault
                        nxt = job.again(requeued=job.requeued + 1)
                    elif job.attempt <= cluster.retries:
                        nxt = job.again(attempt=job.attempt + 1)
                        log.warning(
                            "worker died on %s; retrying (attempt %d)", job.slide.name, nxt.attempt
                        )
                    else:
                        nxt = None
                    if nxt is not None:
                        nf = _submit(client, nxt, task)
                        pending[nf.key] = (nxt, nf)
                        seq.add(nf)
                        continue
                    row = failed_row(
                        job,
                        "the worker running this slide died "
                        f"{job.attempt} time(s) ({exc}); it may need more memory "
                        "(--memory-limit) or the slide may crash the reader.",
                    )
                except Exception as exc:
                    row = failed_row(job, error_message(exc))
                report(row)
        except BaseException:
            for fut in list(seq.futures):
                fut.cancel()
            raise
        return link
    finally:
        if own_client is not None:
            own_client.close()
        if own_cluster is not None:
            own_cluster.close()


def _start_local_cluster(cluster: ClusterOptions, attempts: int = 2):
    """`make_cluster` for `cluster`, tried again once when a worker dies while starting (killed,
    out of memory); then a `CohortError` that says what to do."""
    for attempt in range(1, attempts + 1):
        try:
            return make_cluster(
                cluster.workers,
                cluster.threads_per_worker,
                memory_limit=cluster.memory_limit,
                dashboard=cluster.dashboard,
            )
        except (RuntimeError, OSError, TimeoutError) as exc:
            log.debug("local cluster start %d failed: %s", attempt, exc)
            if attempt == attempts:
                raise CohortError(
                    f"the local dask cluster could not start ({exc}): a worker process died or "
                    "did not come up in time. Run again, use fewer --workers, or --workers 0 (no "
                    "cluster)."
                ) from exc
    raise AssertionError("unreachable")


def _submit(client, job: SlideJob, task: SlideTask | None):
    key = f"histostain-slide-{job.slide.name}-{job.token}"
    return client.submit(process_slide, job, task, key=key, pure=False, retries=0)


def _has_bokeh() -> bool:
    import importlib.util

    return importlib.util.find_spec("bokeh") is not None


def _dashboard_link(client) -> str | None:
    try:
        if client.scheduler_info().get("services", {}).get("dashboard") is None:
            return None
        return client.dashboard_link
    except Exception:
        return None


def clean_staging(out_dir: Path) -> None:
    """Remove what interrupted runs left in `out_dir`: cohort staging folders and temporary
    summary files (names only this tool makes; the caller holds the folder's lock)."""
    for folder in stale_staging(out_dir):
        shutil.rmtree(folder, ignore_errors=True)
    for name in (SUMMARY_CSV, SUMMARY_JSON):
        for tmp in out_dir.glob(f".{name}.*.part"):
            tmp.unlink(missing_ok=True)


def connect_scheduler(address: str, security: Any = None):
    """A Client of the dask scheduler at `address`, with `security` (TLS credentials; None: dask's
    configuration, e.g. a DASK_CONFIG file setting distributed.comm.tls.*)."""
    import gc

    from distributed import Client
    from distributed.security import Security

    uses_tls = CohortError(
        f"the dask scheduler at {address} uses TLS: give its credentials with "
        "--tls-ca-file, --tls-cert and --tls-key (or in a dask configuration file, "
        "distributed.comm.tls.*)."
    )
    if address.startswith("tls://") and security is None:
        configured = Security()  # dask's configuration
        if not any(getattr(configured, k, None) for k in ("tls_client_cert", "tls_ca_file")):
            raise uses_tls  # before any Client exists (see below)
    gc.collect()  # Clients that failed to start earlier: closed now, not inside this one's start
    try:
        return Client(address, timeout=SCHEDULER_TIMEOUT, security=security, set_as_default=False)
    except (OSError, TypeError, ValueError) as exc:
        # a Client that failed to start is closed by the garbage collector; do it now: collected
        # later, inside another Client's start, its close waits forever on dask's loop lock
        gc.collect()
        if address.startswith("tls://") and security is None and isinstance(exc, TypeError):
            raise uses_tls from exc
        raise CohortError(
            f"could not reach the dask scheduler at {address} ({exc}). Check the address "
            "(tls://host:8786 or tcp://host:8786) and its TLS credentials, or leave out --scheduler "
            "to run locally."
        ) from exc


def check_models(markers: Sequence[str], models: dict) -> None:
    """Read every model's config (validated) and check its marker, before any slide is read."""
    from ..engine.model_files import ModelFileError, bundled_model_path, read_model_config

    for m in markers:
        spec = models.get(m)
        if spec is not None and not isinstance(spec, (str, Path)):
            continue  # a loaded model
        cfg = read_model_config(spec if spec is not None else bundled_model_path(m))
        if cfg.marker != m:
            raise ModelFileError(
                f"{Path(spec or '').name or 'the model'} is a {cfg.marker_name} model, not "
                f"{MARKERS[m]}. Pick the model file for {MARKERS[m]}."
            )
