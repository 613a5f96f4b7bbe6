"""The simulator's Bayes-optimal reference for a simulated cohort (from its `cohort.json`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def bayes_reference(manifest_path: str | Path, model_path: str | Path | None = None,
                    marker: str | None = None) -> dict[str, Any] | None:
    """Bayes-optimal weighted F1 / AUC of the model's marker recorded by the simulator beside the
    manifest (`cohort.json`), or None for a cohort that was not simulated."""
    index = Path(manifest_path).parent / "cohort.json"
    if not index.is_file():
        return None
    try:
        meta = json.loads(index.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if marker is None and model_path is not None:
        from napari_histostain.model import read_model_config

        marker = read_model_config(model_path).marker
    ref = (meta.get("bayes_optimal") or {}).get(marker)
    if not ref:
        return None
    return {"weighted_f1": ref.get("best_weighted_f1"), "auc": ref.get("auc"),
            "accuracy": ref.get("accuracy_at_0.5"), "prevalence": ref.get("prevalence"),
            "difficulty": ref.get("difficulty"), "source": f"{index.name}: simulator Monte-Carlo "
            f"({ref.get('n_monte_carlo')} cases), best threshold on the exact posterior"}
