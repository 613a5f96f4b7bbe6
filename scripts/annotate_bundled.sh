#!/usr/bin/env bash
# Add a domain reference and a calibration to the three bundled models (issue 16),
# without retraining them: simulate a held-out training-domain cohort with the bundled
# models' settings (scripts/train_bundled.sh: 1344 um slides, efficientnet-lite0-multiscale) but
# another seed (3001, never used for training; 240 cases), embed it, and run `histostain
# add-domain` per marker: 35 % of its cases fit the reference (PCA + Ledoit-Wolf covariance), 35 %
# set the tile percentiles and the slide rules (2 % slide false-flag target), 30 % (72 cases) are
# kept back to measure the false-flag rate; all 240 fit the calibration (the model trained on none
# of them), temperature or Platt per marker by 10-fold cross-validated log-loss on them
# (`--calibration auto`). The calibration is measured on fresh300, which set nothing
# (scripts/measure_guard.py; docs/domain-and-calibration.md).
# About 30 min on 2 CPU cores (simulation and H&E embedding; fitting takes about a minute).
#   bash scripts/annotate_bundled.sh [RUNS_DIR]      (default: runs)
set -euo pipefail
RUNS=${1:-runs}
ENCODER=efficientnet-lite0-multiscale
COHORT=$RUNS/domain240
if [ ! -f "$COHORT/cache_multiscale/build.json" ] || [ ! -f "$COHORT/cohort/manifest.csv" ]; then
  histostain build-cohort --out "$COHORT/cohort" --cache "$COHORT/cache_multiscale" \
    --cases 240 --size-um 1344 --seed 3001 --encoder $ENCODER --id-prefix dom --he-only
fi
OUT=$RUNS/annotated
mkdir -p "$OUT"
for marker in p53 pdl1 ki67; do
  model=napari_histostain/models/histostainalign-$marker.pt
  rm -f "$OUT/histostainalign-$marker.pt" "$OUT/histostainalign-$marker.json"  # our own outputs
  histostain add-domain "$model" --manifest "$COHORT/cohort/manifest.csv" \
    --cache "$COHORT/cache_multiscale" --out "$OUT/histostainalign-$marker.pt" \
    --fit-fraction 0.35 --keep-back 0.3 --seed 0 --calibration auto --calibrate-on-all | tee "$OUT/$marker.report.txt"
  cp "$OUT/histostainalign-$marker.pt" "$OUT/histostainalign-$marker.json" napari_histostain/models/
done
