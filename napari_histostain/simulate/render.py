"""Beer-Lambert rendering of a section, any level-0 region, deterministic and strip-independent.

Optical density = sum of stain concentration x stain vector (hematoxylin + eosin for H&E,
hematoxylin + DAB for IHC); RGB = glass colour x exp(-OD) + sensor noise. Concentrations come
from a coarse compartment map (bilinear, so edges are smooth), periodic fibre / chromatin
textures sampled at absolute pixel positions, and nuclei (and PD-L1 membranes) stamped per cell.
Every pixel depends only on its absolute position, so any split into strips gives the same image.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np

from .cells import COARSE, Cells, Section
from .fields import periodic_texture, wavy
from .tissue import FIBRE_TURN, LUMEN, LYMPH, NECROSIS, STROMA, TUMOUR

# Ruifrok & Johnston optical density vectors (R, G, B)
HEMATOXYLIN = np.array([0.650, 0.704, 0.286])
HEMATOXYLIN_IHC = np.array([0.85, 0.50, 0.16])  # counterstain after DAB: bluer
EOSIN = np.array([0.10, 0.87, 0.48])  # eosin as it looks on scanned slides: red-pink
DAB = np.array([0.268, 0.570, 0.776])

# base stain concentrations per compartment: (hematoxylin, eosin-or-DAB, fibre weight)
HE_BASE = {
    STROMA: (0.05, 0.32, 1.0),
    TUMOUR: (0.17, 0.6, 0.0),
    LUMEN: (0.015, 0.05, 0.0),
    LYMPH: (0.10, 0.22, 0.3),
    NECROSIS: (0.24, 0.75, 0.0),
}
IHC_BASE = {
    STROMA: (0.02, 0.01, 1.0),
    TUMOUR: (0.10, 0.02, 0.0),
    LUMEN: (0.01, 0.0, 0.0),
    LYMPH: (0.08, 0.01, 0.3),
    NECROSIS: (0.16, 0.04, 0.0),
}
FIBRE_EOSIN = 0.8  # eosin of collagen bundles (H&E)
FIBRE_HEMATOXYLIN = 0.035  # faint counterstain of collagen (IHC)
NUCLEAR_COUNTERSTAIN = 0.85  # IHC hematoxylin in nuclei relative to H&E
DAB_GAIN = 2.0


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v)


@dataclass
class StainParams:
    """Per-slide stain appearance (jittered vectors and intensities, glass colour, noise)."""

    kind: str  # "he" or "ihc"
    v_h: np.ndarray
    v_x: np.ndarray  # eosin (H&E) or DAB (IHC)
    scale_h: float
    scale_x: float
    background: np.ndarray
    noise_sd: float

    @classmethod
    def random(cls, rng: np.random.Generator, kind: str) -> StainParams:
        second = EOSIN if kind == "he" else DAB
        hema = HEMATOXYLIN if kind == "he" else HEMATOXYLIN_IHC
        v_h = _unit(np.clip(hema + rng.normal(0, 0.04, 3), 0.05, None))
        v_x = _unit(np.clip(second + rng.normal(0, 0.04, 3), 0.02, None))
        bg = np.clip(rng.normal(240, 3, 1) + rng.normal(0, 1.2, 3), 228, 250)
        return cls(
            kind,
            v_h,
            v_x,
            float(np.exp(rng.normal(0, 0.12))),
            float(np.exp(rng.normal(0, 0.12))),
            bg,
            float(rng.uniform(1.5, 3.0)),
        )

    def to_dict(self) -> dict:
        return {
            "kind": self.kind,
            "hematoxylin_vector": [round(float(v), 5) for v in self.v_h],
            "second_vector": [round(float(v), 5) for v in self.v_x],
            "hematoxylin_scale": round(self.scale_h, 5),
            "second_scale": round(self.scale_x, 5),
            "background_rgb": [round(float(v), 3) for v in self.background],
            "noise_sd": round(self.noise_sd, 4),
        }


class SectionRenderer:
    """`render(y0, x0, h, w) -> (h, w, 3) uint8` for one section (H&E or one IHC marker)."""

    def __init__(self, section: Section, stain: StainParams, rng: np.random.Generator):
        from scipy import ndimage

        self.section = section
        self.stain = stain
        self.cells: Cells = section.cells
        mpp = section.mpp
        zoom = 0.5 / mpp
        base = HE_BASE if stain.kind == "he" else IHC_BASE
        lab = section.labels
        maps = np.zeros((4, *lab.shape), np.float32)
        for comp, vals in base.items():
            m = lab == comp
            for i in range(3):
                maps[i][m] = vals[i]
        for i in range(3):
            maps[i] = ndimage.gaussian_filter(maps[i], 0.6, mode="nearest")
        # which of two fibre orientations dominates where (smooth, ~100 um patches)
        maps[3] = section.fibre_blend * maps[2]
        self.maps = np.pad(maps, ((0, 0), (1, 1), (1, 1)), mode="edge")
        ang = section.layout.fibre_angle - section.transform.angle
        fibres = []
        for a in (ang, ang + FIBRE_TURN):
            f = periodic_texture(rng, 1024, 50 * zoom, 2.4 * zoom, a)
            f = wavy(f, a, 3.5 * zoom, 150.0 * zoom, rng)
            f += 0.35 * periodic_texture(rng, 1024, 1.2 * zoom, 1.2 * zoom)
            fibres.append(np.clip(0.35 + 0.7 * f, 0, 1.3).astype(np.float32))
        self.fibre_a, self.fibre_b = fibres
        self.grain = np.clip(periodic_texture(rng, 512, 0.9 * zoom, 0.9 * zoom), -1.8, 1.8)
        noise = np.clip(np.round(rng.standard_normal((1024, 1024, 3)) * stain.noise_sd), -127, 127)
        self.noise = noise.astype(np.int8)
        self._wide: dict[str, np.ndarray] | None = None
        self._pool = None
        self._lock = threading.Lock()
        self.threads = 2
        # cells' patch radius (px) for nuclei and membranes
        self.r_nuc = np.ceil(self.cells.a + 1.5).astype(np.int32)
        if self.cells.membrane is not None and np.any(self.cells.membrane > 0):
            self.r_mem = np.ceil(self.cells.cell_r + 1.5).astype(np.int32)
        else:
            self.r_mem = None
        self.max_r = int(
            max(self.r_nuc.max(initial=1), 1 if self.r_mem is None else self.r_mem.max())
        )

    # -- helpers ----------------------------------------------------------------------------
    def _upsample(self, y0: int, x0: int, h: int, w: int) -> np.ndarray:
        """(4, h, w) bilinear upsampling (x COARSE) of the coarse concentration maps.

        Pixel p lies at coarse coordinate (p + 0.5) / COARSE - 0.5 (the maps are padded by one).
        Interpolates the few coarse rows along x over whole coarse cells, then along y per band
        of rows, so any region gives the same values as the whole slide.
        """
        ty = (np.arange(y0, y0 + h) + 0.5) / COARSE + 0.5
        iy = np.minimum(np.floor(ty).astype(np.int64), self.maps.shape[1] - 2)
        fy = (ty - iy).astype(np.float32)
        r0, r1 = int(iy[0]), int(iy[-1]) + 2
        j0 = x0 // COARSE
        j1 = -(-(x0 + w) // COARSE)
        nj = j1 - j0
        m = self.maps[:, r0:r1, j0 : j1 + 2]
        half = COARSE // 2
        f = ((np.arange(COARSE) + 0.5) / COARSE + 0.5).astype(np.float32)
        f[half:] -= 1.0
        xr = np.empty((m.shape[0], m.shape[1], nj, COARSE), np.float32)
        a, b, c = m[..., 0:nj, None], m[..., 1 : nj + 1, None], m[..., 2 : nj + 2, None]
        xr[..., :half] = a * (1 - f[:half]) + b * f[:half]
        xr[..., half:] = b * (1 - f[half:]) + c * f[half:]
        off = x0 - j0 * COARSE
        xr = np.ascontiguousarray(
            xr.reshape(m.shape[0], m.shape[1], nj * COARSE)[:, :, off : off + w]
        )
        out = np.empty((m.shape[0], h, w), np.float32)
        starts = np.flatnonzero(np.diff(iy, prepend=iy[0] - 1))
        for k, s0 in enumerate(starts):
            s1 = starts[k + 1] if k + 1 < starts.size else h
            i = int(iy[s0]) - r0
            fb = fy[s0:s1][None, :, None]
            np.multiply(xr[:, i, None, :], 1 - fb, out=out[:, s0:s1])
            out[:, s0:s1] += xr[:, i + 1, None, :] * fb
        return out

    def _texture(self, name: str, y0: int, x0: int, h: int, w: int) -> np.ndarray:
        """Window of a periodic texture, from a copy tiled to the slide width (a view if it can)."""
        with self._lock:
            if self._wide is None:
                self._make_wide()
        tex = self._wide[name]
        p = tex.shape[0]
        r0 = y0 % p
        if r0 + h <= p:
            return tex[r0 : r0 + h, x0 : x0 + w]
        rows = np.arange(y0, y0 + h) % p
        return tex[rows, x0 : x0 + w]

    def _make_wide(self) -> None:
        cols = np.arange(self.section.width)
        self._wide = {
            k: np.ascontiguousarray(np.take(getattr(self, k), cols % getattr(self, k).shape[1], 1))
            for k in ("fibre_a", "fibre_b", "grain", "noise")
        }

    def release(self) -> None:
        """Free the slide-wide texture copies and the threads (made again on the next render)."""
        self._wide = None
        if self._pool is not None:
            self._pool.shutdown()
            self._pool = None

    def _cells_in(self, y0: int, h: int) -> np.ndarray:
        lo = np.searchsorted(self.cells.y, y0 - self.max_r - 1, side="left")
        hi = np.searchsorted(self.cells.y, y0 + h + self.max_r + 1, side="right")
        return np.arange(lo, hi)

    def _patches(self, idx: np.ndarray, radius: np.ndarray, y0: int, x0: int, h: int, w: int):
        """Yield per-radius groups: (cell idx, flat strip index, dx, dy, px, py) of in-region px."""
        c = self.cells
        for r in np.unique(radius[idx]):
            sel = idx[radius[idx] == r]
            off = np.arange(-r, r + 1)
            cy = np.round(c.y[sel]).astype(np.int64)
            cx = np.round(c.x[sel]).astype(np.int64)
            py = cy[:, None, None] + off[None, :, None]
            px = cx[:, None, None] + off[None, None, :]
            py, px = np.broadcast_arrays(py, px)
            ok = (py >= y0) & (py < y0 + h) & (px >= x0) & (px < x0 + w)
            if not ok.any():
                continue
            cell = np.broadcast_to(sel[:, None, None], ok.shape)[ok]
            py, px = py[ok], px[ok]
            dy = (py - c.y[cell]).astype(np.float32)
            dx = (px - c.x[cell]).astype(np.float32)
            yield cell, (py - y0) * w + (px - x0), dx, dy, px, py

    def _nucleus_profile(self, cell, dx, dy):
        c = self.cells
        th = c.theta[cell]
        ct, st = np.cos(th), np.sin(th)
        a, b = c.a[cell], c.b[cell]
        u = (dx * ct + dy * st) / a
        v = (-dx * st + dy * ct) / b
        d2 = u * u + v * v
        core = np.clip((1.0 - d2) * (0.5 * a + 0.5), 0.0, 1.0)
        return core, d2

    # -- rendering --------------------------------------------------------------------------
    def concentrations(self, y0: int, x0: int, h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
        """(hematoxylin, eosin-or-DAB) concentration maps of a region, float32 (h, w)."""
        c = self.cells
        base = self._upsample(y0, x0, h, w)
        fa = self._texture("fibre_a", y0, x0, h, w)
        fb = self._texture("fibre_b", y0, x0, h, w)
        fib = base[2] * fa
        fib += base[3] * (fb - fa)  # fibre weight x orientation blend
        gh, gw = self.grain.shape
        grain = self._texture("grain", y0, x0, h, w)
        he = self.stain.kind == "he"
        if he:
            conc_h = base[0] + 0.04 * fib
            conc_x = base[1] * (1.0 + 0.22 * grain) + FIBRE_EOSIN * fib
        else:
            conc_h = base[0] + FIBRE_HEMATOXYLIN * fib
            conc_x = base[1] * (1.0 + 0.3 * grain)
        idx = self._cells_in(y0, h)
        n_px = h * w
        flat_h, w_h, flat_x, w_x = [], [], [], []
        g = self.grain
        for cell, flat, dx, dy, px, py in self._patches(idx, self.r_nuc, y0, x0, h, w):
            core, d2 = self._nucleus_profile(cell, dx, dy)
            tex = g[py % gh, px % gw]
            shade = core * (1.0 + c.chrom[cell] * tex) * (0.82 + 0.28 * np.minimum(d2, 1.0))
            flat_h.append(flat)
            if he:
                w_h.append(shade * c.h[cell])
            else:
                dab = c.dab[cell] if c.dab is not None else 0.0
                counter = c.h[cell] * NUCLEAR_COUNTERSTAIN * (1.0 - 0.6 * np.minimum(dab, 1.0))
                w_h.append(shade * counter)
                if c.dab is not None:
                    flat_x.append(flat)
                    w_x.append(core * (dab * DAB_GAIN) * (1.0 + 0.35 * tex))
        if not he and self.r_mem is not None:
            mem_idx = idx[c.membrane[idx] > 0]
            for cell, flat, dx, dy, _px, _py in self._patches(mem_idx, self.r_mem, y0, x0, h, w):
                rc = c.cell_r[cell]
                d = np.sqrt(dx * dx + dy * dy) / rc
                ring = np.clip(1.0 - np.abs(d - 1.0) * rc / 1.1, 0.0, 1.0) + 0.1 * (d < 1.0)
                flat_x.append(flat)
                w_x.append(ring * (c.membrane[cell] * DAB_GAIN))
        if flat_h:
            acc = np.bincount(np.concatenate(flat_h), np.concatenate(w_h), minlength=n_px)
            conc_h = conc_h + acc.reshape(h, w).astype(np.float32)
        if flat_x:
            acc = np.bincount(np.concatenate(flat_x), np.concatenate(w_x), minlength=n_px)
            conc_x = conc_x + acc.reshape(h, w).astype(np.float32)
        return conc_h * self.stain.scale_h, conc_x * self.stain.scale_x

    def __call__(self, y0: int, x0: int, h: int, w: int) -> np.ndarray:
        """RGB uint8 (h, w, 3) of a level-0 region; wide regions are rendered by two threads
        (each pixel depends only on its position, so the split does not change the result)."""
        if self.threads < 2 or w < 2048:
            return self._render(y0, x0, h, w)
        from concurrent.futures import ThreadPoolExecutor

        if self._pool is None:
            self._pool = ThreadPoolExecutor(self.threads, thread_name_prefix="histostain-sim")
        cuts = np.linspace(0, w, self.threads + 1).astype(int)
        cuts[1:-1] -= cuts[1:-1] % COARSE
        out = np.empty((h, w, 3), np.uint8)

        def part(i: int) -> None:
            a, b = int(cuts[i]), int(cuts[i + 1])
            out[:, a:b] = self._render(y0, x0 + a, h, b - a)

        list(self._pool.map(part, range(self.threads)))
        return out

    def _render(self, y0: int, x0: int, h: int, w: int) -> np.ndarray:
        conc_h, conc_x = self.concentrations(y0, x0, h, w)
        noise = self._texture("noise", y0, x0, h, w)
        out = np.empty((h, w, 3), np.uint8)
        tmp = np.empty((h, w), np.float32)
        tmp2 = np.empty((h, w), np.float32)
        for ch in range(3):
            np.multiply(conc_h, -float(self.stain.v_h[ch]), out=tmp)
            np.multiply(conc_x, float(self.stain.v_x[ch]), out=tmp2)
            tmp -= tmp2
            np.exp(tmp, out=tmp)
            tmp *= float(self.stain.background[ch])
            tmp += noise[:, :, ch]
            np.clip(tmp, 0, 255, out=tmp)
            out[:, :, ch] = tmp
        return out

    def cell_ids(self, y0: int, x0: int, h: int, w: int, *, min_core: float = 0.5) -> np.ndarray:
        """(h, w) int32 map: index + 1 of the cell whose nucleus covers each pixel, 0 elsewhere."""
        out = np.zeros(h * w, np.int32)
        best = np.zeros(h * w, np.float32)
        idx = self._cells_in(y0, h)
        for cell, flat, dx, dy, _px, _py in self._patches(idx, self.r_nuc, y0, x0, h, w):
            core, _ = self._nucleus_profile(cell, dx, dy)
            ok = core >= min_core
            order = np.argsort(core[ok], kind="stable")
            f, cc, cv = flat[ok][order], cell[ok][order], core[ok][order]
            better = cv > best[f]
            out[f[better]] = cc[better] + 1
            best[f[better]] = cv[better]
        return out.reshape(h, w)
