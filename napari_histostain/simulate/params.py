"""Per-case latent biology, its (noisy) H&E correlates, and argument checking for the simulator.

Each marker has a latent value drawn from a prior (Ki-67 proliferation index k, P53 instability
score g, PD-L1 tumour proportion score s) and a label from a cutoff on it. The H&E morphology is
driven by a *morphology drive* z = latent + difficulty * sd * noise; every H&E parameter linked to a
marker is a monotone function of its z, so the best any classifier can do from the H&E is the
Bayes-optimal decision on z (see `bayes.py`).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import numpy as np

from ..errors import HistostainError
from ..markers import REGISTRY

SIM_MARKERS = ("ki67", "p53", "pdl1")  # the simulator's own order (it fixes the random streams)
#: fixed stream ids so that a case is the same whatever markers are asked for
MARKER_STREAM = {"ki67": 1, "p53": 2, "pdl1": 3}

DIFFICULTY_NAMES = {"easy": 0.5, "default": 1.0, "hard": 1.6}
#: morphology noise sd per marker at difficulty 1.0 (calibrated: Bayes weighted F1 ~0.82)
BASE_NOISE_SD = {"ki67": 0.11, "p53": 0.225, "pdl1": 0.29}
DEFAULT_CUTOFFS = {"ki67": 0.20, "p53": 0.55, "pdl1": 0.50}
LABEL_NAMES = {m: REGISTRY[m].class_names for m in SIM_MARKERS}


class SimulationError(HistostainError):
    """Bad simulator arguments (sizes, markers, difficulty, output folder)."""


def check_markers(markers) -> tuple[str, ...]:
    """Normalise a marker list ('ki67', 'Ki-67', 'PD-L1', ...) to simulator keys."""
    if isinstance(markers, str):
        markers = [m for m in markers.replace(",", " ").split() if m]
    out: list[str] = []
    for m in markers:
        key = str(m).lower().replace("-", "").replace("_", "")
        if key not in SIM_MARKERS:
            raise SimulationError(
                f"unknown marker {m!r}; choose from {', '.join(SIM_MARKERS)} (e.g. --markers ki67,p53)"
            )
        if key not in out:
            out.append(key)
    if not out:
        raise SimulationError("no marker given; choose one or more of ki67, p53, pdl1")
    return tuple(out)


def check_difficulty(difficulty: float | str) -> float:
    """Difficulty as a noise scale: a non-negative number or 'easy' / 'default' / 'hard'."""
    if isinstance(difficulty, str):
        name = difficulty.strip().lower()
        if name in DIFFICULTY_NAMES:
            return DIFFICULTY_NAMES[name]
        try:
            difficulty = float(name)
        except ValueError:
            raise SimulationError(
                f"difficulty {difficulty!r} is not a number or one of {', '.join(DIFFICULTY_NAMES)}"
            ) from None
    d = float(difficulty)
    if not math.isfinite(d) or d < 0:
        raise SimulationError(f"difficulty must be a number >= 0 (1.0 = default), got {difficulty}")
    return d


def check_size(size_um, mpp: float) -> tuple[float, float]:
    """(height_um, width_um) from a number or a pair; checks the slide is 64 px .. 200k px wide."""
    if not isinstance(mpp, (int, float)) or not math.isfinite(mpp) or mpp <= 0:
        raise SimulationError(f"mpp (micrometres per pixel) must be a positive number, got {mpp!r}")
    if not 0.1 <= mpp <= 4.0:
        raise SimulationError(f"mpp must be between 0.1 and 4.0 um/px (0.5 = 20x), got {mpp}")
    if isinstance(size_um, (int, float)):
        hw = (float(size_um), float(size_um))
    else:
        try:
            hw = tuple(float(v) for v in size_um)
        except (TypeError, ValueError):
            raise SimulationError(
                f"size_um must be a number or (height, width), got {size_um!r}"
            ) from None
        if len(hw) != 2:
            raise SimulationError(f"size_um must be a number or (height, width), got {size_um!r}")
    for v in hw:
        if not math.isfinite(v) or v <= 0:
            raise SimulationError(
                f"slide size must be a positive number of micrometres, got {size_um!r}"
            )
        if v / mpp < 64:
            raise SimulationError(
                f"slide side {v} um is under 64 px at {mpp} um/px; ask for at least {64 * mpp:g} um"
            )
        if v / mpp > 200_000:
            raise SimulationError(f"slide side {v} um is over 200,000 px at {mpp} um/px")
    return hw  # type: ignore[return-value]


@dataclass
class MarkerLatent:
    """Latent value, label and morphology drive of one marker for one case."""

    marker: str
    latent: float
    label: int
    label_name: str
    drive: float  # z: what the H&E shows of the latent (noisy)
    pattern: str = ""  # p53: wild-type / overexpression / null


@dataclass
class CaseLatents:
    markers: dict[str, MarkerLatent] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {k: asdict(v) for k, v in self.markers.items()}


def sample_latent(marker: str, rng: np.random.Generator) -> float:
    """Draw a latent value from the marker's prior."""
    if marker == "ki67":
        return float(0.9 * rng.beta(1.4, 3.2))
    if marker == "p53":
        return float(rng.uniform(0.0, 1.0))
    if marker == "pdl1":
        return float(rng.beta(0.55, 0.75))
    raise SimulationError(f"unknown marker {marker!r}")


def sample_latents_vec(marker: str, rng: np.random.Generator, n: int) -> np.ndarray:
    """n latent values of a marker (vectorised, for the Bayes Monte Carlo)."""
    if marker == "ki67":
        return 0.9 * rng.beta(1.4, 3.2, n)
    if marker == "p53":
        return rng.uniform(0.0, 1.0, n)
    if marker == "pdl1":
        return rng.beta(0.55, 0.75, n)
    raise SimulationError(f"unknown marker {marker!r}")


def drive_noise_sd(marker: str, difficulty: float) -> float:
    return BASE_NOISE_SD[marker] * difficulty


def case_latents(seed: int, difficulty: float, cutoffs: dict[str, float]) -> CaseLatents:
    """Latents of all markers of a case (always all three, so a case does not depend on the list)."""
    out = CaseLatents()
    for m in SIM_MARKERS:
        rng = np.random.default_rng(np.random.SeedSequence([seed, 77, MARKER_STREAM[m]]))
        latent = sample_latent(m, rng)
        noise = rng.standard_normal()
        pattern_u = rng.uniform()
        label = int(latent >= cutoffs[m])
        pattern = ""
        if m == "p53":
            pattern = (
                "wild-type" if not label else ("overexpression" if pattern_u < 0.7 else "null")
            )
        out.markers[m] = MarkerLatent(
            marker=m,
            latent=round(latent, 6),
            label=label,
            label_name=LABEL_NAMES[m][label],
            drive=round(latent + drive_noise_sd(m, difficulty) * noise, 6),
            pattern=pattern,
        )
    return out


@dataclass
class Morphology:
    """H&E morphology parameters of a case (all derived from the marker drives)."""

    nucleus_radius_um: float  # mean tumour nucleus radius (Ki-67: proliferation -> larger)
    hyperchromasia: float  # tumour nucleus hematoxylin scale (Ki-67)
    mitotic_fraction: float  # fraction of tumour cells in mitosis (Ki-67)
    pleomorphism: float  # sd of log nuclear size (P53 aberrant -> high-grade)
    shape_irregularity: float  # sd of nuclear elongation (P53)
    chromatin_contrast: float  # coarse chromatin (P53)
    til_density: float  # tumour-infiltrating lymphocytes per mm^2 of stroma (PD-L1)
    aggregates_per_mm2: float  # lymphoid aggregates per mm^2 of tissue (PD-L1)

    def to_dict(self) -> dict:
        return {k: round(float(v), 6) for k, v in asdict(self).items()}


def morphology(latents: CaseLatents) -> Morphology:
    """Monotone maps from the drives to H&E parameters (no clipping: no information is lost)."""
    zk = latents.markers["ki67"].drive
    zp = latents.markers["p53"].drive
    zs = latents.markers["pdl1"].drive
    return Morphology(
        nucleus_radius_um=3.9 * math.exp(0.45 * (zk - 0.25)),
        hyperchromasia=math.exp(0.7 * (zk - 0.25)),
        mitotic_fraction=0.012 * math.exp(3.0 * (zk - 0.25)),
        pleomorphism=0.16 * math.exp(1.3 * (zp - 0.5)),
        shape_irregularity=0.14 * math.exp(1.2 * (zp - 0.5)),
        chromatin_contrast=0.5 / (1.0 + math.exp(-2.5 * (zp - 0.5))),
        til_density=500.0 * math.exp(2.4 * (zs - 0.4)),
        aggregates_per_mm2=0.25 * math.exp(2.0 * (zs - 0.4)),
    )
