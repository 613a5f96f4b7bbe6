"""Test the domain guard on simulated tissue: an untouched cohort vs the same cases from another lab.

    .venv/bin/python scripts/domain_eval.py --cases 40 --out runs/domain_eval

Simulates (or reuses) two cohorts of the same cases (a seed never used for training, default
settings): `plain` as the simulator renders them and `shifted` as another lab's stain and scanner
would (`simulate.shift.PRESETS["another-lab"]`, JPEG quality 60). Every H&E slide is predicted with
the bundled models (or --models DIR); reported:

- the share of plain H&E slides flagged out of domain (Wilson 95 % CI; acceptance <= 3 %);
- slide-level AUROC of shifted vs plain from the domain score (the share of a slide's tiles out of
  domain), and from the mean tile domain score, with stratified bootstrap 95 % CIs
  (acceptance >= 0.95); and the share of shifted slides flagged.

Writes <out>/domain_eval.json (settings, per-slide rows, metrics) and prints a summary.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np


def simulate(out: Path, cases: int, seed: int, size_um: float, preset: str | None) -> Path:
    from napari_histostain.simulate import simulate_cohort
    from napari_histostain.simulate.shift import PRESET_QUALITY, PRESETS

    manifest = out / "manifest.csv"
    if manifest.is_file():
        return manifest
    kw = {"shift": PRESETS[preset], "quality": PRESET_QUALITY[preset]} if preset else {}
    return simulate_cohort(out, cases, ("ki67",), size_um=size_um, seed=seed, **kw)


def he_slides(manifest: Path) -> list[str]:
    from napari_histostain.simulate import read_manifest

    return sorted({r["he_path"] for r in read_manifest(manifest)})


def predict_rows(slides: list[str], group: str, models: dict) -> list[dict]:
    from napari_histostain.engine.predict import PredictOptions, predict_slide

    rows = []
    for path in slides:
        pred = predict_slide(
            path, list(models) or ["p53", "pdl1", "ki67"], PredictOptions(models=models)
        )
        d = pred.domain or {}
        tile = pred.domain_score
        rows.append(
            {
                "group": group,
                "slide": Path(path).name,
                "in_domain": d.get("in_domain"),
                "share_out": d.get("score"),
                "tiles": d.get("tiles"),
                "in_domain_tiles": d.get("in_domain_tiles"),
                "mean_tile_score": float(np.nanmean(tile))
                if tile is not None and tile.size
                else None,
                "calls": {m: mp.call_status for m, mp in pred.markers.items()},
                "reasons": {m: mp.no_call_reason for m, mp in pred.markers.items()},
            }
        )
    return rows


def auroc_ci(y: np.ndarray, s: np.ndarray, n_boot: int = 2000, seed: int = 0) -> tuple[float, list]:
    """AUROC and its stratified bootstrap 95 % percentile CI."""
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(seed)
    pos, neg = np.flatnonzero(y == 1), np.flatnonzero(y == 0)
    boots = []
    for _ in range(n_boot):
        idx = np.concatenate([rng.choice(pos, len(pos)), rng.choice(neg, len(neg))])
        boots.append(roc_auc_score(y[idx], s[idx]))
    return float(roc_auc_score(y, s)), [float(v) for v in np.percentile(boots, [2.5, 97.5])]


def metrics(rows: list[dict]) -> dict:
    """Flag rate of each group (Wilson 95 % CI) and AUROC of each shifted group vs plain."""
    from napari_histostain.engine.domain import wilson_interval

    out: dict = {}
    groups = sorted({r["group"] for r in rows}, key=lambda g: (g != "plain", g))
    for g in groups:
        rs = [r for r in rows if r["group"] == g]
        k = sum(1 for r in rs if r["in_domain"] is False)
        out[g] = {
            "flagged": k,
            "n": len(rs),
            "flag_rate": k / len(rs),
            "flag_rate_wilson95": wilson_interval(k, len(rs)),
        }
        if g == "plain" or not any(r["group"] == "plain" for r in rows):
            continue
        pair = [r for r in rows if r["group"] in ("plain", g)]
        y = np.array([r["group"] == g for r in pair], int)
        for key in ("share_out", "mean_tile_score"):
            s = np.array([np.nan if r[key] is None else r[key] for r in pair], float)
            if np.isfinite(s).all():
                auc, ci = auroc_ci(y, s)
                out[g][f"auroc_vs_plain_{key}"], out[g][f"auroc_vs_plain_{key}_ci95"] = auc, ci
    return out


def report(res: dict) -> None:
    for g, m in res.items():
        lo, hi = m["flag_rate_wilson95"]
        print(
            f"{g}: H&E slides flagged out of domain {m['flagged']}/{m['n']} = {m['flag_rate']:.1%} "
            f"(Wilson 95% CI {lo:.1%}-{hi:.1%})"
        )
        for key in ("share_out", "mean_tile_score"):
            if f"auroc_vs_plain_{key}" in m:
                lo, hi = m[f"auroc_vs_plain_{key}_ci95"]
                print(
                    f"  AUROC {g} vs plain ({key}): {m[f'auroc_vs_plain_{key}']:.3f} "
                    f"(bootstrap 95% CI {lo:.3f}-{hi:.3f})"
                )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", type=int, default=40, help="cases per cohort (default 40)")
    ap.add_argument("--seed", type=int, default=7001, help="cohort seed, never used in training")
    ap.add_argument("--size-um", type=float, default=1344.0, help="slide side (bundled: 1344 um)")
    ap.add_argument("--out", default="runs/domain_eval", help="output folder")
    ap.add_argument("--models", default=None, help="folder of model files (default: bundled)")
    ap.add_argument(
        "--shift",
        action="append",
        choices=["another-lab", "mild"],
        help="shifted group(s) (default another-lab; repeatable)",
    )
    ap.add_argument("--no-plain", action="store_true", help="no plain group (see --combine)")
    ap.add_argument(
        "--no-shift", action="store_true", help="only the plain group (more plain slides)"
    )
    ap.add_argument(
        "--combine",
        nargs="+",
        metavar="JSON",
        help="instead of running: pool the rows of earlier domain_eval.json files (with --out)",
    )
    args = ap.parse_args(argv)
    out = Path(args.out)
    if args.combine:
        import json

        from napari_histostain.io.atomic import write_json

        rows = [r for p in args.combine for r in json.loads(Path(p).read_text())["rows"]]
        res = metrics(rows)
        write_json(
            out / "domain_eval.json", {"combined": args.combine, "metrics": res, "rows": rows}
        )
        report(res)
        print(f"wrote {out / 'domain_eval.json'}")
        return 0
    models: dict = {}
    if args.models:
        from napari_histostain.engine.model_files import read_model_config

        for p in sorted(Path(args.models).glob("*.pt")):
            models[read_model_config(p).marker] = str(p)
    t0 = time.perf_counter()
    rows = []
    groups = [] if args.no_plain else [("plain", None)]
    if not args.no_shift:
        for preset in args.shift or ["another-lab"]:
            groups.append(("shifted" if preset == "another-lab" else f"shifted-{preset}", preset))
    for group, preset in groups:
        manifest = simulate(out / group, args.cases, args.seed, args.size_um, preset)
        t1 = time.perf_counter()
        rows += predict_rows(he_slides(manifest), group, models)
        print(
            f"{group}: {args.cases} slides predicted in {time.perf_counter() - t1:.0f} s",
            flush=True,
        )
    res = metrics(rows)
    doc = {
        "command": " ".join(
            [Path(sys.argv[0]).name, *(argv if argv is not None else sys.argv[1:])]
        ),
        "settings": vars(args),
        "seconds": round(time.perf_counter() - t0, 1),
        "metrics": res,
        "rows": rows,
    }
    from napari_histostain.io.atomic import write_json

    write_json(out / "domain_eval.json", doc)
    report(res)
    print(f"wrote {out / 'domain_eval.json'} ({doc['seconds']:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
