"""Ki-67 index measured by `ihc.quantify_slide` against the simulator's truth, over a range of seeds.

    python scripts/ki67_accuracy.py [--first 0] [--last 29] [--size-um 768] [--explain]
        [--set NAME=VALUE ...]   (an `IHCParams` field, e.g. --set detection=standard)

Prints one line per simulated case (true and measured index, error, tumour cells, counted nuclei)
and the largest absolute error; the acceptance bound is 3 percentage points. `--explain` matches
each detected nucleus to the simulator's nearest cell (within 4 um) and adds where the counted
nuclei came from: tumour +/-, lymphocytes, fibroblasts, blobs covering >= 2 lymphocytes, and how
many tumour cells were not found or were left out.
"""

from __future__ import annotations

import argparse
import tempfile

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--first", type=int, default=0)
    ap.add_argument("--last", type=int, default=29)
    ap.add_argument("--size-um", type=float, default=768)
    ap.add_argument("--explain", action="store_true", help="break each case's error down")
    ap.add_argument(
        "--set", action="append", default=[], metavar="NAME=VALUE", help="an IHCParams field"
    )
    args = ap.parse_args()

    from napari_histostain import ihc, simulate
    from napari_histostain.ihc.params import with_settings

    params = with_settings(ihc.IHCParams(), args.set)

    errors = []
    with tempfile.TemporaryDirectory() as tmp:
        for seed in range(args.first, args.last + 1):
            case = simulate.simulate_case(
                tmp, ["ki67"], case_id=f"k{seed}", size_um=args.size_um, seed=seed
            )
            truth = case.truth["ki67"]
            result = ihc.quantify_slide(case.ihc_paths["ki67"], "ki67", params=params)
            true_pct, measured = truth["true_index"] * 100, result.summary()["ki67_index"]
            errors.append(measured - true_pct)
            print(
                f"seed {seed:4d}  true {true_pct:5.1f} %  measured {measured:5.1f} %  "
                f"error {errors[-1]:+5.1f}  tumour cells {truth['n_tumour_cells']:5d}  "
                f"counted nuclei {int(result.nuclei.counted.sum()):5d}",
                flush=True,
            )
            if args.explain:
                print("    " + explain(result, case.truth_paths["ki67"]), flush=True)
    e = np.abs(errors)
    print(
        f"{len(e)} cases: largest |error| {e.max():.2f} points, mean {e.mean():.2f}; "
        f"{int((e <= 3).sum())}/{len(e)} within 3 points"
    )


def explain(result, truth_path) -> str:
    """Where the counted nuclei of one simulated case come from, by the nearest simulated cell."""
    from scipy.spatial import cKDTree

    from napari_histostain.simulate.cells import FIBROBLAST, LYMPHOCYTE, TUMOUR_CELL

    with np.load(truth_path) as z:
        mpp, kind = float(z["mpp"]), z["ihc_cells_kind"]
        cells = np.c_[z["ihc_cells_x"], z["ihc_cells_y"]]
    tree = cKDTree(cells)
    dist, nearest = tree.query(result.nuclei.xy, k=1)
    matched = dist * mpp < 4.0
    k = np.where(matched, kind[nearest], -1)
    counted, pos = result.nuclei.counted, result.nuclei.cls >= 1
    # a blob covering two or more simulated lymphocytes: merged lymphocytes
    radius = (np.sqrt(result.nuclei.area_um2 / np.pi) + 1.0) / mpp
    merged = np.array(
        [
            (kind[tree.query_ball_point(p, r)] == LYMPHOCYTE).sum() >= 2
            for p, r in zip(result.nuclei.xy, radius)
        ],
        bool,
    )
    tumour = k == TUMOUR_CELL
    found = np.zeros(len(kind), bool)
    found[nearest[matched]] = True

    def n(mask):
        return int(mask.sum())

    return (
        f"counted: tumour+ {n(counted & tumour & pos)}, tumour- {n(counted & tumour & ~pos)}, "
        f"lymphocyte- {n(counted & (k == LYMPHOCYTE) & ~pos)} (merged blobs {n(counted & merged & ~pos)}), "
        f"fibroblast- {n(counted & (k == FIBROBLAST) & ~pos)}, unmatched {n(counted & ~matched)}; "
        f"tumour left out: + {n(~counted & tumour & pos)}, - {n(~counted & tumour & ~pos)}; "
        f"tumour cells not found {n((kind == TUMOUR_CELL) & ~found)}"
    )


if __name__ == "__main__":
    main()
