"""One writer per output: a lock file holding `host:pid`, taken over when its process is gone.

`predict-cohort` locks its output folder, `histostain predict` the outputs of one slide in a folder,
so two runs never mix their files. A lock left by a dead process on this machine is taken over; one
from another machine is not (its process cannot be checked): the message says which file to delete.
"""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path

from ..errors import HistostainError
from .atomic import OutputError, ensure_dir


class OutputLock:
    """Hold `path` (a lock file) while a `what` (e.g. "predict-cohort run") writes; `error` is the
    exception class raised when another live run holds it."""

    def __init__(self, path: str | Path, what: str, error: type[HistostainError] = OutputError):
        self.path = Path(path)
        self.what = what
        self.error = error
        self.me = f"{socket.gethostname()}:{os.getpid()}"

    def __enter__(self) -> OutputLock:
        ensure_dir(self.path.parent)
        for attempt in range(3):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                owner = self._owner()
                if not owner and attempt == 0:  # being written by a run starting right now
                    time.sleep(0.2)
                    continue
                host, _, pid = owner.partition(":")
                folder = self.path.parent
                if host != socket.gethostname():
                    raise self.error(
                        f"a {self.what} on {host or 'an unknown machine'} (pid {pid or '?'}) is "
                        f"writing to {folder}; wait for it, or delete {self.path} if it is no "
                        "longer running."
                    ) from None
                if pid.isdigit() and pid_alive(int(pid)):
                    raise self.error(
                        f"another {self.what} (pid {pid}) is writing to {folder}; wait for it to "
                        "finish or choose another --out folder."
                    ) from None
                self.path.unlink(missing_ok=True)  # stale lock of a dead run on this machine
                continue
            except OSError as exc:
                raise OutputError(f"could not create the lock file {self.path}: {exc}") from exc
            with os.fdopen(fd, "w") as fh:
                fh.write(self.me)
            return self
        raise self.error(f"could not lock {self.path}; remove it if no run is active.")

    def _owner(self) -> str:
        try:
            return self.path.read_text(errors="replace").strip()
        except FileNotFoundError:
            return ""

    def __exit__(self, *exc) -> None:
        if self._owner() == self.me:
            self.path.unlink(missing_ok=True)


def pid_alive(pid: int) -> bool:
    """Whether process `pid` exists on this machine."""
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
