#!/usr/bin/env bash
# Rebuild the bundled default models: simulate + embed the cohorts, train HistoStainAlign and the
# CE-only baseline per marker, evaluate on the held-out cases and on two external cohorts, and
# annotate the bundled files. The commands are those of docs/model-card-*.md. About 75 min on 2 CPU
# cores (cohorts ~20 + 3 x 13 min, training ~4 min and evaluation ~2 min per marker).
#   bash scripts/train_bundled.sh [RUNS_DIR]      (default: runs)
set -euo pipefail
RUNS=${1:-runs}
ENCODER=efficientnet-lite0-multiscale  # ImageNet EfficientNet-Lite0: final + mid-level texture features
COHORT=$RUNS/cohort367
cohort() {  # folder, cases, seed, extra args: simulate (once) and embed with $ENCODER
  if [ ! -f "$1/cache_multiscale/build.json" ] || [ ! -f "$1/cohort/manifest.csv" ]; then
    histostain build-cohort --out "$1/cohort" --cache "$1/cache_multiscale" \
      --cases "$2" --size-um 1344 --seed "$3" --encoder $ENCODER "${@:4}"
  fi
}
cohort "$COHORT" 367 2026
# independent test cohorts (other seeds), never used for training: external300 was also used to
# compare tile encoders, fresh300 was made after that choice and used once
EXTERNAL=$RUNS/external300
FRESH=$RUNS/fresh300
cohort "$EXTERNAL" 300 2027 --id-prefix ext
cohort "$FRESH" 300 2028 --id-prefix new
TRAIN_ARGS="--epochs 80 --folds 5 --n-tokens 32 --batch-size 32 --lr 1e-3 --dropout 0.1 --seed 0"
for marker in p53 pdl1 ki67; do
  out=$RUNS/bundled/$marker
  model=napari_histostain/models/histostainalign-$marker.pt
  histostain train "$COHORT/cohort/manifest.csv" --cache "$COHORT/cache_multiscale" --marker $marker \
    $TRAIN_ARGS --out "$out/run" --model-file "$model" --quiet
  histostain train "$COHORT/cohort/manifest.csv" --cache "$COHORT/cache_multiscale" --marker $marker \
    $TRAIN_ARGS --out "$out/baseline" --only-class-loss --quiet
  histostain evaluate "$COHORT/cohort/manifest.csv" --cache "$COHORT/cache_multiscale" \
    --model "$out/run/model.pt" --baseline "$out/baseline/model.pt" --out "$out/report" \
    --bootstrap 1000 --annotate "$model"
  histostain evaluate "$EXTERNAL/cohort/manifest.csv" --cache "$EXTERNAL/cache_multiscale" \
    --model "$model" --baseline "$out/baseline/model.pt" --out "$out/external" --bootstrap 1000 \
    --external --annotate "$model"
  histostain evaluate "$FRESH/cohort/manifest.csv" --cache "$FRESH/cache_multiscale" \
    --model "$model" --baseline "$out/baseline/model.pt" --out "$out/fresh" --bootstrap 1000 \
    --external --annotate "$model" --metrics-key external_test_2
done
# the domain reference and temperature of the bundled files (issue 16): `histostain train` stores
# ones fitted on its validation fold; the bundled files carry ones fitted on a separate held-out
# simulated cohort instead (see that script)
bash scripts/annotate_bundled.sh "$RUNS"
