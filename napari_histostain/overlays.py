"""Tile predictions as heatmaps on the slide's world coordinates (pure compute, no Qt).

World units are micrometres. Level-0 pixel (x, y) has its centre at world (row, col) =
(y * mpp_y, x * mpp_x). A heatmap has one pixel per tile of the grid; its `scale` is the tile side
in um and its `translate` the centre of tile (row 0, col 0), so the centre of heatmap pixel (r, c)
is exactly the centre of tile (r, c) at any zoom. Pixels without a (tissue) tile are NaN, which the
overlay colormaps draw transparent.

`PredictionMaps` accumulates per-tile results (streamed batches, cached visible-region tiles or a
finished `SlidePrediction`) and keeps the heatmap arrays that the overlay layers show in place.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from . import MARKERS

#: Overlay kinds: per-tile positivity and attention.
KINDS = ("positivity", "attention")
#: Key of our entry in a napari layer's `metadata`.
META_KEY = "histostain"
#: Default colormap per overlay kind (names of `overlay_colormap`).
DEFAULT_COLORMAPS = {"positivity": "ihc", "attention": "viridis"}
#: Colormap choices offered by the widget.
COLORMAP_CHOICES = ("ihc", "magma", "inferno", "viridis", "turbo", "red", "blue")
#: Classification colours (RGB) per marker, used for QuPath and reports.
MARKER_COLOURS = {"p53": (160, 82, 45), "pdl1": (214, 39, 40), "ki67": (148, 60, 20)}
NEGATIVE_COLOUR = (70, 110, 200)
#: The 'ihc' colormap: glass-blue (0) through yellow to DAB-brown (1), RGBA in [0, 1].
IHC_COLOURS = np.array(
    [[0.25, 0.45, 0.85, 1], [0.95, 0.9, 0.55, 1], [0.85, 0.45, 0.1, 1], [0.45, 0.15, 0.05, 1]],
    np.float32,
)


def colour_ramp(values: np.ndarray, colours: np.ndarray = IHC_COLOURS) -> np.ndarray:
    """RGB in [0, 1] of `values` in [0, 1] on an evenly spaced colour ramp (pure numpy)."""
    v = np.clip(np.asarray(values, np.float32), 0.0, 1.0)
    pos = v * (len(colours) - 1)
    i = np.minimum(np.floor(pos).astype(int), len(colours) - 2)
    f = (pos - i)[..., None]
    return colours[i, :3] * (1 - f) + colours[i + 1, :3] * f


def _mpp_xy(mpp: Any) -> tuple[float, float]:
    """(mpp_x, mpp_y) from a scalar or a pair."""
    arr = np.asarray(mpp, dtype=float).ravel()
    return (float(arr[0]), float(arr[-1]))


@dataclass(frozen=True)
class GridGeometry:
    """Where a regular tile lattice sits on the slide.

    `origin` is the level-0 (x, y) of the top-left corner of tile (row 0, col 0), `tile_px0` the tile
    side in level-0 px and `mpp` the slide's (mpp_x, mpp_y).
    """

    origin: tuple[float, float]
    tile_px0: float
    mpp: tuple[float, float]
    n_rows: int
    n_cols: int

    @property
    def shape(self) -> tuple[int, int]:
        return (self.n_rows, self.n_cols)

    @property
    def scale(self) -> tuple[float, float]:
        """(row, col) world size of one heatmap pixel (= one tile), um."""
        return (self.tile_px0 * self.mpp[1], self.tile_px0 * self.mpp[0])

    @property
    def translate(self) -> tuple[float, float]:
        """(row, col) world centre of tile (0, 0), um."""
        half = (self.tile_px0 - 1.0) / 2.0
        return ((self.origin[1] + half) * self.mpp[1], (self.origin[0] + half) * self.mpp[0])

    def tile_centre_um(self, row: Any, col: Any) -> np.ndarray:
        """World (row, col) centre of tile(s) (row, col), um."""
        t = np.asarray(self.translate)
        s = np.asarray(self.scale)
        return np.stack([t[0] + np.asarray(row) * s[0], t[1] + np.asarray(col) * s[1]], axis=-1)

    def world_to_rowcol(self, world_rc: Any) -> tuple[int, int]:
        """The (row, col) of the tile under a world point (may lie outside the grid)."""
        t = np.asarray(self.translate)
        s = np.asarray(self.scale)
        rc = np.floor((np.asarray(world_rc, float)[-2:] - t) / s + 0.5).astype(int)
        return int(rc[0]), int(rc[1])

    def world_box_to_px0(self, top_left: Any, bottom_right: Any) -> tuple[int, int, int, int]:
        """A world (row, col) box in um as a level-0 (x, y, w, h) box clipped at 0."""
        y0 = max(0.0, float(top_left[0]) / self.mpp[1])
        x0 = max(0.0, float(top_left[1]) / self.mpp[0])
        y1 = max(y0, float(bottom_right[0]) / self.mpp[1])
        x1 = max(x0, float(bottom_right[1]) / self.mpp[0])
        return int(x0), int(y0), int(np.ceil(x1 - int(x0))), int(np.ceil(y1 - int(y0)))

    def to_dict(self) -> dict:
        return {
            "origin": [float(v) for v in self.origin],
            "tile_px0": float(self.tile_px0),
            "mpp": [float(v) for v in self.mpp],
            "n_rows": int(self.n_rows),
            "n_cols": int(self.n_cols),
        }

    @classmethod
    def from_dict(cls, d: Mapping) -> GridGeometry:
        return cls(
            origin=tuple(float(v) for v in d["origin"]),
            tile_px0=float(d["tile_px0"]),
            mpp=_mpp_xy(d["mpp"]),
            n_rows=int(d["n_rows"]),
            n_cols=int(d["n_cols"]),
        )


def grid_geometry(grid: Any) -> GridGeometry:
    """The `GridGeometry` of a `tiling.TileGrid` (its tiles sit on a lattice of side `tile_px0`)."""
    coords = np.asarray(grid.coords, dtype=float).reshape(-1, 2)
    rowcol = np.asarray(grid.rowcol, dtype=float).reshape(-1, 2)
    t = float(grid.tile_px0)
    if len(coords):
        origin = coords - rowcol[:, ::-1] * t
        # coords are whole pixels on a lattice anchored at a whole pixel
        ox, oy = float(np.round(np.mean(origin[:, 0]))), float(np.round(np.mean(origin[:, 1])))
    else:
        ox = oy = 0.0
    return GridGeometry(
        origin=(ox, oy),
        tile_px0=t,
        mpp=_mpp_xy(grid.slide_mpp),
        n_rows=int(grid.n_rows),
        n_cols=int(grid.n_cols),
    )


@dataclass
class MarkerMaps:
    """Per-tile results of one marker; NaN where a tile has not been computed yet."""

    marker: str
    positivity: np.ndarray
    attention: np.ndarray
    attention_logit: np.ndarray
    probability: float = float("nan")
    label: str = ""
    threshold: float = 0.5
    scope: str = ""

    @property
    def name(self) -> str:
        return MARKERS.get(self.marker, self.marker)


@dataclass
class PredictionMaps:
    """Per-tile results on one tile grid, plus the heatmap arrays the overlays show.

    Heatmap arrays (`heatmap(marker, kind)`) are created once and updated in place, so overlay
    layers built on them only need a `refresh()`.
    """

    geometry: GridGeometry
    coords: np.ndarray
    rowcol: np.ndarray
    tissue_fraction: np.ndarray
    slide_path: str = ""
    markers: dict[str, MarkerMaps] = field(default_factory=dict)
    done: np.ndarray = field(default=None)  # type: ignore[assignment]
    info: dict = field(default_factory=dict)
    _heatmaps: dict = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        self.coords = np.asarray(self.coords, dtype=np.int64).reshape(-1, 2)
        self.rowcol = np.asarray(self.rowcol, dtype=np.int64).reshape(-1, 2)
        self.tissue_fraction = np.asarray(self.tissue_fraction, dtype=np.float32).reshape(-1)
        if self.done is None:
            self.done = np.zeros(len(self.coords), bool)

    # -- construction --------------------------------------------------------------------------
    @classmethod
    def from_grid(cls, grid: Any, markers: Iterable[str], slide_path: str = "") -> PredictionMaps:
        """Empty maps on a `TileGrid` for `markers`."""
        n = len(np.asarray(grid.coords).reshape(-1, 2))
        tf = getattr(grid, "tissue_fraction", None)
        maps = cls(
            geometry=grid_geometry(grid),
            coords=grid.coords,
            rowcol=grid.rowcol,
            tissue_fraction=np.ones(n, np.float32) if tf is None else tf,
            slide_path=str(slide_path),
        )
        for m in markers:
            maps.add_marker(m)
        return maps

    @classmethod
    def from_prediction(cls, prediction: Any) -> PredictionMaps:
        """Maps holding a finished `inference.SlidePrediction`."""
        maps = cls.from_grid(prediction.grid, prediction.markers, str(prediction.slide_path or ""))
        idx = np.arange(len(maps))
        for key, mp in prediction.markers.items():
            maps.update(key, idx, mp.positivity, mp.attention)
            scope = "region" if getattr(prediction.grid, "region", None) else "whole slide"
            maps.set_slide_call(key, mp.probability, mp.label or "", mp.threshold, scope=scope)
        maps.info["messages"] = list(getattr(prediction, "messages", []))
        return maps

    def add_marker(self, marker: str) -> MarkerMaps:
        if marker not in self.markers:
            nan = np.full(len(self), np.nan, np.float32)
            self.markers[marker] = MarkerMaps(marker, nan.copy(), nan.copy(), nan.copy())
        return self.markers[marker]

    def __len__(self) -> int:
        return len(self.coords)

    # -- updates -------------------------------------------------------------------------------
    def update(
        self,
        marker: str,
        indices: Any,
        positivity: Any,
        attention: Any | None = None,
        attention_logit: Any | None = None,
    ) -> None:
        """Store per-tile results of `marker` for tile `indices` and update its heatmaps in place."""
        mm = self.add_marker(marker)
        idx = np.asarray(indices, dtype=np.int64).reshape(-1)
        mm.positivity[idx] = np.asarray(positivity, np.float32).reshape(-1)
        if attention_logit is not None:
            mm.attention_logit[idx] = np.asarray(attention_logit, np.float32).reshape(-1)
        if attention is not None:
            mm.attention[idx] = np.asarray(attention, np.float32).reshape(-1)
        elif attention_logit is not None:
            mm.attention[:] = softmax_over_finite(mm.attention_logit)
        self.done[idx] = True
        self._refresh_heatmaps(marker)

    def set_attention(self, marker: str, attention: Any) -> None:
        """Replace the whole attention vector of `marker` (e.g. re-normalised over all tiles)."""
        mm = self.add_marker(marker)
        mm.attention[:] = np.asarray(attention, np.float32).reshape(-1)
        self._refresh_heatmaps(marker)

    def set_slide_call(
        self, marker: str, probability: float, label: str = "", threshold: float = 0.5, scope: str = ""
    ) -> None:
        mm = self.add_marker(marker)
        mm.probability = float(probability)
        mm.label = str(label)
        mm.threshold = float(threshold)
        mm.scope = scope

    def _refresh_heatmaps(self, marker: str) -> None:
        for kind in KINDS:
            arr = self._heatmaps.get((marker, kind))
            if arr is not None:
                fill_heatmap(arr, self.rowcol, self.values(marker, kind))

    # -- views ---------------------------------------------------------------------------------
    def values(self, marker: str, kind: str) -> np.ndarray:
        """Per-tile values (N,) of an overlay kind; NaN for tiles not computed."""
        if kind not in KINDS:
            raise ValueError(f"unknown overlay kind {kind!r}; use one of {KINDS}")
        return getattr(self.markers[marker], kind)

    def heatmap(self, marker: str, kind: str) -> np.ndarray:
        """The (n_rows, n_cols) float32 heatmap of `marker`/`kind`, NaN outside computed tiles.

        The same array object is returned every time and updated in place by `update`.
        """
        key = (marker, kind)
        if key not in self._heatmaps:
            arr = np.full(self.geometry.shape, np.nan, np.float32)
            fill_heatmap(arr, self.rowcol, self.values(marker, kind))
            self._heatmaps[key] = arr
        return self._heatmaps[key]

    def tile_at(self, world_rc: Any) -> int | None:
        """Index of the grid tile under a world point (um), or None."""
        r, c = self.geometry.world_to_rowcol(world_rc)
        hit = np.flatnonzero((self.rowcol[:, 0] == r) & (self.rowcol[:, 1] == c))
        return int(hit[0]) if len(hit) else None

    def tile_scores(self, index: int) -> dict:
        """A tile's position and per-marker scores, for display."""
        x, y = (int(v) for v in self.coords[index])
        out = {
            "tile": int(index),
            "row": int(self.rowcol[index, 0]),
            "col": int(self.rowcol[index, 1]),
            "x": x,
            "y": y,
            "tissue_fraction": float(self.tissue_fraction[index]),
            "computed": bool(self.done[index]),
            "markers": {},
        }
        for key, mm in self.markers.items():
            out["markers"][key] = {
                "positivity": float(mm.positivity[index]),
                "attention": float(mm.attention[index]),
            }
        return out

    def positive_fraction(self, marker: str, tile_threshold: float = 0.5) -> float:
        """Tissue-weighted fraction of computed tissue tiles with positivity >= `tile_threshold`."""
        pos = self.markers[marker].positivity
        ok = np.isfinite(pos)
        w = self.tissue_fraction[ok].astype(float)
        if not ok.any() or w.sum() <= 0:
            return float("nan")
        return float(np.sum(w * (pos[ok] >= tile_threshold)) / w.sum())

    def summary(self, tile_threshold: float = 0.5) -> dict:
        """Per-marker slide call, probability and positive-tissue fraction."""
        out = {}
        for key, mm in self.markers.items():
            out[key] = {
                "marker": mm.name,
                "probability": mm.probability,
                "label": mm.label,
                "threshold": mm.threshold,
                "scope": mm.scope,
                "positive_fraction": self.positive_fraction(key, tile_threshold),
                "tiles_computed": int(np.isfinite(mm.positivity).sum()),
                "tiles_total": len(self),
            }
        return out

    def metadata(self, marker: str, kind: str) -> dict:
        """The `layer.metadata[META_KEY]` entry of an overlay (what writers need)."""
        return {
            "marker": marker,
            "kind": kind,
            "geometry": self.geometry.to_dict(),
            "slide_path": self.slide_path,
            "maps": self,
        }


def fill_heatmap(arr: np.ndarray, rowcol: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Write per-tile `values` into `arr` at `rowcol` (in place); other pixels stay as they are."""
    if len(rowcol):
        arr[rowcol[:, 0], rowcol[:, 1]] = values
    return arr


def heatmap(geometry: GridGeometry, rowcol: Any, values: Any) -> np.ndarray:
    """A (n_rows, n_cols) float32 heatmap from per-tile values, NaN where there is no tile."""
    arr = np.full(geometry.shape, np.nan, np.float32)
    return fill_heatmap(arr, np.asarray(rowcol, np.int64).reshape(-1, 2), np.asarray(values, np.float32))


def softmax_over_finite(logits: np.ndarray) -> np.ndarray:
    """Softmax over the finite entries (NaN stays NaN): attention normalised over tiles seen."""
    out = np.full(logits.shape, np.nan, np.float32)
    ok = np.isfinite(logits)
    if ok.any():
        z = logits[ok].astype(np.float64)
        e = np.exp(z - z.max())
        out[ok] = e / e.sum()
    return out


def contrast_limits(values: np.ndarray, kind: str) -> list[float]:
    """[0, 1] for positivity; [0, max] for attention (softmax weights are small)."""
    if kind == "attention":
        ok = np.isfinite(values)
        top = float(np.max(values[ok])) if ok.any() else 0.0
        return [0.0, top if top > 0 else 1.0]
    return [0.0, 1.0]


def overlay_colormap(name: str) -> Any:
    """A napari Colormap by name; NaN (no tile) is transparent. 'ihc' is glass-blue to DAB-brown."""
    from napari.utils.colormaps import Colormap, ensure_colormap

    if name == "ihc":
        return Colormap(IHC_COLOURS, name="histostain-ihc", nan_color="transparent")
    cmap = ensure_colormap(name)
    return Colormap(cmap.colors, controls=cmap.controls, name=f"histostain-{name}",
                    interpolation=cmap.interpolation, nan_color="transparent")


def overlay_name(marker: str, kind: str) -> str:
    """Layer name of an overlay, e.g. 'Ki-67 positivity'."""
    return f"{MARKERS.get(marker, marker)} {kind}"


def overlay_layer_kwargs(
    maps: PredictionMaps,
    marker: str,
    kind: str,
    *,
    colormap: str | None = None,
    opacity: float = 0.6,
) -> dict:
    """napari Image layer kwargs of the `marker`/`kind` heatmap of `maps`."""
    g = maps.geometry
    limits = contrast_limits(maps.values(marker, kind), kind)
    return {
        "name": overlay_name(marker, kind),
        "scale": g.scale,
        "translate": g.translate,
        "colormap": overlay_colormap(colormap or DEFAULT_COLORMAPS[kind]),
        "contrast_limits": limits,
        "opacity": opacity,
        "blending": "translucent",
        "interpolation2d": "nearest",
        "units": ("um", "um"),
        "metadata": {META_KEY: maps.metadata(marker, kind)},
    }


def tissue_mask_layer(mask: np.ndarray, downsample: float, mpp: Any) -> tuple[np.ndarray, dict]:
    """(data, kwargs) of a tissue-mask Labels-style image: mask px `downsample` level-0 px wide."""
    mx, my = _mpp_xy(mpp)
    half = (downsample - 1.0) / 2.0
    kwargs = {
        "name": "Tissue mask",
        "scale": (downsample * my, downsample * mx),
        "translate": (half * my, half * mx),
        "opacity": 0.3,
        "blending": "translucent",
        "colormap": "green",
        "contrast_limits": [0, 1],
        "interpolation2d": "nearest",
        "units": ("um", "um"),
        "visible": False,
    }
    return np.asarray(mask, np.uint8), kwargs
