"""Which nuclei count: IHC indices are scored on tumour cells, so lymphocytes, fibroblasts, debris,
merged lymphocytes and nuclei in the stroma are left out, each with its reason (`EXCLUSION_NAMES`)."""

from __future__ import annotations

import numpy as np

from .params import EXCLUSION_NAMES, IHCParams


def merged_lymphocyte_like(
    area_um2: np.ndarray,
    hema: np.ndarray,
    dab: np.ndarray,
    lymphocyte_od: float,
    params: IHCParams = IHCParams(),
) -> np.ndarray:
    """Nuclei that look like overlapping lymphocytes merged into one blob, but for thinness:
    negative, at least the lymphocyte area, `merged_lymphocyte_density_ratio` x denser than a
    lymphocyte (`lymphocyte_od`: see `lymphocyte_density`)."""
    return (
        (area_um2 >= params.lymphocyte_area_um2)
        & (dab < params.thresholds[0])
        & (hema + dab > params.merged_lymphocyte_density_ratio * lymphocyte_od)
    )


def counted_cells(
    area_um2: np.ndarray,
    elongation: np.ndarray,
    width_um: np.ndarray,
    hema: np.ndarray,
    dab: np.ndarray,
    params: IHCParams = IHCParams(),
    inscribed_um: np.ndarray | None = None,
    context: np.ndarray | None = None,
) -> np.ndarray:
    """Which nuclei enter the indices (`exclusion_codes` == 0)."""
    return (
        exclusion_codes(area_um2, elongation, width_um, hema, dab, params, inscribed_um, context)
        == 0
    )


def exclusion_codes(
    area_um2: np.ndarray,
    elongation: np.ndarray,
    width_um: np.ndarray,
    hema: np.ndarray,
    dab: np.ndarray,
    params: IHCParams = IHCParams(),
    inscribed_um: np.ndarray | None = None,
    context: np.ndarray | None = None,
    membrane: np.ndarray | None = None,
) -> np.ndarray:
    """Why each nucleus is left out of the indices (int8 index into `EXCLUSION_NAMES`; 0: counted).
    All count with `cells="all"`; with `cells="tumour"` lymphocyte-, fibroblast-like and stromal
    nuclei and debris do not.

    Lymphocytes: small, dense and round (`lymphocyte_max_elongation`: a small elongated nucleus is
    a tumour nucleus, whatever its stain); dense fragments smaller than `fragment_area_um2`
    (karyorrhectic debris of necrosis, apoptotic bodies) go with them whatever their shape.
    Fibroblasts: long and thin, unless strongly DAB-stained (>= 2+): those are mitotic figures
    (Ki-67 positive by definition), which count. The counterstain's strength varies from slide
    to slide, so "dense" is also relative: denser than
    `lymphocyte_fibroblast_ratio` x the median density of the negative fibroblasts among the nuclei
    given (the slide's own stroma calibrates it), when there are enough of them. Overlapping
    lymphocytes merge into one larger blob: a negative nucleus above the lymphocyte area whose
    largest inscribed circle is thinner than `merged_lymphocyte_inscribed_um` and whose density is
    `merged_lymphocyte_density_ratio` x the lymphocyte density is taken for one (with `inscribed_um`).
    Indices are scored in the tumour, not in the stroma: with `context` (each nucleus' local
    background OD), nuclei in surroundings paler than `stroma_context_ratio` x those of the median
    counted nucleus are left out unless large (`stromal`). With `membrane` (PD-L1's stained
    membranes, which darken their cells' surroundings), membrane-positive and -negative nuclei are
    each judged against their own kind, so unstained tumour cells beside stained ones are not
    taken for stroma.
    """
    codes = np.zeros(len(area_um2), np.int8)
    if params.cells == "all":
        return codes
    density = hema + dab
    cls = np.digitize(dab, params.thresholds)
    fibroblast = (elongation > params.max_elongation) & (width_um < params.fibroblast_width_um)
    fibroblast &= cls < params.mitosis_class
    small = area_um2 < params.lymphocyte_area_um2
    dense = lymphocyte_density(density, fibroblast & (cls == 0), params)
    small_dense = small & (density > dense)
    fragment = small_dense & (area_um2 < params.fragment_area_um2)
    lymphocyte = small_dense & (elongation < params.lymphocyte_max_elongation) & ~fragment
    merged = np.zeros(len(area_um2), bool)
    if inscribed_um is not None:
        merged = merged_lymphocyte_like(area_um2, hema, dab, dense, params) & (
            inscribed_um < params.merged_lymphocyte_inscribed_um
        )
    others = fibroblast | lymphocyte | fragment | merged
    # stroma is judged among the nuclei that no other rule leaves out
    stained_membrane = membrane is not None and bool(np.any(membrane))
    stroma = (
        stromal(
            context,
            area_um2,
            ~others,
            params,
            positive=np.asarray(membrane, bool) if stained_membrane else cls > 0,
            by_class=stained_membrane,
        )
        if context is not None
        else np.zeros(len(area_um2), bool)
    )
    # one reason per nucleus: the first in EXCLUSION_NAMES that applies
    for name, mask in (
        ("stroma", stroma),
        ("merged lymphocytes", merged),
        ("debris", fragment),
        ("lymphocyte", lymphocyte),
        ("fibroblast", fibroblast),
    ):
        codes[mask] = EXCLUSION_NAMES.index(name)
    return codes


def stromal(
    context: np.ndarray,
    area_um2: np.ndarray,
    counted: np.ndarray,
    params: IHCParams = IHCParams(),
    positive: np.ndarray | None = None,
    by_class: bool = False,
) -> np.ndarray:
    """Nuclei in the stroma: their surroundings (`context`, the local background OD under the
    nucleus: cytoplasm or stroma) are paler than `stroma_context_ratio` x the median of the
    `counted` ones (tumour cytoplasm carries stain, stroma less), and they are smaller than
    `stroma_keep_area_ratio` x the median counted nucleus in the tumour (a large nucleus is a
    tumour nucleus wherever it lies). Judged only when at least `context_min_nuclei` are counted
    (0 turns it off). With `stroma_reference == "class"` (and `positive`), positive and negative
    nuclei are each compared with the median of their own class when it has that many. With
    `by_class` (`positive`: membrane-stained, PD-L1), see `_membrane_reference`."""
    none = np.zeros(len(context), bool)
    if params.context_min_nuclei <= 0 or int(counted.sum()) < params.context_min_nuclei:
        return none
    reference = np.full(len(context), float(np.median(context[counted])))
    if by_class and positive is not None:
        reference = _membrane_reference(context, counted, positive, reference, params)
    elif params.stroma_reference == "class" and positive is not None:
        # DAB spilt around positive nuclei raises their surroundings: each class is judged
        # against its own kind, so unstained tumour cells in pale cytoplasm are not "stroma"
        for group in (positive, ~positive):
            if int((counted & group).sum()) >= params.context_min_nuclei:
                reference[group] = float(np.median(context[counted & group]))
    pale = context < params.stroma_context_ratio * reference
    tumour = counted & ~pale
    if not tumour.any():
        return none
    return pale & (area_um2 < params.stroma_keep_area_ratio * float(np.median(area_um2[tumour])))


def _membrane_reference(
    context: np.ndarray,
    counted: np.ndarray,
    stained: np.ndarray,
    reference: np.ndarray,
    params: IHCParams,
) -> np.ndarray:
    """Stroma references beside stained membranes (PD-L1): a stained cell's surroundings carry
    its membrane, an unstained tumour cell's only its cytoplasm (about half to two-thirds as dark),
    stroma far less (a fifth). Where the unstained cells' median surroundings are at least
    `stroma_unstained_ratio` x the stained cells', the unstained sit in tumour, and each kind is
    judged against its own; otherwise most of them are stromal, and all are judged against the
    median of all counted cells (`reference`, as for other markers)."""
    out = reference.copy()
    enough = params.context_min_nuclei
    n_stained, n_unstained = int((counted & stained).sum()), int((counted & ~stained).sum())
    if n_stained < enough or n_unstained < enough:
        return out
    med_stained = float(np.median(context[counted & stained]))
    med_unstained = float(np.median(context[counted & ~stained]))
    if med_unstained >= params.stroma_unstained_ratio * med_stained:
        out[stained], out[~stained] = med_stained, med_unstained
    return out


def lymphocyte_density(
    density: np.ndarray, negative_fibroblasts: np.ndarray, params: IHCParams = IHCParams()
) -> float:
    """The density above which a small nucleus is a lymphocyte: `lymphocyte_od`, raised to
    `lymphocyte_fibroblast_ratio` x the median density of the negative fibroblasts when there are
    at least `calibration_fibroblasts` of them (a strongly counterstained slide)."""
    if int(negative_fibroblasts.sum()) < params.calibration_fibroblasts:
        return params.lymphocyte_od
    reference = float(np.median(density[negative_fibroblasts]))
    return max(params.lymphocyte_od, params.lymphocyte_fibroblast_ratio * reference)
