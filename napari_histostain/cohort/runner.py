"""Cohort-scale prediction on dask.distributed: one task per slide, resumable, failure-tolerant.

`run_cohort(slides, out_dir, markers)` submits one task per slide to a dask cluster (a LocalCluster
of worker processes by default, or an existing scheduler). Each task predicts its slide into a
private staging folder, writes a done-marker and renames the folder into place
(`OUT/<slide name>/`), so a slide folder is either complete or absent. The cohort summary
(`cohort-summary.csv` / `.json`) is rewritten atomically as results arrive. A re-run skips slides
whose done-marker matches the slide's fingerprint, the markers, the models and the options; a slide
that cannot be read is recorded as failed and the cohort goes on; a slide whose worker died is
resubmitted up to `retries` times.
"""

from __future__ import annotations

import logging
import os
import shutil
import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from .. import __version__
from ..engine.predict import PredictOptions
from ..io.atomic import ensure_dir
from ..markers import MARKERS, check_markers
from .errors import CohortError
from .jobs import STAGING_DIR, SlideJob, SlideTask, completed_row, error_message, process_slide
from .slides import CohortSlide, cohort_slides, model_version
from .summary import CohortResult, CohortSummary, base_row, failed_row, iso_time

log = logging.getLogger(__name__)

LOCK_FILE = ".histostain-cohort.lock"
#: Resubmissions (not counted as retries) of a slide that was queued on a worker that died.
MAX_REQUEUES = 10
#: How long to keep trying to reach a remote scheduler.
SCHEDULER_TIMEOUT = "20s"


@dataclass(frozen=True)
class ClusterOptions:
    """Where and how the slide tasks run.

    `client` (a distributed Client), else `scheduler` (address of a running scheduler), else a new
    LocalCluster of `workers` processes x `threads_per_worker` task threads; `workers=0` runs the
    slides one after another in this process (no dask). `memory_limit` caps each local worker (dask
    restarts a worker over it); `inference_threads` sets torch's threads in each task (default:
    local cores / task slots; 1 on a given cluster); `retries`: resubmissions of a slide whose
    worker died.
    """

    client: Any = None
    scheduler: str | None = None
    workers: int = 2
    threads_per_worker: int = 1
    memory_limit: str | float | None = "auto"
    inference_threads: int | None = None
    retries: int = 2

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


def make_cluster(
    workers: int = 2,
    threads_per_worker: int = 1,
    *,
    memory_limit: str | float | None = "auto",
):
    """A LocalCluster of worker processes for cohort runs (scheduler-side retries switched off).

    A worker that dies fails its tasks at once (`allowed-failures` 0); `run_cohort` resubmits them
    itself, which works the same on a remote scheduler. The dashboard (on a free port) needs bokeh.
    """
    import dask
    from distributed import LocalCluster

    with dask.config.set({"distributed.scheduler.allowed-failures": 0}):
        return LocalCluster(
            n_workers=int(workers),
            threads_per_worker=int(threads_per_worker),
            processes=True,
            memory_limit=memory_limit if memory_limit is not None else 0,  # None: no cap
            dashboard_address=":0",  # a free port: never clashes with another cluster
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
    models = {m: str(Path(p).expanduser().resolve()) for m, p in predict.models.items()}
    predict = replace(predict, models=models)
    mversion = model_version(markers, models)
    meta = {
        "histostain_version": __version__,
        "markers": list(markers),
        "model_version": mversion,
        "out_dir": str(out),
        "started": iso_time(t0),
    }
    with _Lock(out):
        _clean_staging(out)
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
            _clean_staging(out)
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
                try:
                    client = own_client = Client(
                        cluster.scheduler, timeout=SCHEDULER_TIMEOUT, set_as_default=False
                    )
                except OSError as exc:
                    raise CohortError(
                        f"could not reach the dask scheduler at {cluster.scheduler} ({exc}). Check "
                        "the address (tcp://host:8786) or leave out --scheduler to run locally."
                    ) from exc
            else:
                own_cluster = make_cluster(
                    cluster.workers, cluster.threads_per_worker, memory_limit=cluster.memory_limit
                )
                client = own_client = Client(own_cluster, set_as_default=False)
        link = _dashboard_link(client) if own_cluster is None or _has_bokeh() else None
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


def _clean_staging(out_dir: Path) -> None:
    """Remove work-in-progress folders left by killed workers or interrupted runs."""
    shutil.rmtree(out_dir / STAGING_DIR, ignore_errors=True)
    for tmp in out_dir.glob(".*.part"):
        tmp.unlink(missing_ok=True)


class _Lock:
    """One cohort run per output folder: a lock file holding host:pid.

    A lock of a dead process on this machine is taken over; one from another machine is not.
    """

    def __init__(self, out_dir: Path):
        self.path = out_dir / LOCK_FILE
        self.me = f"{socket.gethostname()}:{os.getpid()}"

    def __enter__(self) -> _Lock:
        for _ in range(2):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            except FileExistsError:
                owner = self.path.read_text(errors="replace").strip()
                host, _, pid = owner.partition(":")
                if host != socket.gethostname():
                    raise CohortError(
                        f"a predict-cohort run on {host} (pid {pid}) is writing to "
                        f"{self.path.parent}; wait for it, or delete {self.path} if it is no longer "
                        "running."
                    ) from None
                if pid.isdigit() and _pid_alive(int(pid)):
                    raise CohortError(
                        f"another predict-cohort run (pid {pid}) is writing to {self.path.parent}; "
                        "wait for it to finish or choose another --out folder."
                    ) from None
                self.path.unlink(missing_ok=True)  # stale lock of a dead run on this machine
                continue
            with os.fdopen(fd, "w") as fh:
                fh.write(self.me)
            return self
        raise CohortError(f"could not lock {self.path}; remove it if no run is active.")

    def __exit__(self, *exc) -> None:
        self.path.unlink(missing_ok=True)


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
