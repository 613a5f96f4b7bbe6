"""Helpers of the bad-input tests: running the CLI, listing files, arguments of the fast models.

Every case asserts the exit status, the message and the exact files left in the output folder
(hidden files included: a lock, a staging folder or a temporary file left behind is a failure).
Predictions use a tiny TorchScript encoder and seeded models, so a whole run takes about a second.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


@dataclass
class Result:
    """What a `histostain` run did."""

    code: int
    out: str
    err: str

    @property
    def error_lines(self) -> list[str]:
        """stderr's lines but our warnings (e.g. that a TorchScript encoder runs code)."""
        return [
            ln
            for ln in self.err.splitlines()
            if ln.strip() and not ln.startswith("histostain: warning:")
        ]


def files_in(folder: Path) -> list[str]:
    """Every file under `folder` (hidden ones too), as sorted relative POSIX paths; [] if absent."""
    if not folder.exists():
        return []
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())


def cli_env(**extra: str) -> dict[str, str]:
    """The environment of a `histostain` subprocess that imports this checkout."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), *filter(None, [env.get("PYTHONPATH")])])
    env.update(extra)
    return env


def run_subprocess(argv: list[str], *, wrap: list[str] = (), timeout: float = 300, **env) -> Result:
    """Run `histostain ARGV...` as a separate process (optionally inside `wrap`, e.g. unshare)."""
    cmd = [*wrap, sys.executable, "-m", "napari_histostain.cli", *map(str, argv)]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=cli_env(**env))
    return Result(r.returncode, r.stdout, r.stderr)


def private_mount_available() -> bool:
    """Whether `unshare` can give a command its own (tmpfs) mounts here."""
    if shutil.which("unshare") is None:
        return False
    r = subprocess.run(
        ["unshare", "-rm", "sh", "-c", "mount -t tmpfs -o size=1m tmpfs /mnt"],
        capture_output=True,
    )
    return r.returncode == 0


def model_args(kit, markers=("p53", "ki67")) -> list[str]:
    """--encoder/--marker/--model arguments of the kit."""
    args = ["--encoder", str(kit["encoder"])]
    for m in markers:
        args += ["--marker", m, "--model", f"{m}={kit['models'][m]}"]
    return args


def predict_args(slide, out, kit, *extra) -> list[str]:
    """`histostain predict` of `slide` into `out` with the kit's fast models."""
    return ["predict", str(slide), "--out", str(out), "--quiet", *model_args(kit), *map(str, extra)]
