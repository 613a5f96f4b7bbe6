"""The widget's Annotations section: regions from a napari Shapes layer or QuPath GeoJSON.

Regions are drawn in a Shapes layer (its "class" feature, e.g. Tumor / Exclude, names include and
exclude regions) or imported from QuPath GeoJSON; "Predict inside" computes every tile of the
include regions (the view is not followed); the table shows, per region, each marker's call over
its computed tiles (`annotations.results.maps_region_results`: the headless numbers); "Export"
writes the regions back as QuPath GeoJSON.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from qtpy.QtWidgets import (
    QComboBox,
    QFileDialog,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPushButton,
    QSizePolicy,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from ..annotations import (
    AnnotationError,
    from_shapes_data,
    read_annotations,
    regions_on_grid,
    to_shapes_data,
    write_annotations,
)
from ..errors import HistostainError
from ..markers import marker_name
from .display import OUTLINE_KEY

ANNOTATIONS_LAYER = "Annotations"


class AnnotationsPanel(QWidget):
    """Regions of the slide and the prediction per region.

    `predictor()` returns the widget's `RegionPredictor` (or None); `compute(indices)` asks the
    widget to compute those tiles; `message(text, error)` shows a status line.
    """

    def __init__(
        self,
        viewer: Any,
        predictor: Callable[[], Any],
        compute: Callable[[list[int]], None],
        message: Callable[..., None],
    ):
        super().__init__()
        self.viewer = viewer
        self.predictor = predictor
        self.compute = compute
        self.message = message
        self.results: list[dict] = []
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 4, 0, 0)
        title = QLabel(
            "<b>Annotations</b>: a Shapes layer; classes 'Exclude' / 'Ignore*' leave out"
        )
        title.setWordWrap(True)
        lay.addWidget(title)
        row = QHBoxLayout()
        self.layer_combo = QComboBox()
        self.layer_combo.setToolTip("The Shapes layer holding the regions (world um).")
        row.addWidget(self.layer_combo, 1)
        self.import_button = QPushButton("Import...")
        self.import_button.setToolTip("QuPath GeoJSON annotations (Polygon / MultiPolygon).")
        self.import_button.clicked.connect(self._on_import)
        row.addWidget(self.import_button)
        self.export_button = QPushButton("Export...")
        self.export_button.setToolTip("The regions as QuPath GeoJSON annotations.")
        self.export_button.clicked.connect(self._on_export)
        row.addWidget(self.export_button)
        lay.addLayout(row)
        self.predict_button = QPushButton("Predict inside the regions")
        self.predict_button.clicked.connect(self.predict_inside)
        lay.addWidget(self.predict_button)
        self.table = QTableWidget(0, 4)
        self.table.setHorizontalHeaderLabels(["Region", "Class", "Tiles", "Result"])
        head = self.table.horizontalHeader()
        for c in range(3):
            head.setSectionResizeMode(c, QHeaderView.ResizeToContents)
        head.setSectionResizeMode(3, QHeaderView.Stretch)
        self.table.verticalHeader().setVisible(False)
        self.table.setEditTriggers(QTableWidget.NoEditTriggers)
        self.table.setMinimumHeight(110)
        self.table.setWordWrap(True)
        self.table.setSizePolicy(QSizePolicy.Ignored, QSizePolicy.Preferred)  # scrolls inside
        lay.addWidget(self.table)
        viewer.layers.events.inserted.connect(self.refresh_choices)
        viewer.layers.events.removed.connect(self.refresh_choices)
        self.refresh_choices()

    # -- layers --------------------------------------------------------------------------------
    def refresh_choices(self, event=None) -> None:
        current = self.layer_combo.currentText()
        names = [
            ly.name
            for ly in self.viewer.layers
            if type(ly).__name__ == "Shapes" and OUTLINE_KEY not in ly.metadata
        ]
        self.layer_combo.blockSignals(True)
        self.layer_combo.clear()
        self.layer_combo.addItems(names)
        if current in names:
            self.layer_combo.setCurrentText(current)
        self.layer_combo.blockSignals(False)

    @property
    def shapes_layer(self) -> Any:
        name = self.layer_combo.currentText()
        return self.viewer.layers[name] if name in self.viewer.layers else None

    def _mpp(self) -> tuple[float, float]:
        pred = self.predictor()
        if pred is None:
            raise AnnotationError("no slide prepared yet: choose the slide and press Predict.")
        return tuple(pred.maps.slide_mpp)

    def annotations(self) -> list:
        """The regions of the chosen Shapes layer (polygons, rectangles, ellipses)."""
        layer = self.shapes_layer
        if layer is None or not len(layer.data):
            raise AnnotationError(
                "no regions: draw them in a Shapes layer (polygon, rectangle, ellipse) or "
                "Import a QuPath GeoJSON file."
            )
        feats = layer.features
        classes = list(feats["class"]) if "class" in feats else None
        names = list(feats["name"]) if "name" in feats else None
        anns, _ = from_shapes_data(layer.data, layer.shape_type, self._mpp(), classes, names)
        return anns

    def regions(self) -> list:
        return regions_on_grid(self.annotations(), self.predictor().maps)

    # -- actions -------------------------------------------------------------------------------
    def import_geojson(self, path: str | Path) -> Any:
        """Add a QuPath GeoJSON file's annotations as a Shapes layer (class, name per shape)."""
        anns = read_annotations(path)
        data, types, props = to_shapes_data(anns, self._mpp())
        layer = self.viewer.add_shapes(
            data,
            shape_type=types,
            name=f"{ANNOTATIONS_LAYER}: {Path(path).stem}",
            features=props,
            edge_color="#ffd400",
            face_color="transparent",
            edge_width=4,
            units=("um", "um"),
        )
        self.layer_combo.setCurrentText(layer.name)
        return layer

    def export_geojson(self, path: str | Path) -> Path:
        """Write the regions as QuPath GeoJSON annotations."""
        return Path(write_annotations(path, self.annotations()))

    def predict_inside(self) -> None:
        """Compute every tile of the include regions (exclude regions left out)."""
        try:
            regions = self.regions()
        except HistostainError as exc:
            self.message(str(exc), error=True)
            return
        # the first region is "all included" (exclude regions already taken out)
        keep = {int(i) for i in regions[0].indices}
        self.compute(sorted(keep))

    def update_results(self, tile_threshold: float = 0.5) -> None:
        """Per-region results of the tiles computed so far."""
        from ..annotations.results import maps_region_results

        pred = self.predictor()
        layer = self.shapes_layer
        if pred is None or layer is None or not len(layer.data):
            return
        try:
            regions = self.regions()
        except HistostainError:
            return
        self.results = maps_region_results(pred.maps, regions, tile_threshold=tile_threshold)
        self.table.setRowCount(len(self.results))
        for r, res in enumerate(self.results):
            parts = []
            for m, v in res["markers"].items():
                if v["probability"] is None:
                    parts.append(f"{marker_name(m)} -")
                else:
                    frac = v["positive_fraction"]
                    parts.append(
                        f"{marker_name(m)} {v['label']} p={v['probability']:.2f}"
                        + (f" pos {frac:.0%}" if frac is not None and np.isfinite(frac) else "")
                    )
            done = max((v["tiles_computed"] for v in res["markers"].values()), default=0)
            cells = [
                res["name"] or res["key"],
                res["classification"] or "",
                f"{done}/{res['n_tiles']}",
                "\n".join(parts),
            ]
            for c, text in enumerate(cells):
                self.table.setItem(r, c, QTableWidgetItem(str(text)))
        self.table.resizeRowsToContents()

    def _on_import(self) -> None:
        path, _ = QFileDialog.getOpenFileName(
            self, "QuPath annotations", "", "GeoJSON (*.geojson *.json)"
        )
        if path:
            try:
                self.import_geojson(path)
            except HistostainError as exc:
                self.message(str(exc), error=True)

    def _on_export(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Export annotations", "", "GeoJSON (*.geojson)")
        if path:
            try:
                self.message(f"Wrote {self.export_geojson(path)}.")
            except HistostainError as exc:
                self.message(str(exc), error=True)
