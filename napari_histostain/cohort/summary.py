"""The cohort summary: one row per slide, rewritten atomically (CSV and JSON) as results arrive."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ..io.atomic import write_csv, write_json
from .slides import CohortSlide

#: Cohort summary file names inside the output folder.
SUMMARY_CSV = "cohort-summary.csv"
SUMMARY_JSON = "cohort-summary.json"
#: Row states.
STATUSES = ("done", "skipped", "failed", "pending")


def summary_columns(markers: Sequence[str]) -> list[str]:
    """The summary CSV's columns for `markers`."""
    cols = ["name", "case_id", "slide", "status", "output", "n_tiles", "call_status"]
    cols += ["no_call_reason"]
    for m in markers:
        cols += [f"{m}_probability", f"{m}_call"]
    return cols + ["warnings", "seconds", "attempts", "worker", "started", "finished", "error"]


def base_row(job: Any) -> dict:
    """The summary row of a `SlideJob` before it has run."""
    return {
        "name": job.slide.name,
        "case_id": job.slide.case_id,
        "slide": job.slide.path,
        "status": "pending",
        "output": str(job.out_dir),
        "attempts": job.attempt,
        "error": "",
    }


def failed_row(job: Any, message: str) -> dict:
    """The row of a slide that failed outside its task (its worker died, ...)."""
    row = base_row(job)
    row.update(status="failed", error=message, finished=iso_time())
    return row


def iso_time(t: float | None = None) -> str:
    """UTC time (default now) in ISO format, to the second."""
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
        return {s: self.count(s) for s in STATUSES}

    @property
    def failed(self) -> list[dict]:
        return [r for r in self.rows if r["status"] == "failed"]

    @property
    def ok(self) -> bool:
        return all(r["status"] in ("done", "skipped") for r in self.rows)


class CohortSummary:
    """Keeps the rows in cohort order and rewrites the CSV + JSON summary atomically."""

    def __init__(
        self, out_dir: Path, slides: list[CohortSlide], markers: Sequence[str], meta: dict
    ):
        self.markers = list(markers)
        self.meta = meta
        self.rows: dict[str, dict] = {s.name: {} for s in slides}
        self.csv = out_dir / SUMMARY_CSV
        self.json = out_dir / SUMMARY_JSON

    def set(self, row: dict) -> None:
        self.rows[row["name"]] = row

    def write(self) -> None:
        rows = list(self.rows.values())
        write_csv(self.csv, rows, summary_columns(self.markers))
        counts: dict[str, int] = {}
        for r in rows:
            counts[r.get("status", "pending")] = counts.get(r.get("status", "pending"), 0) + 1
        write_json(
            self.json, {**self.meta, "updated": iso_time(), "counts": counts, "slides": rows}
        )
