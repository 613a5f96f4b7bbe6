"""Print the bundled models' domain verdict on every real H&E image of ../shared/data (issue 16).

    python scripts/real_he_verdicts.py [MODELS_DIR]   (default: the bundled models)
One JSON line per image: tiles, in-domain tiles, out-of-domain share, median tile domain score,
and each marker's call status and reason.
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from engine.test_real_he_out_of_domain import REAL_HE, _slide  # noqa: E402

from napari_histostain.engine.predict import PredictOptions, predict_slide  # noqa: E402
from napari_histostain.markers import MARKERS  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("models_dir", nargs="?", help="folder of histostainalign-<marker>.pt files")
    args = p.parse_args()
    models = {}
    if args.models_dir:
        models = {m: str(Path(args.models_dir) / f"histostainalign-{m}.pt") for m in MARKERS}
    for parts, mpp in REAL_HE:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            pred = predict_slide(_slide(parts, mpp), tuple(MARKERS), PredictOptions(models=models))
        scores = pred.domain_score if pred.domain_score is not None else np.zeros(0)
        print(
            json.dumps(
                {
                    "image": "/".join(parts),
                    "mpp_given": mpp,
                    **(pred.domain or {}),
                    "median_tile_score": float(np.median(scores)) if scores.size else None,
                    "calls": {
                        k: [m.call_status, m.no_call_reason, round(m.probability, 3)]
                        for k, m in pred.markers.items()
                    },
                }
            ),
            flush=True,
        )


if __name__ == "__main__":
    main()
