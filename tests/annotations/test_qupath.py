"""QuPath GeoJSON annotations: the documented export formats import; export -> import keeps them."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import numpy as np
import pytest
import shapely

from napari_histostain.annotations import (
    Annotation,
    AnnotationError,
    annotations_geojson,
    parse_annotations,
    read_annotations,
    write_annotations,
)

DATA = Path(__file__).parent / "data"


def test_qupath_04_feature_collection_imports():
    notes: list[str] = []
    anns = read_annotations(DATA / "qupath-0.4-annotations.geojson", notes=notes)
    assert [a.classification for a in anns] == ["Tumor", "Stroma", "Ignore*", None]
    tumour, stroma, fold, plain = anns
    assert tumour.name == "Tumour core" and tumour.id == "2f6c7a6e-54a1-4d0f-9c3e-8b1f0a2d4e61"
    assert tumour.geometry.geom_type == "Polygon" and len(tumour.geometry.interiors) == 1
    assert tumour.geometry.area == 1800 * 1400 - 500 * 500  # the hole is honoured
    assert tumour.color == (200, 0, 0)
    assert stroma.geometry.geom_type == "MultiPolygon" and len(stroma.geometry.geoms) == 2
    assert stroma.geometry.area == 900 * 600 + 900 * 900
    assert fold.is_exclude and not tumour.is_exclude and not plain.is_exclude
    assert fold.properties["isLocked"] is True
    assert plain.label == "Annotation" and plain.geometry.area == pytest.approx(600 * 350 / 2)
    assert any("LineString" in n for n in notes) and any("detection" in n for n in notes)
    assert tumour.area_um2((0.5, 0.5)) == pytest.approx(tumour.geometry.area * 0.25)


def test_qupath_02_list_colour_rgb_and_string_classification():
    tumour, excl = read_annotations(DATA / "qupath-0.2-annotations.json")
    assert tumour.classification == "Tumor" and tumour.color == (200, 0, 0)  # from colorRGB
    assert excl.classification == "Exclude" and excl.is_exclude
    assert str(uuid.UUID(tumour.id)) == tumour.id != excl.id  # "PathAnnotationObject" replaced


def test_bare_geometries_and_single_feature():
    ring = [[0, 0], [10, 0], [10, 10], [0, 10], [0, 0]]
    (a,) = parse_annotations({"type": "Polygon", "coordinates": [ring]})
    assert a.classification is None and a.geometry.area == 100
    two = parse_annotations([{"type": "Polygon", "coordinates": [ring]}] * 2)
    assert len(two) == 2
    feat = {
        "type": "Feature",
        "geometry": {"type": "Polygon", "coordinates": [ring]},
        "properties": {"classification": {"name": "Necrosis"}},
    }
    assert parse_annotations(feat)[0].classification == "Necrosis"


def test_export_import_round_trip_keeps_geometry_classes_and_ids(tmp_path):
    anns = read_annotations(DATA / "qupath-0.4-annotations.geojson")
    anns.append(Annotation(shapely.box(5, 5, 50, 60), "Exclude", name="pen mark"))
    path = write_annotations(tmp_path / "out.geojson", anns)
    obj = json.loads(path.read_text())
    assert obj["type"] == "FeatureCollection"
    for f in obj["features"]:
        assert str(uuid.UUID(f["id"])) == f["id"]
        assert f["properties"]["objectType"] == "annotation"
    classes = [f["properties"].get("classification") for f in obj["features"]]
    assert classes[0] == {"name": "Tumor", "color": [200, 0, 0]}
    assert classes[-1] == {"name": "Exclude", "color": [180, 180, 180]}  # QuPath's Ignore* grey
    back = read_annotations(path)
    assert len(back) == len(anns)
    for a, b in zip(anns, back, strict=True):
        assert (a.id, a.name, a.classification) == (b.id, b.name, b.classification)
        assert b.color == (a.color or ((180, 180, 180) if a.is_exclude else None))
        assert a.geometry.equals(b.geometry)
        assert a.geometry.symmetric_difference(b.geometry).area == 0


def test_world_coordinates_follow_the_pixel_centre_convention():
    mpp = (0.5, 0.25)
    # napari world (row, col) um of the centres of level-0 pixels (10, 20), (30, 20), (30, 40)
    rc = np.array([[20 * 0.25, 10 * 0.5], [20 * 0.25, 30 * 0.5], [40 * 0.25, 30 * 0.5]])
    a = Annotation.from_world(rc, mpp, "Tumor")
    xy = np.asarray(a.geometry.exterior.coords)[:-1]
    assert sorted(map(tuple, xy)) == [(10.5, 20.5), (30.5, 20.5), (30.5, 40.5)]
    (back,) = a.to_world(mpp)
    assert sorted(map(tuple, back)) == sorted(map(tuple, rc))


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("not json", "is not GeoJSON"),
        ('{"type": "FeatureCollection", "features": []}', "no polygon annotations"),
        ('{"type": "Topology"}', "unknown GeoJSON type"),
        ('{"type": "Point", "coordinates": [1, 2]}', "skipped 1 Point"),
        ('{"type": "Polygon", "coordinates": [[[0, 0], [1]]]}', "not a valid Polygon"),
        ('{"type": "Polygon", "coordinates": [[[0, 0], [1, 1], [2, 2], [0, 0]]]}', "without area"),
        (
            '{"type": "Feature", "geometry": {"type": "Polygon", "coordinates": '
            '[[[0, 0], [1, 0], [1, 1], [0, 0]]]}, "properties": {"classification": 3}}',
            "classification must be",
        ),
        ('[{"type": "Feature", "properties": {}}]', "has no GeoJSON geometry"),
    ],
)
def test_bad_files_say_what_to_do(tmp_path, content, message):
    p = tmp_path / "bad.geojson"
    p.write_text(content)
    with pytest.raises(AnnotationError, match=message):
        read_annotations(p)


def test_missing_file_and_self_intersecting_polygon(tmp_path):
    with pytest.raises(AnnotationError, match="cannot read the annotation file"):
        read_annotations(tmp_path / "missing.geojson")
    bowtie = {"type": "Polygon", "coordinates": [[[0, 0], [10, 10], [10, 0], [0, 10], [0, 0]]]}
    (a,) = parse_annotations(bowtie)  # repaired into its two triangles
    assert a.geometry.is_valid and a.geometry.area == pytest.approx(50)
    assert annotations_geojson([a])["features"][0]["geometry"]["type"] == "MultiPolygon"
