"""Shared fixtures (small synthetic slides) and the test tiers.

Tiers: a test that uses a napari viewer or Qt (`qtbot`, `make_napari_viewer`) is marked `gui`
automatically; tests that take more than a few seconds are marked `slow` where they are defined.
The fast tier is `pytest -m "not slow and not gui"`.
"""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def synthetic_slide(tmp_path_factory) -> Path:
    """A 3000 x 2000 px, 4-level synthetic JPEG slide at 0.5 um/px."""
    from napari_histostain.io.synthetic import write_synthetic_slide

    return write_synthetic_slide(
        tmp_path_factory.mktemp("slides") / "synthetic.tif", 3000, 2000, 0.5, seed=1
    )


@pytest.fixture(scope="module")
def synth_slide(synthetic_slide):
    """`synthetic_slide` opened as a `Slide` (closed after the module)."""
    from napari_histostain.io.slide import open_slide

    with open_slide(synthetic_slide) as s:
        yield s


GUI_FIXTURES = {"qtbot", "make_napari_viewer", "make_napari_viewer_proxy"}


def pytest_collection_modifyitems(config, items):
    """Mark every test that needs a display `gui`."""
    for item in items:
        if GUI_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.gui)
