"""Export tile predictions: QuPath GeoJSON, CSV tile table, heatmap OME-TIFFs, slide report.

Pure compute (no Qt, no napari). Every file is written atomically through `napari_histostain._io`;
`export_predictions` also removes the files it already wrote when a later one fails, so a read-only
or full destination leaves nothing half-written. The readers here (`read_tiles_geojson`,
`read_heatmap`) are the inverses used by the drag-and-drop reader.
"""

from __future__ import annotations

import csv
import io
import json
import warnings
from collections.abc import Iterable, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from . import MARKERS, __version__
from ._io import OutputError, atomic_open, atomic_path, write_json
from .errors import HistostainError
from .overlays import (
    KINDS,
    MARKER_COLOURS,
    NEGATIVE_COLOUR,
    GridGeometry,
    PredictionMaps,
    colour_ramp,
)

#: What `export_predictions` can write.
EXPORT_KINDS = ("geojson", "csv", "heatmaps", "report")
#: Top-level foreign member of our GeoJSON files (QuPath ignores it).
GEOJSON_KEY = "histostain"
HEATMAP_SUFFIX = ".heatmap.ome.tif"


class ExportError(HistostainError):
    """Predictions could not be exported (nothing to export, not a HistoStain file, ...)."""


def _finite(v: float) -> float | None:
    return float(v) if np.isfinite(v) else None


def _check_marker(maps: PredictionMaps, marker: str) -> None:
    if marker not in maps.markers:
        have = ", ".join(maps.markers) or "none"
        raise ExportError(f"no predictions for marker {marker!r} (have: {have}); run a prediction first.")


# -------------------------------------------------------------------------------------------------
# GeoJSON (QuPath)
# -------------------------------------------------------------------------------------------------
def tiles_geojson(maps: PredictionMaps, marker: str, *, tile_threshold: float = 0.5) -> dict:
    """A QuPath-compatible FeatureCollection: one Polygon per computed tile, level-0 px.

    Each feature has properties objectType "tile", classification {name, color} ("<marker> positive"
    when the tile positivity >= `tile_threshold`, else "<marker> negative") and measurements
    {positivity, attention, probability}; probability is the slide- (or region-) level one.
    """
    _check_marker(maps, marker)
    mm = maps.markers[marker]
    t = maps.geometry.tile_px0
    name = mm.name
    prob = _finite(mm.probability)
    features = []
    for i in np.flatnonzero(np.isfinite(mm.positivity)):
        x, y = (float(v) for v in maps.coords[i])
        ring = [[x, y], [x + t, y], [x + t, y + t], [x, y + t], [x, y]]
        pos = float(mm.positivity[i])
        positive = pos >= tile_threshold
        colour = MARKER_COLOURS.get(marker, (200, 0, 0)) if positive else NEGATIVE_COLOUR
        features.append({
            "type": "Feature",
            "id": f"tile-{int(i)}",
            "geometry": {"type": "Polygon", "coordinates": [ring]},
            "properties": {
                "objectType": "tile",
                "name": f"tile {int(i)}",
                "classification": {
                    "name": f"{name} {'positive' if positive else 'negative'}",
                    "color": list(colour),
                },
                "measurements": {
                    "positivity": pos,
                    "attention": _finite(mm.attention[i]),
                    "probability": prob,
                },
                "tile_id": int(i),
                "row": int(maps.rowcol[i, 0]),
                "col": int(maps.rowcol[i, 1]),
                "tissue_fraction": float(maps.tissue_fraction[i]),
            },
        })
    return {
        "type": "FeatureCollection",
        GEOJSON_KEY: {
            "version": __version__,
            "marker": marker,
            "marker_name": name,
            "probability": prob,
            "label": mm.label,
            "threshold": mm.threshold,
            "scope": mm.scope,
            "tile_threshold": tile_threshold,
            "geometry": maps.geometry.to_dict(),
            "slide_path": maps.slide_path,
        },
        "features": features,
    }


def write_tiles_geojson(
    path: str | Path, maps: PredictionMaps, marker: str, *, tile_threshold: float = 0.5
) -> Path:
    """Atomically write `tiles_geojson` to `path`."""
    obj = tiles_geojson(maps, marker, tile_threshold=tile_threshold)
    with atomic_open(path, "w", encoding="utf-8") as fh:
        json.dump(obj, fh)
    return Path(path)


def read_tiles_geojson(path: str | Path) -> PredictionMaps:
    """Rebuild `PredictionMaps` from a GeoJSON written by `write_tiles_geojson`.

    Raises `ExportError` if the file is not a HistoStain tile export.
    """
    try:
        obj = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ExportError(f"cannot read {path}: {exc}") from exc
    meta = obj.get(GEOJSON_KEY) if isinstance(obj, dict) else None
    if not isinstance(meta, dict) or obj.get("type") != "FeatureCollection":
        raise ExportError(f"{path} is not a HistoStain tile GeoJSON (no '{GEOJSON_KEY}' member).")
    geometry = GridGeometry.from_dict(meta["geometry"])
    feats = [f for f in obj.get("features", []) if f["properties"].get("objectType") == "tile"]
    coords = np.array(
        [f["geometry"]["coordinates"][0][0] for f in feats], dtype=float
    ).reshape(-1, 2)
    rowcol = np.array([[f["properties"]["row"], f["properties"]["col"]] for f in feats]).reshape(-1, 2)
    tf = [f["properties"].get("tissue_fraction", 1.0) for f in feats]
    maps = PredictionMaps(geometry, np.round(coords), rowcol, tf, slide_path=meta.get("slide_path", ""))
    marker = meta["marker"]
    meas = [f["properties"]["measurements"] for f in feats]
    pos = [m["positivity"] for m in meas]
    att = [np.nan if m.get("attention") is None else m["attention"] for m in meas]
    maps.update(marker, np.arange(len(feats)), pos, att)
    prob = meta.get("probability")
    maps.set_slide_call(marker, np.nan if prob is None else prob, meta.get("label", ""),
                        meta.get("threshold", 0.5), meta.get("scope", ""))
    return maps


# -------------------------------------------------------------------------------------------------
# CSV tile table
# -------------------------------------------------------------------------------------------------
def tile_table(maps: PredictionMaps, *, computed_only: bool = True) -> list[dict]:
    """Rows: tile id, row, col, level-0 box, centre in um, tissue fraction, per-marker scores."""
    g = maps.geometry
    centres = g.tile_centre_um(maps.rowcol[:, 0], maps.rowcol[:, 1])
    t = g.tile_px0
    rows = []
    for i in range(len(maps)):
        if computed_only and not maps.done[i]:
            continue
        row = {
            "tile_id": i,
            "row": int(maps.rowcol[i, 0]),
            "col": int(maps.rowcol[i, 1]),
            "x": int(maps.coords[i, 0]),
            "y": int(maps.coords[i, 1]),
            "width": round(t, 3),
            "height": round(t, 3),
            "x_um": round(float(centres[i, 1]), 4),
            "y_um": round(float(centres[i, 0]), 4),
            "tissue_fraction": round(float(maps.tissue_fraction[i]), 4),
        }
        for key, mm in maps.markers.items():
            for kind in KINDS:
                v = float(getattr(mm, kind)[i])
                row[f"{key}_{kind}"] = "" if not np.isfinite(v) else f"{v:.6g}"
        rows.append(row)
    return rows


def write_tile_table(path: str | Path, maps: PredictionMaps) -> Path:
    """Atomically write the CSV tile table."""
    rows = tile_table(maps)
    fields = ["tile_id", "row", "col", "x", "y", "width", "height", "x_um", "y_um", "tissue_fraction"]
    fields += [f"{k}_{kind}" for k in maps.markers for kind in KINDS]
    with atomic_open(path, "w", encoding="utf-8", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=fields)
        w.writeheader()
        w.writerows(rows)
    return Path(path)


# -------------------------------------------------------------------------------------------------
# Heatmap OME-TIFF
# -------------------------------------------------------------------------------------------------
def _downsample_nan(a: np.ndarray) -> np.ndarray:
    h, w = a.shape
    p = np.pad(a, ((0, h % 2), (0, w % 2)), constant_values=np.nan)
    blocks = p.reshape(p.shape[0] // 2, 2, p.shape[1] // 2, 2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmean(blocks, axis=(1, 3)).astype(np.float32)


def heatmap_pyramid(a: np.ndarray, min_size: int = 256) -> list[np.ndarray]:
    """The heatmap and its 2x NaN-aware mean reductions until the largest side <= `min_size`."""
    levels = [np.asarray(a, np.float32)]
    while max(levels[-1].shape) > min_size:
        levels.append(_downsample_nan(levels[-1]))
    return levels


def write_heatmap(
    path: str | Path, array: np.ndarray, geometry: GridGeometry, meta: dict | None = None
) -> Path:
    """Atomically write a heatmap as a pyramidal (SubIFD) float32 OME-TIFF.

    PhysicalSizeX/Y is the tile side in um; Plane PositionX/Y the slide position (um, pixel-corner
    convention: level-0 px x starts at x * mpp_x) of the heatmap's top-left corner; so the heatmap
    lies exactly on the slide. `meta` (marker, kind, ...) and the grid geometry are stored as JSON in
    the OME Image Description.
    """
    import tifffile

    array = np.asarray(array, np.float32)
    if array.ndim != 2:
        raise ExportError(f"a heatmap must be 2-D, got shape {array.shape}.")
    mx, my = geometry.mpp
    sy, sx = geometry.scale
    info = dict(meta or {})
    info["geometry"] = geometry.to_dict()
    info["histostain_version"] = __version__
    metadata = {
        "axes": "YX",
        "Name": str(info.get("name", Path(path).name)),
        "Description": json.dumps(info),
        "PhysicalSizeX": sx,
        "PhysicalSizeXUnit": "µm",
        "PhysicalSizeY": sy,
        "PhysicalSizeYUnit": "µm",
        "Plane": {
            "PositionX": geometry.origin[0] * mx,
            "PositionXUnit": "µm",
            "PositionY": geometry.origin[1] * my,
            "PositionYUnit": "µm",
        },
    }
    levels = heatmap_pyramid(array)
    tile = (256, 256) if max(array.shape) > 256 else None
    with atomic_path(path) as tmp, tifffile.TiffWriter(tmp, ome=True) as tw:
        tw.write(levels[0], subifds=len(levels) - 1, tile=tile, metadata=metadata,
                 resolution=(1e4 / sx, 1e4 / sy), resolutionunit="CENTIMETER")
        for k, lev in enumerate(levels[1:], start=1):
            f = 2**k
            tw.write(lev, subfiletype=1, tile=tile, metadata=None,
                     resolution=(1e4 / (sx * f), 1e4 / (sy * f)), resolutionunit="CENTIMETER")
    return Path(path)


def read_heatmap(path: str | Path) -> tuple[np.ndarray, GridGeometry, dict]:
    """(array, geometry, meta) of a heatmap written by `write_heatmap`; `ExportError` otherwise."""
    import tifffile

    try:
        with tifffile.TiffFile(path) as tf:
            xml = tf.ome_metadata
            array = tf.series[0].levels[0].asarray()
    except Exception as exc:  # noqa: BLE001 - any unreadable file is "not ours"
        raise ExportError(f"cannot read {path} as OME-TIFF: {exc}") from exc
    if not xml:
        raise ExportError(f"{path} has no OME metadata; it is not a HistoStain heatmap.")
    image = tifffile.xml2dict(xml).get("OME", {}).get("Image", {})
    if isinstance(image, list):
        image = image[0]
    try:
        info = json.loads(image.get("Description", ""))
        geometry = GridGeometry.from_dict(info["geometry"])
    except (ValueError, KeyError, TypeError) as exc:
        raise ExportError(f"{path} is not a HistoStain heatmap (no geometry in its description).") from exc
    return np.asarray(array, np.float32), geometry, info


def physical_pixel_size(path: str | Path) -> tuple[float, float]:
    """(PhysicalSizeY, PhysicalSizeX) in um of an OME-TIFF, as tifffile reports it."""
    import tifffile

    with tifffile.TiffFile(path) as tf:
        pixels = tifffile.xml2dict(tf.ome_metadata)["OME"]["Image"]["Pixels"]
    return float(pixels["PhysicalSizeY"]), float(pixels["PhysicalSizeX"])


# -------------------------------------------------------------------------------------------------
# Slide report (JSON + PNG thumbnail with overlay)
# -------------------------------------------------------------------------------------------------
def overlay_thumbnail(
    thumbnail: np.ndarray,
    slide_dimensions: tuple[int, int],
    maps: PredictionMaps,
    marker: str,
    *,
    alpha: float = 0.55,
) -> np.ndarray:
    """The slide thumbnail (h, w, 3) uint8 with the marker's positivity blended over it."""
    th, tw = thumbnail.shape[:2]
    w0, h0 = slide_dimensions
    g = maps.geometry
    ys = (np.arange(th) + 0.5) * (h0 / th)
    xs = (np.arange(tw) + 0.5) * (w0 / tw)
    r = np.floor((ys - g.origin[1]) / g.tile_px0).astype(int)
    c = np.floor((xs - g.origin[0]) / g.tile_px0).astype(int)
    hm = maps.heatmap(marker, "positivity")
    rr, cc = np.meshgrid(r, c, indexing="ij")
    inside = (rr >= 0) & (rr < g.n_rows) & (cc >= 0) & (cc < g.n_cols)
    vals = np.full((th, tw), np.nan, np.float32)
    vals[inside] = hm[rr[inside], cc[inside]]
    colours = colour_ramp(np.nan_to_num(vals, nan=0.0))
    a = np.where(np.isfinite(vals), alpha, 0.0)[..., None]
    out = thumbnail[..., :3].astype(np.float32) * (1 - a) + colours * 255.0 * a
    return np.clip(out, 0, 255).astype(np.uint8)


def report_image(
    thumbnail: np.ndarray, slide_dimensions: tuple[int, int], maps: PredictionMaps,
    markers: Sequence[str], summary: dict,
) -> np.ndarray:
    """Panels side by side: the H&E thumbnail, then one positivity overlay per marker, with titles."""
    from PIL import Image, ImageDraw, ImageFont

    panels = [("H&E", thumbnail[..., :3])]
    for m in markers:
        s = summary[m]
        p = s["probability"]
        title = f"{MARKERS.get(m, m)}: {s['label'] or '-'} p={p:.2f}" if np.isfinite(p) else MARKERS.get(m, m)
        title += f"  pos. tissue {s['positive_fraction']:.0%}" if np.isfinite(s["positive_fraction"]) else ""
        panels.append((title, overlay_thumbnail(thumbnail, slide_dimensions, maps, m)))
    th, tw = thumbnail.shape[:2]
    size = max(12, tw // 32)
    try:
        font = ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1
        font = ImageFont.load_default()
    head = size + 12
    canvas = Image.new("RGB", (tw * len(panels) + 8 * (len(panels) - 1), th + head), "white")
    draw = ImageDraw.Draw(canvas)
    for k, (title, img) in enumerate(panels):
        x = k * (tw + 8)
        canvas.paste(Image.fromarray(np.ascontiguousarray(img)), (x, head))
        draw.text((x + 4, 5), title, fill=(0, 0, 0), font=font)
    return np.asarray(canvas)


def write_png(path: str | Path, image: np.ndarray) -> Path:
    """Atomically write an RGB uint8 image as PNG."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(image)).save(buf, format="PNG")
    with atomic_open(path, "wb") as fh:
        fh.write(buf.getvalue())
    return Path(path)


def slide_report(maps: PredictionMaps, *, tile_threshold: float = 0.5, slide: Any = None,
                 messages: Iterable[str] = ()) -> dict:
    """The slide report as a JSON-able dict."""
    summary = maps.summary(tile_threshold)
    markers = {
        k: {kk: (_finite(v) if isinstance(v, float) else v) for kk, v in s.items()}
        for k, s in summary.items()
    }
    rep = {
        "histostain_version": __version__,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "slide_path": maps.slide_path,
        "tile_threshold": tile_threshold,
        "grid": maps.geometry.to_dict(),
        "tile_mpp": maps.geometry.tile_px0 * maps.geometry.mpp[0],
        "tiles": len(maps),
        "tiles_computed": int(maps.done.sum()),
        "markers": markers,
        "messages": list(messages),
        "info": {k: v for k, v in maps.info.items() if isinstance(v, (str, int, float, list, dict))},
    }
    if slide is not None:
        rep["slide"] = {"dimensions": list(slide.dimensions), "mpp": list(slide.mpp)}
    return rep


# -------------------------------------------------------------------------------------------------
# Everything at once
# -------------------------------------------------------------------------------------------------
def export_paths(out_dir: str | Path, stem: str, markers: Iterable[str]) -> dict[str, Path]:
    """The file names `export_predictions` uses."""
    d = Path(out_dir)
    paths = {"csv": d / f"{stem}.tiles.csv", "report_json": d / f"{stem}.report.json",
             "report_png": d / f"{stem}.report.png"}
    for m in markers:
        paths[f"geojson:{m}"] = d / f"{stem}.{m}.tiles.geojson"
        for kind in KINDS:
            paths[f"heatmap:{m}:{kind}"] = d / f"{stem}.{m}-{kind}{HEATMAP_SUFFIX}"
    return paths


def export_predictions(
    out_dir: str | Path,
    maps: PredictionMaps,
    *,
    slide: Any = None,
    markers: Sequence[str] | None = None,
    what: Iterable[str] = EXPORT_KINDS,
    stem: str | None = None,
    tile_threshold: float = 0.5,
    messages: Iterable[str] = (),
) -> list[Path]:
    """Write the selected exports into `out_dir`; returns the paths written.

    `slide` (an open `Slide`) is needed only for the report thumbnail. On any error the files this
    call already wrote are removed and an `OutputError`/`ExportError` is raised.
    """
    what = set(what)
    unknown = what - set(EXPORT_KINDS)
    if unknown:
        raise ExportError(f"unknown export kind(s) {sorted(unknown)}; use {EXPORT_KINDS}.")
    markers = list(markers if markers is not None else maps.markers)
    for m in markers:
        _check_marker(maps, m)
    if not maps.done.any():
        raise ExportError("there are no computed tiles to export; run a prediction first.")
    stem = stem or (Path(maps.slide_path).stem if maps.slide_path else "histostain")
    paths = export_paths(out_dir, stem, markers)
    written: list[Path] = []
    try:
        if "geojson" in what:
            for m in markers:
                written.append(write_tiles_geojson(paths[f"geojson:{m}"], maps, m,
                                                   tile_threshold=tile_threshold))
        if "csv" in what:
            written.append(write_tile_table(paths["csv"], maps))
        if "heatmaps" in what:
            for m in markers:
                for kind in KINDS:
                    meta = {"marker": m, "kind": kind, "slide_path": maps.slide_path,
                            "name": f"{MARKERS.get(m, m)} {kind}"}
                    written.append(write_heatmap(paths[f"heatmap:{m}:{kind}"],
                                                 maps.heatmap(m, kind), maps.geometry, meta))
        if "report" in what:
            rep = slide_report(maps, tile_threshold=tile_threshold, slide=slide, messages=messages)
            rep["files"] = [p.name for p in written] + [paths["report_png"].name]
            if slide is not None:
                thumb = slide.thumbnail(768)
                img = report_image(thumb, slide.dimensions, maps, markers,
                                   maps.summary(tile_threshold))
                written.append(write_png(paths["report_png"], img))
            else:
                rep["files"].pop()
            written.append(write_json(paths["report_json"], rep))
    except (OutputError, ExportError, OSError):
        for p in written:
            p.unlink(missing_ok=True)
        raise
    return written


def export_prediction(
    out_dir: str | Path,
    prediction: Any,
    *,
    slide: Any = None,
    what: Iterable[str] = EXPORT_KINDS,
    tile_threshold: float = 0.5,
) -> list[Path]:
    """`export_predictions` for a finished `inference.SlidePrediction` (used by the CLI)."""
    maps = PredictionMaps.from_prediction(prediction)
    return export_predictions(out_dir, maps, slide=slide, what=what, tile_threshold=tile_threshold,
                              messages=getattr(prediction, "messages", ()))
