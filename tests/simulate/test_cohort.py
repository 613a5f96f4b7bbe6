"""Simulator: files, manifest, truth, determinism, strip independence, errors, CLI."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from napari_histostain.errors import HistostainError
from napari_histostain.io.slide import open_slide
from napari_histostain.simulate import (
    MANIFEST_COLUMNS,
    SimulationError,
    load_truth,
    read_manifest,
    simulate_case,
    simulate_cohort,
)
from napari_histostain.simulate.cohort import CaseModel, case_seed
from napari_histostain.simulate.params import DEFAULT_CUTOFFS

pytestmark = pytest.mark.slow  # simulated slides, clusters or whole cohorts: seconds each


@pytest.fixture(scope="module")
def cohort(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("cohort")
    return simulate_cohort(out, 2, ("ki67", "pdl1"), size_um=400, seed=5)


def test_cohort_manifest_files_and_metadata(cohort):
    with open(cohort, newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert tuple(rows[0].keys()) == MANIFEST_COLUMNS
    assert [(r["case_id"], r["marker"]) for r in rows] == [
        ("case0000", "ki67"),
        ("case0000", "pdl1"),
        ("case0001", "ki67"),
        ("case0001", "pdl1"),
    ]
    # one H&E per case, shared by its IHC sections
    assert rows[0]["he_path"] == rows[1]["he_path"] != rows[2]["he_path"]
    assert int(rows[2]["seed"]) == case_seed(5, 1)
    for r in rows:
        for key in ("he_path", "ihc_path"):
            with open_slide(r[key]) as s:
                assert s.dimensions == (800, 800)
                assert s.mpp == pytest.approx((0.5, 0.5), rel=1e-3)
                tile = s.read_region((300, 300), 0, (64, 64))
                assert tile.shape == (64, 64, 3) and tile.std() > 3
        latent = float(r["latent"])
        assert int(r["label"]) == int(latent >= DEFAULT_CUTOFFS[r["marker"]])
        truth = load_truth(r["truth_path"])
        assert truth["marker"] == r["marker"]
        assert truth["true_index"] == pytest.approx(float(r["true_index"]), abs=1e-5)
        # the quota makes the rendered index equal the latent up to rounding
        assert truth["true_index"] == pytest.approx(
            latent, abs=1.0 / max(truth["ihc_n_tumour"].sum(), 1) + 1e-6
        )
        assert truth["ihc_n_tumour"].shape == truth["he_n_tumour"].shape == (4, 4)  # 224-px tiles
        assert (
            truth["ihc_n_positive"].sum()
            == truth["ihc_cells_positive"][truth["ihc_cells_kind"] == 0].sum()
        )
        pos = truth["ihc_positivity"]
        assert np.all((pos[np.isfinite(pos)] >= 0) & (pos[np.isfinite(pos)] <= 1))
    meta = json.loads((cohort.parent / "cohort.json").read_text())
    assert meta["markers"] == ["ki67", "pdl1"] and meta["n_cases"] == 2
    for m in ("ki67", "pdl1"):
        b = meta["bayes_optimal"][m]
        assert 0.78 <= b["best_weighted_f1"] <= 0.87 and 0.8 < b["auc"] < 0.97
    rows2 = read_manifest(cohort)
    assert rows2[0]["he_path"].is_file() and rows2[0]["label"] in (0, 1)
    case = json.loads((cohort.parent / "case0000" / "case0000.json").read_text())
    assert set(case["latents"]) == {"ki67", "p53", "pdl1"}
    assert case["truth"]["ki67"]["n_tumour_cells"] > 50


def test_same_seed_identical_bytes_other_seed_differs(tmp_path):
    a = simulate_case(tmp_path / "a", ["ki67"], size_um=256, seed=3)
    b = simulate_case(tmp_path / "b", ["ki67"], size_um=256, seed=3)
    c = simulate_case(tmp_path / "c", ["ki67"], size_um=256, seed=4)
    for pa, pb in (
        (a.he_path, b.he_path),
        (a.ihc_paths["ki67"], b.ihc_paths["ki67"]),
        (a.truth_paths["ki67"], b.truth_paths["ki67"]),
        (a.json_path, b.json_path),
    ):
        assert pa.read_bytes() == pb.read_bytes()
    assert a.he_path.read_bytes() != c.he_path.read_bytes()
    assert a.latents != c.latents


def test_case_does_not_depend_on_marker_list(tmp_path):
    one = simulate_case(tmp_path / "one", ["pdl1"], size_um=200, seed=9)
    two = simulate_case(tmp_path / "two", ["ki67", "pdl1"], size_um=200, seed=9)
    assert one.he_path.read_bytes() == two.he_path.read_bytes()
    assert one.ihc_paths["pdl1"].read_bytes() == two.ihc_paths["pdl1"].read_bytes()


def test_render_independent_of_strip_boundaries():
    model = CaseModel(21, (160.0, 200.0), 0.5, ("pdl1",), 1.0, dict(DEFAULT_CUTOFFS))
    for render in (model.he_renderer, model.ihc_renderers["pdl1"]):
        h, w = model.height, model.width
        full = render(0, 0, h, w)
        strips = np.concatenate([render(y, 0, min(37, h - y), w) for y in range(0, h, 37)])
        assert np.array_equal(full, strips)
        assert np.array_equal(full[101:190, 33:250], render(101, 33, 89, 217))
    # wide regions are rendered by two threads: same pixels as one thread
    wide = CaseModel(22, (40.0, 1100.0), 0.5, ("ki67",), 1.0, dict(DEFAULT_CUTOFFS))
    render = wide.ihc_renderers["ki67"]
    threaded = render(0, 0, wide.height, wide.width)
    render.threads = 1
    assert np.array_equal(threaded, render(0, 0, wide.height, wide.width))
    render.release()


def test_sections_are_consecutive_not_registered():
    model = CaseModel(8, (400.0, 400.0), 0.5, ("ki67",), 1.0, dict(DEFAULT_CUTOFFS))
    he, ihc = model.he, model.ihc["ki67"]

    # same composition (tumour share of tissue), different cells and a different transform
    def tumour_share(sec):
        lab = sec.labels
        return (lab == 2).sum() / max(((lab > 0) & (lab != 6)).sum(), 1)

    assert tumour_share(he) == pytest.approx(tumour_share(ihc), abs=0.06)
    assert abs(len(he.cells) - len(ihc.cells)) < 0.15 * len(he.cells)
    assert he.transform.angle != ihc.transform.angle
    assert not np.array_equal(he.cells.x[:50], ihc.cells.x[:50])


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(size_um=-5), "positive"),
        (dict(size_um=10), "at least"),
        (dict(markers=["ki67", "cd8"]), "unknown marker"),
        (dict(mpp=0), "mpp"),
        (dict(difficulty="impossible"), "difficulty"),
        (dict(difficulty=-1), "difficulty"),
        (dict(seed=-3), "seed"),
        (dict(n_cases=0), "n_cases"),
        (dict(cutoffs={"ki67": 1.5}), "cutoff"),
    ],
)
def test_bad_arguments_raise_clear_errors(tmp_path, kwargs, match):
    args = dict(out_dir=tmp_path, n_cases=1, markers=("ki67",), size_um=200)
    args.update(kwargs)
    with pytest.raises(SimulationError, match=match):
        simulate_cohort(**args)
    assert not (tmp_path / "manifest.csv").exists()


def test_unwritable_output_dir(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    with pytest.raises(HistostainError, match="could not write"):
        simulate_cohort(blocker / "out", 1, ("ki67",), size_um=200)


def test_cli_simulate(tmp_path, capsys):
    from napari_histostain.cli import main

    out = tmp_path / "cli"
    assert (
        main(
            [
                "simulate",
                str(out),
                "-n",
                "1",
                "--markers",
                "p53",
                "--size-um",
                "200",
                "300",
                "--seed",
                "2",
                "--cutoff",
                "p53=0.5",
                "--difficulty",
                "hard",
            ]
        )
        == 0
    )
    rows = read_manifest(out / "manifest.csv")
    assert len(rows) == 1 and rows[0]["marker"] == "p53"
    with open_slide(rows[0]["ihc_path"]) as s:
        assert s.dimensions == (600, 400)
    meta = json.loads((out / "cohort.json").read_text())
    assert meta["cutoffs"]["p53"] == 0.5 and meta["difficulty"] == 1.6
    assert main(["simulate", str(out), "--markers", "her2"]) == 2
    assert "unknown marker 'her2'" in capsys.readouterr().err


def test_parallel_workers_give_the_same_cohort(tmp_path):
    one = simulate_cohort(tmp_path / "one", 2, "ki67", size_um=160, seed=12)
    two = simulate_cohort(tmp_path / "two", 2, "ki67", size_um=160, seed=12, workers=2)
    for a, b in zip(read_manifest(one), read_manifest(two)):
        assert a["ihc_path"].read_bytes() == b["ihc_path"].read_bytes()
        assert a["he_path"].read_bytes() == b["he_path"].read_bytes()
        assert (a["label"], a["latent"], a["seed"]) == (b["label"], b["latent"], b["seed"])
