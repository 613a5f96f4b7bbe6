"""Quantify real hematoxylin-DAB IHC slides: Ki-67 index, H-score, PD-L1 TPS, p53 pattern.

`stains` (optical density, stain vectors, the H&E check), `params` (`IHCParams`), `nuclei` (the
`Nuclei` table; detection and measurement in a tile), `cell_rules` (which nuclei count),
`scores` (indices and weak labels), `results` (`IHCResult` and its files), `quantify` (slides and
images, tile by tile), `figures`, `synthetic` (a DAB renderer with known truth for tests).
"""

from .errors import IHCCancelled, IHCError, NotDabError
from .figures import CLASS_COLOURS, save_overlay_figure
from .nuclei import Nuclei, TileQuantification, quantify_tile
from .params import CLASS_NAMES, EXCLUSION_NAMES, IHCParams, with_thresholds
from .quantify import observe_slide, quantify_image, quantify_slide, slide_grid
from .results import IHCResult
from .scores import p53_pattern, summarise, tile_positivity, weak_label
from .stains import StainVectors, estimate_stains, optical_density, standard_stains

__all__ = [
    "CLASS_COLOURS",
    "CLASS_NAMES",
    "EXCLUSION_NAMES",
    "IHCCancelled",
    "IHCError",
    "IHCParams",
    "IHCResult",
    "NotDabError",
    "Nuclei",
    "StainVectors",
    "TileQuantification",
    "estimate_stains",
    "observe_slide",
    "optical_density",
    "p53_pattern",
    "quantify_image",
    "quantify_slide",
    "quantify_tile",
    "save_overlay_figure",
    "slide_grid",
    "standard_stains",
    "summarise",
    "tile_positivity",
    "weak_label",
    "with_thresholds",
]
