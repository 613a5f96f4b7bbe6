"""Which layer the Slide box offers first: an explicit rule, never a hidden or IHC-looking layer silently.

Rule: among the layers that can be predicted (`can_predict`), keep the user's own choice while that
layer exists; else take the best by, in order: visible and H&E-looking, H&E-looking, visible, the
active layer, the newest. A hidden or IHC-looking choice is offered but Predict asks first
(`needs_confirmation`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .ihc_panel import marker_from_name


def can_predict(layer: Any) -> bool:
    """A slide opened with the HistoStain reader, or any RGB image layer (not our own overlays)."""
    meta = getattr(layer, "metadata", {}) or {}
    if "slide_path" in meta:
        return True
    return bool(getattr(layer, "rgb", False)) and getattr(layer, "ndim", 0) == 2


def looks_ihc(layer: Any) -> bool:
    """Whether the layer's name or file name says IHC (or a marker, and not H&E)."""
    meta = getattr(layer, "metadata", {}) or {}
    for text in (layer.name, Path(str(meta.get("slide_path", ""))).stem):
        low = text.lower()
        he_like = "h&e" in low or "hne" in low or low.endswith(("_he", " he", ": he", "-he"))
        if he_like:
            continue
        if "ihc" in low or "dab" in low or marker_from_name(text) is not None:
            return True
    return False


def needs_confirmation(layer: Any) -> str | None:
    """Why predicting `layer` should be confirmed first (hidden, IHC-looking), or None."""
    why = []
    if not layer.visible:
        why.append("is hidden")
    if looks_ihc(layer):
        why.append("looks like an IHC slide (the models expect H&E)")
    return " and ".join(why) or None


def choose_slide(layers: list[Any], user_choice: str | None, active: Any | None) -> str | None:
    """The name the Slide box shows (see the module docstring); None without candidates."""
    cands = [ly for ly in layers if can_predict(ly)]
    names = [ly.name for ly in cands]
    if user_choice in names:
        return user_choice
    if not cands:
        return None

    def rank(k: int) -> tuple:
        ly = cands[k]
        he = not looks_ihc(ly)
        return (ly.visible and he, he, bool(ly.visible), ly is active, k)

    return cands[max(range(len(cands)), key=rank)].name


def layer_mpp(layer: Any) -> float | None:
    """The pixel size (um/px) an RGB image layer states through its scale in um, else None."""
    units = [str(u) for u in getattr(layer, "units", ())][-2:]
    scale = [float(v) for v in layer.scale[-2:]]
    in_um = bool(units) and all(u in ("micrometer", "micron", "um", "µm") for u in units)
    if in_um and scale[0] > 0 and abs(scale[0] - scale[1]) <= 1e-6 * scale[0]:
        return scale[0]
    return None
