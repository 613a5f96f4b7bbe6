"""napari Shapes-layer data (world um) <-> annotations, without napari."""

from __future__ import annotations

import numpy as np
import pytest

from napari_histostain.annotations import AnnotationError, from_shapes_data, to_shapes_data

MPP = (0.5, 0.5)


def test_rectangle_ellipse_polygon_and_skipped_line():
    rect = np.array([[0.0, 0.0], [0.0, 100.0], [50.0, 100.0], [50.0, 0.0]])  # 50 x 100 um
    ellipse = rect + [100.0, 0.0]  # the same box, lower down
    tri = np.array([[0.0, 200.0], [0.0, 300.0], [100.0, 200.0]])
    line = np.array([[0.0, 0.0], [10.0, 10.0]])
    anns, notes = from_shapes_data(
        [rect, ellipse, tri, line],
        ["rectangle", "ellipse", "polygon", "line"],
        MPP,
        ["Tumor", "Exclude", "", None],
        ["r", "e", "t", "l"],
    )
    assert [a.name for a in anns] == ["r", "e", "t"] and notes == [
        "skipped 1 line / path shapes (no area)"
    ]
    r, e, t = anns
    assert r.geometry.area == pytest.approx(100 * 200)  # level-0 px at 0.5 um/px
    assert r.area_um2(MPP) == pytest.approx(50 * 100)
    assert e.is_exclude and e.area_um2(MPP) == pytest.approx(np.pi * 25 * 50, rel=2e-3)
    assert t.classification is None and t.area_um2(MPP) == pytest.approx(100 * 100 / 2)
    # the rectangle's centre: world (25, 50) um -> level-0 px centre (100, 50) -> QuPath (100.5, 50.5)
    assert (r.geometry.centroid.x, r.geometry.centroid.y) == pytest.approx((100.5, 50.5))


def test_round_trip_through_shapes_data():
    rect = np.array([[10.0, 20.0], [10.0, 80.0], [40.0, 80.0], [40.0, 20.0]])
    (a,), _ = from_shapes_data([rect], "polygon", MPP, ["Stroma"])
    data, types, props = to_shapes_data([a], MPP)
    assert types == ["polygon"] and props["class"] == ["Stroma"] and props["id"] == [a.id]
    assert sorted(map(tuple, data[0])) == sorted(map(tuple, rect))


def test_mismatched_types():
    with pytest.raises(AnnotationError, match="2 shapes but 1 shape types"):
        from_shapes_data([np.zeros((3, 2))] * 2, ["polygon"], MPP)
