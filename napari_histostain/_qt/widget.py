"""The pathologist's dock widget: predict the visible region or the whole slide, overlay, export.

All compute runs in napari thread workers; the GUI thread only stores finished batches into the
`PredictionMaps` (small arrays) and refreshes the overlay layers.
"""

from __future__ import annotations

import contextlib
import time
from pathlib import Path
from typing import Any

import numpy as np
from qtpy.QtCore import QEvent, QTimer
from qtpy.QtWidgets import (
    QApplication,
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QFrame,
    QHBoxLayout,
    QLabel,
    QLayout,
    QPushButton,
    QScrollArea,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from ..engine.region_predictor import BUNDLED, RegionPredictor, WidgetError
from ..errors import HistostainError
from ..markers import MARKERS
from .annotations_panel import AnnotationsPanel
from .display import TileOutline
from .gui_timing import GuiTiming
from .ihc_panel import ObservedIHCPanel
from .mode import VISIBLE, WHOLE, ModeAndStatus
from .overlay_layers import OverlayLayers
from .overlay_view import OverlayView
from .results_panel import ResultsPanel
from .slide_choice import can_predict, choose_slide, layer_mpp, needs_confirmation
from .throttle import ThrottledProgress
from .viewport import camera_of, viewport_world_box
from .workers import LiveState, Stopper, live_loop, prepare, tracked, whole_slide


class PredictionWidget(ModeAndStatus, OverlayView, QWidget):
    """HistoStain prediction dock widget (npe2 widget contribution)."""

    def __init__(self, napari_viewer):
        super().__init__()
        self.viewer = napari_viewer
        self.predictor: RegionPredictor | None = None
        self._predictor_key: tuple | None = None
        self._model_files: dict[str, str] = {}
        self.overlays = OverlayLayers(napari_viewer)
        self.outline = TileOutline(napari_viewer)
        self._table_at = 0.0  # when the tile table was last filled
        self._live: LiveState | None = None
        self._live_worker = None
        self._setup_worker = None
        self._whole_worker = None
        self._stopper = Stopper()
        self._cancel = self._stopper.new_cancel()
        self._slide_user_choice: str | None = None  # a slide the user picked in the box
        self._confirmed: str | None = None  # a hidden / IHC-looking slide the user confirmed
        self.stain: dict = {}  # the stain check of the prepared slide
        self._progress = None
        self.batch_size = 16  # whole-slide batch size
        self.visible_batch_size = 4
        self.stream_updates = 0  # batches shown so far (streaming)
        self.last_message = ""
        self.last_tile: dict | None = None
        self.last_export: list[Path] = []
        self.timing = GuiTiming()
        self._view_todo: set[int] = set()
        self._pinned: list[int] | None = None  # tiles to compute instead of the view's
        self._layer_queue: list = []
        self._layers_for = None  # the maps the overlay layers show
        self._t_click = 0.0  # overlays still to add (one per event-loop turn)
        self._setup_key: tuple | None = None  # what the setup worker prepares
        self._setup_then = None  # what runs when it is ready (None: preparing ahead)
        self._setup_cancel = self._stopper.new_cancel()
        self._t_view = 0.0
        self._build_ui()
        self._view_timer = QTimer(self)
        self._view_timer.setSingleShot(True)
        self._view_timer.setInterval(120)
        self._view_timer.timeout.connect(self.update_visible)
        self.refresh_interval = 0.25  # s: streamed overlay redraws are coalesced to at most 4 Hz
        self._last_refresh = 0.0
        self._refresh_timer = QTimer(self)
        self._refresh_timer.setSingleShot(True)
        self._refresh_timer.timeout.connect(self._refresh_now)
        for ev, cb in self._viewer_hooks():
            ev.connect(cb)
        self.viewer.mouse_drag_callbacks.append(self._on_mouse)
        self._prefetch_timer = QTimer(self)
        self._prefetch_timer.setSingleShot(True)
        self._prefetch_timer.setInterval(300)
        self._prefetch_timer.timeout.connect(self.prefetch)
        self.slide_combo.currentTextChanged.connect(self._schedule_prefetch)
        for box in self.marker_boxes.values():
            box.toggled.connect(self._schedule_prefetch)
        self.device_combo.currentTextChanged.connect(self._schedule_prefetch)
        self._refresh_slide_choices()
        self._schedule_prefetch()
        # never leave a worker running when the window or the application goes away; the
        # handlers check `closed` (their Qt objects may be deleted by then)
        stopper = self._stopper
        QApplication.instance().aboutToQuit.connect(stopper.close)
        self.destroyed.connect(lambda *_: stopper.close())
        qt_window = getattr(self.viewer.window, "_qt_window", None)
        if qt_window is not None:
            qt_window.destroyed.connect(lambda *_: stopper.close())

    # ------------------------------------------------------------------------------------------
    # UI
    # ------------------------------------------------------------------------------------------
    def _build_ui(self) -> None:
        self.setMinimumWidth(380)
        outer = QVBoxLayout(self)
        outer.setContentsMargins(0, 0, 0, 0)
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setFrameShape(QFrame.NoFrame)
        content = QWidget()
        scroll.setWidget(content)
        outer.addWidget(scroll)
        lay = QVBoxLayout(content)
        lay.setSizeConstraint(QLayout.SetMinimumSize)
        form = QFormLayout()
        self.slide_combo = QComboBox()
        self.slide_combo.setToolTip(
            "The H&E slide to predict on: a slide opened with the HistoStain reader or any RGB\n"
            "image layer. Offered first: the visible H&E-looking layer; a hidden or IHC-looking\n"
            "layer is predicted only after you confirm."
        )
        self.slide_combo.activated.connect(self._on_slide_picked)
        form.addRow("Slide", self.slide_combo)
        self.pixel_spin = QDoubleSpinBox()
        self.pixel_spin.setRange(0.0, 100.0)
        self.pixel_spin.setDecimals(4)
        self.pixel_spin.setSingleStep(0.05)
        self.pixel_spin.setSpecialValueText("from the slide")
        self.pixel_spin.setSuffix(" um/px")
        self.pixel_spin.setToolTip(
            "The image's pixel size. Slides and image layers with a scale in um state their own;\n"
            "give it for a plain image (PNG, JPEG, a layer in pixels)."
        )
        self.pixel_spin.valueChanged.connect(lambda *_: self._schedule_prefetch())
        form.addRow("Pixel size", self.pixel_spin)
        mk = QHBoxLayout()
        self.marker_boxes = {}
        for key, name in MARKERS.items():
            box = QCheckBox(name)
            box.setChecked(key == "ki67")
            self.marker_boxes[key] = box
            mk.addWidget(box)
        form.addRow("Markers", mk)
        self.model_combo = QComboBox()
        self.model_combo.addItems([BUNDLED, "model file(s)..."])
        self.model_combo.activated.connect(self._on_model_choice)
        self.model_label = QLabel("bundled models")
        self.model_label.setWordWrap(True)
        form.addRow("Model", self.model_combo)
        form.addRow("", self.model_label)
        self.mpp_spin = QDoubleSpinBox()
        self.mpp_spin.setRange(0.0, 64.0)
        self.mpp_spin.setDecimals(2)
        self.mpp_spin.setSingleStep(0.25)
        self.mpp_spin.setSpecialValueText("model's")
        self.mpp_spin.setSuffix(" um/px")
        form.addRow("Tile mpp", self.mpp_spin)
        self.mpp_spin.valueChanged.connect(lambda *_: self._schedule_prefetch())
        self._add_mode_row(form, VISIBLE)
        self.budget_spin = QSpinBox()
        self.budget_spin.setRange(1, 5000)
        self.budget_spin.setValue(40)
        self.budget_spin.setToolTip("Visible region: the most tiles computed for one view.")
        form.addRow("Tile budget", self.budget_spin)
        self.device_combo = QComboBox()
        self.device_combo.addItems(["auto", "cpu", "cuda", "mps"])
        self.device_combo.setToolTip("Where the tile encoder runs (auto: a GPU when there is one).")
        form.addRow("Device", self.device_combo)
        lay.addLayout(form)

        buttons = QHBoxLayout()
        self.run_button = QPushButton("Predict")
        self.run_button.clicked.connect(self.run)
        self.stop_button = QPushButton("Stop")
        self.stop_button.clicked.connect(self.stop)
        self.stop_button.setEnabled(False)
        buttons.addWidget(self.run_button)
        buttons.addWidget(self.stop_button)
        lay.addLayout(buttons)
        self.status = QLabel("Open a slide, choose markers, press Predict.")
        self.status.setWordWrap(True)
        lay.addWidget(self.status)

        self.results = ResultsPanel()
        lay.addWidget(self.results)
        rl = lay
        self._build_display(rl)
        self.export_button = QPushButton("Export...")
        self.export_button.setToolTip(
            "QuPath GeoJSON, CSV tile table, heatmap OME-TIFFs and a slide report (JSON + PNG)."
        )
        self.export_button.clicked.connect(self._on_export_clicked)
        rl.addWidget(self.export_button)
        self.annotations = AnnotationsPanel(
            self.viewer, lambda: self.predictor, self.compute_tiles, self._message
        )
        rl.addWidget(self.annotations)
        self.ihc_panel = ObservedIHCPanel(self.viewer, context=self._ihc_context)
        lay.addWidget(self.ihc_panel)
        lay.addStretch(1)

    def _ihc_context(self) -> dict | None:
        """The prediction's grid and calls, for the observed-IHC section (None before a prediction)."""
        p = self.predictor
        if p is None:
            return {"slide_layer": self.slide_combo.currentText()}
        return {
            "tile_mpp": p.tile_mpp,
            "tile_size": p.tile_size,
            "slide_layer": self.slide_combo.currentText(),
            "summary": p.maps.summary(self.threshold_spin.value()),
        }

    # ------------------------------------------------------------------------------------------
    # Settings
    # ------------------------------------------------------------------------------------------
    @property
    def markers(self) -> list[str]:
        return [k for k, box in self.marker_boxes.items() if box.isChecked()]

    def set_markers(self, markers: list[str]) -> None:
        for k, box in self.marker_boxes.items():
            box.setChecked(k in markers)

    @property
    def slide_layer(self):
        name = self.slide_combo.currentText()
        return self.viewer.layers[name] if name in self.viewer.layers else None

    def set_model_files(self, paths: list[str | Path]) -> None:
        """Use these model files (each for the marker its config names); others stay bundled."""
        from ..engine.model_files import read_model_config

        self._schedule_prefetch()
        for p in paths:
            cfg = read_model_config(p)
            self._model_files[cfg.marker] = str(p)
        self.model_combo.setCurrentIndex(1 if self._model_files else 0)
        self.model_label.setText(
            "; ".join(f"{MARKERS[m]}: {Path(p).name}" for m, p in self._model_files.items())
            + ("; others bundled" if len(self._model_files) < len(MARKERS) else "")
        )

    def _on_model_choice(self, index: int) -> None:
        if index == 0:
            self._model_files.clear()
            self.model_label.setText("bundled models")
            return
        paths, _ = QFileDialog.getOpenFileNames(self, "HistoStain model files", "", "Models (*.pt)")
        if paths:
            try:
                self.set_model_files(paths)
            except HistostainError as exc:
                self._message(str(exc), error=True)
        elif not self._model_files:
            self.model_combo.setCurrentIndex(0)

    def _refresh_slide_choices(self, event=None) -> None:
        """List the layers that can be predicted; show the one `choose_slide`'s rule picks."""
        if self._stopper.closed.is_set():
            return
        layers = list(self.viewer.layers)
        names = [ly.name for ly in layers if can_predict(ly)]
        pick = choose_slide(layers, self._slide_user_choice, self.viewer.layers.selection.active)
        self.slide_combo.blockSignals(True)
        self.slide_combo.clear()
        self.slide_combo.addItems(names)
        if pick is not None:
            self.slide_combo.setCurrentText(pick)
        self.slide_combo.blockSignals(False)
        self._schedule_prefetch()

    def _source_key(self, layer) -> Any:
        """A slide layer's path; for an RGB image layer ("layer", name, data id, pixel size)."""
        if "slide_path" in layer.metadata:  # the reader placed it at the file's pixel size
            return layer.metadata["slide_path"]
        given = float(self.pixel_spin.value())
        mpp = given or layer_mpp(layer)
        if not mpp:
            raise WidgetError(
                f"'{layer.name}' has no pixel size (its scale is in pixels): give it in the Pixel "
                "size box (um/px; e.g. 0.25 for a 40x image, 0.5 for 20x)."
            )
        return ("layer", layer.name, id(layer.data), float(mpp))

    def _source(self, key: tuple) -> Any:
        """What `prepare` opens for settings `key`: a path, or a `Slide` of the layer's pixels."""
        from ..io.slide import slide_from_array

        src = key[0]
        if isinstance(src, str):
            return src
        layer = self.slide_layer
        rgb = np.asarray(layer.data if not layer.multiscale else layer.data[0])
        return slide_from_array(rgb[..., :3], src[3], layer.name)

    def _on_slide_picked(self, index: int) -> None:
        """The user chose a slide in the box: keep it while it exists."""
        self._slide_user_choice = self.slide_combo.itemText(index)

    def _on_layer_removed(self, event) -> None:
        if self._stopper.closed.is_set():
            return
        layer = event.value
        self.overlays.forget(layer)
        self.outline.forget(layer)
        if (
            self.predictor is not None
            and layer.metadata.get("slide_path") == self.predictor.maps.slide_path
        ):
            self.stop()
        self._refresh_slide_choices()

    def _settings_key(self) -> tuple:
        layer = self.slide_layer
        if layer is None:
            raise WidgetError(
                "no slide layer: open a whole-slide image or an RGB image (File > Open) first."
            )
        if not self.markers:
            raise WidgetError("choose at least one marker (P53, PD-L1, Ki-67).")
        files = tuple(sorted((m, p) for m, p in self._model_files.items() if m in self.markers))
        return (
            self._source_key(layer),
            tuple(self.markers),
            files,
            float(self.mpp_spin.value()),
            self.device_combo.currentText(),
        )

    # ------------------------------------------------------------------------------------------
    # Running
    # ------------------------------------------------------------------------------------------
    @property
    def busy(self) -> bool:
        """Whether a run is setting up or a whole-slide worker is running (preparing ahead and
        the visible-region loop excluded)."""
        setting_up = self._setup_worker is not None and self._setup_then is not None
        return setting_up or self._whole_worker is not None

    @property
    def live(self) -> bool:
        return self._live_worker is not None

    def run(self) -> None:
        """Start the chosen mode (button 'Predict')."""
        if self.busy:
            return
        try:
            key = self._settings_key()
        except HistostainError as exc:
            self._message(str(exc), error=True)
            return
        layer = self.slide_layer
        why = needs_confirmation(layer)
        if why and self._confirmed != layer.name:
            self._confirmed = layer.name
            self._message(
                f"'{layer.name}' {why}. Choose the H&E slide in the Slide box, or press Predict "
                "again to predict this layer anyway.",
                error=True,
            )
            return
        self._place_in_um(layer, key[0])
        self._stop_live()
        self._t_click = time.perf_counter()
        then = self._start_whole if self.mode == WHOLE else self._start_live
        if self.predictor is not None and key == self._predictor_key:
            self._show_layers_then(then)
            return
        if self._setup_worker is not None and key == self._setup_key:
            self._setup_then = then  # being prepared ahead: go on when it is ready
            self._message("Loading models and finding tissue...")
            self._set_running(True)
            return
        self._start_setup(key, then)

    def _place_in_um(self, layer, src) -> None:
        """An image layer in pixels gets its pixel size as scale (um), so the maps line up."""
        if isinstance(src, tuple) and src[0] == "layer" and layer_mpp(layer) != src[3]:
            layer.scale = (src[3], src[3])
            layer.units = ("um", "um")
            self._message(f"'{layer.name}' is now shown at {src[3]:g} um/px.")

    def prefetch(self) -> None:
        """Prepare models, slide and tissue in the background for the current settings (when a
        slide is opened or the settings change), so Predict starts at once."""
        if self._stopper.closed.is_set() or self.busy or self.live:
            return
        try:
            key = self._settings_key()
        except HistostainError:
            return
        if key in (self._predictor_key, self._setup_key) or needs_confirmation(self.slide_layer):
            return
        self._start_setup(key, None)

    def _schedule_prefetch(self, *args) -> None:
        if not self._stopper.closed.is_set():
            self._prefetch_timer.start()

    def _show_layers_then(self, then) -> None:
        """Make the overlay layers (when not yet for these maps), then start `then`. A whole-slide
        run's progress bar comes first: napari processes events while building it, and before the
        layers change there is no canvas redraw for it to run inside this handler."""
        if then == self._start_whole:
            self._open_progress()
        if self._layers_for is not self.predictor.maps:
            with self.timing.timed("make layers"):
                self._make_layers()
                self._update_panel()
        then()

    def _start_setup(self, key: tuple, then) -> None:
        from napari.qt.threading import create_worker

        if self._setup_worker is not None:  # settings changed: drop what was being prepared
            self._setup_cancel.set()
        if then is not None:
            self._message("Loading models and finding tissue...")
            self._set_running(True)
        t0 = time.perf_counter()
        cancel = self._setup_cancel = self._stopper.new_cancel()
        try:
            source = self._source(key)
        except HistostainError as exc:
            self._setup_worker = self._setup_then = self._setup_key = None
            if then is not None:
                self._on_error(exc)
            return
        worker = create_worker(
            tracked(prepare, self._stopper.runs), key, cancel, source, _ignore_errors=True
        )

        def done(out) -> None:
            if out is None:
                return
            pred, stain = out
            if self._setup_worker is not worker or self._stopper.closed.is_set():
                pred.close()  # abandoned (Stop, closed): release the slide, start nothing
                return
            self._setup_worker, self._setup_key = None, None
            then = self._setup_then
            if then is None and (self.live or self._whole_worker is not None):
                pred.close()  # a run is going on with the current predictor: keep it
                return
            if self.predictor is not None:
                self.predictor.close()
            self.predictor, self._predictor_key, self.stain = pred, key, stain
            self.ihc_panel.update_grid_label()
            self.timing.marks["setup_s"] = time.perf_counter() - t0
            if then is None:  # prepared ahead: the layers come with Predict
                return
            self._show_layers_then(then)

        def failed(exc: BaseException) -> None:
            if self._setup_worker is worker and not self._stopper.closed.is_set():
                if self._setup_then is None:  # preparing ahead: Predict will say what is wrong
                    self._setup_worker = self._setup_key = None
                    return
                self._on_error(exc)

        worker.returned.connect(done)
        worker.errored.connect(failed)
        self._setup_worker, self._setup_key, self._setup_then = worker, key, then
        worker.start()

    @property
    def stain_note(self) -> str:
        """A warning when the prepared slide's tiles look like IHC (checked in every mode)."""
        if self.stain.get("looks_like") != "IHC":
            return ""
        name = Path(self.predictor.maps.slide_path).name if self.predictor else "the slide"
        return (
            f"{name} looks like an IHC (DAB / haematoxylin) slide, not H&E (eosin share "
            f"{self.stain['eosin_share']:.2f}, DAB pixels {self.stain['dab_fraction']:.1%}); the "
            "models expect H&E, so these predictions are not meaningful. "
        )

    def _on_error(self, exc: BaseException) -> None:
        if self._stopper.closed.is_set():
            return
        self._setup_worker = self._setup_then = self._setup_key = None
        self._whole_worker = None
        self._close_progress()
        self._set_running(False)
        if isinstance(exc, HistostainError):
            self._message(str(exc), error=True)
        else:
            self._message(f"prediction failed: {type(exc).__name__}: {exc}", error=True)

    def _set_running(self, running: bool) -> None:
        self.run_button.setEnabled(not running)
        self.stop_button.setEnabled(running or self.live)

    # -- visible region ------------------------------------------------------------------------
    def _start_live(self) -> None:
        from napari.qt.threading import create_worker

        assert self.predictor is not None
        self._live = LiveState(self.visible_batch_size)
        self._stopper.live = self._live
        worker = create_worker(
            tracked(live_loop, self._stopper.runs), self.predictor, self._live, _ignore_errors=True
        )
        state = self._live

        def on_yield(item) -> None:
            if self._stopper.closed.is_set() or self._live_worker is not worker:
                return
            kind, batch, result = item
            if kind == "ready":
                self.update_visible()
                return
            state.finished(batch)
            if self.predictor is None:
                return
            with self.timing.timed("visible batch"):
                self.predictor.force_call = self.results.force_call
                self.predictor.store(batch, result)
                self.stream_updates += 1
                now = time.perf_counter()
                if (
                    self._t_view
                    and "first_tile_s" not in self.timing.marks
                    and (self._view_todo.intersection(batch))
                ):
                    self.timing.marks["first_tile_s"] = now - self._t_view
                    self.timing.marks["first_tile_at"] = now
                self._schedule_refresh()
                with state.lock:
                    left = len(state.pending) + len(state.in_flight)
                if self._t_view and self.predictor.maps.done[list(self._view_todo)].all():
                    self.timing.marks["viewport_s"] = now - self._t_view
                    self.timing.marks["viewport_at"] = now
                    self._t_view = 0.0
                self._live_status(left)

        def on_finished() -> None:
            if self._live_worker is worker:
                self._live_worker = None

        worker.yielded.connect(on_yield)
        worker.errored.connect(self._on_error)
        worker.finished.connect(on_finished)
        self._live_worker = worker
        self._set_running(False)
        self.stop_button.setEnabled(True)
        self.run_button.setText("Predict (following view)")
        worker.start()

    def _live_status(self, left: int) -> None:
        p = self.predictor
        if p is None:
            return
        msg = self.stain_note + f"Visible region: {p.computed_count} tiles computed"
        msg += f", {left} pending" if left else ", view complete"
        self._message(msg)

    def _on_camera(self, event=None) -> None:
        if self.live:
            self._view_timer.start()

    def visible_tiles(self) -> np.ndarray:
        """Grid indices of the tiles intersecting the current view, nearest its centre first."""
        assert self.predictor is not None
        tl, br = viewport_world_box(self.viewer)
        box = self.predictor.maps.lattice.world_box_to_px0(tl, br)
        if box[2] <= 0 or box[3] <= 0:
            return np.zeros(0, np.int64)
        return self.predictor.tiles_in_box(box)

    def update_visible(self) -> None:
        """Queue the visible tiles that are not cached; drop queued tiles that left the view."""
        if not self.live or self.predictor is None or self._live is None:
            return
        if self._pinned is not None:  # "Predict inside the regions": those tiles, not the view
            idx = np.asarray(self._pinned, np.int64)
            budget = len(idx)
        else:
            idx = self.visible_tiles()
            budget = self.budget_spin.value()
        if len(idx) > budget:
            self._live.replace([])
            self._message(
                f"View too zoomed out: {len(idx)} tissue tiles in view, more than the tile budget "
                f"({budget}). Zoom in, raise the budget, or use 'Whole slide'.",
                error=False,
            )
            return
        todo = self.predictor.pending_of(idx)
        if not (self._t_view and set(todo) <= self._view_todo):  # a new view: restart the clock
            self._t_view = time.perf_counter() if todo else 0.0
            self._view_todo = set(todo)
            if todo:
                self.timing.marks.pop("first_tile_s", None)
        self._live.replace(todo)
        self._live_status(len(todo))

    def _stop_live(self) -> None:
        if self._live is not None:
            self._live.stop.set()
            self._live.wake.set()
        # no worker.quit(): the loop sees `stop` and returns, so it ends (and is joined) cleanly
        self._live_worker = None
        self._live = None
        self.run_button.setText("Predict")

    # -- whole slide ---------------------------------------------------------------------------
    def _start_whole(self) -> None:
        from napari.qt.threading import create_worker

        assert self.predictor is not None
        self._cancel = event = self._stopper.new_cancel()
        n = len(self.predictor.grid)
        pbar = self._open_progress()
        ticks = ThrottledProgress(pbar)

        worker = create_worker(
            tracked(whole_slide, self._stopper.runs),
            self.predictor,
            event,
            self.batch_size,
            lambda: pbar.is_canceled,  # the activity dock's Cancel sets `is_canceled` only
            self.results.force_call,
            _ignore_errors=True,
        )
        self._set_running(True)
        self._message(f"Whole slide: 0 of {n} tiles...")
        t0 = time.perf_counter()

        def on_yield(item) -> None:
            idx, partial = item
            if self.predictor is None or not self._is_current(worker):
                return
            with self.timing.timed("whole-slide batch"):
                self.predictor.store_partial(idx, partial)
                self.stream_updates += 1
                self._message(f"Whole slide: {int(self.predictor.maps.done.sum())} of {n} tiles...")
                self._schedule_refresh()
                ticks.add(len(idx))

        def on_return(prediction) -> None:
            if not self._is_current(worker):
                return
            self._whole_worker = None
            with self.timing.timed("whole-slide result"):
                self._close_progress()
                self._set_running(False)
                if self.predictor is None:
                    return
                self.predictor.store_prediction(prediction)
                self.timing.marks["whole_slide_s"] = time.perf_counter() - t0
                self._refresh_now()
            msgs = " ".join(prediction.messages)
            self._message(
                f"Whole slide done: {n} tiles in {time.perf_counter() - t0:.1f} s. {msgs}"
            )

        def on_error(exc: BaseException) -> None:
            from ..engine.predict import PredictionCancelled

            if not self._is_current(worker):
                return
            if isinstance(exc, PredictionCancelled):
                self._finish_cancel()
                return
            self._on_error(exc)

        worker.yielded.connect(on_yield)
        worker.returned.connect(on_return)
        worker.errored.connect(on_error)
        self._whole_worker = worker
        self._whole_total = n
        worker.start()

    def _open_progress(self):
        """The whole-slide run's progress bar in napari's activity dock (made once per run)."""
        from napari.utils import cancelable_progress

        if self._progress is None:
            with self.timing.timed("progress bar"):
                # a short name: a long one pushes the activity dock's Cancel button out of view
                self._progress = cancelable_progress(
                    total=len(self.predictor.grid), desc="HistoStain", cancel_callback=self.cancel
                )
        return self._progress

    def _is_current(self, worker) -> bool:
        """Whether `worker` is the running whole-slide worker and the widget is still there."""
        return self._whole_worker is worker and not self._stopper.closed.is_set()

    def cancel(self) -> None:
        """Cancel the whole-slide run (the activity dock's Cancel button, Stop).

        The run ends now for the GUI: what arrives from the worker afterwards is ignored, and the
        worker stops before its next batch.
        """
        self._cancel.set()
        if self._progress is not None:
            self._progress.is_canceled = True
        if self._whole_worker is not None and not self._stopper.closed.is_set():
            self._finish_cancel()

    def _finish_cancel(self) -> None:
        # the worker sees the cancel flag before its next batch and ends by itself; what it still
        # yields is ignored (it is no longer the current worker)
        self._whole_worker = None
        self._close_progress()
        self._set_running(self.busy)
        done = int(self.predictor.maps.done.sum()) if self.predictor else 0
        n = getattr(self, "_whole_total", done)
        self._message(
            f"Cancelled after {done} of {n} tiles; the tiles computed so far are "
            "shown and can be exported. Press Predict to run again."
        )
        if self.predictor is not None:
            self.predictor.maps.mark_no_call("cancelled")
            self._refresh_now()

    def _close_progress(self) -> None:
        pbar, self._progress = self._progress, None
        if pbar is not None:
            pbar.close()

    def compute_tiles(self, indices: list[int]) -> None:
        """Compute these tiles (e.g. all tiles of the annotated regions), not the view's."""
        self._pinned = [int(i) for i in indices]
        if not self._pinned:
            self._message("no tissue tiles in the regions.", error=True)
            self._pinned = None
            return
        if self.live:
            self.update_visible()
            return
        self.set_mode(VISIBLE)
        self.run()

    def stop(self) -> None:
        """Stop now: the setup (its result is dropped), the view following and a whole-slide run."""
        self._pinned = None
        self._stop_live()
        if self._setup_worker is not None:
            self._setup_cancel.set()  # the setup checks its cancel flag between steps
            self._setup_worker = self._setup_then = self._setup_key = None
        if self._whole_worker is not None:
            self.cancel()
        self._set_running(self.busy)
        if not self.busy:
            self._message("Stopped.")

    def set_side_by_side(self, on: bool) -> None:
        """Show the H&E and the IHC slide side by side (napari grid mode), or one canvas."""
        from .side_by_side import end_side_by_side, show_side_by_side

        if not on:
            end_side_by_side(self.viewer)
            return
        he, ihc = self.slide_layer, self.ihc_panel.ihc_layer
        if he is None or ihc is None or ihc is he:
            self._message(
                "side by side needs the H&E slide (Slide) and another slide as the IHC slide "
                "(Observed IHC > IHC slide).",
                error=True,
            )
            self.side_box.setChecked(False)
            return
        show_side_by_side(self.viewer, he, ihc)

    def set_aligned(self, on: bool) -> None:
        """Align the IHC slide onto the H&E (in a worker) and keep it as its affine, or undo it."""
        from .side_by_side import apply_alignment, start_alignment

        he, ihc = self.slide_layer, self.ihc_panel.ihc_layer
        if not on:
            if ihc is not None:
                apply_alignment(ihc, None)
            return
        if he is None or ihc is None or ihc is he:
            self._message(
                "align needs the H&E (Slide) and an IHC slide (Observed IHC).", error=True
            )
            self.align_box.setChecked(False)
            return
        self._message("Aligning the IHC section to the H&E...")

        def done(a) -> None:
            if self._stopper.closed.is_set():
                return
            if self.align_box.isChecked() and ihc in self.viewer.layers:
                apply_alignment(ihc, a)
                self._message(
                    f"IHC aligned: rotated {a.angle_deg:.1f} deg, moved "
                    f"{a.shift_um[1]:.0f}, {a.shift_um[0]:.0f} um (x, y); overlap {a.overlap:.2f}"
                )

        def failed(exc: Exception) -> None:
            if self._stopper.closed.is_set():
                return
            self._message(f"could not align the sections: {exc}", error=True)
            self.align_box.setChecked(False)

        self._align_worker = start_alignment(he, ihc, done, failed)

    # -- export --------------------------------------------------------------------------------
    def export_to(self, out_dir: str | Path) -> list[Path]:
        """Export all predictions so far into `out_dir` (GeoJSON, CSV, OME-TIFFs, report)."""
        from ..results.export import export_predictions

        if self.predictor is None:
            raise WidgetError("nothing to export yet: run a prediction first.")
        self.last_export = export_predictions(
            out_dir,
            self.predictor.maps,
            slide=self.predictor.slide,
            tile_threshold=self.threshold_spin.value(),
        )
        self._message(f"Exported {len(self.last_export)} files to {out_dir}.")
        return self.last_export

    def _on_export_clicked(self) -> None:
        out = QFileDialog.getExistingDirectory(self, "Export HistoStain predictions to")
        if out:
            self.export_safely(out)

    def export_safely(self, out_dir: str | Path) -> list[Path]:
        """`export_to`, showing errors (read-only folder, full disk, ...) in the widget."""
        try:
            return self.export_to(out_dir)
        except HistostainError as exc:
            self._message(str(exc), error=True)
            return []

    # -- teardown ------------------------------------------------------------------------------
    def threads(self) -> list:
        """The worker functions started so far (each with `is_alive()`)."""
        return list(self._stopper.runs)

    def close_session(self) -> None:
        """Stop and join the workers, release the slide (the widget, its dock or viewer closes)."""
        if self._stopper.closed.is_set() and self.predictor is None:
            return
        self._stopper.close()
        self._stop_live()
        self._setup_worker = self._whole_worker = None
        self._close_progress()
        self.ihc_panel.close_session()
        self._view_timer.stop()
        self._refresh_timer.stop()
        for ev, cb in self._viewer_hooks():
            with contextlib.suppress(TypeError, ValueError, RuntimeError):
                ev.disconnect(cb)
        self._stopper.join()
        if self.predictor is not None:
            self.predictor.close()
            self.predictor = None

    def _viewer_hooks(self) -> list:
        """(event, callback) pairs connecting the viewer to this widget."""
        return [
            (self.viewer.layers.events.inserted, self._refresh_slide_choices),
            (self.viewer.layers.events.removed, self._on_layer_removed),
            (self._camera().events.center, self._on_camera),
            (self._camera().events.zoom, self._on_camera),
        ]

    def _camera(self):
        """The viewer's camera (napari >= 0.9: `viewer.scene.camera`)."""
        return camera_of(self.viewer)

    def event(self, ev) -> bool:
        # the dock was removed (napari reparents the widget to None): stop the workers
        if ev.type() == QEvent.ParentChange and self.parent() is None:
            self.close_session()
        return super().event(ev)

    def closeEvent(self, event) -> None:
        self.close_session()
        super().closeEvent(event)
