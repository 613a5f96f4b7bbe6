"""Ki-67 on real cells: `histostain quantify` against the BCData fields' marked tumour nuclei.

    python benchmarks/bcdata_ki67.py [--data DIR] [--mpp 0.25] [--radius-um 6] [--fields tune|held-out|all]
        [--per-field] [--detection auto|standard|real-fields] [--all-cells] [--count-stroma]
        [--thresholds T1 T2 T3] [--set NAME=VALUE ...] [--decompose]

Each field (`bcdata-NN.jpg`, its marked nuclei in `bcdata-NN.points.csv`, see the data's README) is
quantified as the CLI does (`open_slide` + `--mpp` + `quantify_slide`; detection `auto` by default,
as the CLI's). Detections are matched one to
one to the marked nuclei within `--radius-um` (Hungarian assignment on distances), giving:

- detection precision / recall of the counted nuclei (those entering the index) and recall of all
  nuclei found (before the tumour-cell rules);
- on the matched pairs, precision / recall of the positive call (Ki-67+: class >= 1+);
- per field the Ki-67 index against the truth's; the mean absolute error (MAE) with a bootstrap
  95 % CI over fields, and how many fields are within 5 points;
- with `--decompose`, per field where the error comes from, in three parts that add up to it:
  counted detections matching no mark (FP: unmarked nuclei, fragments, stained cytoplasm), wrong
  positive / negative calls on the matched pairs, and marks no counted detection matches (FN),
  with the counts of each by class.

The fields are split in two halves by name: `tune` (first 13, the only ones looked at when setting
parameters) and `held-out` (last 13); both are reported separately. The pixel size is not stated by
the source: 0.25 um/px is assumed (nuclei 30-40 px across).
"""

from __future__ import annotations

import argparse
import csv
import warnings
from dataclasses import replace
from pathlib import Path

import numpy as np

DEFAULT_DATA = (
    Path(__file__).resolve().parents[2] / "shared" / "data" / "ihc-truth" / "bcdata-sample"
)


def read_points(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Marked nuclei: (K, 2) float (x, y) px and (K,) bool positive."""
    with open(path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    xy = np.array([[float(r["x"]), float(r["y"])] for r in rows], float).reshape(-1, 2)
    pos = np.array([r["class"].strip() == "positive" for r in rows], bool)
    return xy, pos


def match(a: np.ndarray, b: np.ndarray, radius: float) -> tuple[np.ndarray, np.ndarray]:
    """One-to-one matches (indices into `a`, into `b`) within `radius`, minimising total distance."""
    from scipy.optimize import linear_sum_assignment
    from scipy.spatial.distance import cdist

    if len(a) == 0 or len(b) == 0:
        return np.zeros(0, int), np.zeros(0, int)
    d = cdist(a, b)
    big = 1e6
    cost = np.where(d <= radius, d, big)
    ia, ib = linear_sum_assignment(cost)
    ok = cost[ia, ib] < big
    return ia[ok], ib[ok]


def quantify_field(path: Path, mpp: float, params):
    from napari_histostain.ihc import quantify_slide
    from napari_histostain.io.slide import MissingMppWarning, open_slide

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MissingMppWarning)
        slide = open_slide(path)
    with slide:
        return quantify_slide(slide.with_mpp(mpp), "ki67", params=params, threads=0)


def evaluate_field(path: Path, mpp: float, radius_um: float, params) -> dict:
    truth_xy, truth_pos = read_points(path.with_suffix(".points.csv"))
    result = quantify_field(path, mpp, params)
    nuc = result.nuclei
    counted = nuc.counted
    radius = radius_um / mpp
    det_xy, det_pos = nuc.xy[counted].astype(float), nuc.cls[counted] > 0
    i_det, i_true = match(det_xy, truth_xy, radius)
    j_all, _ = match(nuc.xy.astype(float), truth_xy, radius)
    tp_pos = int((det_pos[i_det] & truth_pos[i_true]).sum())
    fp = np.ones(len(det_xy), bool)
    fp[i_det] = False
    fn = np.ones(len(truth_xy), bool)
    fn[i_true] = False
    matched_index = float(det_pos[i_det].mean() * 100) if len(i_det) else float("nan")
    matched_true_index = float(truth_pos[i_true].mean() * 100) if len(i_true) else float("nan")
    s = result.summary()
    true_index = float(truth_pos.mean() * 100) if len(truth_pos) else float("nan")
    return {
        "field": path.stem,
        "n_true": len(truth_xy),
        "n_true_pos": int(truth_pos.sum()),
        "n_found": len(nuc),
        "n_counted": int(counted.sum()),
        "matched": len(i_det),
        "matched_any": len(j_all),
        "pos_called_matched": int(det_pos[i_det].sum()),
        "pos_true_matched": int(truth_pos[i_true].sum()),
        "tp_pos": tp_pos,
        "true_index": true_index,
        "index": float(s["ki67_index"]),
        "stains": result.stains.source,
        "fp_pos": int((fp & det_pos).sum()),
        "fp_neg": int((fp & ~det_pos).sum()),
        "fn_pos": int((fn & truth_pos).sum()),
        "fn_neg": int((fn & ~truth_pos).sum()),
        # the index error in three parts that add up to it (points)
        "err_fp": float(s["ki67_index"]) - matched_index,
        "err_calls": matched_index - matched_true_index,
        "err_fn": matched_true_index - true_index,
    }


def bootstrap_ci(errors: np.ndarray, n: int = 2000, seed: int = 0) -> tuple[float, float]:
    rng = np.random.default_rng(seed)
    means = [np.abs(rng.choice(errors, len(errors))).mean() for _ in range(n)]
    lo, hi = np.percentile(means, [2.5, 97.5])
    return float(lo), float(hi)


def report(rows: list[dict], title: str) -> dict:
    def ratio(a, b):
        return a / b if b else float("nan")

    err = np.array([r["index"] - r["true_index"] for r in rows])
    ae = np.abs(np.nan_to_num(err, nan=100.0))
    tot = {k: sum(r[k] for r in rows) for k in rows[0] if isinstance(rows[0][k], int)}
    lo, hi = bootstrap_ci(ae)
    out = {
        "fields": len(rows),
        "det_precision": ratio(tot["matched"], tot["n_counted"]),
        "det_recall": ratio(tot["matched"], tot["n_true"]),
        "found_recall": ratio(tot["matched_any"], tot["n_true"]),
        "pos_precision": ratio(tot["tp_pos"], tot["pos_called_matched"]),
        "pos_recall": ratio(tot["tp_pos"], tot["pos_true_matched"]),
        "neg_precision": ratio(
            tot["matched"] - tot["pos_called_matched"] - (tot["pos_true_matched"] - tot["tp_pos"]),
            tot["matched"] - tot["pos_called_matched"],
        ),
        "neg_recall": ratio(
            tot["matched"] - tot["pos_called_matched"] - (tot["pos_true_matched"] - tot["tp_pos"]),
            tot["matched"] - tot["pos_true_matched"],
        ),
        "mae": float(ae.mean()),
        "mae_ci": (lo, hi),
        "bias": float(np.nanmean(err)),
        "within5": int((ae <= 5).sum()),
    }
    print(
        f"{title}: {out['fields']} fields | detection P {out['det_precision']:.2f} "
        f"R {out['det_recall']:.2f} (all found R {out['found_recall']:.2f}) | positive call "
        f"P {out['pos_precision']:.2f} R {out['pos_recall']:.2f}, negative P "
        f"{out['neg_precision']:.2f} R {out['neg_recall']:.2f} | index MAE {out['mae']:.1f} "
        f"[95% CI {lo:.1f}-{hi:.1f}], bias {out['bias']:+.1f}, within 5 points: "
        f"{out['within5']}/{out['fields']}"
    )
    return out


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--mpp", type=float, default=0.25, help="assumed pixel size (default 0.25)")
    ap.add_argument("--radius-um", type=float, default=6.0, help="match radius (default 6 um)")
    ap.add_argument("--fields", choices=("tune", "held-out", "all"), default="all")
    ap.add_argument("--per-field", action="store_true", help="print one line per field")
    ap.add_argument(
        "--detection", default="auto", help="nucleus detection preset (auto, standard, real-fields)"
    )
    ap.add_argument("--all-cells", action="store_true")
    ap.add_argument("--count-stroma", action="store_true")
    ap.add_argument("--thresholds", type=float, nargs=3, default=None)
    ap.add_argument(
        "--decompose", action="store_true", help="per field: the error's FP / call / FN parts"
    )
    ap.add_argument(
        "--set", action="append", default=[], metavar="NAME=VALUE", help="an IHCParams field"
    )
    args = ap.parse_args(argv)

    from napari_histostain.ihc import IHCParams, with_thresholds
    from napari_histostain.ihc.params import with_detection, with_settings

    params = with_detection(IHCParams(), args.detection)
    if args.thresholds:
        params = with_thresholds(params, tuple(args.thresholds))
    if args.all_cells:
        params = replace(params, cells="all")
    if args.count_stroma:
        params = replace(params, context_min_nuclei=0)
    params = with_settings(params, args.set)
    fields = sorted(args.data.glob("bcdata-*.jpg"))
    if not fields:
        raise SystemExit(f"no bcdata-*.jpg fields in {args.data}")
    half = len(fields) // 2
    split = {"tune": fields[:half], "held-out": fields[half:]}
    chosen = ["tune", "held-out"] if args.fields == "all" else [args.fields]
    results: dict = {}
    all_rows = []
    for name in chosen:
        rows = [evaluate_field(f, args.mpp, args.radius_um, params) for f in split[name]]
        if args.per_field:
            for r in rows:
                print(
                    f"  {r['field']}: truth {r['true_index']:5.1f}% ({r['n_true']} cells) ours "
                    f"{r['index']:5.1f}% ({r['n_counted']} counted of {r['n_found']}, "
                    f"{r['matched']} matched) err {r['index'] - r['true_index']:+5.1f} "
                    f"[{r['stains']}]"
                )
        if args.decompose:
            for r in rows:
                print(
                    f"  {r['field']}: err {r['index'] - r['true_index']:+5.1f} = FP "
                    f"{r['err_fp']:+5.1f} (+{r['fp_pos']} -{r['fp_neg']}) + calls "
                    f"{r['err_calls']:+5.1f} + FN {r['err_fn']:+5.1f} (+{r['fn_pos']} -{r['fn_neg']})"
                )
        results[name] = report(rows, name)
        all_rows += rows
    if len(chosen) == 2:
        results["all"] = report(all_rows, "all")
    results["rows"] = all_rows
    return results


if __name__ == "__main__":
    main()
