"""One slide's work in a cohort run (`SlideJob`), done on a worker: predict into a staging folder,
then move the finished files into place; and whether finished outputs are still current.

The tool touches only what it created: its run's staging folder (`.cohort.<run token>.histostain-
staging/`), and in a slide's folder the files its done-marker records. Any other file there (a
user's annotations, notes) survives every re-run, `--force` included.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import socket
import time
import traceback
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ..engine.device import worker_device
from ..engine.predict import PredictOptions
from ..errors import HistostainError
from ..io.atomic import STAGING_SUFFIX, deferred_interrupt, ensure_dir, write_json
from ..markers import MARKERS
from .slides import CohortSlide, slide_fingerprint
from .summary import base_row, iso_time

log = logging.getLogger(__name__)

#: Written last into each finished slide folder; its content decides whether a re-run may skip.
DONE_MARKER = ".histostain-done.json"
#: The previous done-marker while a slide's new files are moved in (lists the files to replace).
REPLACING_MARKER = ".histostain-done.replacing.json"


def staging_root(out_dir: str | Path, run_token: str) -> Path:
    """The folder in `out_dir` where one cohort run stages its slides' outputs."""
    return Path(out_dir) / f".cohort.{run_token}{STAGING_SUFFIX}"


def stale_staging(out_dir: str | Path) -> list[Path]:
    """Staging folders of cohort runs in `out_dir` (only names this module makes)."""
    return sorted(Path(out_dir).glob(f".cohort.*{STAGING_SUFFIX}"))


@dataclass(frozen=True)
class SlideJob:
    """What a worker needs to predict one slide of the cohort (picklable)."""

    slide: CohortSlide
    out_dir: str  # the slide's final output folder
    markers: tuple[str, ...]
    predict: PredictOptions = field(default_factory=PredictOptions)
    inference_threads: int = 0  # torch threads in the task (0: leave as is)
    model_version: str = ""
    encoder_fingerprint: str = ""  # expected encoder identity ("": not checked on resume)
    staging_root: str = ""  # this run's staging folder (`staging_root()`)
    attempt: int = 1
    requeued: int = 0
    token: str = ""  # names this attempt's staging folder

    @property
    def staging(self) -> Path:
        """This attempt's staging folder."""
        final = Path(self.out_dir)
        root = Path(self.staging_root) if self.staging_root else staging_root(final.parent, "local")
        return root / f"{final.name}.{self.token or 'local'}"

    def again(self, **changes: Any) -> SlideJob:
        """A new attempt of this job (a new token names its staging folder)."""
        return replace(self, token=uuid.uuid4().hex[:12], **changes)


SlideTask = Callable[[SlideJob, Path], dict]
"""task(job, out_dir) -> summary dict; writes the slide's files into out_dir."""


def predict_and_save(job: SlideJob, out_dir: Path) -> dict:
    """Predict one slide and write its outputs into `out_dir` exactly as `histostain predict` does;
    return the slide-level summary (probabilities, calls, tile count)."""
    import torch

    from ..engine.predict import predict_slide
    from ..io.slide import open_slide
    from ..results.prediction_files import save_prediction

    if job.inference_threads > 0 and torch.get_num_threads() != job.inference_threads:
        torch.set_num_threads(job.inference_threads)
    options = replace(job.predict, device=worker_device(job.predict.device, dask_worker_slot()))
    with open_slide(job.slide.path) as slide:
        prediction = predict_slide(slide, job.markers, options)
    save_prediction(prediction, out_dir)
    return {
        "probabilities": {m: p.probability for m, p in prediction.markers.items()},
        "calls": {m: p.label or "" for m, p in prediction.markers.items()},
        "n_tiles": len(prediction.grid),
        **slide_call(prediction),
        "encoder": prediction.encoder_id,
        "encoder_fingerprint": prediction.encoder_fingerprint,
    }


def slide_call(prediction: Any) -> dict:
    """A slide's call over its markers: `call_status` ("no_call" when any marker has no call, else
    "forced" when any was forced, else "call"), `no_call_reason` (the markers' codes, ";"-joined,
    "" when none) and `warnings` (the prediction's messages, " | "-joined)."""
    statuses = [m.call_status for m in prediction.markers.values()]
    status = next((s for s in ("no_call", "forced") if s in statuses), "call")
    codes: list[str] = []
    for m in prediction.markers.values():
        for code in (m.no_call_reason or "").split(";"):
            if code and code not in codes:
                codes.append(code)
    return {
        "call_status": status,
        "no_call_reason": ";".join(codes),
        "warnings": " | ".join(prediction.messages),
    }


def dask_worker_slot() -> int | None:
    """The number of the dask worker running this task (a LocalCluster names its workers 0, 1,
    ...); None outside a worker or for a worker with another kind of name."""
    try:
        from distributed import get_worker

        name = get_worker().name
    except (ImportError, ValueError):
        return None
    try:
        return int(name)
    except (TypeError, ValueError):
        return None


def process_slide(job: SlideJob, task: SlideTask | None = None) -> dict:
    """Run `task` for one slide inside a staging folder and move the finished folder into place.

    Never raises for a bad slide: returns a summary row whose `status` is "done" or "failed". The
    slide's files move into its folder only once every file and the done-marker are written
    (`commit_slide`); other files in the folder are kept.
    """
    task = task or predict_and_save
    _quiet_unconfigured_logs()
    started = time.time()
    staging = job.staging
    row = base_row(job)
    row.update(worker=f"{socket.gethostname()}:{os.getpid()}", started=iso_time(started))
    committed = False
    try:
        ensure_dir(staging)  # first: its existence tells the client that this attempt started
        fingerprint = slide_fingerprint(job.slide.path)
        summary = task(job, staging) or {}
        files = sorted(str(f.relative_to(staging)) for f in staging.rglob("*") if f.is_file())
        row.update(summary_fields(summary))
        row.update(status="done", seconds=round(time.time() - started, 3), finished=iso_time())
        done = {
            "slide": job.slide.path,
            "fingerprint": fingerprint,
            "model_version": job.model_version,
            "markers": list(job.markers),
            "options": job.predict.result_key(),
            "encoder": summary.get("encoder", ""),
            "encoder_fingerprint": summary.get("encoder_fingerprint", ""),
            "files": {f: (staging / f).stat().st_size for f in files},
            "row": row,
        }
        write_json(staging / DONE_MARKER, done)
        commit_slide(staging, Path(job.out_dir))
        committed = True
    except Exception as exc:
        row.update(
            status="failed",
            error=error_message(exc),
            seconds=round(time.time() - started, 3),
            finished=iso_time(),
        )
        log.debug("slide %s failed:\n%s", job.slide.path, traceback.format_exc())
    finally:
        if not committed:
            shutil.rmtree(staging, ignore_errors=True)
    return row


def _quiet_unconfigured_logs() -> None:
    """On a dask worker (no logging set up), keep our log lines off its stderr: the client reports
    each slide's outcome (and said, once, what the user must know, e.g. that a TorchScript encoder
    runs code), instead of every worker repeating it between the progress bar's lines."""
    ours = logging.getLogger("napari_histostain")
    if not logging.getLogger().handlers and not ours.handlers:
        ours.addHandler(logging.NullHandler())


def completed_row(job: SlideJob) -> dict | None:
    """The stored summary row when the slide's outputs are complete and current, else None."""
    final = Path(job.out_dir)
    try:
        done = json.loads((final / DONE_MARKER).read_text(encoding="utf-8"))
        if (
            done.get("model_version") != job.model_version
            or sorted(done.get("markers", [])) != sorted(job.markers)
            or done.get("options") != job.predict.result_key()
            or (
                job.encoder_fingerprint
                and done.get("encoder_fingerprint") != job.encoder_fingerprint
            )
        ):
            return None
        for name, size in done["files"].items():
            if (final / name).stat().st_size != size:
                return None
        if done.get("fingerprint") != slide_fingerprint(job.slide.path):
            return None
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None
    row = dict(done.get("row") or {})
    row.update(status="skipped", name=job.slide.name, slide=job.slide.path, output=str(final))
    return row


def commit_slide(staging: Path, final: Path) -> None:
    """Move a slide's finished files from `staging` into its folder `final`, keeping every file the
    tool did not write there.

    The old done-marker is set aside first and the new one moved in last, so an interrupted commit
    leaves a folder without a done-marker (a re-run recomputes it); files of the previous result
    that the new one no longer writes (its done-marker lists them) are removed; nothing else in
    `final` is touched. Ctrl-C waits for the few renames to finish.
    """
    ensure_dir(final)
    new = sorted(
        str(f.relative_to(staging))
        for f in staging.rglob("*")
        if f.is_file() and f.name != DONE_MARKER
    )
    with deferred_interrupt():
        old = recorded_files(final)
        if (final / DONE_MARKER).exists():
            os.replace(final / DONE_MARKER, final / REPLACING_MARKER)
        for name in new:
            (final / name).parent.mkdir(parents=True, exist_ok=True)
            os.replace(staging / name, final / name)
        for name in sorted(old - set(new)):
            (final / name).unlink(missing_ok=True)
        os.replace(staging / DONE_MARKER, final / DONE_MARKER)
        (final / REPLACING_MARKER).unlink(missing_ok=True)
    shutil.rmtree(staging, ignore_errors=True)


def recorded_files(final: Path) -> set[str]:
    """The files a slide folder's done-marker (or the one being replaced) says the tool wrote,
    as safe relative paths inside `final`."""
    names: set[str] = set()
    for marker in (final / DONE_MARKER, final / REPLACING_MARKER):
        try:
            files = json.loads(marker.read_text(encoding="utf-8")).get("files") or {}
        except (OSError, ValueError, AttributeError):
            continue
        for name in files if isinstance(files, dict) else ():
            p = Path(str(name))
            if not p.is_absolute() and ".." not in p.parts and p.name not in ("", DONE_MARKER):
                names.add(p.as_posix())
    return names


def error_message(exc: BaseException) -> str:
    """One line for the summary: our own message, or the exception's kind and text."""
    if isinstance(exc, HistostainError):
        return str(exc)
    if isinstance(exc, OSError) and exc.filename:
        return f"{exc.filename}: {exc.strerror or exc}"
    return f"{type(exc).__name__}: {exc}"


def summary_fields(summary: dict) -> dict:
    """Summary-row fields of a task's summary (tiles, per-marker probability and call)."""
    out: dict[str, Any] = {"n_tiles": summary.get("n_tiles", "")}
    for key in ("call_status", "no_call_reason", "warnings"):
        out[key] = summary.get(key, "")
    probs = summary.get("probabilities") or {}
    calls = summary.get("calls") or {}
    for m in MARKERS:
        if m in probs:
            p = probs[m]
            out[f"{m}_probability"] = "" if p is None or math.isnan(p) else round(float(p), 6)
        if m in calls:
            out[f"{m}_call"] = calls[m]
    return out
