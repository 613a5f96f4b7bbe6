#!/usr/bin/env bash
# Rebuild the bundled default models: simulate + embed the cohort, train HistoStainAlign and the
# CE-only baseline per marker, evaluate on the held-out cases and annotate the bundled files.
# The commands are those of docs/model-card-*.md. About 50 min on 2 CPU cores (cohorts ~20 + 15 min,
# training ~3.5 min and evaluation ~1.5 min per marker).
#   bash scripts/train_bundled.sh [RUNS_DIR]      (default: runs)
set -euo pipefail
RUNS=${1:-runs}
COHORT=$RUNS/cohort367
if [ ! -f "$COHORT/cache/cache.json" ] || [ ! -f "$COHORT/cohort/manifest.csv" ]; then
  python -m napari_histostain.training.build_cohort --out "$COHORT/cohort" --cache "$COHORT/cache" \
    --cases 367 --size-um 1344 --seed 2026
fi
EXTERNAL=$RUNS/external300  # an independent test cohort (other seed), never used for training
if [ ! -f "$EXTERNAL/cache/cache.json" ] || [ ! -f "$EXTERNAL/cohort/manifest.csv" ]; then
  python -m napari_histostain.training.build_cohort --out "$EXTERNAL/cohort" --cache "$EXTERNAL/cache" \
    --cases 300 --size-um 1344 --seed 2027 --id-prefix ext
fi
TRAIN_ARGS="--epochs 80 --folds 5 --n-tokens 32 --batch-size 32 --lr 1e-3 --dropout 0.1 --seed 0"
for marker in p53 pdl1 ki67; do
  out=$RUNS/bundled/$marker
  model=napari_histostain/models/histostainalign-$marker.pt
  histostain train "$COHORT/cohort/manifest.csv" --cache "$COHORT/cache" --marker $marker $TRAIN_ARGS \
    --out "$out/run" --model-file "$model" --quiet
  histostain train "$COHORT/cohort/manifest.csv" --cache "$COHORT/cache" --marker $marker $TRAIN_ARGS \
    --out "$out/baseline" --only-class-loss --quiet
  histostain evaluate "$COHORT/cohort/manifest.csv" --cache "$COHORT/cache" --model "$out/run/model.pt" \
    --baseline "$out/baseline/model.pt" --out "$out/report" --bootstrap 1000 --annotate "$model"
  histostain evaluate "$EXTERNAL/cohort/manifest.csv" --cache "$EXTERNAL/cache" --model "$model" \
    --baseline "$out/baseline/model.pt" --out "$out/external" --bootstrap 1000 --external --annotate "$model"
done
