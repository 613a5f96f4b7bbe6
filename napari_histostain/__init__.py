"""napari-histostain: predicted IHC positivity (P53, PD-L1, Ki-67) from H&E whole-slide images.

Importing the package is cheap: napari, Qt and torch are imported only where they are used.
"""

import os as _os

# torch's OpenMP threads spin-wait by default; beside our tile-reader threads that makes inference
# up to 5x slower on small machines. Passive waiting must be chosen before torch is imported.
_os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

__version__ = "0.1.0"

#: Marker keys used everywhere (files, CLI, APIs) and their display names.
MARKERS = {"p53": "P53", "pdl1": "PD-L1", "ki67": "Ki-67"}
