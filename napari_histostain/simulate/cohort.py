"""Simulate paired cases (one H&E + one IHC section per marker) and whole cohorts with a manifest.

Layout of a cohort folder::

    manifest.csv              one row per (case, marker)
    cohort.json               settings, label counts, Bayes-optimal reference per marker
    case0000/case0000_HE.tiff
    case0000/case0000_ki67.tiff, case0000_ki67.truth.npz, ...
    case0000/case0000.json    latents, H&E morphology, section transforms, stain parameters, truth
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .. import __version__
from ..io.atomic import atomic_open, ensure_dir, write_json
from .params import (
    DEFAULT_CUTOFFS,
    MARKER_STREAM,
    SimulationError,
    case_latents,
    check_difficulty,
    check_markers,
    check_size,
    morphology,
)
from .shift import LabShift

MANIFEST_COLUMNS = (
    "case_id",
    "marker",
    "he_path",
    "ihc_path",
    "label",
    "latent",
    "seed",
    "truth_path",
    "label_name",
    "pattern",
    "true_index",
    "difficulty",
    "mpp",
)
DEFAULT_SIZE_UM = 2048.0
DEFAULT_TRUTH_TILE_UM = 112.0


@dataclass
class SimulatedCase:
    """Paths and truth of one simulated case."""

    case_id: str
    seed: int
    he_path: Path
    ihc_paths: dict[str, Path]
    truth_paths: dict[str, Path]
    json_path: Path
    latents: dict
    truth: dict[str, dict]
    rows: list[dict] = field(default_factory=list)


def _rng(seed: int, *ids: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([seed, *ids]))


def _check_seed(seed) -> int:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise SimulationError(f"seed must be a non-negative integer, got {seed!r}")
    return int(seed)


def _cutoffs(cutoffs: dict | None) -> dict[str, float]:
    out = dict(DEFAULT_CUTOFFS)
    for k, v in (cutoffs or {}).items():
        (key,) = check_markers([k])
        v = float(v)
        if not 0.0 < v < 1.0:
            raise SimulationError(f"cutoff for {key} must be between 0 and 1, got {v}")
        out[key] = v
    return out


class CaseModel:
    """A case in memory: latents, layout, the H&E section and one IHC section per marker, each
    with its renderer (`render(y0, x0, h, w)`) and the IHC truth. Nothing is written."""

    def __init__(
        self,
        seed: int,
        size_um: tuple[float, float],
        mpp: float,
        markers: Sequence[str],
        difficulty: float,
        cutoffs: dict[str, float],
        shift: LabShift | None = None,
    ):
        from .cells import Section, assign_marker
        from .render import SectionRenderer, StainParams
        from .tissue import CaseLayout, SectionTransform

        self.seed, self.mpp = seed, mpp
        self.latents = case_latents(seed, difficulty, cutoffs)
        self.morph = morphology(self.latents)
        self.height = int(round(size_um[0] / mpp))
        self.width = int(round(size_um[1] / mpp))
        self.layout = CaseLayout(seed, (self.height * mpp, self.width * mpp), self.morph)
        tr = SectionTransform.random(_rng(seed, 21), self.height, self.width, mpp, reference=True)
        self.he = Section(self.layout, tr, self.morph, _rng(seed, 22))
        self.he_renderer = SectionRenderer(
            self.he, StainParams.random(_rng(seed, 23), "he"), _rng(seed, 24)
        )
        self.ihc: dict = {}
        self.ihc_renderers: dict = {}
        self.truths: dict[str, dict] = {}
        for m in markers:
            base = 100 * MARKER_STREAM[m]
            tr = SectionTransform.random(
                _rng(seed, base + 1), self.height, self.width, mpp, reference=False
            )
            sec = Section(self.layout, tr, self.morph, _rng(seed, base + 2))
            self.truths[m] = assign_marker(
                sec.cells, m, self.latents, sec.hetero_at_cells(m), _rng(seed, base + 3)
            )
            self.ihc[m] = sec
            self.ihc_renderers[m] = SectionRenderer(
                sec, StainParams.random(_rng(seed, base + 4), "ihc"), _rng(seed, base + 5)
            )
        self.shift = shift or LabShift()
        if not self.shift.is_neutral:  # another lab: every slide of the case (`simulate.shift`)
            size = (self.height, self.width, mpp)
            self.he_renderer = self.shift.apply(self.he_renderer, *size)
            for m, r in self.ihc_renderers.items():
                self.ihc_renderers[m] = self.shift.apply(r, *size)

    def sections_info(self) -> dict:
        def one(sec, rend) -> dict:
            return {
                "transform": sec.transform.to_dict(),
                "stain": rend.stain.to_dict(),
                "n_cells": len(sec.cells),
            }

        out = {"HE": one(self.he, self.he_renderer)}
        for m, sec in self.ihc.items():
            out[m] = one(sec, self.ihc_renderers[m])
        return out


def load_case_model(case_json: str | Path) -> CaseModel:
    """Rebuild the in-memory model of a simulated case from its case JSON (for cell masks:
    `model.ihc_renderers[marker].cell_ids(y0, x0, h, w)`; cells: `model.ihc[marker].cells`)."""
    import json

    info = json.loads(Path(case_json).read_text(encoding="utf-8"))
    h, w = info["size_px"]
    mpp = info["mpp"]
    markers = [m for m in info["files"] if m != "HE"]
    return CaseModel(
        info["seed"],
        (h * mpp, w * mpp),
        mpp,
        markers,
        info["difficulty"],
        info["cutoffs"],
        LabShift.from_dict(info.get("lab_shift")),
    )


def simulate_case(
    out_dir: str | Path,
    markers: Sequence[str] | str = ("ki67", "p53", "pdl1"),
    *,
    case_id: str = "case0000",
    size_um: float | tuple[float, float] = DEFAULT_SIZE_UM,
    mpp: float = 0.5,
    seed: int = 0,
    difficulty: float | str = 1.0,
    cutoffs: dict[str, float] | None = None,
    truth_tile_um: float = DEFAULT_TRUTH_TILE_UM,
    quality: int = 85,
    shift: LabShift | None = None,
) -> SimulatedCase:
    """Render one case into `out_dir`: its H&E, one IHC per marker, truth maps and a case JSON.

    The same (seed, size_um, mpp, difficulty, cutoffs) always gives byte-identical files; a case's
    biology does not depend on which markers are rendered. `shift` renders the case as another
    lab's stain and scanner would show it (`simulate.shift.LabShift`; default: none).
    """
    from ..io.synthetic import write_slide
    from .truth import save_truth

    markers = check_markers(markers)
    h_um, w_um = check_size(size_um, mpp)
    difficulty = check_difficulty(difficulty)
    seed = _check_seed(seed)
    cut = _cutoffs(cutoffs)
    if not (isinstance(truth_tile_um, (int, float)) and truth_tile_um > 0):
        raise SimulationError(f"truth_tile_um must be a positive number, got {truth_tile_um!r}")
    if not str(case_id) or any(c in str(case_id) for c in "/\\:"):
        raise SimulationError(f"case_id {case_id!r} must be a plain name (no slashes)")
    out = ensure_dir(Path(out_dir) / case_id)
    model = CaseModel(seed, (h_um, w_um), mpp, markers, difficulty, cut, shift)
    tile_px = max(1, int(round(truth_tile_um / mpp)))
    height, width = model.height, model.width
    he_path = out / f"{case_id}_HE.tiff"
    write_slide(
        he_path,
        height,
        width,
        model.he_renderer,
        mpp,
        quality=quality,
        description=f"napari-histostain simulated H&E; case {case_id}; seed {seed}",
    )
    model.he_renderer.release()
    ihc_paths: dict[str, Path] = {}
    truth_paths: dict[str, Path] = {}
    rows: list[dict] = []
    for m in markers:
        path = out / f"{case_id}_{m}.tiff"
        write_slide(
            path,
            height,
            width,
            model.ihc_renderers[m],
            mpp,
            quality=quality,
            description=f"napari-histostain simulated {m} IHC; case {case_id}; seed {seed}",
        )
        model.ihc_renderers[m].release()
        ml = model.latents.markers[m]
        tpath = save_truth(
            out / f"{case_id}_{m}.truth.npz",
            model.he,
            model.ihc[m],
            m,
            model.truths[m],
            ml,
            tile_px,
        )
        ihc_paths[m], truth_paths[m] = path, tpath
        rows.append(
            {
                "case_id": case_id,
                "marker": m,
                "he_path": str(he_path.resolve()),
                "ihc_path": str(path.resolve()),
                "label": ml.label,
                "latent": ml.latent,
                "seed": seed,
                "truth_path": str(tpath.resolve()),
                "label_name": ml.label_name,
                "pattern": ml.pattern,
                "true_index": round(model.truths[m]["true_index"], 6),
                "difficulty": difficulty,
                "mpp": mpp,
            }
        )
    info = {
        "case_id": case_id,
        "seed": seed,
        "simulator_version": __version__,
        "size_px": [height, width],
        "mpp": mpp,
        "difficulty": difficulty,
        "cutoffs": cut,
        "latents": model.latents.to_dict(),
        "morphology": model.morph.to_dict(),
        "layout": model.layout.params,
        "truth_tile_px": tile_px,
        "sections": model.sections_info(),
        "truth": model.truths,
        "files": {"HE": he_path.name, **{m: p.name for m, p in ihc_paths.items()}},
    }
    if not model.shift.is_neutral:
        info["lab_shift"] = model.shift.to_dict()
    json_path = write_json(out / f"{case_id}.json", info)
    return SimulatedCase(
        case_id,
        seed,
        he_path,
        ihc_paths,
        truth_paths,
        json_path,
        model.latents.to_dict(),
        model.truths,
        rows,
    )


def case_seed(cohort_seed: int, index: int) -> int:
    """The seed of case `index` of a cohort (what the manifest's `seed` column holds)."""
    return int(np.random.SeedSequence([cohort_seed, 5150, index]).generate_state(1)[0] & 0x7FFFFFFF)


def _one_case(kw: dict) -> SimulatedCase:
    return simulate_case(**kw)


def simulate_cohort(
    out_dir: str | Path,
    n_cases: int,
    markers: Sequence[str] | str = ("ki67", "p53", "pdl1"),
    *,
    size_um: float | tuple[float, float] = DEFAULT_SIZE_UM,
    mpp: float = 0.5,
    seed: int = 0,
    difficulty: float | str = 1.0,
    cutoffs: dict[str, float] | None = None,
    truth_tile_um: float = DEFAULT_TRUTH_TILE_UM,
    quality: int = 85,
    shift: LabShift | None = None,
    workers: int = 1,
    progress: Callable[[int, int], None] | None = None,
) -> Path:
    """Simulate `n_cases` cases into `out_dir`; write `manifest.csv` and `cohort.json`.

    Each case has one H&E and one IHC per marker. Returns the manifest path.
    """
    from .bayes import bayes_reference

    if isinstance(n_cases, bool) or not isinstance(n_cases, (int, np.integer)) or n_cases < 1:
        raise SimulationError(f"n_cases must be a positive integer, got {n_cases!r}")
    markers = check_markers(markers)
    check_size(size_um, mpp)
    difficulty = check_difficulty(difficulty)
    seed = _check_seed(seed)
    cut = _cutoffs(cutoffs)
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise SimulationError(f"workers must be a positive integer, got {workers!r}")
    out = ensure_dir(out_dir)
    width = max(4, len(str(n_cases - 1)))
    jobs = [
        dict(
            out_dir=out,
            markers=markers,
            case_id=f"case{i:0{width}d}",
            size_um=size_um,
            mpp=mpp,
            seed=case_seed(seed, i),
            difficulty=difficulty,
            cutoffs=cut,
            truth_tile_um=truth_tile_um,
            quality=quality,
            shift=shift,
        )
        for i in range(int(n_cases))
    ]
    cases: list[SimulatedCase] = []
    if workers == 1:
        for i, job in enumerate(jobs):
            cases.append(_one_case(job))
            if progress:
                progress(i + 1, len(jobs))
    else:
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(max_workers=workers) as pool:
            for i, case in enumerate(pool.map(_one_case, jobs)):
                cases.append(case)
                if progress:
                    progress(i + 1, len(jobs))
    rows = [r for c in cases for r in c.rows]
    manifest = out / "manifest.csv"
    write_manifest(manifest, rows)
    meta = {
        "simulator_version": __version__,
        "seed": seed,
        "n_cases": int(n_cases),
        "markers": list(markers),
        "size_um": list(check_size(size_um, mpp)),
        "mpp": mpp,
        "difficulty": difficulty,
        "cutoffs": cut,
        "truth_tile_um": truth_tile_um,
        "manifest": manifest.name,
        "label_counts": {
            m: {
                str(k): sum(1 for r in rows if r["marker"] == m and r["label"] == k) for k in (0, 1)
            }
            for m in markers
        },
        "bayes_optimal": {m: bayes_reference(m, difficulty, cut[m]) for m in markers},
    }
    if shift is not None and not shift.is_neutral:
        meta["lab_shift"] = shift.to_dict()
        meta["quality"] = quality
    write_json(out / "cohort.json", meta)
    return manifest


def write_manifest(path: Path, rows: list[dict]) -> Path:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(MANIFEST_COLUMNS), lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: r.get(k, "") for k in MANIFEST_COLUMNS})
    with atomic_open(path, "w", encoding="utf-8", newline="") as fh:
        fh.write(buf.getvalue())
    return path


def read_manifest(path: str | Path) -> list[dict]:
    """Rows of a cohort manifest with paths as `Path` (relative paths resolved against its folder)."""
    path = Path(path)
    if not path.is_file():
        raise SimulationError(f"no manifest at {path}; run `histostain simulate` first")
    base = path.parent
    rows = []
    with open(path, encoding="utf-8", newline="") as fh:
        for r in csv.DictReader(fh):
            for k in ("he_path", "ihc_path", "truth_path"):
                p = Path(r[k])
                r[k] = p if p.is_absolute() else base / p
            r["label"] = int(r["label"])
            r["latent"] = float(r["latent"])
            r["seed"] = int(r["seed"])
            r["true_index"] = float(r["true_index"]) if r.get("true_index") else math.nan
            rows.append(r)
    return rows
