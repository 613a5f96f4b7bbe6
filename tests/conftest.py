"""Shared fixtures: the real sample data (optional) and small synthetic slides (always)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

#: Real sample data lives beside the repository (../shared/data); a fresh clone has none.
SHARED_DATA = Path(os.environ.get("HISTOSTAIN_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))


def shared_file(*parts: str) -> Path:
    """Path to a file of the real sample data, or skip the test when it is absent."""
    p = SHARED_DATA.joinpath(*parts)
    if not p.exists():
        pytest.skip(f"real sample data not available: {p}")
    return p


@pytest.fixture(scope="session")
def synthetic_slide(tmp_path_factory) -> Path:
    """A 3000 x 2000 px, 4-level synthetic JPEG slide at 0.5 um/px."""
    from napari_histostain.synthetic import write_synthetic_slide

    return write_synthetic_slide(tmp_path_factory.mktemp("slides") / "synthetic.tif", 3000, 2000, 0.5, seed=1)


@pytest.fixture(scope="module")
def synth_slide(synthetic_slide):
    """`synthetic_slide` opened as a `Slide` (closed after the module)."""
    from napari_histostain.slide import open_slide

    with open_slide(synthetic_slide) as s:
        yield s
