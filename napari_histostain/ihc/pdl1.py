"""PD-L1 as pathology reports it: TPS, CPS and the immune cells.

- TPS: membrane-positive tumour cells / viable tumour cells x 100 (the counted nuclei).
- CPS: (membrane-positive tumour cells + membrane-positive lymphocytes and macrophages) / viable
  tumour cells x 100, capped at 100 (gastric, head and neck, cervical, oesophageal cancer).
- Immune cells: the nuclei `cell_rules` leaves out as lymphocytes (`IMMUNE_EXCLUSIONS`); one is
  PD-L1 positive when its membrane is stained round most of the cell, as TPS scores tumour cells
  (`Nuclei.membrane`, `ihc.membrane`). Macrophages are not told apart (counting round stromal
  nuclei as immune cells was tried: it over-counted, taking in stained tumour cells at the
  tumour's edge).
  `immune_positive_pct` is the positive share of the immune cells, `immune_cell_pct` the immune
  cells' share of tumour and immune cells together.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

from .params import EXCLUSION_NAMES

#: exclusion reasons that mark immune cells (lymphocytes; merged lymphocytes are clusters of them)
IMMUNE_EXCLUSIONS = ("lymphocyte", "merged lymphocytes")
#: CPS is capped at this value
CPS_CAP = 100.0
#: viable tumour cells a PD-L1 score needs (PD-L1 IHC 22C3 pharmDx interpretation)
MIN_TUMOUR_CELLS = 100


@dataclass(frozen=True)
class PDL1Scores:
    """TPS, CPS and immune-cell counts of a slide or region."""

    tps: float
    cps: float
    n_tumour: int
    n_tumour_positive: int
    n_immune: int
    n_immune_positive: int
    immune_positive_pct: float
    immune_cell_pct: float
    insufficient: bool  # fewer than MIN_TUMOUR_CELLS viable tumour cells

    def to_dict(self) -> dict:
        return {
            k: (None if isinstance(v, float) and not math.isfinite(v) else v)
            for k, v in asdict(self).items()
        }


def cps(n_tumour_positive: int, n_immune_positive: int, n_tumour: int) -> float:
    """Combined positive score, capped at 100 (NaN without tumour cells)."""
    if n_tumour <= 0:
        return float("nan")
    return min(CPS_CAP, (n_tumour_positive + n_immune_positive) / n_tumour * 100.0)


def immune_mask(excluded: np.ndarray) -> np.ndarray:
    """(K,) bool: the nuclei left out as immune cells (`IMMUNE_EXCLUSIONS`)."""
    codes = [EXCLUSION_NAMES.index(name) for name in IMMUNE_EXCLUSIONS]
    return np.isin(np.asarray(excluded), codes)


def pdl1_scores(
    counted: np.ndarray, excluded: np.ndarray, membrane: np.ndarray, keep: np.ndarray | None = None
) -> PDL1Scores:
    """Scores from each nucleus' counted flag, exclusion code and membrane ring (within `keep`)."""
    counted = np.asarray(counted, bool)
    membrane = np.asarray(membrane, bool)
    immune = immune_mask(excluded)
    if keep is not None:
        counted, immune = counted & keep, immune & keep
    n_t, n_tp = int(counted.sum()), int((counted & membrane).sum())
    n_i, n_ip = int(immune.sum()), int((immune & membrane).sum())
    return PDL1Scores(
        tps=n_tp / n_t * 100.0 if n_t else float("nan"),
        cps=cps(n_tp, n_ip, n_t),
        n_tumour=n_t,
        n_tumour_positive=n_tp,
        n_immune=n_i,
        n_immune_positive=n_ip,
        immune_positive_pct=n_ip / n_i * 100.0 if n_i else float("nan"),
        immune_cell_pct=n_i / (n_t + n_i) * 100.0 if n_t + n_i else float("nan"),
        insufficient=n_t < MIN_TUMOUR_CELLS,
    )


def result_pdl1_scores(result, tiles: np.ndarray | None = None) -> PDL1Scores:
    """`pdl1_scores` of an `IHCResult` (over `tiles`: indices or a mask; default all)."""
    nuc = result.nuclei
    keep = None
    if tiles is not None:
        in_tiles = np.zeros(len(result.counts), bool)
        in_tiles[tiles] = True
        keep = in_tiles[nuc.tile]
    return pdl1_scores(nuc.counted, nuc.excluded, nuc.membrane, keep)
