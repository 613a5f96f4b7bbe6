"""Fixtures of the bad-input tests: a small slide, fast models (`kit`), running the CLI in-process.

Every case asserts the exit status, the message and the exact files left in the output folder
(hidden files included: a lock, a staging folder or a temporary file left behind is a failure).
Predictions use a tiny TorchScript encoder and seeded models, so a whole run takes about a second.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from tiny_models import write_tiny_kit

from bad_inputs.kit import Result


@pytest.fixture
def cli(capsys):
    """Run `histostain ARGV...` in this process; returns a `Result`."""
    from napari_histostain.cli import main

    def run(*argv: str) -> Result:
        capsys.readouterr()
        code = main([str(a) for a in argv])
        captured = capsys.readouterr()
        return Result(code, captured.out, captured.err)

    return run


@pytest.fixture(scope="session")
def small_slide(tmp_path_factory) -> Path:
    """A 1024 x 768 px synthetic H&E slide at 0.5 um/px (3 tissue tiles at 1 um/px)."""
    from napari_histostain.io.synthetic import write_synthetic_slide

    return write_synthetic_slide(
        tmp_path_factory.mktemp("bad-slides") / "case.tif", 1024, 768, 0.5, seed=3
    )


@pytest.fixture(scope="session")
def kit(tmp_path_factory):
    """A tiny TorchScript tile encoder and seeded p53/ki67 models made for it."""
    return write_tiny_kit(tmp_path_factory.mktemp("bad-kit"))
