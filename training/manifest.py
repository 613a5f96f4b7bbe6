"""Cohort manifest CSV: one row per (case, marker) with its H&E and IHC slide and the case label.

Columns: case_id, marker, he_path, ihc_path, label; optional fold (int) and split (train/test).
Relative paths are resolved against the manifest's folder. `load_manifest` collects every problem
and raises one `ManifestError` that lists them with their CSV line numbers.
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass, field
from pathlib import Path

from napari_histostain.errors import HistostainError

REQUIRED_COLUMNS = ("case_id", "marker", "he_path", "ihc_path", "label")
SPLITS = ("train", "test")
_MAX_LISTED = 20


class ManifestError(HistostainError):
    """The cohort manifest is missing, malformed or inconsistent."""


@dataclass(frozen=True)
class CohortCase:
    """One case of one marker: its paired slides and label."""

    case_id: str
    marker: str
    he_path: Path
    ihc_path: Path
    label: str
    fold: int | None = None
    split: str | None = None
    extra: dict[str, str] = field(default_factory=dict, compare=False, hash=False)


@dataclass
class Manifest:
    """Validated cohort: its cases (for one marker, or all) and class list (index = class id)."""

    path: Path
    cases: list[CohortCase]
    classes: list[str]

    def for_marker(self, marker: str) -> Manifest:
        return Manifest(self.path, [c for c in self.cases if c.marker == marker], self.classes)

    def split(self, name: str) -> list[CohortCase]:
        return [c for c in self.cases if (c.split or "train") == name]

    @property
    def markers(self) -> list[str]:
        return sorted({c.marker for c in self.cases})

    def label_index(self, case: CohortCase) -> int:
        return self.classes.index(case.label)

    def he_paths(self) -> list[Path]:
        """Every distinct H&E slide, in manifest order."""
        return list(dict.fromkeys(c.he_path for c in self.cases))

    def slide_paths(self) -> list[Path]:
        """Every distinct slide (an H&E shared by several markers appears once), in manifest order."""
        seen: dict[Path, None] = {}
        for c in self.cases:
            seen.setdefault(c.he_path, None)
            seen.setdefault(c.ihc_path, None)
        return list(seen)


def load_manifest(
    path: str | Path,
    *,
    marker: str | None = None,
    classes: list[str] | None = None,
    check_files: bool = True,
) -> Manifest:
    """Read and validate a cohort manifest; keep only `marker`'s rows when given.

    Raises `ManifestError` for: a missing/unreadable file, missing columns, empty fields, missing or
    unreadable slide files (when `check_files`), cases without a pair, labels outside `classes`,
    duplicate (case_id, marker) rows, bad fold/split values, or no rows left for `marker`.
    """
    path = Path(path)
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            reader = csv.DictReader(fh)
            header = [h.strip() for h in (reader.fieldnames or [])]
            rows = [{(k or "").strip(): (v or "").strip() for k, v in r.items()} for r in reader]
    except FileNotFoundError:
        raise ManifestError(
            f"manifest {path} does not exist; give the cohort CSV "
            f"(columns {', '.join(REQUIRED_COLUMNS)})."
        ) from None
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise ManifestError(f"cannot read manifest {path}: {exc}") from None
    missing = [c for c in REQUIRED_COLUMNS if c not in header]
    if missing:
        raise ManifestError(
            f"manifest {path} lacks column(s) {', '.join(missing)}; it needs "
            f"{', '.join(REQUIRED_COLUMNS)} (optional: fold, split)."
        )
    if not rows:
        raise ManifestError(f"manifest {path} has no cases.")
    base = path.parent
    problems: list[str] = []
    cases: list[CohortCase] = []
    seen: dict[tuple[str, str], int] = {}
    for i, row in enumerate(rows, start=2):  # line 1 is the header
        if marker is not None and row["marker"] != marker:
            continue
        where = f"line {i} (case {row['case_id'] or '?'})"
        empty = [c for c in ("case_id", "marker", "label") if not row[c]]
        if empty:
            problems.append(f"{where}: empty {', '.join(empty)}")
            continue
        if not row["he_path"] or not row["ihc_path"]:
            side = "H&E" if not row["he_path"] else "IHC"
            problems.append(f"{where}: case has no {side} slide (every case needs an H&E/IHC pair)")
            continue
        key = (row["case_id"], row["marker"])
        if key in seen:
            problems.append(
                f"{where}: duplicate case {key[0]!r} for marker {key[1]!r} "
                f"(first on line {seen[key]})"
            )
            continue
        seen[key] = i
        he, ihc = _resolve(base, row["he_path"]), _resolve(base, row["ihc_path"])
        if check_files:
            for p in (he, ihc):
                if not p.is_file():
                    problems.append(f"{where}: slide file {p} does not exist")
                elif not os.access(p, os.R_OK):
                    problems.append(f"{where}: slide file {p} is not readable (check permissions)")
        fold = None
        if row.get("fold"):
            try:
                fold = int(row["fold"])
            except ValueError:
                problems.append(f"{where}: fold {row['fold']!r} is not an integer")
        split = row.get("split") or None
        if split is not None and split not in SPLITS:
            problems.append(f"{where}: split {split!r} must be one of {', '.join(SPLITS)}")
        extra = {k: v for k, v in row.items() if k not in REQUIRED_COLUMNS + ("fold", "split")}
        cases.append(
            CohortCase(row["case_id"], row["marker"], he, ihc, row["label"], fold, split, extra)
        )
    if classes is None:
        classes = sorted({c.label for c in cases})
    else:
        bad = [(c.case_id, c.label) for c in cases if c.label not in classes]
        problems += [
            f"case {cid}: label {lab!r} is not one of the classes {classes}" for cid, lab in bad
        ]
    if problems:
        more = (
            f"\n  ... and {len(problems) - _MAX_LISTED} more" if len(problems) > _MAX_LISTED else ""
        )
        raise ManifestError(
            f"manifest {path} has {len(problems)} problem(s); fix them and retry:\n  "
            + "\n  ".join(problems[:_MAX_LISTED])
            + more
        )
    if not cases:
        raise ManifestError(
            f"manifest {path} has no cases for marker {marker!r}; "
            f"markers present: {', '.join(sorted({r['marker'] for r in rows}))}."
        )
    if len(classes) < 2:
        raise ManifestError(
            f"manifest {path} has a single class {classes}; training needs at least two."
        )
    return Manifest(path, cases, list(classes))


def _resolve(base: Path, p: str) -> Path:
    q = Path(p).expanduser()
    return q if q.is_absolute() else (base / q)
