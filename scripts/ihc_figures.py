"""The IHC overlay figures of docs/ihc.md, from the real sample images and one simulated case.

    python scripts/ihc_figures.py [OUT_DIR]   (default docs/images; needs ../shared/data)

Prints each image's values (the ones docs/ihc.md states) and writes ihc_os2_ki67.png,
ihc_os2_ki67_zoom.png, ihc_skimage_pdl1.png, ihc_anhir_ki67.png and ihc_sim_ki67.png.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
OS2 = DATA / "slides" / "OS-2-Ki67-crop.tiff"
SKIMAGE = DATA / "images" / "ihc" / "skimage-ihc.png"
ANHIR = DATA / "pairs" / "anhir-lung-lesion3" / "29-041-Izd2-w35-Ki67-7-les3.jpg"
ANHIR_MPP = 3.5  # 5 % scale of ~0.17 um/px
SIM_SEED = 66


def describe(name: str, result) -> str:
    s = result.summary()
    counts = ", ".join(
        f"{k} {v}" for k, v in zip(("neg", "1+", "2+", "3+"), result.counts.sum(axis=0))
    )
    return (
        f"{name}: Ki-67 {s['ki67_index']:.1f} %, H-score {s['h_score']:.0f}, PD-L1 TPS "
        f"{s['pdl1_tps']:.1f} %, counted {int(result.nuclei.counted.sum())} of "
        f"{len(result.nuclei.counted)} ({counts}), positive pixels "
        f"{100 * s['positive_pixel_fraction']:.1f} %, stains {result.stains.source}"
    )


def main(out: Path) -> None:
    from skimage.io import imread

    from napari_histostain import ihc, simulate
    from napari_histostain.io.slide import open_slide

    for p in (OS2, SKIMAGE, ANHIR):
        if not p.exists():
            sys.exit(f"{p} not found: this script needs ../shared/data")
    out.mkdir(parents=True, exist_ok=True)

    res = ihc.quantify_slide(OS2, "ki67")
    print(describe("OS-2", res))
    index = res.summary()["ki67_index"]
    with open_slide(OS2) as slide:
        w, h = slide.dimensions
        whole = np.asarray(slide.read_region((0, 0), 0, (w, h)))[..., :3]
        zoom = np.asarray(slide.read_region((800, 800), 0, (600, 600)))[..., :3]
    ihc.save_overlay_figure(
        whole,
        res,
        out / "ihc_os2_ki67.png",
        title=f"OS-2 Ki-67 (0.227 um/px, analysed at 0.454): index {index:.1f} %",
    )
    ihc.save_overlay_figure(
        zoom,
        res,
        out / "ihc_os2_ki67_zoom.png",
        origin=(800, 800),
        title="OS-2 Ki-67, zoom (level 0 px 800-1400)",
    )

    rgb = imread(SKIMAGE)[..., :3]
    res = ihc.quantify_image(rgb, 0.5, "pdl1")
    print(describe("skimage-ihc as PD-L1", res))
    print(describe("skimage-ihc as Ki-67", ihc.quantify_image(rgb, 0.5, "ki67")))
    ihc.save_overlay_figure(
        rgb,
        res,
        out / "ihc_skimage_pdl1.png",
        title=f"skimage-ihc as PD-L1 (0.5 um/px assumed): TPS {res.summary()['pdl1_tps']:.1f} %",
    )

    rgb = imread(ANHIR)[..., :3]
    res = ihc.quantify_image(rgb, ANHIR_MPP, "ki67")
    print(describe("ANHIR lesion 3 Ki-67", res))
    y0, x0 = (rgb.shape[0] - 400) // 2, (rgb.shape[1] - 400) // 2
    ihc.save_overlay_figure(
        rgb[y0 : y0 + 400, x0 : x0 + 400],
        res,
        out / "ihc_anhir_ki67.png",
        origin=(x0, y0),
        title=f"ANHIR lung lesion Ki-67 (~3.5 um/px): whole image index "
        f"{res.summary()['ki67_index']:.1f} %; crop shown",
    )

    with tempfile.TemporaryDirectory() as tmp:
        case = simulate.simulate_case(
            tmp, ["ki67"], case_id=f"k{SIM_SEED}", size_um=768, seed=SIM_SEED
        )
        res = ihc.quantify_slide(case.ihc_paths["ki67"], "ki67")
        truth = case.truth["ki67"]["true_index"] * 100
        print(describe(f"simulated seed {SIM_SEED} (truth {truth:.1f} %)", res))
        with open_slide(case.ihc_paths["ki67"]) as slide:
            crop = np.asarray(slide.read_region((400, 400), 0, (500, 500)))[..., :3]
        ihc.save_overlay_figure(
            crop,
            res,
            out / "ihc_sim_ki67.png",
            origin=(400, 400),
            title=f"simulated Ki-67 (seed {SIM_SEED}): truth {truth:.1f} %, "
            f"measured {res.summary()['ki67_index']:.1f} %",
        )
    print(f"wrote the figures to {out}")


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "out",
        nargs="?",
        default=str(Path(__file__).resolve().parents[1] / "docs" / "images"),
        help="output folder (default: docs/images)",
    )
    main(Path(ap.parse_args().out))
