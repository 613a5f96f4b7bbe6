"""Slide access: real formats, synthetic slides, missing mpp, RGBA, and bad input."""

from __future__ import annotations

import shutil
import threading
import warnings

import numpy as np
import openslide
import pytest

from napari_histostain.io.slide import MissingMppWarning, SlideError, open_slide
from napari_histostain.io.synthetic import write_synthetic_slide
from shared_data import shared_file

REAL_SLIDES = {
    "CMU-1-Small-Region.svs": ("aperio", 1, (2220, 2967), 0.499),
    "TCGA-CR-7395-01A-01-TS1.svs": ("aperio", 2, (4443, 3567), None),
    "OS-2-Ki67-crop.tiff": ("generic-tiff", 4, (2202, 2202), 0.2271),
}


@pytest.mark.parametrize("name", sorted(REAL_SLIDES))
def test_real_slides_open_with_their_facts(name):
    vendor, levels, dims, mpp = REAL_SLIDES[name]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        slide = open_slide(shared_file("slides", name))
    with slide:
        assert slide.info.vendor == vendor
        assert slide.level_count == levels
        assert slide.dimensions == dims
        if mpp is None:
            assert slide.info.mpp_source == "assumed" and slide.mpp == (1.0, 1.0)
            assert any(issubclass(w.category, MissingMppWarning) for w in caught)
        else:
            assert slide.mpp[0] == pytest.approx(mpp, abs=1e-3)
            assert slide.info.mpp_source == "metadata"
        region = slide.read_region((0, 0), slide.level_count - 1, (64, 48))
        assert region.shape == (48, 64, 3) and region.dtype == np.uint8


def test_real_associated_images():
    with open_slide(shared_file("slides", "CMU-1-Small-Region.svs")) as slide:
        assert set(slide.info.associated_images) == {"label", "macro", "thumbnail"}
        label = slide.associated_image("label")
        assert label.ndim == 3 and label.shape[2] == 3
        with pytest.raises(KeyError, match="has no associated image"):
            slide.associated_image("nope")


def test_dicom_folder_opens():
    folder = shared_file("dicom", "CMU-1-Small-Region")
    with open_slide(folder) as slide:
        assert slide.info.vendor == "dicom"
        assert slide.dimensions == (2220, 2967)
        assert slide.mpp[0] == pytest.approx(0.499, abs=1e-3)


def test_dicom_equals_svs_pixels():
    svs = open_slide(shared_file("slides", "CMU-1-Small-Region.svs"))
    dcm = open_slide(shared_file("dicom", "CMU-1-Small-Region"))
    a = svs.read_region((1000, 1200), 0, (200, 200)).astype(int)
    b = dcm.read_region((1000, 1200), 0, (200, 200)).astype(int)
    assert np.abs(a - b).mean() < 12  # same scan, re-encoded
    assert np.corrcoef(a.ravel(), b.ravel())[0, 1] > 0.95


def test_broken_svs_gives_clear_error():
    with pytest.raises(SlideError, match="corrupt, truncated or not a slide"):
        open_slide(shared_file("slides", "broken.svs"))


def test_synthetic_levels_and_mpp(tmp_path):
    p = write_synthetic_slide(tmp_path / "s.tif", 5000, 3000, 0.25, levels=4)
    with open_slide(p) as slide:
        assert slide.info.vendor == "generic-tiff"
        assert slide.level_count == 4
        assert slide.level_dimensions[0] == (5000, 3000)
        assert slide.level_downsamples[3] == pytest.approx(8, rel=1e-3)
        assert slide.mpp == pytest.approx((0.25, 0.25))
        assert slide.level_mpp(2) == pytest.approx((1.0, 1.0))
        assert slide.best_level_for_downsample(4.5) == 2
        assert slide.best_level_for_downsample(0.5) == 0


def test_single_level_synthetic(tmp_path):
    p = write_synthetic_slide(tmp_path / "one.tif", 1200, 900, 0.5, levels=1)
    with open_slide(p) as slide:
        assert slide.level_count == 1
        thumb = slide.thumbnail(300)
        assert max(thumb.shape[:2]) == 300


def test_missing_mpp_warns_and_assumes_pixels(tmp_path):
    p = write_synthetic_slide(tmp_path / "nompp.tif", 1024, 1024, None)
    with pytest.warns(MissingMppWarning, match="assuming 1 px = 1 um"):
        slide = open_slide(p)
    assert slide.mpp == (1.0, 1.0) and not slide.info.mpp_known


def test_rgba_transparent_regions_composite_on_background(tmp_path):
    p = write_synthetic_slide(tmp_path / "rgba.tif", 1024, 1024, 0.5, rgba=True, levels=1)
    with open_slide(p) as slide:
        corner = slide.read_region((0, 0), 0, (32, 32))  # glass: alpha 0 in the file
        assert (corner == np.array(slide.background, np.uint8)).all()
        centre = slide.read_region((500, 500), 0, (32, 32))
        assert centre.mean() < 240  # tissue stays opaque


def test_reads_are_thread_safe(synthetic_slide):
    slide = open_slide(synthetic_slide)
    ref = openslide.OpenSlide(str(synthetic_slide))
    boxes = [((x, y), 0, (256, 256)) for x in range(0, 2500, 300) for y in range(0, 1500, 300)]
    expected = [np.asarray(ref.read_region(*b))[..., :3] for b in boxes]
    errors = []

    def worker():
        for b, e in zip(boxes, expected):
            if not np.array_equal(slide.read_region(*b), e):
                errors.append(b)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors


def test_outside_region_is_background(synthetic_slide):
    with open_slide(synthetic_slide) as slide:
        out = slide.read_region((5000, 5000), 0, (16, 16))
        assert (out == np.array(slide.background, np.uint8)).all()


@pytest.mark.parametrize(
    "name, content, message",
    [
        ("empty.svs", b"", "the file is empty"),
        ("notes.svs", b"hello", "corrupt, truncated or not a slide"),
        ("notes.txt", b"hello", "not a whole-slide image"),
        ("folder", None, "holds no DICOM"),
        ("missing.svs", "absent", "no such file"),
    ],
)
def test_bad_input_messages(tmp_path, name, content, message):
    path = tmp_path / name
    if content is None:
        path.mkdir()
    elif content != "absent":
        path.write_bytes(content)
    with pytest.raises(SlideError, match=message):
        open_slide(path)


def test_truncated_slide_gives_clear_error(tmp_path, synthetic_slide):
    data = synthetic_slide.read_bytes()
    cut = tmp_path / "truncated.tif"
    cut.write_bytes(data[: len(data) // 3])
    with pytest.raises(SlideError, match=r"truncated|corrupt"):
        slide = open_slide(cut)
        # if the header survived, reading the tail of level 0 must fail with the same message
        w, h = slide.dimensions
        slide.read_region((w - 256, h - 256), 0, (256, 256))


def test_slide_pickles_as_path(synthetic_slide):
    import pickle

    slide = open_slide(synthetic_slide)
    clone = pickle.loads(pickle.dumps(slide))
    assert clone.info == slide.info
    assert np.array_equal(
        clone.read_region((10, 10), 1, (50, 50)), slide.read_region((10, 10), 1, (50, 50))
    )


def test_plain_tiff_via_tifffile_pyramid(tmp_path):
    """An OME-TIFF pyramid with SubIFDs (OpenSlide declines it) opens through tifffile."""
    import tifffile

    rng = np.random.default_rng(0)
    base = rng.integers(0, 255, (1024, 1536, 3), np.uint8)
    p = tmp_path / "pyr.ome.tif"
    with tifffile.TiffWriter(p) as tw:
        tw.write(
            base,
            subifds=2,
            tile=(256, 256),
            photometric="rgb",
            metadata={"axes": "YXS", "PhysicalSizeX": 0.5, "PhysicalSizeY": 0.5},
        )
        tw.write(base[::2, ::2], subfiletype=1, tile=(256, 256), photometric="rgb")
        tw.write(base[::4, ::4], subfiletype=1, tile=(256, 256), photometric="rgb")
    shutil.copy(p, tmp_path / "copy.ome.tif")
    with open_slide(p) as slide:
        assert slide.info.backend == "tifffile"
        assert slide.level_count == 3
        assert slide.mpp == pytest.approx((0.5, 0.5))
        assert np.array_equal(slide.read_region((256, 512), 0, (100, 80)), base[512:592, 256:356])
        assert np.array_equal(
            slide.read_region((256, 512), 1, (50, 40)), base[::2, ::2][256:296, 128:178]
        )


def test_direct_tile_decoding_equals_openslide_and_checks_itself(synthetic_slide, monkeypatch):
    """TIFF tiles decoded directly equal OpenSlide's pixels; a level that would differ is not used."""
    import openslide

    from napari_histostain.io.native_tiles import TiffTiles

    slide = open_slide(synthetic_slide)
    tiles = slide._direct_tiles()
    assert tiles is not None and set(tiles.levels) == set(range(slide.level_count))
    ref = openslide.OpenSlide(str(synthetic_slide))
    rng = np.random.default_rng(5)
    for level in range(slide.level_count):
        w, h = slide.level_dimensions[level]
        ds = round(slide.level_downsamples[level])
        for _ in range(4):
            x, y = int(rng.integers(-50, w)), int(rng.integers(-50, h))  # also past the edges
            size = (int(rng.integers(1, 600)), int(rng.integers(1, 600)))
            mine = tiles.read_region((x * ds, y * ds), level, size)
            theirs = np.asarray(ref.read_region((x * ds, y * ds), level, size))
            a = theirs[..., 3:4].astype(np.float32) / 255
            theirs = (theirs[..., :3] * a + np.float32(slide.background) * (1 - a) + 0.5).astype(
                np.uint8
            )
            assert np.array_equal(mine, theirs), (level, x, y, size)
    assert tiles.read_region((1, 0), 1, (10, 10)) is None  # sub-pixel origin at level 1: not served

    def wrong(location, level, size):
        return np.zeros((size[1], size[0], 3), np.uint8)

    info = slide.info
    assert (
        TiffTiles.open(
            info.path, info.level_dimensions, info.level_downsamples, info.background, wrong
        )
        is None
    )
    monkeypatch.setenv("HISTOSTAIN_DIRECT_TILES", "0")
    assert open_slide(synthetic_slide)._direct_tiles() is None


# -- any microscopy image: single-level (OME-)TIFFs with a pixel size, plain images ---------------
def _field(h=300, w=400):
    rng = np.random.default_rng(5)
    return rng.integers(0, 255, (h, w, 3), np.uint8)


def test_single_level_ome_tiff_and_resolution_tiff_open_with_their_pixel_size(tmp_path):
    import tifffile

    rgb = _field()
    ome = tmp_path / "region.ome.tif"
    tifffile.imwrite(ome, rgb, photometric="rgb", metadata={"axes": "YXS", "PhysicalSizeX": 0.25})
    cm = tmp_path / "field.tif"
    tifffile.imwrite(
        cm, rgb, photometric="rgb", resolution=(1e4 / 0.5, 1e4 / 0.5), resolutionunit="CENTIMETER"
    )
    inch = tmp_path / "field-inch.tif"  # 101600 dpi = 0.25 um/px
    tifffile.imwrite(
        inch, rgb, photometric="rgb", resolution=(101600, 101600), resolutionunit="INCH"
    )
    for path, mpp in ((ome, 0.25), (cm, 0.5), (inch, 0.25)):
        with open_slide(path) as slide:
            assert slide.mpp == pytest.approx((mpp, mpp)) and slide.info.mpp_source == "metadata"
            assert slide.dimensions == (400, 300) and slide.level_count == 1
            assert np.array_equal(slide.read_region((0, 0), 0, (400, 300)), rgb)
            assert np.array_equal(
                slide.read_region((350, 10), 0, (100, 20))[:, :50], rgb[10:30, 350:]
            )


def test_plain_images_open_with_an_assumed_pixel_size_until_given(tmp_path):
    import pickle

    import tifffile
    from PIL import Image

    from napari_histostain.io.slide import MissingMppWarning

    rgb = _field()
    png, jpg, tif = tmp_path / "core.png", tmp_path / "core.jpg", tmp_path / "screen.tif"
    Image.fromarray(rgb).save(png)
    Image.fromarray(rgb).save(jpg, quality=95)
    # 72 dpi is a screen's resolution (353 um/px), not the microscope's: not taken as the mpp
    tifffile.imwrite(tif, rgb, photometric="rgb", resolution=(72, 72), resolutionunit="INCH")
    for path in (png, jpg, tif):
        with pytest.warns(MissingMppWarning):
            slide = open_slide(path)
        assert slide.info.mpp_source == "assumed" and slide.dimensions == (400, 300)
        if path != jpg:
            assert np.array_equal(slide.read_region((0, 0), 0, (400, 300)), rgb)
        given = slide.with_mpp(0.25)
        assert given.mpp == (0.25, 0.25) and given.info.mpp_known
        clone = pickle.loads(pickle.dumps(given))  # dask workers keep the given pixel size
        assert clone.mpp == (0.25, 0.25)
        slide.close()
    grey = tmp_path / "grey.png"
    Image.fromarray(rgb[..., 0]).save(grey)
    with pytest.warns(MissingMppWarning), open_slide(grey) as slide:
        assert slide.read_region((0, 0), 0, (4, 4)).shape == (4, 4, 3)


def test_unreadable_image_named_png_is_refused_clearly(tmp_path):
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    with pytest.raises(SlideError, match="PNG / JPEG"):
        open_slide(bad)
