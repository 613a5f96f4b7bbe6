"""Atomic file writing: write to a temporary file beside the target, then rename.

A crash, a full disk or a read-only folder never leaves a half-written file under the final name.
`write_csv` is the one CSV writer: a text cell that a spreadsheet would run as a formula is
escaped (`safe_cell`). `staged_files` writes a set of files into a private folder and moves them
into place together, so an interrupted run leaves the whole set or none of it.
"""

from __future__ import annotations

import contextlib
import csv
import errno
import glob
import io
import json
import os
import shutil
import signal
import tempfile
import threading
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import IO, Any

from ..errors import HistostainError


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _current_umask()


class OutputError(HistostainError):
    """An output could not be written (read-only folder, full disk, ...)."""


def _explain(path: Path, exc: OSError) -> OutputError:
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        what = "the folder is read-only or you lack permission; choose another output folder"
    elif exc.errno in (errno.ENOSPC, errno.EDQUOT):
        what = "the disk is full; free some space or choose another output folder"
    else:
        what = exc.strerror or str(exc)
    return OutputError(f"could not write {path}: {what}. Nothing was written.")


def ensure_dir(path: str | Path) -> Path:
    """Create a folder (and parents), turning OS errors into a clear `OutputError`."""
    p = Path(path)
    try:
        p.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise _explain(p, exc) from exc
    if not os.access(p, os.W_OK):
        raise OutputError(
            f"could not write to {p}: the folder is read-only; choose another output folder."
        )
    return p


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside `path`; on success rename it to `path`, on failure delete it.

    For writers that want a file name (tifffile, matplotlib, zarr, torch.save).
    """
    target = Path(path)
    ensure_dir(target.parent)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent)
        os.close(fd)
    except OSError as exc:
        raise _explain(target, exc) from exc
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        if tmp_path.is_file():
            os.chmod(
                tmp_path, 0o666 & ~_UMASK
            )  # mkstemp makes 0600; outputs get normal permissions
        os.replace(tmp_path, target)
    except OSError as exc:
        tmp_path.unlink(missing_ok=True)
        raise _explain(target, exc) from exc
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def atomic_open(path: str | Path, mode: str = "w", **kwargs: Any) -> Iterator[IO]:
    """Open a temporary file beside `path` for writing; rename it to `path` when the block succeeds."""
    with atomic_path(path) as tmp, open(tmp, mode, **kwargs) as fh:
        yield fh
        fh.flush()
        os.fsync(fh.fileno())


def write_json(path: str | Path, obj: Any, **kwargs: Any) -> Path:
    """Atomically write `obj` as pretty JSON."""
    with atomic_open(path, "w", encoding="utf-8") as fh:
        json.dump(obj, fh, indent=2, **kwargs)
        fh.write("\n")
    return Path(path)


#: Text cells starting with one of these are formulas to spreadsheet programs (CSV injection).
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


def safe_cell(value: Any) -> Any:
    """A CSV cell that no spreadsheet runs as a formula: text starting with = + - @ (or a tab or
    carriage return) gets a leading apostrophe, unless it is a plain number such as -0.5."""
    if isinstance(value, str) and value.startswith(FORMULA_PREFIXES):
        try:
            float(value)
        except ValueError:
            return "'" + value
    return value


def unescape_cell(text: str) -> str:
    """The original text of a cell written by `safe_cell` (what manifest readers use)."""
    if text.startswith("'") and text[1:].startswith(FORMULA_PREFIXES):
        return text[1:]
    return text


def write_csv(path: str | Path, rows: Iterable[Mapping[str, Any]], columns: Sequence[str]) -> Path:
    """Atomically write `rows` (dicts; missing cells empty, extra keys ignored) as a CSV table.

    Text cells a spreadsheet would run as formulas are escaped (`safe_cell`).
    """
    buf = io.StringIO()
    writer = csv.DictWriter(
        buf, fieldnames=list(columns), lineterminator="\n", extrasaction="ignore"
    )
    writer.writeheader()
    writer.writerows({k: safe_cell(v) for k, v in row.items()} for row in rows)
    with atomic_open(path, "w", encoding="utf-8", newline="") as fh:
        fh.write(buf.getvalue())
    return Path(path)


#: Name part of the private folders `staged_files` writes in (only such folders are ever removed).
STAGING_SUFFIX = ".histostain-staging"
#: Name part of the record of the set of files `staged_files` last committed.
RECORD_SUFFIX = ".histostain-files.json"


class StagedFiles:
    """A set of files being written into `folder` (private), to be moved into `out_dir` together.

    `record` (a file in `out_dir`) lists the set last committed there: files of that set which the
    new one does not have are removed with the commit (they belong to an older result), so the
    folder always holds one consistent set. Nothing else in `out_dir` is touched.
    """

    def __init__(self, folder: Path, out_dir: Path, record: Path | None = None):
        self.folder = folder
        self.out_dir = out_dir
        self.record = record
        self.committed: list[Path] = []
        self.removed: list[Path] = []

    def commit(self) -> list[Path]:
        """Move every staged file into `out_dir` (same relative path); Ctrl-C waits until done."""
        files = sorted(p for p in self.folder.rglob("*") if p.is_file())
        names = [p.relative_to(self.folder).as_posix() for p in files]
        with deferred_interrupt():
            try:
                for src, name in zip(files, names):
                    dst = self.out_dir / name
                    dst.parent.mkdir(parents=True, exist_ok=True)
                    os.replace(src, dst)
                    self.committed.append(dst)
                if self.record is not None:
                    for name in sorted(set(self._previous()) - set(names)):
                        (self.out_dir / name).unlink(missing_ok=True)
                        self.removed.append(self.out_dir / name)
                    write_json(self.record, {"files": names})
            except OSError as exc:
                raise _explain(self.out_dir, exc) from exc
        return self.committed

    def _previous(self) -> list[str]:
        """The safe relative names the record lists ([] without one)."""
        if self.record is None:
            return []
        try:
            names = json.loads(self.record.read_text(encoding="utf-8"))["files"]
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            return []
        return [
            str(n)
            for n in names
            if isinstance(n, str) and not Path(n).is_absolute() and ".." not in Path(n).parts
        ]


@contextlib.contextmanager
def staged_files(out_dir: str | Path, name: str) -> Iterator[StagedFiles]:
    """Yield a `StagedFiles` whose private folder `OUT/.<name>.<token>.histostain-staging/` the
    block writes into; when the block succeeds its files move into `out_dir` together (replacing
    the previous set of `name`, recorded in `OUT/.<name>.histostain-files.json`), otherwise (an
    error, Ctrl-C) none does. The caller holds the lock on `name`'s outputs (`io.lock`), so
    staging folders of `name` left by a killed run are removed first."""
    out = ensure_dir(out_dir)
    for stale in out.glob(f".{glob.escape(name)}.*{STAGING_SUFFIX}"):
        shutil.rmtree(stale, ignore_errors=True)
    folder = out / f".{name}.{uuid.uuid4().hex[:12]}{STAGING_SUFFIX}"
    try:
        folder.mkdir()
    except OSError as exc:
        raise _explain(folder, exc) from exc
    staged = StagedFiles(folder, out, record=out / f".{name}{RECORD_SUFFIX}")
    try:
        yield staged
        staged.commit()
    except OutputError as exc:  # name the file as the user knows it, not its staging path
        raise OutputError(str(exc).replace(str(folder), str(out))) from exc
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@contextlib.contextmanager
def deferred_interrupt() -> Iterator[None]:
    """Hold Ctrl-C (SIGINT) back during the block and raise it after: for short commits that must
    not stop half-way. Only in the main thread (elsewhere signals are not delivered anyway)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[int] = []
    previous = signal.signal(signal.SIGINT, lambda signum, _frame: caught.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    if caught:
        raise KeyboardInterrupt
