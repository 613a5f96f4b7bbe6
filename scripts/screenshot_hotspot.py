"""Make docs/images/ihc_hotspot.png: the Ki-67 hot spot found on a real IHC slide (Xvfb).

    cd scripts && xvfb-run -a ../.venv/bin/python screenshot_hotspot.py \
        ../../shared/data/slides/OS-2-Ki67-crop.tiff ../docs/images/ihc_hotspot.png \
        --hotspot-area-mm2 0.05

The slide is measured by the widget's "Observed IHC" section over the whole slide; the nuclei are
drawn by class, the hot spot (default 0.2 mm^2) as a circle, and the panel lists global and hot-spot Ki-67.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def main(slide: str, out: str, area_mm2: float = 0.2) -> Path:
    import napari
    from screenshots import _shot, _wait
    from screenshots_ihc import _scroll_to_bottom

    from napari_histostain._qt.ihc_report_view import hotspot_name
    from napari_histostain._qt.widget import PredictionWidget
    from napari_histostain.ihc.reporting import ReportOptions
    from napari_histostain.plugin.reader import read_slide_layer

    viewer = napari.Viewer(show=True)
    viewer.window._qt_window.resize(1500, 950)
    data, kwargs, _ = read_slide_layer(slide)
    layer = viewer.add_image(data, **dict(kwargs, name="OS-2 Ki-67 IHC"))
    widget = PredictionWidget(viewer)
    viewer.window.add_dock_widget(widget, name="HistoStain", area="right")
    panel = widget.ihc_panel
    panel.set_expanded(True)
    panel.set_ihc_layer(layer.name)
    panel.set_marker("ki67")
    panel.set_mode("whole")
    panel.report_options = ReportOptions(hotspot_area_mm2=area_mm2)
    panel.run()
    _wait(lambda: not panel.busy)
    viewer.layers["Ki-67 observed positivity"].visible = False
    viewer.layers.selection.active = viewer.layers[hotspot_name("ki67")]
    viewer.reset_view()
    _wait(lambda: True)
    _scroll_to_bottom(widget)
    print("\n".join(f"{k}: {v}" for k, v in panel.rows.items()))
    path = _shot(viewer, Path(out))
    widget.close_session()
    viewer.close()
    return path


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("slide", help="Ki-67 IHC slide")
    ap.add_argument("out", nargs="?", default="docs/images/ihc_hotspot.png")
    ap.add_argument("--hotspot-area-mm2", type=float, default=0.2)
    args = ap.parse_args()
    print(main(args.slide, args.out, args.hotspot_area_mm2))
