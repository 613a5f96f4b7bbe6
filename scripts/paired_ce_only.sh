#!/usr/bin/env bash
# Paired log-loss test of the bundled models against CE-only baselines on fresh300 (issue 16;
# docs/domain-and-calibration.md, "Paired test against the CE-only baseline"). About 90 min on 2 CPU
# cores, most of it simulating and embedding cohort367 (H&E only).
#   bash scripts/paired_ce_only.sh [RUNS_DIR]      (default: runs; needs RUNS/fresh300 and
#                                                   RUNS/domain240, see scripts/annotate_bundled.sh)
# The CE-only loss never uses the IHC bags, so the baselines are trained from H&E embeddings only:
# a manifest lists each H&E slide as its own IHC slide (the token draws differ from a run with IHC
# embeddings; the models are equivalent, not identical). Each baseline gets its guard as the bundled
# files got theirs (add-domain on domain240), then both are called on fresh300 as predict_slide calls.
set -euo pipefail
if [ "${1:-}" = "--help" ] || [ "${1:-}" = "-h" ]; then sed -n 2,10p "$0"; exit 0; fi
RUNS=${1:-runs}
C=$RUNS/cohort367
if [ ! -f "$C/cohort/manifest.csv" ]; then
  histostain build-cohort --out "$C/cohort" --cache "$C/cache_multiscale" --cases 367 \
    --size-um 1344 --seed 2026 --encoder efficientnet-lite0-multiscale --he-only
fi
python - "$C/cohort/manifest.csv" <<'PY'
import csv, sys
src = sys.argv[1]
rows = list(csv.DictReader(open(src, newline="")))
with open(src.replace("manifest.csv", "manifest_he.csv"), "w", newline="") as fh:
    w = csv.DictWriter(fh, fieldnames=list(rows[0]))
    w.writeheader()
    w.writerows({**r, "ihc_path": r["he_path"]} for r in rows)
PY
TRAIN_ARGS="--epochs 80 --folds 5 --n-tokens 32 --batch-size 32 --lr 1e-3 --dropout 0.1 --seed 0"
mkdir -p "$C/baselines_dom"
baselines=()
for m in p53 pdl1 ki67; do
  histostain train "$C/cohort/manifest_he.csv" --cache "$C/cache_multiscale" --marker $m \
    $TRAIN_ARGS --out "$C/baselines/$m" --only-class-loss --quiet
  histostain add-domain "$C/baselines/$m/model.pt" --manifest "$RUNS/domain240/cohort/manifest.csv" \
    --cache "$RUNS/domain240/cache_multiscale" --out "$C/baselines_dom/$m.pt" \
    --fit-fraction 0.35 --keep-back 0.3 --seed 0 --calibration auto --calibrate-on-all
  baselines+=(--baseline "$m=$C/baselines_dom/$m.pt")
done
python scripts/measure_guard.py "$RUNS/fresh300/cohort/manifest.csv" \
  "$RUNS/fresh300/cache_multiscale" "${baselines[@]}" | tee "$C/paired_fresh300.jsonl"
