"""Shared fixtures: small synthetic slides (always) and the real sample data (when present)."""

from __future__ import annotations

from pathlib import Path

import pytest
from shared_data import SHARED_DATA, shared_file  # noqa: F401 - re-exported for tests


@pytest.fixture(scope="session")
def synthetic_slide(tmp_path_factory) -> Path:
    """A 3000 x 2000 px, 4-level synthetic JPEG slide at 0.5 um/px."""
    from napari_histostain.io.synthetic import write_synthetic_slide

    return write_synthetic_slide(tmp_path_factory.mktemp("slides") / "synthetic.tif", 3000, 2000, 0.5, seed=1)


@pytest.fixture(scope="module")
def synth_slide(synthetic_slide):
    """`synthetic_slide` opened as a `Slide` (closed after the module)."""
    from napari_histostain.io.slide import open_slide

    with open_slide(synthetic_slide) as s:
        yield s
