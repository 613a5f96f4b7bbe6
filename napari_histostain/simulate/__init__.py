"""Paired H&E / IHC cohort simulator with known ground truth (`histostain simulate`).

`simulate_case` renders one case (one H&E plus one IHC section per marker, consecutive sections,
not registered); `simulate_cohort` renders many and writes `manifest.csv` + `cohort.json`
(with the Bayes-optimal weighted F1 / AUC per marker). See docs/simulator.md.

Names are imported on first use, so `import napari_histostain.simulate.cli` stays cheap.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "bayes_reference": "bayes",
    "CaseModel": "cohort",
    "MANIFEST_COLUMNS": "cohort",
    "SimulatedCase": "cohort",
    "case_seed": "cohort",
    "load_case_model": "cohort",
    "read_manifest": "cohort",
    "simulate_case": "cohort",
    "simulate_cohort": "cohort",
    "DEFAULT_CUTOFFS": "params",
    "SIM_MARKERS": "params",
    "SimulationError": "params",
    "load_truth": "truth",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        value = getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(list(globals()) + __all__)
