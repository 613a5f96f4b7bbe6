"""The overlay layers of one prediction's maps in the viewer: made once, then updated in place."""

from __future__ import annotations

import contextlib
from typing import Any

from ..plugin.clipped_maps import ClippedMap, clipped_map, place
from ..plugin.layers import (
    OUT_OF_DOMAIN_LAYER,
    contrast_limits,
    out_of_domain_layer_kwargs,
    overlay_colormap,
    overlay_layer_kwargs,
    overlay_name,
    tissue_mask_layer,
)
from ..results.maps import KINDS, META_KEY, OUT_OF_DOMAIN, PredictionMaps

TISSUE_LAYER = "Tissue mask"


class OverlayLayers:
    """A positivity and an attention layer per marker over `PredictionMaps`, plus the tissue mask.

    Adding napari layers is slow, so layers of an earlier run are reused (new data, same layer)
    and redraws only refresh them. Each layer shows its heatmap clipped to the slide
    (`plugin.clipped_maps`): the tiles that changed are copied into it before a redraw.
    """

    def __init__(self, viewer: Any):
        self.viewer = viewer
        self.layers: dict[tuple[str, str], Any] = {}
        self.domain_layer: Any = None  # grey tiles out of the models' domain (when any)
        #: the display array of each layer's heatmap (OUT_OF_DOMAIN: the domain layer's)
        self.clipped: dict[tuple[str, str], ClippedMap] = {}

    def clip(self, key: tuple[str, str], source: Any, maps: PredictionMaps) -> ClippedMap:
        """The display array of heatmap `source` (the one kept for `key` if it shows `source`)."""
        clip = self.clipped.get(key)
        if clip is None or clip.source is not source:
            clip = self.clipped[key] = clipped_map(source, maps.lattice, maps.slide_dimensions)
        else:
            clip.sync()
        return clip

    def make(
        self,
        maps: PredictionMaps,
        markers: list[str],
        *,
        opacity: float,
        colormap: str,
        shown: str | None = None,
    ) -> None:
        """One positivity and one attention (hidden) layer per marker on `maps`; only `shown`'s
        positivity is visible (one marker at a time: overlays at once mix their colours)."""
        for m in markers:
            for kind in KINDS:
                self.make_one(maps, m, kind, opacity=opacity, colormap=colormap, shown=shown)

    def make_one(
        self,
        maps: PredictionMaps,
        m: str,
        kind: str,
        *,
        opacity: float,
        colormap: str,
        shown: str | None = None,
    ) -> Any:
        """The `m`/`kind` layer on `maps`: an earlier run's layer of that name gets the new data
        (adding layers is slow), else a new layer; visible if it is `shown`'s positivity."""
        kw = overlay_layer_kwargs(
            maps, m, kind, opacity=opacity, colormap=colormap if kind == "positivity" else None
        )
        clip = self.clip((m, kind), maps.heatmap(m, kind), maps)
        place(kw, clip)
        name = overlay_name(m, kind)
        old = self.viewer.layers[name] if name in self.viewer.layers else None
        visible = kind == "positivity" and m == shown
        if old is not None and META_KEY in old.metadata:
            # each setter would slice and redraw the layer: block those, refresh once at the end
            block = getattr(old, "_block_refresh", contextlib.nullcontext)
            was_visible = old.visible
            with block():
                old.metadata = kw["metadata"]
                old.scale, old.translate = kw["scale"], kw["translate"]
                old.data = clip.data
                old.contrast_limits_range = kw["contrast_limits"]
                old.contrast_limits = kw["contrast_limits"]
            old.visible = visible  # showing a hidden layer refreshes it
            if visible and was_visible:
                old.refresh()
            self.layers[(m, kind)] = old
            return old
        kw["visible"] = visible
        self.layers[(m, kind)] = self.viewer.add_image(clip.data, **kw)
        return self.layers[(m, kind)]

    def refresh(self, maps: PredictionMaps) -> None:
        """Copy the new tiles into the display arrays and redraw the overlays that changed
        (napari skips hidden layers and refreshes them when shown)."""
        for (m, kind), layer in list(self.layers.items()):
            if layer not in self.viewer.layers:
                continue
            clip = self.clipped.get((m, kind))
            changed = clip.take_changed() if clip is not None else True
            if kind == "attention":
                lim = contrast_limits(maps.values(m, kind), kind)
                layer.contrast_limits_range = lim
                layer.contrast_limits = lim
            if layer.visible and changed:
                layer.refresh()
        self.show_out_of_domain(maps)

    def show_out_of_domain(self, maps: PredictionMaps) -> Any:
        """The grey layer of tiles out of the models' domain (left out of the calls), over the
        positivity: added when the first such tile is seen, then refreshed; None while there is
        none."""
        layer = self.domain_layer
        if layer is not None and layer not in self.viewer.layers:
            layer = self.domain_layer = None
        if layer is None:
            earlier = OUT_OF_DOMAIN_LAYER in self.viewer.layers
            if not earlier and not (maps.out_of_domain() == 1).any():
                return None
            clip = self.clip(OUT_OF_DOMAIN, maps.out_of_domain_heatmap(), maps)
            if earlier:  # an earlier run's: reuse it (cleared when this run has none)
                layer = _replace_domain_data(self.viewer.layers[OUT_OF_DOMAIN_LAYER], maps, clip)
            else:
                kw = place(out_of_domain_layer_kwargs(maps), clip)
                layer = self.viewer.add_image(clip.data, **kw)
            self.domain_layer = layer
            return layer
        clip = self.clipped.get(OUT_OF_DOMAIN)
        if clip is None or clip.source is not maps.out_of_domain_heatmap():  # another run's grid
            _replace_domain_data(
                layer, maps, self.clip(OUT_OF_DOMAIN, maps.out_of_domain_heatmap(), maps)
            )
        elif clip.take_changed() and layer.visible:
            layer.refresh()
        return layer

    def sync(self) -> None:
        """Copy new tiles into the display arrays now (cheap: the redraw comes with `refresh`),
        so that each layer's data holds every tile computed so far."""
        for clip in self.clipped.values():
            clip.sync()

    def show_only(self, marker: str, *, colorbar: bool = True) -> Any:
        """Show `marker`'s positivity layer (with napari's colour bar unless `colorbar` is False)
        and hide the others'."""
        out = None
        for (m, kind), layer in self.layers.items():
            if kind != "positivity" or layer not in self.viewer.layers:
                continue
            layer.visible = m == marker
            layer.colorbar.visible = m == marker and colorbar
            if m == marker:
                out = layer
        return out

    def forget(self, layer: Any) -> None:
        """A layer the user removed is no longer ours to update."""
        for key, ly in list(self.layers.items()):
            if ly is layer:
                del self.layers[key]

    def set_opacity(self, opacity: float) -> None:
        for layer in self.layers.values():
            layer.opacity = opacity

    def set_colormap(self, name: str) -> None:
        """The colormap of the positivity layers."""
        for (_, kind), layer in self.layers.items():
            if kind == "positivity":
                layer.colormap = overlay_colormap(name)

    def show_tissue(self, tissue: Any | None, slide_mpp: Any) -> None:
        """Add the tissue-mask layer (once), or remove it with `tissue=None`."""
        if tissue is None:
            if TISSUE_LAYER in self.viewer.layers:
                self.viewer.layers.remove(TISSUE_LAYER)
            return
        if TISSUE_LAYER in self.viewer.layers:
            return
        data, kw = tissue_mask_layer(tissue.mask, tissue.downsample, slide_mpp)
        kw["visible"] = True
        self.viewer.add_image(data, **kw)


def _replace_domain_data(layer: Any, maps: PredictionMaps, clip: ClippedMap) -> Any:
    """Give the out-of-domain `layer` the heatmap of `maps` (as `clip`), placed on its grid."""
    kw = place(out_of_domain_layer_kwargs(maps), clip)
    layer.scale, layer.translate = kw["scale"], kw["translate"]
    layer.metadata = kw["metadata"]
    layer.data = clip.data
    return layer
