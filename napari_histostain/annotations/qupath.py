"""QuPath GeoJSON annotations in and out.

What QuPath (0.2 to 0.5) exports with "Export objects as GeoJSON": a FeatureCollection, a JSON list
of Features, or one Feature; each Feature has a UUID `id`, a Polygon / MultiPolygon geometry in
level-0 pixels (holes as inner rings) and `properties` with `objectType` ("annotation",
"detection", "cell", "tile", ...), an optional `name`, a `classification` {"name", "color": [r, g, b]}
(QuPath 0.2: {"name", "colorRGB": packed int}; some tools: a plain string) and `isLocked`. Bare
geometries and lists of them are read too. Only annotations (and features without an objectType)
become regions; lines and points have no area and are skipped with a note.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import shapely
import shapely.geometry

from ..io.atomic import atomic_open
from .errors import AnnotationError
from .model import Annotation

#: QuPath's default colours of its built-in classes (used on export when an annotation has none).
QUPATH_CLASS_COLOURS = {
    "tumor": (200, 0, 0),
    "stroma": (150, 200, 150),
    "immune cells": (160, 90, 160),
    "necrosis": (50, 50, 50),
    "other": (255, 200, 0),
    "region*": (0, 0, 180),
    "ignore*": (180, 180, 180),
}
_GEOMETRY_TYPES = {
    "Polygon",
    "MultiPolygon",
    "Point",
    "MultiPoint",
    "LineString",
    "MultiLineString",
    "GeometryCollection",
}
_REGION_TYPES = ("annotation", "")


def _colour(cls: dict) -> tuple[int, int, int] | None:
    c = cls.get("color", cls.get("colour"))
    if isinstance(c, (list, tuple)) and len(c) >= 3:
        return (int(c[0]), int(c[1]), int(c[2]))
    packed = cls.get("colorRGB")
    if isinstance(packed, int):  # QuPath 0.2: packed (A)RGB, often negative
        v = packed & 0xFFFFFF
        return ((v >> 16) & 255, (v >> 8) & 255, v & 255)
    return None


def _classification(props: dict, where: str) -> tuple[str | None, tuple[int, int, int] | None]:
    cls = props.get("classification")
    if cls is None:
        return None, None
    if isinstance(cls, str):  # legacy: the class name alone
        return cls or None, None
    if isinstance(cls, dict):
        name = cls.get("name")
        if name is not None and not isinstance(name, str):
            raise AnnotationError(f"{where}: classification name {name!r} is not text.")
        return name or None, _colour(cls)
    raise AnnotationError(
        f"{where}: classification must be {{'name': ..., 'color': [r, g, b]}} or a class name, "
        f"got {type(cls).__name__}."
    )


def _features(obj: Any) -> list[dict]:
    """Every Feature-like dict of a GeoJSON value (bare geometries become Features)."""
    if isinstance(obj, list):
        return [f for item in obj for f in _features(item)]
    if not isinstance(obj, dict):
        raise AnnotationError(
            f"expected GeoJSON objects, found {type(obj).__name__}; export the annotations from "
            "QuPath with File > Export objects as GeoJSON."
        )
    kind = obj.get("type")
    if kind == "FeatureCollection":
        feats = obj.get("features")
        if not isinstance(feats, list):
            raise AnnotationError("the FeatureCollection has no 'features' list.")
        return [f for item in feats for f in _features(item)]
    if kind == "Feature":
        return [obj]
    if kind in _GEOMETRY_TYPES:
        return [{"type": "Feature", "geometry": obj, "properties": {}}]
    raise AnnotationError(
        f"unknown GeoJSON type {kind!r}; expected a FeatureCollection, Feature, Polygon or "
        "MultiPolygon (QuPath: File > Export objects as GeoJSON)."
    )


def parse_annotations(obj: Any, *, notes: list[str] | None = None) -> list[Annotation]:
    """The annotations (regions) of a parsed GeoJSON value; see the module docstring.

    Features that are not regions (detections, cells, lines, points) are skipped and, when `notes`
    is given, listed there. Raises `AnnotationError` when nothing usable is found or a feature is
    malformed (the message names the feature)."""
    notes = [] if notes is None else notes
    out: list[Annotation] = []
    skipped: dict[str, int] = {}
    for k, feat in enumerate(_features(obj)):
        props = feat.get("properties") or {}
        if not isinstance(props, dict):
            raise AnnotationError(f"feature {k}: 'properties' must be an object.")
        kind = str(props.get("objectType", "")).lower()
        name = props.get("name")
        where = f"feature {k}" + (f" ({name!r})" if name else "")
        if kind not in _REGION_TYPES:
            skipped[f"{kind} objects"] = skipped.get(f"{kind} objects", 0) + 1
            continue
        geom = feat.get("geometry")
        if not isinstance(geom, dict) or geom.get("type") not in _GEOMETRY_TYPES:
            raise AnnotationError(f"{where} has no GeoJSON geometry.")
        try:
            shape = shapely.geometry.shape(geom)
        except Exception as exc:  # shapely raises several types for malformed coordinates
            raise AnnotationError(
                f"{where}: its coordinates are not a valid {geom['type']}: {exc}"
            ) from exc
        if shape.geom_type not in ("Polygon", "MultiPolygon", "GeometryCollection"):
            skipped[f"{shape.geom_type} annotations (no area)"] = (
                skipped.get(f"{shape.geom_type} annotations (no area)", 0) + 1
            )
            continue
        classification, colour = _classification(props, where)
        fid = feat.get("id")
        try:
            fid = str(uuid.UUID(str(fid)))
        except ValueError:
            fid = str(uuid.uuid4())  # QuPath 0.2 wrote "PathAnnotationObject" here
        extra = {
            key: v
            for key, v in props.items()
            if key not in ("objectType", "name", "classification", "color")
        }
        try:
            out.append(Annotation(shape, classification, str(name or ""), fid, colour, extra))
        except AnnotationError as exc:
            raise AnnotationError(f"{where}: {exc}") from exc
    notes.extend(f"skipped {n} {what}" for what, n in skipped.items())
    if not out:
        found = "; ".join(notes) if notes else "no features"
        raise AnnotationError(
            f"no polygon annotations found ({found}); draw polygon or area annotations and "
            "export them from QuPath with File > Export objects as GeoJSON."
        )
    return out


def read_annotations(path: str | Path, *, notes: list[str] | None = None) -> list[Annotation]:
    """The annotations of a QuPath GeoJSON file (.geojson / .json); `AnnotationError` if unusable."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise AnnotationError(
            f"cannot read the annotation file {p}: {exc.strerror or exc}."
        ) from exc
    try:
        obj = json.loads(text)
    except ValueError as exc:
        raise AnnotationError(
            f"{p.name} is not GeoJSON ({exc}); export annotations from QuPath with "
            "File > Export objects as GeoJSON."
        ) from exc
    try:
        return parse_annotations(obj, notes=notes)
    except AnnotationError as exc:
        raise AnnotationError(f"{p.name}: {exc}") from exc


def annotation_feature(a: Annotation) -> dict:
    """One annotation as a QuPath GeoJSON Feature (UUID id, objectType "annotation")."""
    props: dict[str, Any] = {"objectType": "annotation"}
    if a.name:
        props["name"] = a.name
    if a.classification:
        default = QUPATH_CLASS_COLOURS["ignore*" if a.is_exclude else "region*"]
        colour = a.color or QUPATH_CLASS_COLOURS.get(a.classification.lower(), default)
        props["classification"] = {"name": a.classification, "color": list(colour)}
    props.update(a.properties)
    props.setdefault("isLocked", False)
    return {
        "type": "Feature",
        "id": a.id,
        "geometry": shapely.geometry.mapping(a.geometry),
        "properties": props,
    }


def annotations_geojson(annotations: Iterable[Annotation]) -> dict:
    """Annotations as a QuPath-readable FeatureCollection (level-0 px)."""
    return {"type": "FeatureCollection", "features": [annotation_feature(a) for a in annotations]}


def write_annotations(path: str | Path, annotations: Iterable[Annotation]) -> Path:
    """Atomically write annotations as QuPath GeoJSON (File > Import objects reads it)."""
    obj = annotations_geojson(annotations)
    with atomic_open(path, "w", encoding="utf-8") as fh:
        json.dump(obj, fh)
    return Path(path)
