"""The model card's "Domain reference and calibration" section, from a model file's JSON config
(used by scripts/model_cards.py; `python scripts/card_guard.py` refreshes the section in the three
bundled cards without the training runs)."""

from __future__ import annotations

import json
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HEADING = "## Domain reference and calibration"


def guard_section(mcfg: dict) -> str:
    """Markdown section of the domain reference and calibration stored in a model config."""
    dom, cal = mcfg.get("domain") or {}, mcfg.get("calibration") or {}
    if not dom and not cal:
        return ""
    lines = [HEADING, ""]
    if dom:
        lines += [
            f"- Domain reference ({dom['method']}, {dom['dims']} dims): {dom['fitted_on']}. A "
            f"tile is out of domain above the {dom['tile_cut']:.0f}th percentile of held-out "
            f"training-domain tiles; a slide gets no call (`out_of_domain`) when more than "
            f"{dom['max_out_share']:.0%} of its tiles are, when their mean domain score is above "
            f"{dom.get('max_mean_score', float('nan')):.1f}, or when fewer than "
            f"{dom['min_in_domain_tiles']} are in domain (2 % false-flag target; "
            f"{dom.get('kept_back_flagged', '?')} of {dom.get('kept_back_slides', '?')} kept-back "
            "slides flagged).",
        ]
    if cal:
        how = f"T = {cal['temperature']:.3f}" + (
            f", bias {cal['bias']:+.3f}" if cal.get("bias") else ""
        )
        chosen = f"; chosen by {cal['chosen_by']}" if cal.get("chosen_by") else ""
        lines += [f"- Calibration: {cal['method']} ({how}), fitted on {cal['fitted_on']}{chosen}."]
    metrics = mcfg.get("metrics") or {}
    tested_raw = [
        k
        for k, v in metrics.items()
        if isinstance(v, dict) and "wilcoxon_p_per_case_log_loss" in v and "temperature" not in v
    ]
    if cal and tested_raw:  # evaluated before the file had a calibration
        lines += [
            "- The Wilcoxon log-loss tests against the CE-only baseline in the sections above were "
            "run before either file was calibrated (raw softmax probabilities). This file is "
            "shipped with the calibration just above; the paired log-loss test with both models "
            "guarded and calibrated the same way, on fresh300, is in "
            "[domain-and-calibration.md](domain-and-calibration.md) (Paired test against the "
            "CE-only baseline) and is the one that describes this file as shipped."
        ]
    lines += [
        "- Measured on the untouched simulated cohort (fresh300) and on shifted cohorts: "
        "[domain-and-calibration.md](domain-and-calibration.md).",
        "",
    ]
    return "\n".join(lines) + "\n"


def refresh(marker: str) -> None:
    """Write (or replace) the section in docs/model-card-<marker>.md, before "## Intended use"."""
    card = ROOT / f"docs/model-card-{marker}.md"
    mcfg = json.loads(
        (ROOT / f"napari_histostain/models/histostainalign-{marker}.json").read_text()
    )
    text = re.sub(rf"{HEADING}\n.*?(?=## )", "", card.read_text(), flags=re.S)
    card.write_text(text.replace("## Intended use", guard_section(mcfg) + "## Intended use", 1))


if __name__ == "__main__":
    import argparse

    argparse.ArgumentParser(description=__doc__.splitlines()[0]).parse_args()
    for m in ("p53", "pdl1", "ki67"):
        refresh(m)
