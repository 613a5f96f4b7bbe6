"""The "Observed IHC" section of the prediction widget: measure an IHC slide beside the prediction.

Quantifies a hematoxylin-DAB slide layer with `ihc.quantify_slide` in a napari thread worker
(progress with Cancel in the activity dock), over the whole slide or the visible region, and shows
an "<marker> observed positivity" heatmap on the same tile grid lattice as the predicted maps
(computed on the IHC slide itself: consecutive sections are not registered) plus, optionally, the
nuclei as a points layer coloured by class. The measured values appear in the panel.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from qtpy.QtCore import Qt, QTimer
from qtpy.QtWidgets import (
    QApplication,
    QCheckBox,
    QComboBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from ..defaults import TILE_MPP, TILE_SIZE
from ..errors import HistostainError
from ..markers import MARKERS, get_marker
from .ihc_corrections import CorrectionsBox, point_features, point_style
from .ihc_report_view import hotspot_ellipse, hotspot_name, report_rows, show_hotspot
from .mode import VISIBLE, WHOLE, ModeAndStatus
from .throttle import ThrottledProgress
from .viewport import viewport_world_box
from .workers import stream_from_thread

#: Key of our entry in the metadata of the layers this panel makes.
OBSERVED_KEY = "histostain_observed"
#: Seconds between redraws of the observed map while tiles stream in.
STREAM_REDRAW_S = 0.25
#: Beyond this many nuclei the points layer is not drawn (it would slow the viewer down).
MAX_POINTS = 400_000


def observed_name(marker: str) -> str:
    """Layer name of the observed heatmap, e.g. 'Ki-67 observed positivity'."""
    return f"{MARKERS.get(marker, marker)} observed positivity"


def nuclei_name(marker: str) -> str:
    """Layer name of the nuclei points, e.g. 'Ki-67 nuclei'."""
    return f"{MARKERS.get(marker, marker)} nuclei"


def marker_from_name(name: str) -> str | None:
    """The marker a layer name mentions ('..._ki67', 'Ki-67 IHC', 'PD-L1'), if any."""
    low = name.lower().replace("-", "").replace(" ", "").replace("_", "")
    for key in MARKERS:
        if key in low:
            return key
    return None


def nuclei_layer(result) -> Any:
    """A napari Points layer of `result`'s nuclei coloured by class (None: too many to draw).

    Built without the viewer, so the worker thread can make it (its features take long to check).
    """
    from napari.layers import Points

    marker = result.marker
    n = len(result.nuclei.xy)
    if n > MAX_POINTS:
        return None
    mx, my = result.mpp
    world = np.asarray(result.nuclei.xy, float)[:, ::-1] * (my, mx)
    colours, _ = point_style(result)
    size = 2.0 * result.params.nucleus_radius_um + 1.0
    return Points(
        world.reshape(-1, 2),
        name=nuclei_name(marker),
        size=size,
        face_color="transparent",
        border_color=list(colours) if n else "white",
        border_width=0.18,
        border_width_is_relative=True,
        features=point_features(result),
        units=("um", "um"),
        metadata={OBSERVED_KEY: {"marker": marker}},
    )


def _measure(kwargs: dict, cancel: Callable[[], bool]):
    """Worker: `observe_slide` in a helper thread; yield ("grid", (grid, n tiles)), then
    ("tile", (index, positivity)) per measured tile; return the result."""
    from ..ihc import IHCParams, observe_slide

    kwargs = dict(kwargs)
    with_nuclei = kwargs.pop("nuclei", False)
    if kwargs.pop("count_stroma", False):
        kwargs["params"] = IHCParams(
            context_min_nuclei=0
        )  # as `histostain quantify --count-stroma`

    def job(put):
        return observe_slide(
            **kwargs,
            cancel=cancel,
            on_grid=lambda g, n: put(("grid", (g, n))),
            on_tile=lambda i, v: put(("tile", (i, v))),
        )

    result = yield from stream_from_thread(job, "histostain-observed-ihc")
    # the points layer is made here, off the GUI thread, which then only adds it
    return result, (nuclei_layer(result) if with_nuclei else None)


def format_summary(summary: dict, marker: str) -> list[tuple[str, str]]:
    """(label, value) rows of a slide summary for the panel; the marker's own measure first."""

    def pct(v: float) -> str:
        return f"{v:.1f} %" if np.isfinite(v) else "-"

    rows = {
        "ki67": (
            "Ki-67 index" if marker == "ki67" else "Positive nuclei",
            pct(summary["ki67_index"]),
        ),
        "h_score": (
            "H-score",
            f"{summary['h_score']:.0f}" if np.isfinite(summary["h_score"]) else "-",
        ),
        "pdl1": ("PD-L1 TPS", pct(summary["pdl1_tps"])),
        "p53": ("p53 pattern", summary["p53_pattern"] if summary["n_nuclei"] else "-"),
    }
    # only the chosen marker's own score (a Ki-67 slide has no TPS or p53 pattern); H-score is a
    # generic intensity score of nuclear stains
    first = rows.pop(marker)
    label = get_marker(marker).class_names[int(summary["label"])]
    counts = summary["counts"]
    extra = [rows["h_score"]] if marker != "pdl1" else []
    return [
        first,
        ("Label", label),
        *extra,
        (
            "Nuclei counted",
            f"{summary['n_nuclei']} (neg {counts['negative']}, 1+ {counts['1+']}, "
            f"2+ {counts['2+']}, 3+ {counts['3+']})",
        ),
        ("Positive pixels", f"{summary['positive_pixel_fraction']:.1%}"),
    ]


class ObservedIHCPanel(ModeAndStatus, QWidget):
    """Collapsible section: quantify an IHC slide layer and overlay what it shows.

    `context()` (optional, given by the prediction widget) returns None or a dict with the
    prediction's `tile_mpp`, `tile_size`, `slide_layer` (name of the H&E layer) and `summary`
    (`PredictionMaps.summary()`), so the observed map uses the prediction's grid lattice.
    """

    def __init__(
        self,
        napari_viewer,
        context: Callable[[], dict | None] | None = None,
        *,
        expanded: bool = False,
    ):
        super().__init__()
        self.viewer = napari_viewer
        self.context = context or (lambda: None)
        from ..ihc.reporting import ReportOptions

        self.result = None  # the last IHCResult
        self.report_options = ReportOptions()  # how the Ki-67 hot spot is chosen
        self.rows: dict[str, str] = {}  # the results shown in the panel
        self.maps = None  # PredictionMaps holding the observed positivity
        self.scope = ""
        self.last_message = ""
        self._worker = None
        self._progress = None
        self._cancel = threading.Event()
        self._build_ui(expanded)
        self.viewer.layers.events.inserted.connect(self.refresh_choices)
        self.viewer.layers.events.removed.connect(self.refresh_choices)
        self.refresh_choices()
        QApplication.instance().aboutToQuit.connect(self._cancel.set)

    # -- UI ------------------------------------------------------------------------------------
    def _build_ui(self, expanded: bool) -> None:
        outer = QVBoxLayout(self)
        outer.setContentsMargins(0, 4, 0, 0)
        self.toggle = QToolButton()
        self.toggle.setText("Observed IHC (measure an IHC slide)")
        self.toggle.setCheckable(True)
        self.toggle.setToolButtonStyle(Qt.ToolButtonTextBesideIcon)
        self.toggle.setStyleSheet("QToolButton { border: none; font-weight: bold; }")
        self.toggle.toggled.connect(self.set_expanded)
        outer.addWidget(self.toggle)
        self.body = QWidget()
        outer.addWidget(self.body)
        lay = QVBoxLayout(self.body)
        lay.setContentsMargins(8, 0, 0, 0)
        form = QFormLayout()
        self.ihc_combo = QComboBox()
        self.ihc_combo.setToolTip("The IHC slide layer (hematoxylin-DAB) to measure.")
        self.ihc_combo.setSizeAdjustPolicy(QComboBox.AdjustToMinimumContentsLengthWithIcon)
        self.ihc_combo.setMinimumContentsLength(12)
        self.ihc_combo.currentTextChanged.connect(self._on_ihc_choice)
        form.addRow("IHC slide", self.ihc_combo)
        self.marker_combo = QComboBox()
        for key, name in MARKERS.items():
            self.marker_combo.addItem(name, key)
        self.marker_combo.setCurrentIndex(list(MARKERS).index("ki67"))
        form.addRow("Marker", self.marker_combo)
        self._add_mode_row(form, WHOLE)
        self.nuclei_box = QCheckBox("Nuclei as points (by class)")
        self.nuclei_box.setChecked(True)
        form.addRow("", self.nuclei_box)
        self.stroma_box = QCheckBox("Count nuclei in pale stroma too")
        self.stroma_box.setToolTip(
            "Indices are scored on tumour cells: nuclei in surroundings paler than the tumour's\n"
            "are left out as stroma. Tick to count them (e.g. where tumour cytoplasm is pale)."
        )
        form.addRow("", self.stroma_box)
        self.grid_label = QLabel()
        self.grid_label.setWordWrap(True)
        self.grid_label.setStyleSheet("color: gray")
        form.addRow("Grid", self.grid_label)
        lay.addLayout(form)
        buttons = QHBoxLayout()
        self.measure_button = QPushButton("Measure IHC")
        self.measure_button.clicked.connect(self.run)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.clicked.connect(self.cancel)
        self.cancel_button.setEnabled(False)
        buttons.addWidget(self.measure_button)
        buttons.addWidget(self.cancel_button)
        lay.addLayout(buttons)
        self.status = QLabel("Choose the IHC slide layer and its marker, press Measure IHC.")
        self.status.setWordWrap(True)
        lay.addWidget(self.status)
        self.results_label = QLabel("")
        self.results_label.setWordWrap(True)
        self.results_label.setTextInteractionFlags(Qt.TextSelectableByMouse)
        lay.addWidget(self.results_label)
        self.corrections_box = CorrectionsBox(self, OBSERVED_KEY)  # thresholds, clicks
        lay.addWidget(self.corrections_box)
        self.set_expanded(expanded)
        self.update_grid_label()

    def set_expanded(self, expanded: bool) -> None:
        """Show or hide the section's body."""
        self.toggle.blockSignals(True)
        self.toggle.setChecked(expanded)
        self.toggle.blockSignals(False)
        self.toggle.setArrowType(Qt.DownArrow if expanded else Qt.RightArrow)
        self.body.setVisible(expanded)
        if expanded:
            self.update_grid_label()

    # -- settings ------------------------------------------------------------------------------
    @property
    def marker(self) -> str:
        return self.marker_combo.currentData()

    def set_marker(self, marker: str) -> None:
        self.marker_combo.setCurrentIndex(list(MARKERS).index(marker))

    @property
    def ihc_layer(self):
        name = self.ihc_combo.currentText()
        return self.viewer.layers[name] if name in self.viewer.layers else None

    def set_ihc_layer(self, name: str) -> None:
        self.ihc_combo.setCurrentText(name)

    @property
    def busy(self) -> bool:
        return self._worker is not None

    def grid_spec(self) -> tuple[float, int, str]:
        """(tile_mpp, tile_size, where from): the prediction's tiles, else the defaults."""
        ctx = self.context() or {}
        if ctx.get("tile_mpp"):
            return float(ctx["tile_mpp"]), int(ctx["tile_size"]), "as the prediction"
        return TILE_MPP, TILE_SIZE, "default; predict first to use the model's"

    def update_grid_label(self) -> None:
        """Say which tile grid a measurement will use (the prediction widget calls it on change)."""
        mpp, size, src = self.grid_spec()
        self.grid_label.setText(f"{size} px tiles at {mpp:g} um/px ({src}), on the IHC slide")

    def refresh_choices(self, event=None) -> None:
        """List the slide layers; prefer one whose name says IHC or a marker, not the H&E."""
        current = self.ihc_combo.currentText()
        names = [
            ly.name for ly in self.viewer.layers if "slide_path" in getattr(ly, "metadata", {})
        ]
        self.ihc_combo.blockSignals(True)
        self.ihc_combo.clear()
        self.ihc_combo.addItems(names)
        if current in names:
            self.ihc_combo.setCurrentText(current)
        elif names:
            ctx = self.context() or {}
            he = ctx.get("slide_layer")

            def rank(n: str) -> int:
                low = n.lower()
                he_like = "h&e" in low or low.endswith(("_he", " he", ": he"))
                ihc_like = "ihc" in low or (marker_from_name(n) is not None and not he_like)
                return 2 * ihc_like - 2 * he_like + (n != he)

            best = max(names, key=rank)
            self.ihc_combo.setCurrentText(best)
            self._on_ihc_choice(best)
        self.ihc_combo.blockSignals(False)

    def _on_ihc_choice(self, name: str) -> None:
        layer = self.viewer.layers[name] if name in self.viewer.layers else None
        if layer is None:
            return
        m = marker_from_name(Path(layer.metadata.get("slide_path", "")).stem) or marker_from_name(
            name
        )
        if m is not None and not self.busy:
            self.set_marker(m)

    # -- running -------------------------------------------------------------------------------
    def visible_box(self, layer) -> tuple[int, int, int, int] | None:
        """The canvas view as a level-0 (x, y, w, h) box of `layer`'s slide, or None if empty."""
        tl, br = viewport_world_box(self.viewer)
        scale = np.asarray(layer.scale, float)[-2:]
        translate = np.asarray(layer.translate, float)[-2:]
        (y0, x0), (y1, x1) = (tl - translate) / scale, (br - translate) / scale
        w, h = layer.metadata.get("slide_info", {}).get("level_dimensions", [(np.inf, np.inf)])[0]
        x0, y0 = max(x0, 0.0), max(y0, 0.0)
        x1, y1 = min(x1, float(w)), min(y1, float(h))
        if x1 <= x0 or y1 <= y0:
            return None
        return int(x0), int(y0), int(np.ceil(x1 - int(x0))), int(np.ceil(y1 - int(y0)))

    def run(self) -> None:
        """Measure the chosen IHC slide (button 'Measure IHC')."""
        from napari.qt.threading import create_worker
        from napari.utils import cancelable_progress

        from ..results.maps import PredictionMaps

        if self.busy:
            return
        layer = self.ihc_layer
        if layer is None:
            self._message("no IHC slide layer: open the IHC slide (File > Open) first.", error=True)
            return
        region = None
        if self.mode == VISIBLE:
            region = self.visible_box(layer)
            if region is None:
                self._message("the view does not show the IHC slide; pan onto it.", error=True)
                return
        mpp, size, _ = self.grid_spec()
        self.update_grid_label()
        marker, scope = self.marker, "whole slide" if region is None else "visible region"
        kwargs = {
            "slide_path": layer.metadata["slide_path"],
            "marker": marker,
            "tile_mpp": mpp,
            "tile_size": size,
            "region": region,
            "count_stroma": self.stroma_box.isChecked(),
            "nuclei": self.nuclei_box.isChecked(),
        }
        self._cancel.clear()
        pbar = cancelable_progress(
            total=0, desc=f"HistoStain observed {MARKERS[marker]}", cancel_callback=self._cancel.set
        )
        self._progress, event = pbar, self._cancel
        ticks = ThrottledProgress(pbar)

        def cancelled() -> bool:  # the activity dock's Cancel only sets `is_canceled`
            return event.is_set() or pbar.is_canceled

        worker = create_worker(_measure, kwargs, cancelled, _ignore_errors=True)
        state: dict[str, Any] = {"total": 0, "done": 0, "maps": None, "layer": None, "drawn": 0.0}

        def on_yield(item) -> None:
            kind, value = item
            if worker is not self._worker:
                return
            if kind == "grid":
                grid, state["total"] = value
                state["maps"] = PredictionMaps.from_grid(grid, [marker], kwargs["slide_path"])
                if self._progress is not None:
                    self._progress.total = state["total"]
                self._message(
                    f"Measuring {MARKERS[marker]} ({scope}): 0 of {state['total']} tiles..."
                )
                return
            index, positivity = value
            state["done"] += 1
            if np.isfinite(positivity):
                state["maps"].update(marker, [index], [positivity])
            self._stream_map(state, marker, f"{scope}, measuring")
            self._message(
                f"Measuring {MARKERS[marker]} ({scope}): {state['done']} of "
                f"{state['total']} tiles..."
            )
            if self._progress is not None:
                ticks.add(1)

        def on_return(result) -> None:
            if worker is not self._worker:
                return
            self._close_progress()
            result, points = result
            steps = self._result_steps(result, scope, points)

            def next_step() -> None:
                # one layer per event-loop turn (each new napari layer takes 100s of ms to add
                # and draw first); busy until the last is shown
                if worker is not self._worker:
                    return  # closed meanwhile
                if next(steps, None) is None:
                    self._finish()
                else:
                    QTimer.singleShot(0, next_step)

            next_step()

        def on_error(exc: BaseException) -> None:
            from ..ihc import IHCCancelled

            if worker is not self._worker:
                return
            self._finish()
            if state["layer"] is not None:  # drop the partial map; put the previous one back
                self._remove_ours(observed_name(marker))
                if self.result is not None and self.result.marker == marker:
                    self.show_result(self.result, self.scope)
            if isinstance(exc, IHCCancelled):
                kept = (
                    "the previous observed map is kept"
                    if self.result is not None
                    else "nothing was added"
                )
                self._message(f"Cancelled; {kept}. Press Measure IHC to run again.")
            elif isinstance(exc, HistostainError):
                self._message(str(exc), error=True)
            else:
                self._message(f"IHC measurement failed: {type(exc).__name__}: {exc}", error=True)

        worker.yielded.connect(on_yield)
        worker.returned.connect(on_return)
        worker.errored.connect(on_error)
        self._worker = worker
        self._set_running(True)
        self._message(f"Measuring {MARKERS[marker]} ({scope}): finding tissue...")
        worker.start()

    def cancel(self) -> None:
        """Cancel the running measurement (as the activity dock's Cancel does)."""
        self._cancel.set()
        if self._progress is not None:
            self._progress.is_canceled = True

    def _finish(self) -> None:
        self._worker = None
        self._close_progress()
        self._set_running(False)

    def _close_progress(self) -> None:
        if self._progress is not None:
            self._progress.close()
            self._progress = None

    def _set_running(self, running: bool) -> None:
        self.measure_button.setEnabled(not running)
        self.cancel_button.setEnabled(running)

    # -- results -------------------------------------------------------------------------------
    def _stream_map(self, state: dict, marker: str, scope: str) -> None:
        """Paint the tiles measured so far (layer made at the first tile, redrawn at most 4x/s)."""
        from ..plugin.clipped_maps import maps_clip, place
        from ..plugin.layers import overlay_layer_kwargs

        now = time.perf_counter()
        maps = state["maps"]
        if state["layer"] is None:
            clip = state["clip"] = maps_clip(maps, marker)
            kw = place(overlay_layer_kwargs(maps, marker, "positivity"), clip)
            kw["name"] = observed_name(marker)
            kw["metadata"][OBSERVED_KEY] = {"marker": marker, "scope": scope, "summary": None}
            state["layer"] = self._put_layer(
                kw["name"], lambda: self.viewer.add_image(clip.data, **kw)
            )
        elif now - state["drawn"] >= STREAM_REDRAW_S:
            state["clip"].sync()
            state["layer"].data = state["clip"].data
        else:
            return
        state["drawn"] = now

    def show_result(self, result, scope: str = "whole slide", points=None) -> None:
        """Overlay an `IHCResult` (observed heatmap, nuclei) and show its values in the panel."""
        for _ in self._result_steps(result, scope, points):
            pass

    def _result_steps(self, result, scope: str, points=None):
        """`show_result` in steps (a generator): the map and the values, the nuclei, the hot spot,
        then the active layer; the caller may run one step per event-loop turn."""
        from ..ihc.reporting import add_reported_scores
        from ..plugin.clipped_maps import maps_clip, place
        from ..plugin.layers import overlay_layer_kwargs
        from ..results.maps import PredictionMaps

        marker = result.marker
        maps = PredictionMaps.from_grid(result.grid, [marker], result.source_path)
        pos = result.positivity
        done = np.flatnonzero(np.isfinite(pos))
        maps.update(marker, done, pos[done])
        s = result.summary()
        maps.info.update(observed=True, ihc_summary=s)
        clip = maps_clip(maps, marker)
        kw = place(overlay_layer_kwargs(maps, marker, "positivity"), clip)
        kw["name"] = observed_name(marker)
        kw["metadata"][OBSERVED_KEY] = {"marker": marker, "scope": scope, "summary": s}
        name = kw["name"]
        old = self.viewer.layers[name] if name in self.viewer.layers else None
        if old is not None and OBSERVED_KEY in old.metadata:  # the streamed map: update in place
            old.metadata = kw["metadata"]
            old.scale, old.translate = kw["scale"], kw["translate"]
            old.data = clip.data
            heat = old
        else:
            heat = self._put_layer(name, lambda: self.viewer.add_image(clip.data, **kw))
        add_reported_scores(result, self.report_options)
        self.result, self.maps, self.scope = result, maps, scope
        n_tiles = len(done)
        self._message(
            f"{MARKERS[marker]} measured over the {scope}: {n_tiles} tiles with nuclei. "
            + " ".join(result.messages)
        )
        self._show_summary(s, marker, scope)
        yield True
        if self.nuclei_box.isChecked():
            self._show_nuclei(result, points)
        else:
            self._remove_ours(nuclei_name(marker))
        yield True
        self._remove_ours(hotspot_name(marker))
        show_hotspot(self.viewer, result, self._put_layer, OBSERVED_KEY)
        yield True
        name = nuclei_name(marker)
        points = self.viewer.layers[name] if name in self.viewer.layers else None
        self.corrections_box.attach(result, points)
        # clicks go to the active layer: the nuclei (to re-class them), else the map
        self.viewer.layers.selection.active = points if points is not None else heat

    def show_corrected(self, result) -> None:
        """Show a re-scored `result` of the same nuclei (`CorrectionsBox`): table, map, hot spot."""
        from ..plugin.clipped_maps import maps_clip
        from ..results.maps import PredictionMaps

        marker = result.marker
        heat = self.viewer.layers[observed_name(marker)]
        maps = PredictionMaps.from_grid(result.grid, [marker], result.source_path)
        pos = result.positivity
        done = np.flatnonzero(np.isfinite(pos))
        maps.update(marker, done, pos[done])
        heat.data = maps_clip(maps, marker).data  # same grid: same placement
        spot = (result.reported.get("ki67") or {}).get("hotspot")
        name = hotspot_name(marker)
        if spot and name in self.viewer.layers:  # move the circle in place (keeps the selection)
            self.viewer.layers[name].data = [hotspot_ellipse(spot)]
        self.result, self.maps = result, maps
        self._show_summary(result.summary(), marker, self.scope)

    def _remove_ours(self, name: str) -> None:
        """Remove layer `name` if this panel made it (a user's layer of that name stays)."""
        if name in self.viewer.layers and OBSERVED_KEY in self.viewer.layers[name].metadata:
            self.viewer.layers.remove(name)

    def _put_layer(self, name: str, add: Callable[[], Any]):
        """Replace our layer `name` (an older run's) by the one `add()` makes."""
        self._remove_ours(name)
        return add()

    def _show_nuclei(self, result, layer=None) -> None:
        """Show the nuclei points (`layer`: already made off the GUI thread by `nuclei_layer`)."""
        marker = result.marker
        name = nuclei_name(marker)
        if layer is None:
            layer = nuclei_layer(result)
        if layer is None:
            self._remove_ours(name)
            n = len(result.nuclei.xy)
            self._message(f"{n} nuclei are too many to draw; measure the visible region instead.")
            return
        self._put_layer(name, lambda: self.viewer.add_layer(layer))

    def _show_summary(self, s: dict, marker: str, scope: str) -> None:
        rows = format_summary(s, marker) + report_rows(getattr(self.result, "reported", {}))
        ctx = self.context() or {}
        pred = (ctx.get("summary") or {}).get(marker)
        if pred and np.isfinite(pred.get("probability", np.nan)):
            rows.append(
                (
                    "Predicted (H&E)",
                    f"{pred['label'] or '-'} (p = {pred['probability']:.2f}; {pred['scope']})",
                )
            )
        html = "".join(f"<tr><td>{k}&nbsp;&nbsp;</td><td><b>{v}</b></td></tr>" for k, v in rows)
        self.results_label.setText(
            f"<b>Observed {MARKERS[marker]}</b> ({scope})<table>{html}</table>"
        )
        self.rows = dict(rows)

    # -- teardown ------------------------------------------------------------------------------
    def close_session(self) -> None:
        """Cancel a running measurement (called when the widget goes away); what it still sends
        is ignored (its widgets may be deleted by then)."""
        self.cancel()
        self._worker = None
        if self._progress is not None:
            self._progress.close()
            self._progress = None
