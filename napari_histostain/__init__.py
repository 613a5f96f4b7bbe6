"""napari-histostain: predicted IHC positivity (P53, PD-L1, Ki-67) from H&E whole-slide images.

Importing the package is cheap: napari, Qt and torch are imported only where they are used. The
package map: `io/` (slides and files), `engine/` (H&E -> predicted IHC), `results/` (maps and
exports), `ihc/` (quantifying real IHC), `cohort/` (many slides on dask), `simulate/` (simulated
cohorts), `training/` (fitting the model), `cli/` (the `histostain` commands), `plugin/` (napari
contributions) and `_qt/` (widgets); see docs/architecture.md.
"""

import os as _os

# torch's OpenMP threads spin-wait by default; beside our tile-reader threads that makes inference
# up to 5x slower on small machines. Passive waiting must be chosen before torch is imported.
_os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

__version__ = "0.1.0"

# A source checkout keeps `training/` at the repository root (installs map it to
# napari_histostain.training): make it importable from the checkout too (`python -m ...` there).
_root = _os.path.dirname(_os.path.dirname(_os.path.abspath(__file__)))
if _os.path.isfile(_os.path.join(_root, "training", "__init__.py")) and _os.path.isfile(
    _os.path.join(_root, "setup.cfg")
):
    __path__.append(_root)
