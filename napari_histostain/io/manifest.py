"""The one reader of cohort manifests: CSV tables (or plain lists) naming slides, one row each.

Cohort prediction, `quantify --cohort`, training and the simulator all read their manifests here:
UTF-8 (a byte-order mark is fine), blank lines and `#` comment lines skipped, cell values and
column names stripped (and un-escaped where `io.atomic.write_csv` escaped a formula-like text),
and relative paths resolved against the manifest's own folder.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ..errors import HistostainError
from .atomic import unescape_cell


class ManifestError(HistostainError):
    """A manifest is missing, unreadable or lacks what the command needs."""


@dataclass
class ManifestTable:
    """A manifest's rows (column -> stripped text), their CSV line numbers and its columns."""

    path: Path
    columns: list[str]
    rows: list[dict[str, str]]
    lines: list[int]

    def column(self, *candidates: str) -> str | None:
        """The first of `candidates` that is a column (compared case-insensitively), as spelled here."""
        lower = {c.lower(): c for c in self.columns}
        return next((lower[c.lower()] for c in candidates if c.lower() in lower), None)

    def resolve(self, value: str) -> Path:
        """A path cell as a `Path`: `~` expanded, relative paths taken from the manifest's folder."""
        p = Path(value).expanduser()
        return p if p.is_absolute() else self.path.parent / p


def read_manifest(
    path: str | Path,
    *,
    required: Sequence[str] = (),
    plain_list_column: str | None = None,
    path_columns: Sequence[str] = (),
    what: str = "manifest",
) -> ManifestTable:
    """Read a manifest CSV; `ManifestError` when it is missing, unreadable, empty or lacks a column.

    `required` columns must all be present. With `plain_list_column`, a file whose first line names
    none of `path_columns` and has one field is a plain list (one value per line, no header), read
    as that column.
    """
    p = Path(path).expanduser()
    if not p.is_file():
        raise ManifestError(f"{what} {p} does not exist. Check the path.")
    try:
        text = p.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise ManifestError(f"cannot read {what} {p}: {exc}") from None
    numbered = [
        (i, ln)
        for i, ln in enumerate(text.splitlines(), start=1)
        if ln.strip() and not ln.lstrip().startswith("#")
    ]
    if not numbered:
        raise ManifestError(f"{what} {p} is empty: it lists no slides.")
    try:
        first = [c.strip() for c in next(csv.reader([numbered[0][1]]))]
        named = {c.lower() for c in first} & {c.lower() for c in (*path_columns, *required)}
        if plain_list_column and not named and len(first) == 1:
            return ManifestTable(
                p,
                [plain_list_column],
                [{plain_list_column: ln.strip()} for _, ln in numbered],
                [i for i, _ in numbered],
            )
        reader = csv.reader(io.StringIO("\n".join(ln for _, ln in numbered[1:])))
        rows = []
        for values in reader:
            row = {c: "" for c in first}
            row.update({c: unescape_cell((v or "").strip()) for c, v in zip(first, values)})
            rows.append(row)
    except csv.Error as exc:
        raise ManifestError(f"cannot read {what} {p}: {exc}") from None
    table = ManifestTable(p, first, rows, [i for i, _ in numbered[1:]])
    missing = [c for c in required if table.column(c) is None]
    if missing:
        raise ManifestError(
            f"{what} {p} lacks column(s) {', '.join(missing)}; it needs {', '.join(required)}."
        )
    return table
