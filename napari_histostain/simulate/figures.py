"""Figures of docs/simulator.md: real vs simulated tiles at 0.5 um/px, and a case overview.

python -m napari_histostain.simulate.figures docs/images [--data ../shared/data]
"""

from __future__ import annotations

import argparse
import tempfile
import warnings
from pathlib import Path

import numpy as np

TILE_PX = 384  # at 0.5 um/px


def read_tile(path: str | Path, x_frac: float, y_frac: float, mpp: float = 0.5) -> np.ndarray:
    """A TILE_PX square at `mpp` from a slide, its corner at a fraction of the slide size."""
    from skimage.transform import resize

    from ..io.slide import open_slide

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        s = open_slide(path)
    with s:
        n = int(round(TILE_PX * mpp / s.mpp[0]))
        w, h = s.dimensions
        rgb = s.read_region((int(x_frac * (w - n)), int(y_frac * (h - n))), 0, (n, n))
    if n != TILE_PX:
        rgb = (resize(rgb, (TILE_PX, TILE_PX), anti_aliasing=True) * 255).astype(np.uint8)
    return rgb[..., :3]


def tumour_tiles(case, marker: str, n: int) -> list[tuple[str, float, float]]:
    """(slide, x_frac, y_frac) of the n tiles with most tumour cells (H&E and the marker's IHC)."""
    from .truth import load_truth

    t = load_truth(case.truth_paths[marker])
    out = []
    for key, path in (("he", case.he_path), ("ihc", case.ihc_paths[marker])):
        counts = t[f"{key}_n_tumour"].astype(float)
        tile = t["tile_px"]
        rows, cols = counts.shape
        best = np.argsort(-counts.ravel(), kind="stable")[: n * 3 : 3]
        for b in best:
            r, c = divmod(int(b), cols)
            size = rows * tile
            out.append((str(path), min(c * tile / size, 0.99), min(r * tile / size, 0.99)))
    return out


def real_vs_simulated(data: Path, out: Path, workdir: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .cohort import simulate_case

    case = simulate_case(workdir, ["ki67"], size_um=1536, seed=2022)
    sim = tumour_tiles(case, "ki67", 3)
    slides = data / "slides"
    rows = [
        (
            "real H&E (CMU-1)",
            [
                read_tile(slides / "CMU-1-Small-Region.svs", x, y)
                for x, y in ((0.6, 0.5), (0.5, 0.8), (0.45, 0.3))
            ],
        ),
        ("simulated H&E", [read_tile(p, x, y) for p, x, y in sim[:3]]),
        (
            "real Ki-67 IHC (OS-2)",
            [
                read_tile(slides / "OS-2-Ki67-crop.tiff", x, y)
                for x, y in ((0.2, 0.2), (0.5, 0.5), (0.8, 0.8))
            ],
        ),
        ("simulated Ki-67 IHC", [read_tile(p, x, y) for p, x, y in sim[3:]]),
    ]
    fig, axes = plt.subplots(4, 3, figsize=(9, 12.4), dpi=110)
    for r, (title, tiles) in enumerate(rows):
        for c, tile in enumerate(tiles):
            ax = axes[r, c]
            ax.imshow(tile)
            ax.set_xticks([])
            ax.set_yticks([])
            if c == 0:
                ax.set_ylabel(title, fontsize=11)
    fig.suptitle("Real vs simulated tiles, 192 x 192 um at 0.5 um/px", fontsize=12)
    fig.tight_layout()
    path = out / "sim_real_vs_simulated.png"
    fig.savefig(path)
    plt.close(fig)
    return path


def case_overview(out: Path, workdir: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ..io.slide import open_slide
    from .cohort import simulate_case
    from .truth import load_truth

    case = simulate_case(workdir, ["ki67", "p53", "pdl1"], size_um=2048, seed=7, case_id="overview")
    fig, axes = plt.subplots(2, 4, figsize=(14, 7.4), dpi=100)
    names = [("H&E", case.he_path)] + [(m, case.ihc_paths[m]) for m in ("ki67", "p53", "pdl1")]
    for i, (name, path) in enumerate(names):
        with open_slide(path) as s:
            axes[0, i].imshow(s.thumbnail(512))
        axes[0, i].set_title(f"{name} section")
    lat = case.latents
    titles = {
        "ki67": f"Ki-67 truth: k={lat['ki67']['latent']:.2f} ({lat['ki67']['label_name']})",
        "p53": f"P53 truth: {lat['p53']['pattern']}",
        "pdl1": f"PD-L1 truth: TPS={lat['pdl1']['latent']:.2f}",
    }
    t = load_truth(case.truth_paths["ki67"])
    axes[1, 0].imshow(t["he_n_tumour"], cmap="magma")
    axes[1, 0].set_title("H&E tumour cells / tile")
    for i, m in enumerate(("ki67", "p53", "pdl1"), start=1):
        tm = load_truth(case.truth_paths[m])
        im = axes[1, i].imshow(tm["ihc_positivity"], cmap="viridis", vmin=0, vmax=1)
        axes[1, i].set_title(titles[m], fontsize=10)
    fig.colorbar(im, ax=axes[1, 1:].tolist(), shrink=0.8, label="positive tumour fraction per tile")
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
    path = out / "sim_case_overview.png"
    fig.savefig(path)
    plt.close(fig)
    return path


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("out", type=Path)
    ap.add_argument(
        "--data", type=Path, default=Path(__file__).resolve().parents[3] / "shared" / "data"
    )
    args = ap.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        print(case_overview(args.out, Path(tmp)))
        if (args.data / "slides").is_dir():
            print(real_vs_simulated(args.data, args.out, Path(tmp)))
        else:
            print(f"no real data at {args.data}; skipped the real-vs-simulated figure")


if __name__ == "__main__":
    main()
