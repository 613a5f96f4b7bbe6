"""Screenshot of the widget on a slide that gets no call, with the demonstration disclaimer
(docs/images/gui_no_call.png), under a display or Xvfb:

    xvfb-run -a .venv/bin/python scripts/screenshot_no_call.py ../shared/data/slides/TCGA-CR-7395-01A-01-TS1.svs

The default slide is the real TCGA H&E slide of ../shared/data (it has no pixel size, so it gets no
call for `assumed_mpp`, and `out_of_domain` from models with a domain reference); without it, a
synthetic slide written without a pixel size. The bundled models are used.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from screenshots import _shot, _wait

ROOT = Path(__file__).resolve().parent.parent
TCGA = ROOT.parent / "shared" / "data" / "slides" / "TCGA-CR-7395-01A-01-TS1.svs"


def main(slide: str | None, out: str) -> Path:
    import napari

    from napari_histostain._qt.widget import PredictionWidget
    from napari_histostain.io.synthetic import write_synthetic_slide
    from napari_histostain.plugin.reader import read_slide_layer

    if slide is None:
        slide = str(TCGA) if TCGA.is_file() else None
    if slide is None:
        tmp = Path(tempfile.mkdtemp(prefix="histostain-nocall-"))
        slide = str(write_synthetic_slide(tmp / "no-pixel-size.tif", 3000, 2000, None, seed=4))
    viewer = napari.Viewer(show=True)
    viewer.window._qt_window.resize(1500, 950)
    data, kwargs, _ = read_slide_layer(slide)
    viewer.add_image(data, **kwargs)
    widget = PredictionWidget(viewer)
    viewer.window.add_dock_widget(widget, name="HistoStain prediction", area="right")
    widget.set_markers(["p53", "pdl1", "ki67"])
    widget.set_mode("whole")
    widget.run()
    _wait(lambda: widget.predictor is not None and not widget.busy, timeout=900)
    for ly in viewer.layers:
        if ly.name.endswith(("positivity", "attention")):
            ly.visible = ly.name == "P53 positivity"
    viewer.reset_view()
    _wait(lambda: True)
    path = _shot(viewer, Path(out))
    widget.close_session()
    viewer.close()
    return path


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("slide", nargs="?", default=None, help="slide (default: the TCGA slide)")
    ap.add_argument("--out", default="docs/images/gui_no_call.png", help="PNG to write")
    print(main(**vars(ap.parse_args())))
