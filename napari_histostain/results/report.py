"""The slide report: a JSON summary and a PNG of the thumbnail with each marker's map."""

from __future__ import annotations

import io
from collections.abc import Iterable, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from .. import __version__
from ..io.atomic import atomic_open
from ..markers import marker_name
from .colours import colour_ramp
from .errors import finite
from .maps import PredictionMaps


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
    g = maps.lattice
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
    thumbnail: np.ndarray,
    slide_dimensions: tuple[int, int],
    maps: PredictionMaps,
    markers: Sequence[str],
    summary: dict,
) -> np.ndarray:
    """Panels side by side: the H&E thumbnail, then one positivity overlay per marker, with titles."""
    from PIL import Image, ImageDraw, ImageFont

    panels = [("H&E", thumbnail[..., :3])]
    for m in markers:
        s = summary[m]
        p = s["probability"]
        title = (
            f"{marker_name(m)}: {s['label'] or '-'} p={p:.2f}" if np.isfinite(p) else marker_name(m)
        )
        title += (
            f"  pos. tissue {s['positive_fraction']:.0%}"
            if np.isfinite(s["positive_fraction"])
            else ""
        )
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


def slide_report(
    maps: PredictionMaps,
    *,
    tile_threshold: float = 0.5,
    slide: Any = None,
    messages: Iterable[str] = (),
) -> dict:
    """The slide report as a JSON-able dict."""
    summary = maps.summary(tile_threshold)
    markers = {
        k: {kk: (finite(v) if isinstance(v, float) else v) for kk, v in s.items()}
        for k, s in summary.items()
    }
    rep = {
        "histostain_version": __version__,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "slide_path": maps.slide_path,
        "tile_threshold": tile_threshold,
        "grid": maps.lattice.to_dict(),
        # the model tiles' pixel size (um/px) and side (px, um); None when the maps do not say
        "tile_mpp": maps.info.get("tile_mpp"),
        "tile_size": maps.info.get("tile_size"),
        "tile_side_um": maps.lattice.tile_px0 * maps.lattice.mpp[0],
        "tiles": len(maps),
        "tiles_computed": int(maps.done.sum()),
        "markers": markers,
        "messages": list(messages),
        "info": {
            k: v for k, v in maps.info.items() if isinstance(v, (str, int, float, list, dict))
        },
    }
    if slide is not None:
        rep["slide"] = {"dimensions": list(slide.dimensions), "mpp": list(slide.mpp)}
    return rep
