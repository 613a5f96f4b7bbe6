"""Cohort-scale batch prediction on dask.distributed: one task per slide, resumable, failure-tolerant.

`run_cohort(slides, out_dir, markers)` submits one task per slide to a dask cluster (a LocalCluster
of worker processes by default, or an existing scheduler). Each task opens its slide, predicts it and
writes the outputs into a private staging folder, then writes a done-marker and renames the folder
into place (`OUT/<slide name>/`), so a slide folder is either complete or absent: a worker killed
mid-slide leaves nothing half-written under a final name. A cohort summary (`cohort-summary.csv` and
`.json`) is rewritten atomically as results arrive. A re-run skips slides whose done-marker matches
the slide's fingerprint (size, mtime and a hash of its first and last MiB), the markers, the model
version and the prediction options; a slide that cannot be read is recorded as failed and the cohort
goes on; a slide whose worker died is resubmitted up to `retries` times.

The command `histostain predict-cohort` is registered here (`register(subparsers)`).
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import hashlib
import io
import json
import logging
import math
import os
import shutil
import socket
import sys
import time
import traceback
import uuid
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from . import MARKERS, __version__
from ._io import atomic_open, ensure_dir, write_json
from .errors import HistostainError

log = logging.getLogger(__name__)

#: Written last into each finished slide folder; its content decides whether a re-run may skip.
DONE_MARKER = ".histostain-done.json"
#: Cohort summary file names inside the output folder.
SUMMARY_CSV = "cohort-summary.csv"
SUMMARY_JSON = "cohort-summary.json"
#: Work-in-progress slide folders live here until they are complete.
STAGING_DIR = ".staging"
LOCK_FILE = ".histostain-cohort.lock"
#: Resubmissions (not counted as retries) of a slide that was queued on a worker that died.
MAX_REQUEUES = 10
#: How long to keep trying to reach a remote scheduler.
SCHEDULER_TIMEOUT = "20s"
#: Bytes hashed at each end of a slide file for its fingerprint.
FINGERPRINT_BYTES = 1 << 20
#: Manifest columns that may hold the slide path (first match wins).
MANIFEST_PATH_COLUMNS = ("slide", "path", "slide_path", "he_path", "file", "filename")

#: `predict_slide` options that change the results: part of what makes finished outputs current.
PREDICT_OPTIONS = ("tile_mpp", "mpp", "min_tissue", "encoder")

SlideTask = Callable[[str, Path, tuple, dict], dict]
"""task(slide_path, out_dir, markers, options) -> summary dict; writes the slide's files into out_dir."""


class CohortError(HistostainError):
    """The cohort cannot run (bad manifest, no slides, output folder busy, no scheduler)."""


# ------------------------------------------------------------------------------------------------
# Slides, names, fingerprints
# ------------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class CohortSlide:
    """One slide of the cohort: its path, its output folder name and optional case id."""

    path: str
    name: str
    case_id: str = ""


def read_manifest(manifest: str | Path) -> list[tuple[str, str]]:
    """(slide path, case id) pairs from a CSV manifest or a plain list of paths (one per line).

    A CSV needs one of the columns `slide`, `path`, `slide_path`, `he_path`, `file`; `case_id` is
    carried into the summary. Relative paths are relative to the manifest's folder.
    """
    p = Path(manifest).expanduser()
    if not p.is_file():
        raise CohortError(f"manifest {p} does not exist. Check the path given to --manifest.")
    base = p.parent
    text = p.read_text(encoding="utf-8-sig")
    lines = [ln for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    if not lines:
        raise CohortError(f"manifest {p} lists no slides.")
    first = [c.strip().lower() for c in next(csv.reader([lines[0]]))]
    column = next((c for c in MANIFEST_PATH_COLUMNS if c in first), None)
    out: list[tuple[str, str]] = []
    if column is None:
        if len(first) > 1:
            raise CohortError(
                f"manifest {p}: no slide path column; name one of {', '.join(MANIFEST_PATH_COLUMNS)} "
                "in the header row, or list one slide path per line."
            )
        out = [(ln.strip(), "") for ln in lines]
    else:
        reader = csv.DictReader(io.StringIO("\n".join(lines)))
        reader.fieldnames = [f.strip().lower() for f in reader.fieldnames or []]
        for row in reader:
            value = (row.get(column) or "").strip()
            if value:
                out.append((value, (row.get("case_id") or "").strip()))
    return [(str(q if (q := Path(s).expanduser()).is_absolute() else base / q), c) for s, c in out]


def cohort_slides(
    paths: Iterable[str | Path] = (), manifest: str | Path | None = None
) -> list[CohortSlide]:
    """The cohort's slides (duplicates dropped) with unique output folder names (file stems)."""
    items = [(str(Path(p).expanduser()), "") for p in paths]
    if manifest is not None:
        items += read_manifest(manifest)
    seen: dict[str, str] = {}
    for path, case in items:
        key = os.path.abspath(path)
        if key not in seen or (case and not seen[key]):
            seen[key] = case
    if not seen:
        raise CohortError("no slides given: pass slide files and/or --manifest FILE.")
    stems: dict[str, int] = {}
    for key in seen:
        stem = _stem(key)
        stems[stem] = stems.get(stem, 0) + 1
    slides = []
    for key, case in seen.items():
        stem = _stem(key)
        if stems[stem] > 1:  # same file name in different folders: keep them apart
            stem = f"{stem}-{hashlib.sha1(key.encode()).hexdigest()[:8]}"
        slides.append(CohortSlide(key, stem, case))
    return slides


def _stem(path: str) -> str:
    """The slide's output name: its file name up to the first dot, as `SlidePrediction.save` uses."""
    return Path(path).name.split(".")[0] or "slide"


def slide_fingerprint(path: str | Path) -> str:
    """A cheap identity of a slide's content: size, mtime and SHA-256 of its first and last MiB.

    A DICOM folder is fingerprinted by the names, sizes and mtimes of its files. Raises OSError
    when the path cannot be read.
    """
    p = Path(path)
    h = hashlib.sha256()
    if p.is_dir():
        for f in sorted(p.iterdir()):
            if f.is_file():
                st = f.stat()
                h.update(f"{f.name}\0{st.st_size}\0{int(st.st_mtime)}\n".encode())
        return "dir-" + h.hexdigest()[:32]
    st = p.stat()
    h.update(f"{st.st_size}\0{int(st.st_mtime)}\0".encode())
    with open(p, "rb") as fh:
        h.update(fh.read(FINGERPRINT_BYTES))
        if st.st_size > FINGERPRINT_BYTES:
            fh.seek(max(FINGERPRINT_BYTES, st.st_size - FINGERPRINT_BYTES))
            h.update(fh.read(FINGERPRINT_BYTES))
    return h.hexdigest()[:32]


def model_version(markers: Sequence[str], models: dict[str, str] | None = None) -> str:
    """An identity of the models used: package version + a hash of each marker's model file.

    `models` maps marker -> model file; missing markers use the bundled model. A model that cannot
    be found counts as "none" (the prediction task then reports the real error).
    """
    h = hashlib.sha256(__version__.encode())
    for marker in sorted(markers):
        path = (models or {}).get(marker)
        if path is None:
            try:
                from .model import bundled_model_path

                path = bundled_model_path(marker)
            except Exception:  # noqa: BLE001 - engine missing or no bundled weights
                path = None
        digest = "none"
        if path is not None and Path(path).is_file():
            digest = _file_sha256(path)
        h.update(f"{marker}={digest}\n".encode())
    return h.hexdigest()[:16]


def _file_sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


# ------------------------------------------------------------------------------------------------
# The per-slide task (runs on a worker)
# ------------------------------------------------------------------------------------------------
def predict_and_save(slide_path: str, out_dir: Path, markers: tuple, options: dict) -> dict:
    """Predict one slide and write its outputs into `out_dir` exactly as `histostain predict` does.

    `options`: `inference_threads` (torch threads in this worker), `models` (marker -> model
    file) and `predict_slide` keywords (`tile_mpp`, `mpp`, `min_tissue`, `encoder`, `batch_size`,
    `threads`). Returns the slide-level summary (probabilities, calls, tile count).
    """
    import torch

    from .inference import predict_slide
    from .slide import open_slide

    threads = int(options.get("inference_threads") or 0)
    if threads > 0 and torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
    kwargs: dict[str, Any] = {
        k: options[k] for k in PREDICT_OPTIONS + ("batch_size", "threads")
        if options.get(k) is not None
    }
    if options.get("models"):
        kwargs["models"] = dict(options["models"])
    with open_slide(slide_path) as slide:
        prediction = predict_slide(slide, tuple(markers), **kwargs)
    prediction.save(out_dir)
    return {
        "probabilities": {m: p.probability for m, p in prediction.markers.items()},
        "calls": {m: p.label or "" for m, p in prediction.markers.items()},
        "n_tiles": len(prediction.grid),
    }


def process_slide(
    job: dict, task: SlideTask | None = None, options: dict | None = None
) -> dict:
    """Run `task` for one slide inside a staging folder and move the finished folder into place.

    Never raises for a bad slide: returns a summary row whose `status` is "done" or "failed". The
    final folder is replaced only once every file and the done-marker are written.
    """
    task = task or predict_and_save
    options = dict(options or {})
    started = time.time()
    final = Path(job["out_dir"])
    staging_root = final.parent / STAGING_DIR
    staging = staging_root / f"{final.name}.{job.get('token') or uuid.uuid4().hex[:12]}"
    row = _base_row(job)
    row.update(worker=f"{socket.gethostname()}:{os.getpid()}", started=_iso(started))
    committed = False
    try:
        ensure_dir(staging)  # first: its existence tells the client that this attempt started
        fingerprint = slide_fingerprint(job["path"])
        summary = task(job["path"], staging, tuple(job["markers"]), options) or {}
        files = sorted(
            str(f.relative_to(staging)) for f in staging.rglob("*") if f.is_file()
        )
        row.update(_summary_fields(summary))
        row.update(status="done", seconds=round(time.time() - started, 3), finished=_iso())
        marker = {
            "slide": job["path"],
            "fingerprint": fingerprint,
            "model_version": job["model_version"],
            "markers": list(job["markers"]),
            "options": job["options_key"],
            "files": {f: (staging / f).stat().st_size for f in files},
            "row": row,
        }
        write_json(staging / DONE_MARKER, marker)
        _commit(staging, final)
        committed = True
    except Exception as exc:  # noqa: BLE001 - a bad slide is recorded, the cohort goes on
        row.update(
            status="failed",
            error=_message(exc),
            seconds=round(time.time() - started, 3),
            finished=_iso(),
        )
        log.debug("slide %s failed:\n%s", job["path"], traceback.format_exc())
    finally:
        if not committed:
            shutil.rmtree(staging, ignore_errors=True)
    return row


def _commit(staging: Path, final: Path) -> None:
    """Replace `final` by the complete `staging` folder (two renames; old outputs deleted after)."""
    old = None
    if final.exists():
        old = staging.with_name(staging.name + ".old")
        os.replace(final, old)
    os.replace(staging, final)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _message(exc: BaseException) -> str:
    if isinstance(exc, HistostainError):
        return str(exc)
    if isinstance(exc, OSError) and exc.filename:
        return f"{exc.filename}: {exc.strerror or exc}"
    return f"{type(exc).__name__}: {exc}"


def _summary_fields(summary: dict) -> dict:
    out: dict[str, Any] = {"n_tiles": summary.get("n_tiles", "")}
    probs = summary.get("probabilities") or {}
    calls = summary.get("calls") or {}
    for m in MARKERS:
        if m in probs:
            p = probs[m]
            out[f"{m}_probability"] = "" if p is None or math.isnan(p) else round(float(p), 6)
        if m in calls:
            out[f"{m}_call"] = calls[m]
    return out


# ------------------------------------------------------------------------------------------------
# Summary rows and files
# ------------------------------------------------------------------------------------------------
def _columns(markers: Sequence[str]) -> list[str]:
    cols = ["name", "case_id", "slide", "status", "output", "n_tiles"]
    for m in markers:
        cols += [f"{m}_probability", f"{m}_call"]
    return cols + ["seconds", "attempts", "worker", "started", "finished", "error"]


def _base_row(job: dict) -> dict:
    return {
        "name": job["name"],
        "case_id": job.get("case_id", ""),
        "slide": job["path"],
        "status": "pending",
        "output": str(job["out_dir"]),
        "attempts": job.get("attempt", 1),
        "error": "",
    }


def _iso(t: float | None = None) -> str:
    return datetime.fromtimestamp(t if t is not None else time.time(), timezone.utc).isoformat(
        timespec="seconds"
    )


@dataclasses.dataclass
class CohortResult:
    """What `run_cohort` did: one summary row per slide and the summary files."""

    rows: list[dict]
    summary_csv: Path
    summary_json: Path
    seconds: float
    dashboard_link: str | None = None

    def count(self, status: str) -> int:
        return sum(r["status"] == status for r in self.rows)

    @property
    def counts(self) -> dict[str, int]:
        return {s: self.count(s) for s in ("done", "skipped", "failed", "pending")}

    @property
    def failed(self) -> list[dict]:
        return [r for r in self.rows if r["status"] == "failed"]

    @property
    def ok(self) -> bool:
        return all(r["status"] in ("done", "skipped") for r in self.rows)


class _Summary:
    """Keeps the rows in cohort order and rewrites the CSV + JSON summary atomically."""

    def __init__(self, out_dir: Path, slides: list[CohortSlide], markers, meta: dict):
        self.out_dir = out_dir
        self.markers = list(markers)
        self.meta = meta
        self.rows = {s.name: {} for s in slides}
        self.csv = out_dir / SUMMARY_CSV
        self.json = out_dir / SUMMARY_JSON

    def set(self, row: dict) -> None:
        self.rows[row["name"]] = row

    def write(self) -> None:
        rows = list(self.rows.values())
        cols = _columns(self.markers)
        with atomic_open(self.csv, "w", newline="", encoding="utf-8") as fh:
            writer = csv.DictWriter(fh, fieldnames=cols, extrasaction="ignore")
            writer.writeheader()
            for r in rows:
                writer.writerow({c: r.get(c, "") for c in cols})
        counts: dict[str, int] = {}
        for r in rows:
            counts[r.get("status", "pending")] = counts.get(r.get("status", "pending"), 0) + 1
        write_json(
            self.json,
            {**self.meta, "updated": _iso(), "counts": counts, "slides": rows},
        )


# ------------------------------------------------------------------------------------------------
# Resumability
# ------------------------------------------------------------------------------------------------
def completed_row(job: dict) -> dict | None:
    """The stored summary row when the slide's outputs are complete and current, else None."""
    final = Path(job["out_dir"])
    marker_path = final / DONE_MARKER
    try:
        marker = json.loads(marker_path.read_text(encoding="utf-8"))
        if (
            marker.get("model_version") != job["model_version"]
            or sorted(marker.get("markers", [])) != sorted(job["markers"])
            or marker.get("options") != job["options_key"]
        ):
            return None
        for name, size in marker["files"].items():
            if (final / name).stat().st_size != size:
                return None
        if marker.get("fingerprint") != slide_fingerprint(job["path"]):
            return None
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None
    row = dict(marker.get("row") or {})
    row.update(status="skipped", name=job["name"], slide=job["path"], output=str(final))
    return row


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


# ------------------------------------------------------------------------------------------------
# Running the cohort
# ------------------------------------------------------------------------------------------------
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
            memory_limit=memory_limit if memory_limit is not None else "auto",
            dashboard_address=":0",  # a free port: never clashes with another cluster
            silence_logs=logging.ERROR,
        )


def run_cohort(
    slides: Sequence[CohortSlide | str | Path],
    out_dir: str | Path,
    markers: Sequence[str] = tuple(MARKERS),
    *,
    task: SlideTask | None = None,
    client=None,
    scheduler: str | None = None,
    workers: int = 2,
    threads_per_worker: int = 1,
    memory_limit: str | float | None = "auto",
    inference_threads: int | None = None,
    models: dict[str, str] | None = None,
    predict_options: dict[str, Any] | None = None,
    retries: int = 2,
    force: bool = False,
    progress: Callable[[dict], None] | None = None,
    on_start: Callable[[str | None, int, int], None] | None = None,
) -> CohortResult:
    """Predict every slide of a cohort, one dask task per slide; return the summary.

    Where it runs: `client` (a distributed Client), else `scheduler` (address of a running
    scheduler), else a new LocalCluster of `workers` processes x `threads_per_worker` task threads;
    `workers=0` runs the slides one after another in this process (no dask). `memory_limit` caps
    each local worker (dask kills and restarts a worker over it); `inference_threads` sets torch's
    threads in each task (default: local cores / task slots; 1 on a given cluster). `models` maps marker -> model file
    (default: bundled); `predict_options` are `predict_slide` keywords (tile_mpp, mpp, min_tissue,
    encoder, batch_size, threads). `task` replaces `predict_and_save`.
    `retries` is how often a slide whose worker died is resubmitted. `force` recomputes finished
    slides. `progress(row)` is called after each slide; `on_start(dashboard_link, n_to_run,
    n_skipped)` once before the first task.
    """
    t0 = time.time()
    markers = tuple(markers)
    unknown = [m for m in markers if m not in MARKERS]
    if unknown or not markers:
        raise CohortError(
            f"unknown marker(s) {', '.join(unknown) or '(none)'}; choose from {', '.join(MARKERS)}."
        )
    if all(isinstance(s, CohortSlide) for s in slides):
        cohort = list(slides)
    else:
        cohort = cohort_slides([s.path if isinstance(s, CohortSlide) else s for s in slides])
    if not cohort:
        raise CohortError("no slides given: pass slide files and/or --manifest FILE.")
    if len({s.name for s in cohort}) != len(cohort):
        raise CohortError("two slides share an output name; build the list with cohort_slides().")
    out = ensure_dir(Path(out_dir).expanduser().resolve())  # workers may run in another folder
    predict_options = {k: v for k, v in (predict_options or {}).items() if v is not None}
    options = {
        **predict_options,
        "inference_threads": inference_threads
        or _default_inference_threads(client, scheduler, workers, threads_per_worker),
        "models": {m: str(Path(p).expanduser().resolve()) for m, p in (models or {}).items()},
    }
    options_key = {k: predict_options[k] for k in PREDICT_OPTIONS if k in predict_options}
    mversion = model_version(markers, options["models"])
    meta = {
        "histostain_version": __version__,
        "markers": list(markers),
        "model_version": mversion,
        "out_dir": str(out),
        "started": _iso(t0),
    }
    with _Lock(out):
        _clean_staging(out)
        summary = _Summary(out, cohort, markers, meta)
        jobs = []
        for s in cohort:
            job = {
                "path": s.path,
                "name": s.name,
                "case_id": s.case_id,
                "out_dir": str(out / s.name),
                "markers": list(markers),
                "model_version": mversion,
                "options_key": options_key,
                "attempt": 1,
            }
            done = None if force else completed_row(job)
            if done is not None:
                done["case_id"] = s.case_id or done.get("case_id", "")
                summary.set(done)
            else:
                summary.set(_base_row(job))
                jobs.append(job)
        summary.write()
        n_skipped = len(cohort) - len(jobs)

        def report(row: dict) -> None:
            summary.set(row)
            summary.write()
            if progress is not None:
                progress(row)

        link = None
        try:
            if not jobs:
                if on_start:
                    on_start(None, 0, n_skipped)
            elif client is None and scheduler is None and int(workers) <= 0:
                if on_start:
                    on_start(None, len(jobs), n_skipped)
                for job in jobs:
                    report(process_slide(job, task, options))
            else:
                link = _run_distributed(
                    jobs, task, options, report, client, scheduler, workers, threads_per_worker,
                    memory_limit, retries, lambda lk: on_start and on_start(lk, len(jobs), n_skipped),
                )
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


def _default_inference_threads(client, scheduler, workers: int, threads_per_worker: int) -> int:
    """Torch threads per task that fill this machine's cores without oversubscribing them.

    Local runs share the cores among all task slots; on a given cluster (whose cores we do not
    know) each task gets one thread, matching dask's default of one task slot per core.
    """
    if client is not None or scheduler is not None:
        return 1
    slots = max(1, int(workers)) * max(1, int(threads_per_worker)) if int(workers) > 0 else 1
    return max(1, (os.cpu_count() or 1) // slots)


def _run_distributed(
    jobs, task, options, report, client, scheduler, workers, threads_per_worker, memory_limit,
    retries, started,
) -> str | None:
    from distributed import Client, as_completed
    from distributed.scheduler import KilledWorker

    own_cluster = own_client = None
    try:
        if client is None:
            if scheduler:
                try:
                    client = own_client = Client(
                        scheduler, timeout=SCHEDULER_TIMEOUT, set_as_default=False
                    )
                except OSError as exc:
                    raise CohortError(
                        f"could not reach the dask scheduler at {scheduler} ({exc}). Check the "
                        "address (tcp://host:8786) or leave out --scheduler to run locally."
                    ) from exc
            else:
                own_cluster = make_cluster(workers, threads_per_worker, memory_limit=memory_limit)
                client = own_client = Client(own_cluster, set_as_default=False)
        link = _dashboard_link(client) if own_cluster is None or _has_bokeh() else None
        started(link)
        pending = {}
        for job in jobs:
            fut = _submit(client, job, task, options)
            pending[fut.key] = (job, fut)
        seq = as_completed([fut for _, fut in pending.values()], loop=client.loop)
        try:
            for fut in seq:
                job, _ = pending.pop(fut.key)
                try:
                    row = fut.result()
                except KilledWorker as exc:
                    started_here = (Path(job["out_dir"]).parent / STAGING_DIR /
                                    f"{job['name']}.{job['token']}").exists()
                    if not started_here and job.get("requeued", 0) < MAX_REQUEUES:
                        # queued on a worker that died because of another slide: not its fault
                        job = {**job, "requeued": job.get("requeued", 0) + 1}
                        nxt = _submit(client, job, task, options)
                        pending[nxt.key] = (job, nxt)
                        seq.add(nxt)
                        continue
                    if job["attempt"] <= retries:
                        job = {**job, "attempt": job["attempt"] + 1}
                        log.warning("worker died on %s; retrying (attempt %d)", job["name"], job["attempt"])
                        nxt = _submit(client, job, task, options)
                        pending[nxt.key] = (job, nxt)
                        seq.add(nxt)
                        continue
                    row = _failed_row(job, "the worker running this slide died "
                                      f"{job['attempt']} time(s) ({exc}); it may need more memory "
                                      "(--memory-limit) or the slide may crash the reader.")
                except Exception as exc:  # noqa: BLE001 - e.g. task not deserialisable
                    row = _failed_row(job, _message(exc))
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


def _submit(client, job: dict, task, options: dict):
    job["token"] = uuid.uuid4().hex[:12]  # names this attempt's staging folder
    key = f"histostain-slide-{job['name']}-{job['token']}"
    return client.submit(process_slide, job, task, options, key=key, pure=False, retries=0)


def _failed_row(job: dict, message: str) -> dict:
    row = _base_row(job)
    row.update(status="failed", error=message, finished=_iso())
    return row


def _has_bokeh() -> bool:
    import importlib.util

    return importlib.util.find_spec("bokeh") is not None


def _dashboard_link(client) -> str | None:
    try:
        if client.scheduler_info().get("services", {}).get("dashboard") is None:
            return None
        return client.dashboard_link
    except Exception:  # noqa: BLE001
        return None


# ------------------------------------------------------------------------------------------------
# CLI
# ------------------------------------------------------------------------------------------------
def register(subparsers) -> None:
    """Add `histostain predict-cohort`."""
    p = subparsers.add_parser(
        "predict-cohort",
        help="predict many slides on a dask cluster (resumable)",
        description="Predict IHC positivity for a cohort of slides, one dask task per slide. "
        "Each slide's outputs go to OUT/<slide name>/ (as `histostain predict` writes them); the "
        f"summary to OUT/{SUMMARY_CSV} and OUT/{SUMMARY_JSON}. Re-running skips slides whose "
        "outputs are complete and current; unreadable slides are recorded as failed.",
    )
    p.add_argument("slides", nargs="*", metavar="SLIDE", help="slide files (or DICOM folders)")
    p.add_argument("--manifest", metavar="FILE",
                   help="CSV with a slide/path/he_path column (and optional case_id), or one path per line")
    p.add_argument("--marker", "-m", action="append", choices=list(MARKERS), dest="markers",
                   help="marker to predict (repeat for several; default: all)")
    p.add_argument("--out", "-o", required=True, metavar="DIR", help="output folder")
    where = p.add_mutually_exclusive_group()
    where.add_argument("--scheduler", metavar="ADDRESS",
                       help="address of a running dask scheduler (e.g. tcp://host:8786)")
    where.add_argument("--workers", type=int, default=None, metavar="N",
                       help="local worker processes (default: 2; 0 = no dask, one slide after another)")
    p.add_argument("--threads-per-worker", type=int, default=1, metavar="M",
                   help="slides run at once in each local worker (default 1)")
    p.add_argument("--inference-threads", type=int, default=None, metavar="T",
                   help="torch threads per slide task (default: local CPU cores / (workers x "
                   "threads per worker); 1 with --scheduler)")
    p.add_argument("--memory-limit", default="auto", metavar="SIZE",
                   help="memory cap per local worker, e.g. 4GB (default: auto = RAM / workers); a "
                   "worker over it is restarted and its slide retried")
    p.add_argument("--retries", type=int, default=2,
                   help="resubmissions of a slide whose worker died (default 2)")
    p.add_argument("--tile-mpp", type=float, default=None,
                   help="tile resolution in um/px (default: the model's)")
    p.add_argument("--mpp", type=float, default=None,
                   help="override every slide's pixel size (um/px)")
    p.add_argument("--min-tissue", type=float, default=None,
                   help="minimum tissue fraction of a tile (default 0.25)")
    p.add_argument("--encoder", default=None,
                   help="tile encoder: registry name or TorchScript file (default: the model's)")
    p.add_argument("--batch-size", type=int, default=None, help="tiles per batch (default 32)")
    p.add_argument("--reader-threads", type=int, default=None,
                   help="tile reader threads per slide (default 2)")
    p.add_argument("--model", action="append", default=[], metavar="MARKER=FILE",
                   help="use this model file for a marker instead of the bundled one")
    p.add_argument("--force", action="store_true", help="recompute slides that are already done")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def _parse_models(values: list[str], markers: Sequence[str]) -> dict[str, str]:
    models = {}
    for v in values:
        marker, sep, path = v.partition("=")
        if not sep or marker not in MARKERS:
            raise CohortError(f"--model {v!r}: write MARKER=FILE with MARKER one of {', '.join(MARKERS)}.")
        if marker not in markers:
            raise CohortError(f"--model given for {marker}, which is not a chosen --marker.")
        if not Path(path).is_file():
            raise CohortError(f"--model {v!r}: {path} does not exist.")
        models[marker] = str(Path(path).resolve())
    return models


def run(args: argparse.Namespace) -> int:
    """Entry point of `histostain predict-cohort`."""
    if not getattr(args, "verbose", False):  # dask logs every worker start and stop at INFO
        import distributed  # noqa: F401  (importing it sets its log levels; override them after)

        logging.getLogger("distributed").setLevel(logging.ERROR)
    if args.scheduler and args.memory_limit != "auto":
        log.warning("--memory-limit applies to local workers; set it when starting the dask workers")
    slides = cohort_slides(args.slides, args.manifest)
    markers = tuple(dict.fromkeys(args.markers or MARKERS))
    bar = None

    def on_start(link, n_run, n_skipped):
        nonlocal bar
        n = len(slides)
        print(f"{n} slide{'s' * (n != 1)}: {n_skipped} already done, {n_run} to predict",
              file=sys.stderr)
        if link:
            print(f"dask dashboard: {link}", file=sys.stderr)
        if n_run and not args.no_progress:
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
            scheduler=args.scheduler,
            workers=2 if args.workers is None else args.workers,
            threads_per_worker=args.threads_per_worker,
            memory_limit=args.memory_limit,
            inference_threads=args.inference_threads,
            models=_parse_models(args.model, markers),
            predict_options={
                "tile_mpp": args.tile_mpp, "mpp": args.mpp, "min_tissue": args.min_tissue,
                "encoder": args.encoder, "batch_size": args.batch_size, "threads": args.reader_threads,
            },
            retries=args.retries,
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
