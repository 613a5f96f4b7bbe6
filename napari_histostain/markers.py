"""The one registry of the markers napari-histostain predicts and measures: P53, PD-L1, Ki-67.

Every module takes marker keys, display names, class names, colours and cut-offs from here.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from .errors import HistostainError


@dataclass(frozen=True)
class Marker:
    """What the tool knows about one IHC marker."""

    key: str  # used everywhere: files, CLI, APIs
    name: str  # display name
    class_names: tuple[str, str]  # slide classes, negative first
    colour: tuple[int, int, int]  # positive-class colour (QuPath, reports)
    measured: str  # what the IHC quantifier reports for it
    weak_label_cutoff: float | None  # measured % at and above which the weak label is positive


#: The markers, in the order shown everywhere.
REGISTRY: dict[str, Marker] = {
    "p53": Marker("p53", "P53", ("wild-type", "aberrant"), (160, 82, 45), "p53 pattern", None),
    "pdl1": Marker("pdl1", "PD-L1", ("negative", "positive"), (214, 39, 40), "TPS", 1.0),
    "ki67": Marker("ki67", "Ki-67", ("low", "high"), (148, 60, 20), "Ki-67 index", 20.0),
}
#: Marker keys -> display names.
MARKERS: dict[str, str] = {k: m.name for k, m in REGISTRY.items()}
#: Colour of negative tiles and cells (QuPath, reports).
NEGATIVE_COLOUR = (70, 110, 200)


class MarkerError(HistostainError):
    """A marker key that the tool does not know."""


def marker_name(key: str) -> str:
    """Display name of a marker key (the key itself when unknown)."""
    return MARKERS.get(key, key)


def get_marker(key: str) -> Marker:
    """The registry entry of `key`; a clear error for an unknown key."""
    try:
        return REGISTRY[key]
    except KeyError:
        raise MarkerError(f"unknown marker {key!r}; choose from: {', '.join(REGISTRY)}") from None


def check_markers(keys: str | Iterable[str]) -> list[str]:
    """Marker keys without duplicates, in the given order; unknown or no marker is an error."""
    keys = [keys] if isinstance(keys, str) else list(dict.fromkeys(keys))
    if not keys:
        raise MarkerError(f"no marker chosen; choose from: {', '.join(REGISTRY)}")
    for k in keys:
        get_marker(k)
    return keys


def weak_label_cutoff(key: str) -> float:
    """The measured % at and above which a marker's weak label is positive (p53: by pattern)."""
    cutoff = get_marker(key).weak_label_cutoff
    if cutoff is None:
        raise MarkerError(f"{marker_name(key)} weak labels come from its pattern, not a cut-off.")
    return cutoff
