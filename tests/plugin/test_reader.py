"""The napari reader: a real viewer opens slides as multiscale layers in micrometres."""

from __future__ import annotations

import numpy as np
import pytest

from napari_histostain.io.synthetic import write_synthetic_slide
from napari_histostain.plugin.reader import (
    get_slide_reader,
    read_associated_layers,
    read_slide_layer,
)
from shared_data import shared_file


def test_reader_claims_slides_not_plain_tiffs(tmp_path, synthetic_slide):
    import tifffile

    plain = tmp_path / "photo.tif"
    tifffile.imwrite(plain, np.zeros((64, 64, 3), np.uint8))
    assert get_slide_reader(str(plain)) is None
    assert get_slide_reader(str(tmp_path / "notes.txt")) is None
    empty = tmp_path / "empty_folder"
    empty.mkdir()
    assert get_slide_reader(str(empty)) is None
    assert get_slide_reader(str(synthetic_slide)) is not None


def test_layer_data_scale_and_metadata(synthetic_slide):
    data, kwargs, kind = read_slide_layer(synthetic_slide)
    assert kind == "image" and kwargs["multiscale"] and kwargs["rgb"]
    assert kwargs["scale"] == pytest.approx((0.5, 0.5))
    assert kwargs["name"] == "synthetic"
    assert kwargs["metadata"]["slide_path"] == str(synthetic_slide)
    assert [d.shape[:2] for d in data][:2] == [(2000, 3000), (1000, 1500)]


def test_corrupt_slide_gives_one_error_and_no_layer(tmp_path):
    from napari.utils.notifications import notification_manager

    bad = tmp_path / "bad.svs"
    bad.write_text("not a slide")
    reader = get_slide_reader(str(bad))
    assert reader is not None  # .svs is ours: we explain instead of passing it on
    seen = []
    notification_manager.notification_ready.connect(seen.append)
    try:
        out = reader(str(bad))
    finally:
        notification_manager.notification_ready.disconnect(seen.append)
    assert out == [(None,)]
    assert len(seen) == 1 and "corrupt, truncated or not a slide" in seen[0].message


def test_associated_images_on_request():
    layers = read_associated_layers(shared_file("slides", "CMU-1-Small-Region.svs"), ["label"])
    assert len(layers) == 1 and layers[0][1]["name"].endswith("[label]")


@pytest.mark.gui
@pytest.mark.parametrize("async_slicing", [False, True])
def test_viewer_opens_slide_multiscale(make_napari_viewer, synthetic_slide, async_slicing, qtbot):
    from napari.settings import get_settings

    settings = get_settings()
    old = settings.experimental.async_
    settings.experimental.async_ = async_slicing
    try:
        viewer = make_napari_viewer(show=True)
        layers = viewer.open(str(synthetic_slide), plugin="napari-histostain")
        assert len(layers) == 1
        layer = layers[0]
        assert layer.multiscale and layer.rgb
        assert tuple(layer.scale) == pytest.approx((0.5, 0.5))
        assert str(layer.units[0]) in ("micrometer", "um")
        assert layer.extent.world[1] == pytest.approx([1999.5 * 0.5, 2999.5 * 0.5], abs=1.0)
        viewer.reset_view()
        qtbot.waitUntil(lambda: _tissue_fraction(viewer) > 0.02, timeout=10000)
    finally:
        settings.experimental.async_ = old


@pytest.mark.gui
def test_viewer_real_svs(make_napari_viewer, qtbot):
    path = shared_file("slides", "CMU-1-Small-Region.svs")
    viewer = make_napari_viewer(show=True)
    layer = viewer.open(str(path), plugin="napari-histostain")[0]
    assert tuple(layer.scale) == pytest.approx((0.499, 0.499), abs=1e-3)
    viewer.reset_view()
    qtbot.waitUntil(lambda: _tissue_fraction(viewer) > 0.05, timeout=10000)


def _tissue_fraction(viewer) -> float:
    """Fraction of screenshot pixels that look like stained tissue (pink/purple, not glass/black)."""
    rgb = viewer.screenshot(canvas_only=True, flash=False)[..., :3].astype(int)
    return float(((rgb.sum(-1) < 600) & (rgb[..., 0] > rgb[..., 1] + 20)).mean())


@pytest.mark.gui
def test_viewer_broken_slide_no_crash(make_napari_viewer, tmp_path):
    viewer = make_napari_viewer()
    bad = tmp_path / "truncated.svs"
    bad.write_bytes(b"II*\x00" + b"\x00" * 100)
    out = viewer.open(str(bad), plugin="napari-histostain")
    assert out == [] and len(viewer.layers) == 0


def test_rgba_slide_layer_composited(tmp_path):
    p = write_synthetic_slide(tmp_path / "rgba.tif", 1024, 1024, 0.5, rgba=True, levels=2)
    data, _, _ = read_slide_layer(p)
    assert data[0].shape[-1] == 3
    assert (np.asarray(data[0][:8, :8]) == 255).all()


def test_reader_claims_single_level_ome_and_micrometre_tiffs(tmp_path):
    import tifffile

    rgb = np.full((64, 64, 3), 200, np.uint8)
    ome = tmp_path / "qupath-region.ome.tif"
    tifffile.imwrite(ome, rgb, photometric="rgb", metadata={"axes": "YXS", "PhysicalSizeX": 0.25})
    cm = tmp_path / "field.tif"
    tifffile.imwrite(cm, rgb, photometric="rgb", resolution=(4e4, 4e4), resolutionunit="CENTIMETER")
    screen = tmp_path / "screen.tif"
    tifffile.imwrite(screen, rgb, photometric="rgb", resolution=(72, 72), resolutionunit="INCH")
    assert get_slide_reader(str(ome)) is not None
    assert get_slide_reader(str(cm)) is not None
    assert get_slide_reader(str(screen)) is None  # napari's own reader opens it
    _data, kwargs, _ = read_slide_layer(ome)
    assert kwargs["scale"] == pytest.approx((0.25, 0.25)) and kwargs["units"] == ("um", "um")
