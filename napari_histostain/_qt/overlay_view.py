"""The prediction's overlays in the viewer, as the dock widget shows and updates them.

`OverlayView` is a mixin of `PredictionWidget`: the overlay layers (the shown marker's now, the
others one per event-loop turn), their throttled redraws while tiles stream in, one marker shown at
a time with its colour legend, the results panel, the tissue mask and the clicked tile's outline;
and the display controls that drive them (`_build_display`).
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
from qtpy.QtCore import Qt, QTimer
from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QLabel,
    QSlider,
)

from ..markers import MARKERS
from ..plugin.layers import COLORMAP_CHOICES, DEFAULT_COLORMAPS
from ..results.maps import KINDS
from .display import ColourLegend, TileOutline, TileTable, tile_box_um
from .gui_timing import GuiTiming
from .overlay_layers import OverlayLayers
from .results_panel import ResultsPanel

#: The tile table is refilled at most this often while a run streams (s).
TABLE_REFRESH_S = 3.0


class OverlayView:
    """Mixin: the overlays of `self.predictor`'s maps (see the module docstring)."""

    viewer: Any
    predictor: Any
    overlays: OverlayLayers
    outline: TileOutline
    legend: ColourLegend
    colorbar_box: Any
    results: ResultsPanel
    tile_table: TileTable
    timing: GuiTiming
    last_tile: dict | None
    refresh_interval: float
    _last_refresh: float
    _table_at: float
    _refresh_timer: QTimer
    _layer_queue: list
    _layers_for: Any

    def _build_display(self, rl: Any) -> None:
        """The display controls under the results: shown marker, legend, threshold, opacity,
        colormap, colour bar, side by side, alignment, tissue mask; then the tile table."""
        disp = QFormLayout()
        self.show_combo = QComboBox()
        self.show_combo.setToolTip("The marker whose positivity map is shown (one at a time).")
        self.show_combo.currentIndexChanged.connect(self._on_show_choice)
        disp.addRow("Show", self.show_combo)
        self.legend = ColourLegend()
        disp.addRow(self.legend)
        self.threshold_spin = QDoubleSpinBox()
        self.threshold_spin.setRange(0.0, 1.0)
        self.threshold_spin.setSingleStep(0.05)
        self.threshold_spin.setValue(0.5)
        self.threshold_spin.setToolTip(
            "Tile positivity counted as positive tissue (and in exports)."
        )
        self.threshold_spin.valueChanged.connect(self._on_threshold)
        disp.addRow("Tile threshold", self.threshold_spin)
        self.opacity_slider = QSlider(Qt.Horizontal)
        self.opacity_slider.setRange(0, 100)
        self.opacity_slider.setValue(60)
        self.opacity_slider.valueChanged.connect(self._on_opacity)
        disp.addRow("Opacity", self.opacity_slider)
        self.cmap_combo = QComboBox()
        self.cmap_combo.addItems(COLORMAP_CHOICES)
        self.cmap_combo.setCurrentText(DEFAULT_COLORMAPS["positivity"])
        self.cmap_combo.currentTextChanged.connect(self._on_colormap)
        disp.addRow("Colormap", self.cmap_combo)
        self.colorbar_box = QCheckBox("Colour bar on the canvas")
        self.colorbar_box.setToolTip(
            "napari's colour bar over the image too (the legend above gives the same range and\n"
            "meaning; on the canvas it is redrawn with every frame, which slows panning)."
        )
        self.colorbar_box.toggled.connect(self._on_colorbar_toggled)
        disp.addRow("", self.colorbar_box)
        self.side_box = QCheckBox("Side by side with the IHC slide")
        self.side_box.setToolTip(
            "H&E with the predicted maps left, the IHC slide (chosen under Observed IHC) with its\n"
            "observed map right, in napari's grid mode: one camera, so pan and zoom are linked."
        )
        self.side_box.toggled.connect(self.set_side_by_side)
        disp.addRow("", self.side_box)
        self.align_box = QCheckBox("Align sections")
        self.align_box.setToolTip(
            "Lay the IHC slide onto the H&E by a rigid transform (rotation + shift) found from both\n"
            "tissue masks (kept as the IHC layer's affine; computed in the background)."
        )
        self.align_box.toggled.connect(self.set_aligned)
        disp.addRow("", self.align_box)
        self.tissue_box = QCheckBox("Tissue mask layer")
        self.tissue_box.toggled.connect(self._on_tissue_toggled)
        disp.addRow("", self.tissue_box)
        rl.addLayout(disp)
        tiles_label = QLabel("<b>Tiles</b> (click a row to go there; a header sorts)")
        tiles_label.setWordWrap(True)
        rl.addWidget(tiles_label)
        self.tile_table = TileTable()
        self.tile_table.tile_clicked.connect(self.go_to_tile)
        rl.addWidget(self.tile_table)

    def _make_layers(self) -> None:
        """The shown marker's positivity layer now; the other overlays one per event-loop turn
        (adding a napari layer takes tens of ms: all at once would freeze the GUI)."""
        slide_layer = self.slide_layer
        maps, markers = self.predictor.maps, self.predictor.markers
        shown = self.shown_marker if self.shown_marker in markers else markers[0]
        kw = {
            "opacity": self.opacity_slider.value() / 100.0,
            "colormap": self.cmap_combo.currentText(),
            "shown": shown,
        }
        self.overlays.layers = {k: ly for k, ly in self.overlays.layers.items() if k[0] in markers}
        self.overlays.make_one(maps, shown, "positivity", **kw)
        self._layers_for = maps
        rest = [(m, k) for m in markers for k in KINDS if (m, k) != (shown, "positivity")]
        self._layer_queue = [(maps, m, k, kw) for m, k in rest]
        if self.colorbar_box.isChecked():  # napari's colour bar: its own turn (slow to build)
            self._layer_queue.insert(0, (maps, shown, "colorbar", kw))
        QTimer.singleShot(0, self._make_next_layer)
        self.show_combo.blockSignals(True)
        self.show_combo.clear()
        for m in markers:
            self.show_combo.addItem(MARKERS[m], m)
        self.show_combo.setCurrentIndex(markers.index(shown))
        self.show_combo.blockSignals(False)
        self.set_shown_marker(shown, colorbar=False)
        self.tile_table.set_maps(None)
        if self.tissue_box.isChecked():
            self._on_tissue_toggled(True)
        if slide_layer is not None:
            self.viewer.layers.selection.active = slide_layer

    def _make_next_layer(self) -> None:
        if self._stopper.closed.is_set() or not self._layer_queue:
            return
        maps, m, kind, kw = self._layer_queue.pop(0)
        if kind == "colorbar":
            if self.shown_marker == m:
                with self.timing.timed("colour bar"):
                    self.overlays.show_only(m)
        elif self.predictor is not None and maps is self.predictor.maps:
            with self.timing.timed("make layer"):
                self.overlays.make_one(maps, m, kind, **kw)
                if kind == "attention":
                    self.overlays.refresh(maps)
        if self._layer_queue:
            QTimer.singleShot(0, self._make_next_layer)

    def _schedule_refresh(self) -> None:
        """Redraw overlays and panel now, or once the refresh interval has passed (throttle);
        the layers' data holds the new tiles at once."""
        self.overlays.sync()
        wait = self._last_refresh + self.refresh_interval - time.perf_counter()
        if wait <= 0 and not self._refresh_timer.isActive():
            self._refresh_now()
        elif not self._refresh_timer.isActive():
            self._refresh_timer.start(max(int(wait * 1000), 1))

    def _refresh_now(self) -> None:
        self._refresh_timer.stop()
        self._last_refresh = time.perf_counter()
        if self.predictor is not None:
            self._refresh_layers()
            self._update_panel()
            self.annotations.update_results(self.threshold_spin.value())

    def _refresh_layers(self) -> None:
        self.overlays.refresh(self.predictor.maps)
        now = time.perf_counter()
        on_screen = not self.tile_table.visibleRegion().isEmpty()
        running = self.busy or self.live
        if not running or (on_screen and now - self._table_at >= TABLE_REFRESH_S):
            self._table_at = now
            self.tile_table.set_maps(self.predictor.maps)

    # -- one marker at a time ------------------------------------------------------------------
    @property
    def shown_marker(self) -> str | None:
        """The marker whose positivity map is shown."""
        return self.show_combo.currentData()

    def set_shown_marker(self, marker: str, *, colorbar: bool = True) -> None:
        """Show `marker`'s positivity map only (with its colour bar, unless `colorbar` is False:
        the caller shows it later, and its legend)."""
        i = self.show_combo.findData(marker)
        if i >= 0 and i != self.show_combo.currentIndex():
            self.show_combo.setCurrentIndex(i)  # calls back here
            return
        layer = self.overlays.show_only(marker, colorbar=colorbar and self.colorbar_box.isChecked())
        self._update_legend(layer)

    def _on_colorbar_toggled(self, on: bool) -> None:
        """napari's colour bar on the canvas, or only the widget's legend (the default: the bar's
        labels are drawn again with every frame, about 40 ms a frame with software OpenGL)."""
        if self.shown_marker is not None:
            self.overlays.show_only(self.shown_marker, colorbar=on)

    def _on_show_choice(self, index: int) -> None:
        m = self.show_combo.itemData(index)
        if m is not None:
            self.set_shown_marker(m)

    def _update_legend(self, layer=None) -> None:
        layer = layer or self.overlays.layers.get((self.shown_marker, "positivity"))
        if layer is None:
            return
        self.legend.show_colormap(
            layer.colormap,
            tuple(layer.contrast_limits),
            self.shown_marker,
            self.threshold_spin.value(),
        )

    def _update_panel(self) -> None:
        maps = self.predictor.maps if self.predictor else None
        self.results.show_summary(
            maps.summary(self.threshold_spin.value()) if maps else {}, maps.caveats if maps else {}
        )

    def _on_threshold(self, value: float) -> None:
        self._update_panel()
        self._update_legend()

    def _on_opacity(self, value: int) -> None:
        self.overlays.set_opacity(value / 100.0)

    def _on_colormap(self, name: str) -> None:
        self.overlays.set_colormap(name)
        self._update_legend()

    def _on_tissue_toggled(self, checked: bool) -> None:
        if not checked:
            self.overlays.show_tissue(None, None)
        elif self.predictor is not None:
            self.overlays.show_tissue(self.predictor.tissue, self.predictor.grid.slide_mpp)

    # -- tile inspection -----------------------------------------------------------------------
    def show_tile_at(self, world_position) -> dict | None:
        """Show the scores of the tile under a world point (um); returns them (or None)."""
        if self.predictor is None:
            return None
        maps = self.predictor.maps
        i = maps.tile_at(np.asarray(world_position, float)[-2:])
        return self.select_tile(i)

    def select_tile(self, i: int | None) -> dict | None:
        """Outline tile `i` (clipped to the slide) and show its scores; None clears."""
        maps = self.predictor.maps
        self.last_tile = None if i is None else maps.tile_scores(i)
        self.results.show_tile(self.last_tile)
        dims = tuple(self.predictor.slide.dimensions)
        with self.timing.timed("outline"):
            self.outline.show(None if i is None else tile_box_um(maps, i, dims))
        return self.last_tile

    def go_to_tile(self, i: int) -> None:
        """Centre the view on tile `i` and select it (a click in the tile table)."""
        if self.predictor is None:
            return
        corners = tile_box_um(self.predictor.maps, i, None)
        self._camera().center = tuple(corners.mean(0))
        self.select_tile(i)

    def _on_mouse(self, viewer, event):
        if event.type != "mouse_press" or self.predictor is None:
            return
        start = tuple(event.position)
        yield
        moved = False
        while event.type == "mouse_move":
            moved = True
            yield
        if not moved:
            self.show_tile_at(start)
