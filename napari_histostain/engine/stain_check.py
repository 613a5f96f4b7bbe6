"""Does a slide look like H&E? A check on the tiles as they stream past (IHC has no eosin, much DAB)."""

from __future__ import annotations

import numpy as np

#: Stain check: IHC slides have (almost) no eosin and/or much DAB in their tissue pixels.
MIN_EOSIN_SHARE = 0.1  # eosin / (haematoxylin + eosin) optical density below this looks like IHC
MAX_DAB_FRACTION = 0.02  # more tissue pixels than this with DAB OD > DAB_OD look like IHC
DAB_OD = 0.15
STAIN_CHECK_TILES = 64


class StainWarning(UserWarning):
    """The slide does not look like an H&E stain."""


class StainCheck:
    """Accumulates haematoxylin / eosin / DAB optical densities over tissue pixels of some tiles."""

    def __init__(self, max_tiles: int = STAIN_CHECK_TILES):
        self.max_tiles = max_tiles
        self.tiles = 0
        self.n = 0
        self.sum_h = self.sum_e = 0.0
        self.dab = 0

    def add(self, tiles: np.ndarray) -> None:
        from skimage.color import rgb2hed

        for rgb in tiles:
            if self.tiles >= self.max_tiles:
                return
            self.tiles += 1
            px = rgb[::4, ::4].reshape(-1, 3)
            f = px.astype(np.float32)
            vmax = f.max(1)
            tissue = (vmax - f.min(1)) > 0.1 * np.maximum(vmax, 1)
            if not tissue.any():
                continue
            hed = rgb2hed(px[tissue][None])[0]
            self.n += len(hed)
            self.sum_h += float(np.clip(hed[:, 0], 0, None).sum())
            self.sum_e += float(np.clip(hed[:, 1], 0, None).sum())
            self.dab += int((hed[:, 2] > DAB_OD).sum())

    def result(self) -> dict:
        if not self.n:
            return {"tiles": self.tiles, "pixels": 0, "looks_like": "unknown"}
        share = self.sum_e / max(self.sum_h + self.sum_e, 1e-9)
        dab = self.dab / self.n
        ihc = share < MIN_EOSIN_SHARE or dab > MAX_DAB_FRACTION
        return {
            "tiles": self.tiles,
            "pixels": self.n,
            "eosin_share": round(share, 4),
            "dab_fraction": round(dab, 4),
            "looks_like": "IHC" if ihc else "H&E",
        }
