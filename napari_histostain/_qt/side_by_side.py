"""H&E and IHC side by side in napari's grid mode (one camera: navigation is linked in um).

The H&E slide with its predicted overlays fills one grid cell, the IHC slide with its observed map
and nuclei the next. napari groups `stride` consecutive layers per cell, so the layers are
reordered into two blocks of `stride` layers (hidden spacer layers pad the shorter block).
"""

from __future__ import annotations

from typing import Any

from ..results.maps import META_KEY
from .display import OUTLINE_KEY
from .ihc_panel import OBSERVED_KEY
from .overlay_layers import TISSUE_LAYER

SPACER_KEY = "histostain_grid_spacer"


def grid_of(viewer: Any) -> Any:
    """The viewer's grid settings (`viewer.canvas.grid` in napari >= 0.9, else `viewer.grid`)."""
    canvas = getattr(viewer, "canvas", None)
    grid = getattr(canvas, "grid", None)
    return grid if grid is not None else viewer.grid


def _blocks(viewer: Any, he: Any, ihc: Any) -> tuple[list, list, list]:
    """(H&E block, IHC block, the rest) of the viewer's layers, bottom first."""
    a, b, rest = [he], [ihc], []
    for ly in viewer.layers:
        meta = ly.metadata
        if ly is he or ly is ihc or SPACER_KEY in meta:
            continue
        if OBSERVED_KEY in meta:  # before META_KEY: the observed map carries both
            b.append(ly)
        elif META_KEY in meta or OUTLINE_KEY in meta or ly.name == TISSUE_LAYER:
            a.append(ly)
        else:
            rest.append(ly)
    return a, b, rest


def show_side_by_side(viewer: Any, he: Any, ihc: Any) -> None:
    """H&E (+ predictions) left, IHC (+ observed map, nuclei) right, in napari's grid mode."""
    import numpy as np

    remove_spacers(viewer)
    a, b, rest = _blocks(viewer, he, ihc)
    stride = max(len(a), len(b))
    for block in (a, b):
        while len(block) < stride:  # pad with hidden, empty layers (they take no cell)
            block.append(
                viewer.add_points(
                    np.zeros((0, 2)), name="grid spacer", visible=False, metadata={SPACER_KEY: 1}
                )
            )
    order = a + b + rest
    for k, layer in enumerate(order):
        i = viewer.layers.index(layer)
        if i != k:
            viewer.layers.move(i, k)
    ihc.visible = True
    grid = grid_of(viewer)
    grid.stride = stride
    grid.shape = (1, 2)
    grid.enabled = True
    viewer.layers.selection.active = he


def end_side_by_side(viewer: Any) -> None:
    """Back to one canvas (the spacers are removed)."""
    grid_of(viewer).enabled = False
    remove_spacers(viewer)


def remove_spacers(viewer: Any) -> None:
    for ly in [ly for ly in viewer.layers if SPACER_KEY in ly.metadata]:
        viewer.layers.remove(ly)


#: Pixel size (um/px) the sections' overviews are aligned at.
ALIGN_MPP = 16.0


def layer_overview(layer: Any, target_mpp: float = ALIGN_MPP) -> tuple[Any, float]:
    """(RGB array, its um/px) of an image layer's coarsest level still finer than `target_mpp`;
    the layer's scale is its um/px (the reader's slides, or RGB layers placed in um)."""
    import numpy as np

    levels = list(layer.data) if layer.multiscale else [layer.data]
    mpp0 = float(layer.scale[-1])
    pick, pick_mpp = levels[0], mpp0
    for lv in levels[1:]:
        mpp = mpp0 * levels[0].shape[1] / lv.shape[1]
        if mpp <= target_mpp:
            pick, pick_mpp = lv, mpp
    return np.asarray(pick)[..., :3], pick_mpp


def start_alignment(he: Any, ihc: Any, on_done: Any, on_error: Any) -> Any:
    """Align `ihc`'s section onto `he`'s (engine.alignment) in a napari thread worker; `on_done`
    gets the `RigidAlignment`, `on_error` the exception. Returns the started worker."""
    from napari.qt.threading import create_worker

    from ..engine.alignment import align_slides
    from ..io.slide import open_slide, slide_from_array

    def slide_of(layer: Any) -> Any:
        """The layer's slide file (read in bounded blocks), else its pixels at its scale."""
        path = layer.metadata.get("slide_path")
        return open_slide(path) if path else slide_from_array(*layer_overview(layer))

    def work():
        return align_slides(slide_of(he), slide_of(ihc), target_mpp=ALIGN_MPP)

    worker = create_worker(work, _start_thread=False)
    worker.returned.connect(on_done)
    worker.errored.connect(on_error)
    worker.start()
    return worker


def apply_alignment(ihc: Any, alignment: Any | None) -> None:
    """The IHC layer drawn in the H&E's um (its `affine`), or back to its own (None)."""
    import numpy as np

    ihc.affine = np.eye(3) if alignment is None else alignment.matrix
