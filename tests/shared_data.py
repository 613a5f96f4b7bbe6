"""The real sample data beside the repository (../shared/data), when present."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

#: Real sample data lives beside the repository (../shared/data); a fresh clone has none.
SHARED_DATA = Path(
    os.environ.get(
        "HISTOSTAIN_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"
    )
)


def shared_file(*parts: str) -> Path:
    """Path to a file of the real sample data, or skip the test when it is absent."""
    p = SHARED_DATA.joinpath(*parts)
    if not p.exists():
        pytest.skip(f"real sample data not available: {p}")
    return p
