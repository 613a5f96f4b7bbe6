"""A tiny TorchScript tile encoder (8-d) and seeded slide models made for it: real files on the
real prediction path, fast enough to predict a small slide in well under a second."""

from __future__ import annotations

import json
from pathlib import Path


def write_tiny_kit(folder: str | Path, markers=("p53", "ki67")) -> dict:
    """Write `tiny.pt` (TorchScript, id "tiny") and one seeded model per marker into `folder`;
    returns {"encoder": path, "models": {marker: path}}."""
    import torch

    from napari_histostain.engine.model_files import save_model_file, seeded_model

    class Tiny(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(3, 8, 7, stride=4)

        def forward(self, x):
            return torch.relu(self.conv(x))

    folder = Path(folder)
    torch.manual_seed(0)
    encoder = folder / "tiny.pt"
    torch.jit.save(
        torch.jit.script(Tiny()),
        str(encoder),
        _extra_files={"histostain.json": json.dumps({"id": "tiny"})},
    )
    models = {}
    for i, m in enumerate(markers):
        net, cfg = seeded_model(m, seed=i, in_dim=8, encoder_id="torchscript:tiny")
        models[m] = save_model_file(folder / f"{m}.pt", net, cfg)
    return {"encoder": encoder, "models": models}
