"""Make docs/images/gui_side_by_side_aligned.png under a display or Xvfb: a simulated H&E and its
Ki-67 IHC section, rotated by 25 degrees and shifted on the glass, side by side after
**Align sections**.

    xvfb-run -a .venv/bin/python scripts/screenshot_aligned.py docs/images
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from screenshots import _shot, _wait


def _rotated_copy(src: Path, dst: Path, angle: float, shift_px: tuple[float, float]) -> Path:
    """`src`'s level 0 rotated by `angle` about its centre and shifted, as a new slide `dst`."""
    from skimage.transform import warp

    from napari_histostain.engine.alignment import _rot
    from napari_histostain.io.slide import open_slide
    from napari_histostain.io.synthetic import write_slide

    slide = open_slide(src)
    w, h = slide.dimensions
    rgb = slide.read_region((0, 0), 0, (w, h))[..., :3]
    r, c = _rot(angle), np.array([h, w]) / 2.0

    def inverse_map(xy: np.ndarray) -> np.ndarray:
        return ((xy[:, ::-1] - c) @ r.T + c + np.asarray(shift_px))[:, ::-1]

    moved = (warp(rgb, inverse_map, cval=243 / 255, order=1) * 255).astype(np.uint8)
    return write_slide(
        dst, h, w, lambda y, x, hh, ww: moved[y : y + hh, x : x + ww], float(slide.mpp[0])
    )


def main(out_dir: str = "docs/images") -> Path:
    import napari

    from napari_histostain._qt.widget import PredictionWidget
    from napari_histostain.plugin.reader import read_slide_layer
    from napari_histostain.simulate import simulate_case

    tmp = Path(tempfile.mkdtemp(prefix="histostain-aligned-"))
    simulate_case(tmp, ["ki67"], case_id="s", size_um=1600.0, mpp=0.5, seed=3)
    he_path = next(tmp.rglob("s_HE.tiff"))
    ihc_path = _rotated_copy(
        next(tmp.rglob("s_ki67.tiff")), tmp / "s_ki67_moved.tiff", 25.0, (-250, 300)
    )
    viewer = napari.Viewer(show=True)
    viewer.window._qt_window.resize(1500, 950)
    for path, name in ((he_path, "H&E"), (ihc_path, "Ki-67 IHC (rotated on the glass)")):
        data, kw, _ = read_slide_layer(path)
        viewer.add_image(data, **dict(kw, name=name))
    widget = PredictionWidget(viewer)
    viewer.window.add_dock_widget(widget, name="HistoStain prediction", area="right")
    widget.slide_combo.setCurrentText("H&E")
    widget.ihc_panel.set_ihc_layer("Ki-67 IHC (rotated on the glass)")
    widget.side_box.setChecked(True)
    widget.align_box.setChecked(True)
    _wait(lambda: "IHC aligned" in widget.last_message, timeout=120)
    viewer.reset_view()
    _wait(lambda: True)
    out = Path(out_dir) / "gui_side_by_side_aligned.png"
    _shot(viewer, out)
    print(widget.last_message)
    _wait(lambda: not widget.busy)  # let the background workers end before the viewer goes
    viewer.close()
    return out


if __name__ == "__main__":
    import argparse

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out_dir", nargs="?", default="docs/images", help="folder for the PNG")
    main(ap.parse_args().out_dir)
