"""napari-histostain: predicted IHC positivity (P53, PD-L1, Ki-67) from H&E whole-slide images.

Importing the package is cheap: napari, Qt and torch are imported only where they are used.
"""

__version__ = "0.1.0"

#: Marker keys used everywhere (files, CLI, APIs) and their display names.
MARKERS = {"p53": "P53", "pdl1": "PD-L1", "ki67": "Ki-67"}
