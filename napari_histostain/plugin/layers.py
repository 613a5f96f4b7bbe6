"""napari layer settings of HistoStain maps: colormaps, contrast, names, world placement (no Qt)."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..io.metadata import mpp_pair
from ..markers import marker_name
from ..results.colours import IHC_COLOURS
from ..results.maps import META_KEY, PredictionMaps

#: Default colormap per overlay kind (names of `overlay_colormap`).
DEFAULT_COLORMAPS = {"positivity": "ihc", "attention": "viridis"}
#: Colormap choices offered by the widget.
COLORMAP_CHOICES = ("ihc", "magma", "inferno", "viridis", "turbo", "red", "blue")


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
    return Colormap(
        cmap.colors,
        controls=cmap.controls,
        name=f"histostain-{name}",
        interpolation=cmap.interpolation,
        nan_color="transparent",
    )


def overlay_name(marker: str, kind: str) -> str:
    """Layer name of an overlay, e.g. 'Ki-67 positivity'."""
    return f"{marker_name(marker)} {kind}"


def overlay_layer_kwargs(
    maps: PredictionMaps,
    marker: str,
    kind: str,
    *,
    colormap: str | None = None,
    opacity: float = 0.6,
) -> dict:
    """napari Image layer kwargs of the `marker`/`kind` heatmap of `maps`."""
    g = maps.lattice
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


#: Name of the overlay of tiles out of the models' domain (grey; left out of the calls).
OUT_OF_DOMAIN_LAYER = "Out of domain (left out of the call)"
#: Its colour: mid grey, opaque enough to hide the positivity underneath.
OUT_OF_DOMAIN_GREY = (0.55, 0.55, 0.55, 1.0)


def out_of_domain_layer_kwargs(maps: PredictionMaps) -> dict:
    """napari Image layer kwargs of `maps.out_of_domain_heatmap()`: grey tiles, others clear."""
    from napari.utils.colormaps import Colormap

    g = maps.lattice
    grey = Colormap(
        [OUT_OF_DOMAIN_GREY, OUT_OF_DOMAIN_GREY],
        name="histostain-out-of-domain",
        nan_color="transparent",
    )
    return {
        "name": OUT_OF_DOMAIN_LAYER,
        "scale": g.scale,
        "translate": g.translate,
        "colormap": grey,
        "contrast_limits": (0.0, 1.0),
        "opacity": 0.85,
        "blending": "translucent",
        "interpolation2d": "nearest",
        "units": ("um", "um"),
        "metadata": {META_KEY: {"kind": "out_of_domain", "slide_path": maps.slide_path}},
    }


def tissue_mask_layer(mask: np.ndarray, downsample: float, mpp: Any) -> tuple[np.ndarray, dict]:
    """(data, kwargs) of a tissue-mask Labels-style image: mask px `downsample` level-0 px wide."""
    mx, my = mpp_pair(mpp)
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
