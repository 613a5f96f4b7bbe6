"""The one rule for a slide's name, used by predict, cohorts, the reader, IHC and exports.

A slide's name is its file name without its format suffix: `case.v2.svs` -> `case.v2`,
`s.ome.tiff` -> `s`. A DICOM whole-slide image is a folder of .dcm files, so a DICOM file or
folder is named after the folder: `dir/1.2.3.dcm` -> `dir`.
"""

from __future__ import annotations

from pathlib import Path

#: Suffixes taken off as one (checked first, longest first).
COMPOUND_SUFFIXES = (".ome.tiff", ".ome.tif")


def slide_name(path: str | Path) -> str:
    """The name of the slide at `path` (a file or a DICOM folder); "slide" when nothing is left."""
    p = Path(path)
    if p.suffix.lower() == ".dcm":
        return p.parent.name or "slide"
    if p.is_dir():
        return p.name or "slide"
    name = p.name
    for suffix in COMPOUND_SUFFIXES:
        if name.lower().endswith(suffix):
            return name[: -len(suffix)] or "slide"
    return p.stem or "slide"
