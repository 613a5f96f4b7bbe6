"""PD-L1 TPS and CPS measured by `histostain quantify` against the simulator's truth, per seed.

    python scripts/pdl1_cps_accuracy.py --seeds 0-19 --size-um 768

Prints one line per seed (truth and measured TPS, CPS, immune cells) and the mean absolute errors
with a 95 % bootstrap interval over the seeds.
"""

from __future__ import annotations

import argparse
import tempfile

import numpy as np

from napari_histostain import ihc, simulate
from napari_histostain.ihc.pdl1 import result_pdl1_scores


def _seeds(text: str) -> list[int]:
    if "-" in text:
        a, b = text.split("-")
        return list(range(int(a), int(b) + 1))
    return [int(s) for s in text.split(",")]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", default="0-19", help="e.g. 0-19 or 1,5,9")
    ap.add_argument("--size-um", type=float, default=768.0)
    args = ap.parse_args()
    tps_err, cps_err = [], []
    print("seed  true_tps  tps   true_cps  cps   immune(+/n)  truth_immune+%")
    with tempfile.TemporaryDirectory() as tmp:
        for seed in _seeds(args.seeds):
            case = simulate.simulate_case(
                tmp, ["pdl1"], case_id=f"p{seed}", size_um=args.size_um, seed=seed
            )
            truth = case.truth["pdl1"]
            r = ihc.quantify_slide(case.ihc_paths["pdl1"], "pdl1")
            s = result_pdl1_scores(r)
            t_tps, t_cps = truth["true_index"] * 100, truth["true_cps"]
            tps_err.append(s.tps - t_tps)
            cps_err.append(s.cps - t_cps)
            print(
                f"{seed:4d}  {t_tps:7.1f}  {s.tps:5.1f}  {t_cps:7.1f}  {s.cps:5.1f}  "
                f"{s.n_immune_positive}/{s.n_immune}  {truth['immune_positive_fraction'] * 100:.1f}"
            )
    rng = np.random.default_rng(0)
    for name, e in (("TPS", tps_err), ("CPS", cps_err)):
        e = np.abs(np.asarray(e))
        boot = e[rng.integers(0, len(e), (2000, len(e)))].mean(axis=1)
        lo, hi = np.percentile(boot, [2.5, 97.5])
        print(
            f"{name}: mean abs error {e.mean():.2f} points (95 % CI {lo:.2f}-{hi:.2f}), "
            f"max {e.max():.2f}, within 5 points {int((e <= 5).sum())}/{len(e)}"
        )


if __name__ == "__main__":
    main()
