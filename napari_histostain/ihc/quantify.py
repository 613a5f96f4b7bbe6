"""Quantify DAB immunohistochemistry (Ki-67, p53, PD-L1) on slides and plain RGB images.

The slide's tiles (the same grid as predictions, so observed and predicted positivity line up tile
for tile) are read with a margin by background threads at the analysis level; each tile's nuclei
are found and scored (`nuclei.quantify_tile`); at the end, which nuclei count is judged on the whole
slide (`cell_rules`) and the scores follow (`scores`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator

import numpy as np

from ..defaults import TILE_MPP, TILE_SIZE
from ..engine.tiling import TileGrid, make_grid
from ..io.slide import Slide, open_slide, read_level_region, slide_from_array
from ..markers import get_marker
from ..progress import CancelHook, ProgressHook, cancelled
from .errors import IHCCancelled, IHCError
from .nuclei import Nuclei, quantify_tile
from .params import IHCParams
from .results import IHCResult
from .scores import tile_positivity
from .stains import StainVectors, check_dab, estimate_stains, optical_density

#: Tiles with at least this tissue fraction are quantified on a slide's own grid.
MIN_TISSUE = 0.05


def analysis_level(slide: Slide, params: IHCParams) -> int:
    """Coarsest pyramid level whose pixels are no coarser than `params.analysis_mpp`."""
    mpp0 = float(slide.mpp[0])
    best = 0
    for level, ds in enumerate(slide.level_downsamples):
        if mpp0 * ds <= params.analysis_mpp * 1.1:
            best = level
    return best


def slide_grid(
    slide: Slide,
    *,
    tile_mpp: float = TILE_MPP,
    tile_size: int = TILE_SIZE,
    region=None,
    min_tissue: float = MIN_TISSUE,
) -> TileGrid:
    """The prediction tile grid of an IHC slide over its tissue (all tiles with `min_tissue=0`)."""
    return make_grid(
        slide, tile_mpp=tile_mpp, tile_size=tile_size, region=region, min_tissue=min_tissue
    )


def _sample_tissue_od(
    slide: Slide,
    grid: TileGrid,
    level: int,
    indices: np.ndarray,
    params: IHCParams,
    n_tiles: int = 12,
    max_pixels: int = 200_000,
) -> np.ndarray:
    """OD of tissue pixels from up to `n_tiles` tiles spread over the grid (for stain estimation)."""
    if len(indices) == 0:
        return np.zeros((0, 3), np.float32)
    pick = indices[np.linspace(0, len(indices) - 1, min(n_tiles, len(indices))).astype(int)]
    ds = float(slide.level_downsamples[level])
    size = max(1, int(round(grid.tile_px0 / ds)))
    chunks = []
    for i in pick:
        x, y = (int(v) for v in grid.coords[i])
        od = optical_density(slide.read_region((x, y), level, (size, size))).reshape(-1, 3)
        chunks.append(od[od.sum(axis=1) > params.tissue_od])
    od = np.concatenate(chunks)
    if len(od) > max_pixels:
        od = od[np.random.default_rng(0).choice(len(od), max_pixels, replace=False)]
    return od


def _read_tiles(
    slide: Slide, grid: TileGrid, indices, level: int, margin0: float, threads: int
) -> Iterator[tuple[int, np.ndarray, tuple[int, int, int, int], float]]:
    """Yield (index, rgb with margin, core box in read px, downsample) in order, read ahead."""
    ds = float(slide.level_downsamples[level])
    core = max(1, int(round(grid.tile_px0 / ds)))
    m = int(math.ceil(margin0 / ds))

    def read(i: int):
        x, y = (round(int(v) / ds) - m for v in grid.coords[i])
        rgb = read_level_region(slide, level, x, y, core + 2 * m, core + 2 * m)
        return i, rgb, (m, m, core, core), ds

    if threads <= 0:
        for i in indices:
            yield read(int(i))
        return
    from ..engine.tile_stream import read_ahead

    yield from read_ahead(
        read,
        (int(i) for i in indices),
        threads=threads,
        queue_size=max(2, threads * 2),
        reader_nice=0,
    )


def quantify_slide(
    slide,
    marker: str = "ki67",
    *,
    grid: TileGrid | None = None,
    region: tuple[int, int, int, int] | None = None,
    params: IHCParams = IHCParams(),
    stains: StainVectors | None = None,
    threads: int = 2,
    progress: ProgressHook | None = None,
    cancel: CancelHook | None = None,
    on_tile: Callable[[int, float], None] | None = None,
) -> IHCResult:
    """Quantify an IHC slide (a path or an open `Slide`) over its tissue tiles, or over `region`.

    Pass the prediction's `grid` to get results aligned tile for tile with the predicted maps.
    `on_tile(index, positivity)` streams each tile's observed positivity as soon as it is measured,
    e.g. to paint a map while the rest runs. The result judges which nuclei count with the whole
    slide's fibroblasts as the density reference (`lymphocyte_density`) and the whole slide's nuclei
    as the reference of the surroundings (`stromal`), so a streamed value can differ slightly from
    the tile's final `IHCResult.positivity`. Raises `NotDabError` for an H&E slide.
    """
    owned = not isinstance(slide, Slide)
    s = open_slide(slide) if owned else slide
    try:
        if grid is None:
            grid = slide_grid(s, region=region)
        indices = None if region is None else grid.tiles_in_box(region)
        return _quantify(
            s, marker, grid, indices, params, stains, threads, progress, cancel, on_tile
        )
    finally:
        if owned:
            s.close()


def quantify_image(
    rgb: np.ndarray,
    mpp: float,
    marker: str = "ki67",
    *,
    params: IHCParams = IHCParams(),
    stains: StainVectors | None = None,
    name: str = "image",
    tile_mpp: float = TILE_MPP,
    tile_size: int = TILE_SIZE,
) -> IHCResult:
    """Quantify a plain RGB array (PNG/JPEG IHC image) at `mpp` micrometres per pixel.

    Same result as for a slide, on a grid of `tile_size` px tiles at `tile_mpp` covering the image.
    """
    get_marker(marker)
    slide = slide_from_array(rgb, mpp, name)
    grid = slide_grid(slide, tile_mpp=tile_mpp, tile_size=tile_size, min_tissue=0)
    return _quantify(slide, marker, grid, None, params, stains, 0, None, None, None)


def _quantify(
    slide: Slide,
    marker: str,
    grid: TileGrid,
    indices,
    params: IHCParams,
    stains: StainVectors | None,
    threads: int,
    progress: ProgressHook | None,
    cancel: CancelHook | None,
    on_tile: Callable[[int, float], None] | None,
) -> IHCResult:
    """Quantify `slide` tile by tile on `grid` (the tiles at `indices`, default all)."""
    get_marker(marker)
    if params.cells not in ("tumour", "all"):
        raise IHCError(f"cells must be 'tumour' or 'all', got {params.cells!r}.")
    name = str(slide.path)
    mpp = (float(slide.mpp[0]), float(slide.mpp[1]))
    n_tiles = len(grid.coords)
    indices = np.arange(n_tiles) if indices is None else np.asarray(indices, int)
    level = analysis_level(slide, params)
    level_mpp = mpp[0] * float(slide.level_downsamples[level])
    messages = [grid.extra["note"]] if grid.extra.get("note") else []
    if level_mpp > 1.0:
        messages.append(
            f"pixels of {level_mpp:.2f} um are too coarse to resolve nuclei (need <= 1 um/px); "
            "nucleus counts and indices are unreliable, the positive-pixel fraction is still valid."
        )

    sample = _sample_tissue_od(slide, grid, level, indices, params)
    check_dab(sample, params, name)
    if stains is None:
        stains = estimate_stains(sample)
        if stains.source != "macenko":
            messages.append(
                f"stain vectors: {stains.source} (too little of one stain to estimate it)"
            )

    tissue_px = np.zeros(n_tiles, np.int64)
    positive_px = np.zeros(n_tiles, np.int64)
    detection = [""] * n_tiles  # the preset each tile was read with ("auto" resolves per tile)
    parts: list[Nuclei] = []
    margin0 = 2.0 * params.nucleus_radius_um / mpp[0]
    for done, (i, rgb, core, ds) in enumerate(
        _read_tiles(slide, grid, indices, level, margin0, threads), start=1
    ):
        if cancelled(cancel):
            raise IHCCancelled("quantification cancelled; nothing was written.")
        q = quantify_tile(rgb, level_mpp, marker=marker, stains=stains, params=params, core=core)
        tissue_px[i], positive_px[i], detection[i] = q.tissue_px, q.positive_px, q.detection
        x0, y0 = grid.coords[i]
        # read px -> level-0 px: the read started `core[0]` read px before the tile's corner
        xy = np.stack(
            [
                x0 + (q.nuclei.xy[:, 0] - core[0] + 0.5) * ds - 0.5,
                y0 + (q.nuclei.xy[:, 1] - core[1] + 0.5) * ds - 0.5,
            ],
            axis=1,
        )
        parts.append(q.nuclei.replace(xy=xy, tile=np.full(len(xy), i)))
        if on_tile is not None:
            on_tile(int(i), float(tile_positivity(marker, q.counts, q.n_membrane_positive, params)))
        if progress is not None:
            progress(done, len(indices))

    nuclei = Nuclei.concat(parts)
    nuclei = nuclei.replace(excluded=nuclei.exclusions(params))
    counted = nuclei.counted
    counts = (
        np.bincount(
            nuclei.tile[counted].astype(np.int64) * 4 + nuclei.cls[counted], minlength=n_tiles * 4
        )
        .reshape(n_tiles, 4)
        .astype(np.int64)
    )
    membrane = np.bincount(nuclei.tile[counted & nuclei.membrane], minlength=n_tiles).astype(
        np.int64
    )
    result = IHCResult(
        marker=marker,
        source_path=name,
        grid=grid,
        mpp=mpp,
        level=level,
        stains=stains,
        params=params,
        counts=counts,
        membrane_positive=membrane,
        tissue_px=tissue_px,
        positive_px=positive_px,
        nuclei=nuclei,
        messages=messages,
        tile_detection=detection,
    )
    if result.n_nuclei.sum() == 0:
        result.messages.append("no nuclei were found; check the pixel size (mpp) and the stain.")
    return result


def observe_slide(
    slide_path: str,
    marker: str,
    *,
    tile_mpp: float = TILE_MPP,
    tile_size: int = TILE_SIZE,
    region: tuple[int, int, int, int] | None = None,
    params: IHCParams = IHCParams(),
    progress: ProgressHook | None = None,
    cancel: CancelHook | None = None,
    on_grid: Callable[[TileGrid, int], None] | None = None,
    on_tile: Callable[[int, float], None] | None = None,
) -> IHCResult:
    """`quantify_slide` on the IHC slide's own tissue grid at `tile_mpp` / `tile_size` (only the
    tiles meeting `region`), so results of a visible region and of the whole slide sit on one
    lattice; `on_grid(grid, n_tiles)` is called before the first tile (the viewer's map)."""
    with open_slide(slide_path) as slide:
        grid = slide_grid(slide, tile_mpp=tile_mpp, tile_size=tile_size)
        n = len(grid) if region is None else len(grid.tiles_in_box(region))
        if n == 0:
            where = "in the view; pan to tissue or zoom out" if region else "on this slide"
            raise IHCError(f"no tissue tiles {where}.")
        if on_grid is not None:
            on_grid(grid, n)
        return quantify_slide(
            slide,
            marker,
            grid=grid,
            region=region,
            progress=progress,
            cancel=cancel,
            on_tile=on_tile,
            params=params,
        )
