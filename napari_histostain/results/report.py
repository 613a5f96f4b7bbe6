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
from .maps import PredictionMaps, heatmap


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
    if maps.domain_score is not None:  # tiles out of the model's domain: grey, left out of the call
        from ..engine.domain import TILE_CUT

        ds = heatmap(g, maps.rowcol, maps.domain_score)
        dv = np.full((th, tw), np.nan, np.float32)
        dv[inside] = ds[rr[inside], cc[inside]]
        colours[dv > TILE_CUT] = OUT_OF_DOMAIN_GREY
    a = np.where(np.isfinite(vals), alpha, 0.0)[..., None]
    out = thumbnail[..., :3].astype(np.float32) * (1 - a) + colours * 255.0 * a
    return np.clip(out, 0, 255).astype(np.uint8)


def _marker_title(m: str, s: dict) -> str:
    """A panel title: the call (or why there is none), probability, positive tissue."""
    from .caveats import FORCED, NO_CALL, no_call_short

    p = s["probability"]
    status = s.get("call_status", "call")
    if status == NO_CALL:
        return f"{marker_name(m)}: no call ({no_call_short(s.get('no_call_reason')) or '?'})"
    title = f"{marker_name(m)}: {s['label'] or '-'} p={p:.2f}" if np.isfinite(p) else marker_name(m)
    if status == FORCED:
        title += " (forced)"
    if np.isfinite(s["positive_fraction"]):
        title += f"  pos. tissue {s['positive_fraction']:.0%}"
    return title


def _wrap(draw: Any, text: str, font: Any, width: float) -> list[str]:
    """`text` broken into lines no wider than `width` pixels (at word boundaries)."""
    lines: list[str] = []
    for word in text.split(" "):
        if lines and draw.textlength(f"{lines[-1]} {word}", font=font) <= width:
            lines[-1] = f"{lines[-1]} {word}"
        else:
            lines.append(word)
    return lines


#: What the overlay colours mean (the colour bar's caption).
LEGEND = (
    "Overlay: each tile's own positivity, 0 = negative (blue) to 1 = positive (brown); "
    "no colour: no tissue tile or not computed"
)
#: Colour (RGB 0-1) of tiles out of the model's domain, and its caption.
OUT_OF_DOMAIN_GREY = (0.45, 0.45, 0.45)
LEGEND_DOMAIN = "; grey: tile out of the model's domain (left out of the call)"


def report_image(
    thumbnail: np.ndarray,
    slide_dimensions: tuple[int, int],
    maps: PredictionMaps,
    markers: Sequence[str],
    summary: dict,
    caveats: dict | None = None,
) -> np.ndarray:
    """Panels side by side (the H&E thumbnail, then one positivity overlay per marker, with
    titles), above a colour bar with its range and meaning, and the caveats: the demonstration
    disclaimer, each model's identity, the domain verdict and any no-call reason."""
    from PIL import Image, ImageDraw, ImageFont

    from .caveats import caveat_lines

    caveats = maps.caveats if caveats is None else caveats
    panels = [("H&E", thumbnail[..., :3])]
    for m in markers:
        panels.append(
            (_marker_title(m, summary[m]), overlay_thumbnail(thumbnail, slide_dimensions, maps, m))
        )
    th, tw = thumbnail.shape[:2]
    width = tw * len(panels) + 8 * (len(panels) - 1)
    size = max(12, tw // 32)
    try:
        font = ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1
        font = ImageFont.load_default()
    head = size + 12
    line_h = size + 6
    probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    text_w = width - 16
    legend = _wrap(
        probe, LEGEND + (LEGEND_DOMAIN if maps.domain_score is not None else ""), font, text_w
    )
    notes = [
        (line, (170, 0, 0) if i == 0 and caveats.get("disclaimer") else (0, 0, 0))
        for i, raw in enumerate(caveat_lines(caveats))
        for line in _wrap(probe, raw, font, text_w)
    ]
    bar_h = size
    foot = 8 + bar_h + line_h + len(legend) * line_h + 6 + len(notes) * line_h + 8
    canvas = Image.new("RGB", (width, th + head + foot), "white")
    draw = ImageDraw.Draw(canvas)
    for k, (title, img) in enumerate(panels):
        x = k * (tw + 8)
        canvas.paste(Image.fromarray(np.ascontiguousarray(img)), (x, head))
        draw.text((x + 4, 5), title, fill=(0, 0, 0), font=font)
    # colour bar: 0 .. 1 of the overlay ramp, with its ends and middle labelled
    y = th + head + 8
    bar_w = min(width - 16, max(200, tw))
    ramp = (colour_ramp(np.linspace(0.0, 1.0, bar_w)) * 255).astype(np.uint8)
    canvas.paste(Image.fromarray(np.ascontiguousarray(np.repeat(ramp[None], bar_h, 0))), (8, y))
    draw.rectangle((8, y, 8 + bar_w - 1, y + bar_h - 1), outline=(0, 0, 0))
    y += bar_h + 2
    for v, anchor in ((0.0, "la"), (0.5, "ma"), (1.0, "ra")):
        draw.text((8 + v * (bar_w - 1), y), f"{v:g}", fill=(0, 0, 0), font=font, anchor=anchor)
    y += line_h
    for line in legend:
        draw.text((8, y), line, fill=(60, 60, 60), font=font)
        y += line_h
    y += 6
    for line, colour in notes:
        draw.text((8, y), line, fill=colour, font=font)
        y += line_h
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
        "caveats": maps.caveats,
        "messages": list(messages),
        "info": {
            k: v for k, v in maps.info.items() if isinstance(v, (str, int, float, list, dict))
        },
    }
    if slide is not None:
        rep["slide"] = {"dimensions": list(slide.dimensions), "mpp": list(slide.mpp)}
    return rep
