"""Reading the maps: the colour legend, the sortable tile table and the clicked-tile outline.

`ColourLegend` draws the shown layer's colormap with its range and meaning; `TileTable` lists the
computed tiles (a model over the maps' arrays, so sorting and updates stay fast); `TileOutline`
keeps one Shapes layer with the clicked tile's square, clipped to the slide.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from qtpy.QtCore import QAbstractTableModel, QModelIndex, QSortFilterProxyModel, Qt, Signal
from qtpy.QtGui import QColor, QImage, QPixmap
from qtpy.QtWidgets import (
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QSizePolicy,
    QTableView,
    QVBoxLayout,
    QWidget,
)

from ..markers import marker_name

#: Metadata key of the clicked-tile outline layer.
OUTLINE_KEY = "histostain_tile_outline"
OUTLINE_NAME = "Selected tile"


def tile_box_um(maps: Any, index: int, slide_wh: tuple[int, int] | None) -> np.ndarray:
    """The (4, 2) world (row, col) corners, um, of tile `index`, clipped to the slide."""
    mx, my = maps.slide_mpp
    x, y = (float(v) for v in maps.coords[index])
    t = float(maps.tile_px0)
    x1, y1 = x + t, y + t
    if slide_wh is not None:
        x1, y1 = min(x1, float(slide_wh[0])), min(y1, float(slide_wh[1]))
    # napari pixel centres: level-0 pixel i spans [i - 0.5, i + 0.5] in data coordinates
    r0, c0, r1, c1 = (y - 0.5) * my, (x - 0.5) * mx, (y1 - 0.5) * my, (x1 - 0.5) * mx
    return np.array([[r0, c0], [r0, c1], [r1, c1], [r1, c0]])


class TileOutline:
    """One Shapes layer showing the clicked tile's outline (made once, then updated)."""

    def __init__(self, viewer: Any):
        self.viewer = viewer
        self.layer: Any = None

    def show(self, corners: np.ndarray | None) -> None:
        """Outline `corners` (a (4, 2) world rectangle), or clear it with None."""
        data = [] if corners is None else [np.asarray(corners, float)]
        if self.layer is not None and self.layer in self.viewer.layers:
            self.layer.data = data
            self.layer.shape_type = ["rectangle"] * len(data)
            self.layer.edge_color = "#00e5ff"
            self.layer.face_color = "transparent"
            return
        if not data:
            return
        active = self.viewer.layers.selection.active
        self.layer = self.viewer.add_shapes(
            data,
            shape_type="rectangle",
            name=OUTLINE_NAME,
            edge_color="#00e5ff",
            face_color="transparent",
            edge_width=3,
            units=("um", "um"),
            metadata={OUTLINE_KEY: True},
        )
        if active is not None:  # keep the user's active layer (clicks keep reaching the widget)
            self.viewer.layers.selection.active = active

    def forget(self, layer: Any) -> None:
        if layer is self.layer:
            self.layer = None


class ColourLegend(QWidget):
    """A horizontal colour bar of a napari colormap with its range and what the colours mean."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.setSpacing(1)
        self.title = QLabel()
        self.bar = QLabel()
        self.bar.setFixedHeight(14)
        self.bar.setScaledContents(True)
        self.bar.setMinimumWidth(50)
        self.bar.setSizePolicy(QSizePolicy.Ignored, QSizePolicy.Fixed)
        ends = QHBoxLayout()
        self.low, self.high = QLabel(), QLabel()
        self.high.setAlignment(Qt.AlignRight)
        ends.addWidget(self.low)
        ends.addStretch(1)
        ends.addWidget(self.high)
        self.meaning = QLabel()
        self.meaning.setWordWrap(True)
        self.meaning.setStyleSheet("color: gray")
        lay.addWidget(self.title)
        lay.addWidget(self.bar)
        lay.addLayout(ends)
        lay.addWidget(self.meaning)
        self.text = ""

    def show_colormap(
        self, colormap: Any, limits: tuple[float, float], marker: str, threshold: float
    ) -> None:
        """Draw `colormap` over `limits` for `marker`'s positivity (tiles >= `threshold`: positive)."""
        rgba = np.asarray(colormap.map(np.linspace(0.0, 1.0, 256)), float)
        img = np.ascontiguousarray((np.clip(rgba[:, :3], 0, 1) * 255).astype(np.uint8)[None])
        qimg = QImage(img.data, 256, 1, 3 * 256, QImage.Format_RGB888).copy()
        self.bar.setPixmap(QPixmap.fromImage(qimg))
        lo, hi = limits
        name = marker_name(marker)
        self.title.setText(f"<b>{name} positivity</b> (per tile)")
        self.low.setText(f"{lo:g} negative")
        self.high.setText(f"{hi:g} positive")
        self.meaning.setText(
            f"The model's probability that a tile is {name}-positive. Tiles at or above the "
            f"tile threshold ({threshold:.2f}) count as positive tissue. No colour: no tissue "
            "or not computed."
        )
        self.text = " ".join(w.text() for w in (self.title, self.low, self.high, self.meaning))
        self.colours = [QColor(*img[0, i]) for i in (0, 255)]


class TileTableModel(QAbstractTableModel):
    """Computed tiles of `PredictionMaps`: tile, row, col, x, y (um) and each marker's scores."""

    def __init__(self):
        super().__init__()
        self.columns: list[str] = []
        self.values = np.zeros((0, 0))
        self.index_of_row = np.zeros(0, np.int64)

    def set_maps(self, maps: Any | None) -> None:
        """Show the computed tiles of `maps` (None: empty)."""
        self.beginResetModel()
        if maps is None:
            self.columns, self.values = [], np.zeros((0, 0))
            self.index_of_row = np.zeros(0, np.int64)
        else:
            idx = np.flatnonzero(maps.done)
            mx, my = maps.slide_mpp
            half = (maps.tile_px0 - 1) / 2.0
            cols = {
                "Tile": idx.astype(float),
                "Row": maps.rowcol[idx, 0].astype(float),
                "Col": maps.rowcol[idx, 1].astype(float),
                "x (um)": (maps.coords[idx, 0] + half) * mx,
                "y (um)": (maps.coords[idx, 1] + half) * my,
                "Tissue": maps.tissue_fraction[idx].astype(float),
            }
            for m, mm in maps.markers.items():
                cols[f"{marker_name(m)} pos."] = np.asarray(mm.positivity, float)[idx]
                cols[f"{marker_name(m)} att."] = np.asarray(mm.attention, float)[idx]
            self.columns = list(cols)
            self.values = np.stack(list(cols.values()), 1) if len(idx) else np.zeros((0, len(cols)))
            self.index_of_row = idx
        self.endResetModel()

    def rowCount(self, parent=QModelIndex()) -> int:
        return 0 if parent.isValid() else len(self.values)

    def columnCount(self, parent=QModelIndex()) -> int:
        return 0 if parent.isValid() else len(self.columns)

    def data(self, index, role=Qt.DisplayRole):
        v = float(self.values[index.row(), index.column()])
        if role == Qt.UserRole:
            return v if np.isfinite(v) else -np.inf
        if role == Qt.DisplayRole:
            name = self.columns[index.column()]
            if not np.isfinite(v):
                return "-"
            if name in ("Tile", "Row", "Col"):
                return f"{v:.0f}"
            if name.endswith("(um)"):
                return f"{v:.0f}"
            return f"{v:.4f}" if name.endswith("att.") else f"{v:.3f}"
        if role == Qt.TextAlignmentRole:
            return int(Qt.AlignRight | Qt.AlignVCenter)
        return None

    def headerData(self, section, orientation, role=Qt.DisplayRole):
        if role == Qt.DisplayRole and orientation == Qt.Horizontal:
            return self.columns[section]
        return None


class TileTable(QWidget):
    """The sortable tile table; `tile_clicked(index)` when the user clicks a row."""

    tile_clicked = Signal(int)

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        self.model = TileTableModel()
        self.proxy = QSortFilterProxyModel()
        self.proxy.setSourceModel(self.model)
        self.proxy.setSortRole(Qt.UserRole)
        self.view = QTableView()
        self.view.setModel(self.proxy)
        self.view.setSortingEnabled(True)
        self.view.setSelectionBehavior(QTableView.SelectRows)
        self.view.setSelectionMode(QTableView.SingleSelection)
        self.view.verticalHeader().setVisible(False)
        # sized once from its first rows: resizing to all contents on every update is slow
        self.view.horizontalHeader().setSectionResizeMode(QHeaderView.Interactive)
        self._sized = False
        self.view.setMinimumHeight(160)
        self.view.setSizePolicy(QSizePolicy.Ignored, QSizePolicy.Preferred)  # scrolls inside
        self.view.clicked.connect(self._on_clicked)
        lay.addWidget(self.view)

    def set_maps(self, maps: Any | None) -> None:
        self.model.set_maps(maps)
        if not self._sized and self.model.rowCount():
            self.view.resizeColumnsToContents()
            self._sized = True

    def tile_of_row(self, row: int) -> int:
        """The tile index shown in (sorted) row `row`."""
        src = self.proxy.mapToSource(self.proxy.index(row, 0))
        return int(self.model.index_of_row[src.row()])

    def _on_clicked(self, index) -> None:
        self.tile_clicked.emit(self.tile_of_row(index.row()))
