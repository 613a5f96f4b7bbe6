"""Ki-67 index measured by `ihc.quantify_slide` against the simulator's truth, over a range of seeds.

    python scripts/ki67_accuracy.py [--first 0] [--last 29] [--size-um 768]

Prints one line per simulated case (true and measured index, error, tumour cells, counted nuclei)
and the largest absolute error; the acceptance bound is 3 percentage points.
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
    args = ap.parse_args()

    from napari_histostain import ihc, simulate

    errors = []
    with tempfile.TemporaryDirectory() as tmp:
        for seed in range(args.first, args.last + 1):
            case = simulate.simulate_case(tmp, ["ki67"], case_id=f"k{seed}", size_um=args.size_um, seed=seed)
            truth = case.truth["ki67"]
            result = ihc.quantify_slide(case.ihc_paths["ki67"], "ki67")
            true_pct, measured = truth["true_index"] * 100, result.summary()["ki67_index"]
            errors.append(measured - true_pct)
            print(f"seed {seed:4d}  true {true_pct:5.1f} %  measured {measured:5.1f} %  "
                  f"error {errors[-1]:+5.1f}  tumour cells {truth['n_tumour_cells']:5d}  "
                  f"counted nuclei {int(result.nuclei_counted.sum()):5d}", flush=True)
    e = np.abs(errors)
    print(f"{len(e)} cases: largest |error| {e.max():.2f} points, mean {e.mean():.2f}; "
          f"{int((e <= 3).sum())}/{len(e)} within 3 points")


if __name__ == "__main__":
    main()
