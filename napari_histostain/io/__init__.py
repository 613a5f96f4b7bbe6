"""Slide access: open any whole-slide image (`open_slide`), read it lazily, write files atomically.

Modules: `slide` (the `Slide` facade), `backends/` (one module per file family), `metadata` (facts
and pixel size), `native_tiles` / `tile_cache` / `pyramid` (fast tiles and the lazy dask pyramid),
`naming` (a slide's name), `manifest` (cohort tables), `atomic` (atomic writes), `synthetic` (slide
writer for tests and the simulator).
"""

from .errors import SlideError
from .metadata import MissingMppWarning, SlideInfo
from .slide import Slide, open_slide, slide_from_array

__all__ = [
    "MissingMppWarning",
    "Slide",
    "SlideError",
    "SlideInfo",
    "open_slide",
    "slide_from_array",
]
