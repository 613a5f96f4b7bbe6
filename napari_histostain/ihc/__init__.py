"""Quantify real hematoxylin-DAB IHC slides: Ki-67 index, H-score, PD-L1 TPS, p53 pattern.

`stains` (optical density, stain vectors, the H&E check), `params` (`IHCParams`), `nuclei` (the
`Nuclei` table; detection and measurement in a tile), `cell_rules` (which nuclei count),
`scores` (indices and weak labels), `corrections` (thresholds and nuclei corrected by hand), `ki67_report` (global and hot-spot Ki-67), `pdl1` (TPS, CPS,
immune cells), `reporting` (those on a result), `results` (`IHCResult` and its files), `quantify` (slides and
images, tile by tile), `figures`, `synthetic` (a DAB renderer with known truth for tests).
"""

from .errors import IHCCancelled, IHCError, NotDabError
from .figures import CLASS_COLOURS, save_overlay_figure
from .ki67_report import HotSpot, Ki67Report, find_hotspot, ki67_report, net_grade
from .nuclei import Nuclei, TileQuantification, quantify_tile
from .params import CLASS_NAMES, EXCLUSION_NAMES, IHCParams, with_thresholds
from .pdl1 import PDL1Scores, pdl1_scores, result_pdl1_scores
from .quantify import observe_slide, quantify_image, quantify_slide, slide_grid
from .reporting import ReportOptions, add_reported_scores
from .results import IHCResult
from .scores import p53_pattern, summarise, tile_positivity, weak_label
from .stains import StainVectors, estimate_stains, optical_density, standard_stains

__all__ = [
    "CLASS_COLOURS",
    "CLASS_NAMES",
    "EXCLUSION_NAMES",
    "HotSpot",
    "IHCCancelled",
    "IHCError",
    "IHCParams",
    "IHCResult",
    "Ki67Report",
    "NotDabError",
    "Nuclei",
    "PDL1Scores",
    "ReportOptions",
    "StainVectors",
    "TileQuantification",
    "add_reported_scores",
    "estimate_stains",
    "find_hotspot",
    "ki67_report",
    "net_grade",
    "observe_slide",
    "optical_density",
    "p53_pattern",
    "pdl1_scores",
    "quantify_image",
    "quantify_slide",
    "quantify_tile",
    "result_pdl1_scores",
    "save_overlay_figure",
    "slide_grid",
    "standard_stains",
    "summarise",
    "tile_positivity",
    "weak_label",
    "with_thresholds",
]
