"""Settings of IHC quantification (`IHCParams`) and the names of nucleus classes and exclusions.

Lengths are micrometres, densities log10 optical-density units. The settings are grouped by purpose
in the order a nucleus meets them: detection, scoring, which cells count, PD-L1 membranes, p53
patterns and weak labels, reading.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Any

from ..markers import weak_label_cutoff
from .errors import IHCError

#: Nucleus classes by mean DAB optical density.
CLASS_NAMES = ("negative", "1+", "2+", "3+")
P53_PATTERNS = ("wild-type", "overexpression", "null")
#: why a nucleus is left out of the indices (`cell_rules.exclusion_codes`; code 0: it is counted)
EXCLUSION_NAMES = (
    "",
    "fibroblast",
    "lymphocyte",
    "debris",
    "merged lymphocytes",
    "stroma",
    "by hand",  # left out by a user's correction (`corrections`)
)


@dataclass(frozen=True)
class IHCParams:
    """Settings of the quantification; lengths in micrometres, densities in log10 OD units."""

    # -- scoring: mean nuclear DAB OD for 1+ / 2+ / 3+
    thresholds: tuple[float, float, float] = (0.2, 0.4, 0.6)
    # -- nucleus detection
    detection: str = "auto"  # "standard", "real-fields" (`DETECTION_PRESETS`) or "auto": per tile
    real_field_max_glass: float = 0.2  # auto: real-fields where at most this share of the ground
    # between nuclei is glass (the rest counterstained / DAB-tinted cytoplasm and stroma)
    nucleus_radius_um: float = 3.5  # typical nucleus radius: sets smoothing and seed spacing
    nucleus_scale: str = "fixed"  # "field": nucleus_radius_um measured per tile (`nucleus_scale`);
    # "seeds": only the seeds' (blob sizes, spacing) measured so
    nucleus_scale_max: float = 2.5  # ... its granulometry searched up to this x nucleus_radius_um
    nucleus_scale_factor: float = 1.2  # ... and its median object radius times this
    min_nucleus_area_um2: float = 8.0
    nucleus_od: float = 0.08  # hematoxylin(+DAB) OD a nucleus pixel exceeds at least
    nucleus_contrast: float = 0.05  # ... and by this much its local background (white top-hat)
    nucleus_od_dense: float = 0.5  # OD above which a pixel is nucleus whatever its surroundings
    nucleus_core_fraction: float = 0.6  # DAB also measured where depth >= this x the deepest
    seed_spacing: float = 0.7  # nucleus centres at least this x nucleus_radius_um apart
    seeds: str = "distance"  # nucleus centres: "distance" (to the background) or "blob" (LoG)
    blob_od: float = 0.1  # OD scale of the blob seeds' log compression
    blob_distance_weight: float = 0.0  # weight of the distance in the blob seeds' relief
    blob_scales: tuple[float, ...] = (1.0, 1.5)  # nucleus sizes (x nucleus_radius_um) of blob seeds
    blob_min: float = 0.05  # least blob response of a seed
    blob_num_sigma: int = 5  # with seeds "log": sizes tried between the blob_scales
    blob_overlap: float = 0.5  # ... and overlap above which the smaller of two blobs is dropped
    blob_stains: str = (
        "sum"  # blob seeds on hematoxylin + DAB ("sum") or also on hematoxylin ("both")
    )
    blob_max_od: float = (
        100.0  # stain OD clipped here before blob seeds (saturated pixels are noise)
    )
    negative_min_hema: float = 0.0  # a negative nucleus has at least this hematoxylin OD ...
    negative_min_hema_fraction: float = 0.0  # ... and this share of its OD (else: not a nucleus)
    dab_baseline: str = "none"  # nuclear DAB scored as is ("none") or above the field's ("field")
    # -- which cells count
    cells: str = (
        "tumour"  # "tumour": leave lymphocyte/fibroblast-like and stromal nuclei out; "all"
    )
    lymphocyte_area_um2: float = 38.0  # nuclei smaller than this and ...
    lymphocyte_od: float = 0.28  # ... denser (mean hematoxylin + DAB OD) than this: lymphocytes
    lymphocyte_fibroblast_ratio: float = 1.1  # ... and than this x the slide's fibroblast density
    lymphocyte_max_elongation: float = 1.3  # ... and rounder than this (major / minor axis),
    fragment_area_um2: float = 19.0  # ... or, whatever the shape, smaller than this: debris
    merged_lymphocyte_inscribed_um: float = 3.4  # larger negative nuclei thinner than this ...
    merged_lymphocyte_density_ratio: float = 1.8  # ... and this x denser: merged lymphocytes
    stroma_context_ratio: float = 0.85  # nuclei in a background this x paler than usual: stroma
    stroma_keep_area_ratio: float = 1.5  # ... unless this x larger than the usual tumour nucleus
    context_stain: str = "capped"  # surroundings' stain: "all", "hematoxylin" or "capped" DAB
    context_dab_cap: float = 0.1  # with "capped": DAB counts up to this OD
    stroma_reference: str = "all"  # surroundings compared with all counted nuclei, or "class"
    stroma_unstained_ratio: float = 0.4  # PD-L1: unstained cells in surroundings >= this x the
    # stained cells' are in tumour (judged among themselves), else mostly stromal
    context_min_nuclei: int = 20  # ... judged when at least this many nuclei are counted (0: off)
    calibration_fibroblasts: int = 20  # fibroblast-like nuclei needed for that calibration
    max_elongation: float = 2.0  # nuclei longer than this x their width and ...
    fibroblast_width_um: float = 5.0  # ... thinner than this are fibroblasts, unless
    mitosis_class: int = 3  # ... of this class or above: mitotic figures (4: no such exception)
    # -- tissue, PD-L1 membranes, p53 patterns, weak labels, reading
    tissue_od: float = 0.15  # summed RGB OD above which a pixel is tissue (not glass)
    membrane_reach_um: float = 6.0  # a cell's membrane is searched up to this beyond its nucleus
    membrane_sectors: int = 16  # ... in this many angular sectors around the nucleus
    membrane_nucleus_rim_um: float = 1.5  # ... and in this outer rim of the nucleus' region
    membrane_od: float = 0.2  # DAB OD of a stained membrane pixel
    membrane_coverage: float = 0.625  # share of sectors stained for a membrane-positive cell
    p53_strong_class: int = 2  # nuclei of this class or above count as "strongly positive"
    p53_overexpression: float = 0.8  # strongly positive fraction for "overexpression"
    p53_null: float = 0.025  # positive fraction below which p53 is "null" (stray controls)
    ki67_cutoff: float = weak_label_cutoff("ki67")  # Ki-67 index (%) for the weak label 1
    pdl1_cutoff: float = weak_label_cutoff("pdl1")  # PD-L1 TPS (%) for the weak label 1
    eosin_fraction_max: float = 0.2  # tissue fraction with eosin above which an image is H&E
    analysis_mpp: float = 0.5  # read the coarsest pyramid level not coarser than this


#: nucleus detection presets (`with_detection`, `histostain quantify --detection`). "standard": as
#: tuned on the simulator (nuclei where the stain stands out from a near-white background, seeds by
#: distance). "real-fields": for real bright-field fields with a stained background and pale
#: negative nuclei (BCData: docs/ihc.md) - one seed per nucleus-sized blob of scale space (skimage
#: `blob_log`) of hematoxylin + DAB and of hematoxylin alone, nuclear DAB judged above the field's
#: own background DAB, nuclei 9 um across (40x breast tumour nuclei) and the seeds' scale measured
#: per tile (`nucleus_scale="seeds"`: docs/ihc.md, "Per-field nucleus scale"). "auto" (the default):
#: Ki-67 tiles whose ground between nuclei is tissue rather than glass (`real_field_max_glass`)
#: get "real-fields", the others "standard" (`resolve_detection`).
DETECTION_PRESETS: dict[str, dict[str, Any]] = {
    "auto": {},
    "standard": {},
    "real-fields": {
        "seeds": "log",
        "blob_stains": "both",
        "dab_baseline": "field",
        "nucleus_radius_um": 4.5,
        "nucleus_scale": "seeds",
    },
}
#: markers whose tiles "auto" may read as real fields (the only one checked on real cells: Ki-67)
AUTO_DETECTION_MARKERS = ("ki67",)


def with_detection(params: IHCParams, name: str) -> IHCParams:
    """`params` with the nucleus detection preset `name` (`DETECTION_PRESETS`)."""
    if name not in DETECTION_PRESETS:
        raise IHCError(f"unknown detection {name!r}; choose one of {', '.join(DETECTION_PRESETS)}.")
    return replace(params, detection=name, **DETECTION_PRESETS[name])


def resolve_detection(params: IHCParams, marker: str, ground_glass: float) -> IHCParams:
    """The detection settings one tile is read with: with `detection == "auto"`, a Ki-67 tile where
    at most `real_field_max_glass` of the ground between nuclei is glass (`nuclei.ground_glass`: a
    real field, its cytoplasm and stroma counterstained or DAB-tinted) gets the "real-fields"
    preset's settings - those the caller left at their defaults - and any other tile "standard"."""
    if params.detection != "auto" or marker not in AUTO_DETECTION_MARKERS:
        return params
    if not ground_glass <= params.real_field_max_glass:  # NaN (no ground): standard
        return params
    defaults = IHCParams()
    preset = DETECTION_PRESETS["real-fields"]
    changed = {k: v for k, v in preset.items() if getattr(params, k) == getattr(defaults, k)}
    return replace(params, detection="real-fields", **changed)


def with_settings(params: IHCParams, settings: Iterable[str]) -> IHCParams:
    """`params` with `NAME=VALUE` settings (a script's `--set`): each value read as the field's
    type, tuples as comma-separated numbers."""
    for item in settings:
        key, _, value = item.partition("=")
        current = getattr(params, key)
        new: Any = (
            tuple(float(v) for v in value.split(","))
            if isinstance(current, tuple)
            else type(current)(value)
        )
        params = replace(params, **{key: new})
    return params


def with_thresholds(params: IHCParams, thresholds: tuple[float, float, float]) -> IHCParams:
    """`params` with other 1+/2+/3+ thresholds (checked to increase)."""
    t = tuple(float(v) for v in thresholds)
    if len(t) != 3 or not (0 < t[0] < t[1] < t[2]):
        raise IHCError(f"thresholds must be three increasing positive OD values, got {thresholds}.")
    return replace(params, thresholds=t)
