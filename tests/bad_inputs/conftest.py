"""Fixtures of the bad-input tests: a small slide, fast models (`kit`), running the CLI in-process.

Every case asserts the exit status, the message and the exact files left in the output folder
(hidden files included: a lock, a staging folder or a temporary file left behind is a failure).
Predictions use a tiny TorchScript encoder and seeded models, so a whole run takes about a second.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bad_inputs.kit import Result


@pytest.fixture
def cli(capsys):
    """Run `histostain ARGV...` in this process; returns a `Result`."""
    from napari_histostain.cli import main

    def run(*argv: str) -> Result:
        capsys.readouterr()
        code = main([str(a) for a in argv])
        captured = capsys.readouterr()
        return Result(code, captured.out, captured.err)

    return run


@pytest.fixture(scope="session")
def small_slide(tmp_path_factory) -> Path:
    """A 1024 x 768 px synthetic H&E slide at 0.5 um/px (3 tissue tiles at 1 um/px)."""
    from napari_histostain.io.synthetic import write_synthetic_slide

    return write_synthetic_slide(
        tmp_path_factory.mktemp("bad-slides") / "case.tif", 1024, 768, 0.5, seed=3
    )


@pytest.fixture(scope="session")
def kit(tmp_path_factory):
    """A tiny TorchScript tile encoder and seeded p53/ki67 models made for it."""
    import torch

    from napari_histostain.engine.model_files import save_model_file, seeded_model

    class Tiny(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(3, 8, 7, stride=8)

        def forward(self, x):
            return torch.relu(self.conv(x))

    d = tmp_path_factory.mktemp("bad-kit")
    torch.manual_seed(0)
    encoder = d / "tiny.pt"
    torch.jit.save(
        torch.jit.script(Tiny()),
        str(encoder),
        _extra_files={"histostain.json": json.dumps({"id": "tiny"})},
    )
    models = {}
    for i, m in enumerate(("p53", "ki67")):
        net, cfg = seeded_model(m, seed=i, in_dim=8, encoder_id="torchscript:tiny")
        models[m] = save_model_file(d / f"{m}.pt", net, cfg)
    return {"encoder": encoder, "models": models, "dir": d}
