"""napari sample data: small simulated cases (H&E + one IHC), generated once into the user cache.

The first call renders a ~1.5 x 1.5 mm case at 0.5 um/px (a few seconds) into
`<user cache>/napari-histostain/samples/` (override with the `NAPARI_HISTOSTAIN_CACHE` environment
variable); later calls reuse the files.
"""

from __future__ import annotations

import os
from pathlib import Path

SAMPLE_SIZE_UM = 1536.0
SAMPLE_SEEDS = {"ki67": 2022, "p53": 2, "pdl1": 3}  # cases with a positive label
_VERSION = "v1"  # bump when the rendering changes, so stale cached samples are not reused


def cache_dir() -> Path:
    """Folder of the sample cases (created on demand)."""
    env = os.environ.get("NAPARI_HISTOSTAIN_CACHE")
    if env:
        return Path(env) / "samples"
    try:
        from platformdirs import user_cache_dir

        return Path(user_cache_dir("napari-histostain")) / "samples"
    except ImportError:  # pragma: no cover - platformdirs ships with napari
        return Path.home() / ".cache" / "napari-histostain" / "samples"


def sample_case_paths(marker: str) -> tuple[Path, Path]:
    """(H&E, IHC) paths of the sample case of `marker`, simulating it on first use."""
    from ..simulate import simulate_case

    case_id = f"sample_{marker}_{_VERSION}"
    folder = cache_dir() / case_id
    he = folder / f"{case_id}_HE.tiff"
    ihc = folder / f"{case_id}_{marker}.tiff"
    done = folder / f"{case_id}.json"
    if not (he.is_file() and ihc.is_file() and done.is_file()):
        simulate_case(
            cache_dir(),
            [marker],
            case_id=case_id,
            size_um=SAMPLE_SIZE_UM,
            mpp=0.5,
            seed=SAMPLE_SEEDS[marker],
        )
    return he, ihc


def _layers(marker: str) -> list:
    from .reader import read_slide_layer

    he, ihc = sample_case_paths(marker)
    out = []
    for path, name in (
        (he, f"simulated {marker} case: H&E"),
        (ihc, f"simulated {marker} case: IHC"),
    ):
        data, kwargs, kind = read_slide_layer(path)
        kwargs = dict(kwargs, name=name)
        out.append((data, kwargs, kind))
    # consecutive sections, not registered: the IHC starts hidden; toggle it to compare
    out[1][1]["visible"] = False
    return out


def simulated_ki67_case() -> list:
    """A simulated case: H&E and its Ki-67 IHC (consecutive sections)."""
    return _layers("ki67")


def simulated_p53_case() -> list:
    """A simulated case: H&E and its P53 IHC (consecutive sections)."""
    return _layers("p53")


def simulated_pdl1_case() -> list:
    """A simulated case: H&E and its PD-L1 IHC (consecutive sections)."""
    return _layers("pdl1")
