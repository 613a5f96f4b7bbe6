"""Another lab: stain and scanner shifts of simulated slides (neutral by default)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from napari_histostain.cli import main
from napari_histostain.io.slide import open_slide
from napari_histostain.simulate import SimulationError, load_case_model, simulate_case
from napari_histostain.simulate.cohort import CaseModel
from napari_histostain.simulate.params import DEFAULT_CUTOFFS
from napari_histostain.simulate.shift import PRESETS, LabShift, rotation_about_grey

CUT = dict(DEFAULT_CUTOFFS)


def _he(shift=None, seed=31, size=(120.0, 160.0)):
    model = CaseModel(seed, size, 0.5, ("ki67",), 1.0, CUT, shift)
    return model, model.he_renderer(0, 0, model.height, model.width)


def test_neutral_shift_changes_nothing():
    _, plain = _he()
    model, same = _he(LabShift())
    assert LabShift().is_neutral and np.array_equal(plain, same)
    assert type(model.he_renderer).__name__ == "SectionRenderer"


def test_rotation_keeps_grey_and_length():
    r = rotation_about_grey(np.radians(30))
    np.testing.assert_allclose(r @ np.ones(3), np.ones(3), atol=1e-12)
    np.testing.assert_allclose(r @ r.T, np.eye(3), atol=1e-12)


@pytest.mark.parametrize(
    "shift, check",
    [
        # more hematoxylin and eosin, thicker: darker tissue
        (LabShift(hematoxylin_gain=1.5, eosin_gain=1.5), lambda a, b: b.mean() < a.mean() - 5),
        (LabShift(thickness=1.5), lambda a, b: b.mean() < a.mean() - 5),
        # another hue: the mean colour of tissue moves
        (
            LabShift(stain_rotation_deg=20),
            lambda a, b: np.abs(b.mean((0, 1)) - a.mean((0, 1))).max() > 3,
        ),
        # a warm white point: the glass (brightest pixels) is warmer
        (
            LabShift(white_point=(250, 232, 210)),
            lambda a, b: np.percentile(b[..., 2], 99) < np.percentile(a[..., 2], 99) - 15,
        ),
        # defocus: less high-frequency detail
        (
            LabShift(blur_um=1.0),
            lambda a, b: (
                np.abs(np.diff(b.astype(float), axis=1)).mean()
                < 0.6 * np.abs(np.diff(a.astype(float), axis=1)).mean()
            ),
        ),
    ],
)
def test_each_shift_changes_the_look(shift, check):
    _, plain = _he()
    _, shifted = _he(shift)
    assert plain.shape == shifted.shape and check(plain, shifted)


def test_blurred_render_is_independent_of_strips():
    model = CaseModel(21, (100.0, 140.0), 0.5, ("ki67",), 1.0, CUT, PRESETS["another-lab"])
    render = model.he_renderer
    h, w = model.height, model.width
    full = render(0, 0, h, w)
    strips = np.concatenate([render(y, 0, min(37, h - y), w) for y in range(0, h, 37)])
    assert np.array_equal(full, strips)
    assert np.array_equal(full[101:190, 33:250], render(101, 33, 89, 217))


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"thickness": 0}, "thickness"),
        ({"blur_um": -1}, "blur_um"),
        ({"stain_rotation_deg": 120}, "stain_rotation_deg"),
        ({"white_point": (255, 255)}, "white_point"),
    ],
)
def test_bad_shift_is_a_clear_error(kwargs, match):
    with pytest.raises(SimulationError, match=match):
        LabShift(**kwargs)


@pytest.mark.slow
def test_shifted_case_is_recorded_and_rebuilt(tmp_path):
    shift = PRESETS["another-lab"]
    case = simulate_case(tmp_path, ["ki67"], size_um=160, seed=5, shift=shift, quality=60)
    info = json.loads(case.json_path.read_text())
    assert LabShift.from_dict(info["lab_shift"]) == shift
    model = load_case_model(case.json_path)
    assert model.shift == shift
    plain = simulate_case(tmp_path / "plain", ["ki67"], size_um=160, seed=5)
    assert "lab_shift" not in json.loads(plain.json_path.read_text())
    # the IHC truth (biology) is the same; only the look changed
    assert info["truth"] == json.loads(plain.json_path.read_text())["truth"]
    with open_slide(case.he_path) as a, open_slide(plain.he_path) as b:
        assert a.dimensions == b.dimensions
        assert not np.array_equal(
            a.read_region((0, 0), 0, (64, 64)), b.read_region((0, 0), 0, (64, 64))
        )


@pytest.mark.slow
def test_cli_shift_options(tmp_path):
    out = tmp_path / "cli"
    args = ["simulate", str(out), "-n", "1", "--markers", "ki67", "--size-um", "150"]
    args += ["--lab-shift", "another-lab", "--blur-um", "0.3", "--white-point", "250", "240", "230"]
    assert main(args) == 0
    meta = json.loads((out / "cohort.json").read_text())
    want = {
        **PRESETS["another-lab"].to_dict(),
        "blur_um": 0.3,
        "white_point": [250.0, 240.0, 230.0],
    }
    assert meta["lab_shift"] == want
    plain = tmp_path / "plain"
    assert main(["simulate", str(plain), "-n", "1", "--markers", "ki67", "--size-um", "150"]) == 0
    assert "lab_shift" not in json.loads((plain / "cohort.json").read_text())
