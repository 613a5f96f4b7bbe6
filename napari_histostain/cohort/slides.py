"""A cohort's slides: their paths and unique output names, fingerprints, and the identity of the
models and the tile encoder."""

from __future__ import annotations

import dataclasses
import hashlib
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from .. import __version__
from ..errors import HistostainError
from ..io.fingerprint import file_sha256, slide_fingerprint
from ..io.manifest import ManifestError, read_manifest
from ..io.naming import slide_name
from .errors import CohortError

__all__ = [
    "CohortSlide",
    "cohort_slides",
    "model_version",
    "read_slide_manifest",
    "slide_fingerprint",
]

#: Manifest columns that may hold the slide path (first match wins).
MANIFEST_PATH_COLUMNS = ("slide", "path", "slide_path", "he_path", "file", "filename")


@dataclasses.dataclass(frozen=True)
class CohortSlide:
    """One slide of the cohort: its path, its output folder name and optional case id."""

    path: str
    name: str
    case_id: str = ""


def read_slide_manifest(manifest: str | Path) -> list[tuple[str, str]]:
    """(slide path, case id) pairs from a CSV manifest or a plain list of paths (one per line).

    A CSV needs one of the columns `slide`, `path`, `slide_path`, `he_path`, `file`, `filename`;
    `case_id` is carried into the summary. Relative paths are relative to the manifest's folder.
    """
    table = read_manifest(
        manifest, plain_list_column="slide", path_columns=MANIFEST_PATH_COLUMNS, what="manifest"
    )
    column = table.column(*MANIFEST_PATH_COLUMNS)
    if column is None:
        raise ManifestError(
            f"manifest {table.path}: no slide path column; name one of "
            f"{', '.join(MANIFEST_PATH_COLUMNS)} in the header row, or list one slide path per line."
        )
    case = table.column("case_id")
    return [
        (str(table.resolve(row[column])), row.get(case, "") if case else "")
        for row in table.rows
        if row[column]
    ]


def cohort_slides(
    paths: Iterable[str | Path] = (), manifest: str | Path | None = None
) -> list[CohortSlide]:
    """The cohort's slides (duplicates dropped) with unique output folder names (file stems)."""
    items = [(str(Path(p).expanduser()), "") for p in paths]
    if manifest is not None:
        items += read_slide_manifest(manifest)
    seen: dict[str, str] = {}
    for path, case in items:
        key = os.path.abspath(path)
        if key not in seen or (case and not seen[key]):
            seen[key] = case
    if not seen:
        raise CohortError("no slides given: pass slide files and/or --manifest FILE.")
    stems: dict[str, int] = {}
    for key in seen:
        stem = slide_name(key)
        stems[stem] = stems.get(stem, 0) + 1
    slides = []
    for key, case in seen.items():
        stem = slide_name(key)
        if stems[stem] > 1:  # same file name in different folders: keep them apart
            stem = f"{stem}-{hashlib.sha1(key.encode()).hexdigest()[:8]}"
        slides.append(CohortSlide(key, stem, case))
    return slides


def model_version(markers: Sequence[str], models: dict[str, str] | None = None) -> str:
    """An identity of the models used: package version + a hash of each marker's model file.

    `models` maps marker -> model file; missing markers use the bundled model. A model that cannot
    be found counts as "none" (the prediction task then reports the real error).
    """
    h = hashlib.sha256(__version__.encode())
    for marker in sorted(markers):
        path: str | Path | None = (models or {}).get(marker)
        if path is None:
            try:
                from ..engine.model_files import bundled_model_path

                path = bundled_model_path(marker)
            except Exception:
                path = None
        digest = "none"
        if path is not None and Path(path).is_file():
            digest = file_sha256(path)
        h.update(f"{marker}={digest}\n".encode())
    return h.hexdigest()[:16]


def encoder_identity(markers: Sequence[str], predict: Any) -> str:
    """The fingerprint of the tile encoder a cohort's prediction will use (`predict.encoder`, else
    the models' `encoder_id`), without running a TorchScript file; "" when it cannot be known
    (the prediction task then reports why)."""
    from ..engine.encoders import TileEncoder, encoder_fingerprint
    from ..engine.model_files import bundled_model_path, read_model_config

    if isinstance(predict.encoder, TileEncoder):
        return predict.encoder.fingerprint
    try:
        if predict.encoder is not None:
            return encoder_fingerprint(predict.encoder, allow_torchscript=True)
        names = set()
        for m in markers:
            spec = predict.models.get(m)
            if spec is None or isinstance(spec, (str, Path)):
                names.add(read_model_config(spec or bundled_model_path(m)).encoder_id)
            else:
                names.add(spec[1].encoder_id)
        return encoder_fingerprint(names.pop()) if len(names) == 1 else ""
    except HistostainError:
        return ""
