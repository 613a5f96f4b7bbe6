"""Random smooth fields and periodic textures (deterministic for a generator state)."""

from __future__ import annotations

import numpy as np


def smooth_field(rng: np.random.Generator, shape: tuple[int, int], scale: float) -> np.ndarray:
    """Gaussian random field of unit std with correlation length ~`scale` grid cells.

    Made on a coarse lattice (3 samples per `scale`) and upsampled bilinearly, so large scales
    stay cheap whatever the grid size.
    """
    from scipy import ndimage

    step = max(scale / 3.0, 1.0)
    ch, cw = (int(np.ceil(s / step)) + 3 for s in shape)
    coarse = ndimage.gaussian_filter(rng.standard_normal((ch, cw)), 1.2, mode="wrap")
    out = ndimage.zoom(coarse.astype(np.float32), step, order=1, mode="nearest")
    out = np.ascontiguousarray(out[: shape[0], : shape[1]])
    out -= out.mean()
    sd = out.std()
    return out / (sd if sd > 0 else 1.0)


def periodic_texture(
    rng: np.random.Generator,
    size: int,
    sigma_along: float,
    sigma_across: float,
    angle: float = 0.0,
) -> np.ndarray:
    """A seamlessly tiling (size x size) float32 texture of unit std: white noise low-passed by an
    anisotropic Gaussian (`sigma_along` / `sigma_across` px, along direction `angle` radians)."""
    noise = rng.standard_normal((size, size))
    fy = np.fft.fftfreq(size)[:, None]
    fx = np.fft.rfftfreq(size)[None, :]
    ca, sa = np.cos(angle), np.sin(angle)
    f_along = fx * ca + fy * sa
    f_across = -fx * sa + fy * ca
    gain = np.exp(-2 * np.pi**2 * ((f_along * sigma_along) ** 2 + (f_across * sigma_across) ** 2))
    tex = np.fft.irfft2(np.fft.rfft2(noise) * gain, s=(size, size))
    tex -= tex.mean()
    tex /= tex.std() or 1.0
    return tex.astype(np.float32)


def wavy(tex: np.ndarray, angle: float, amplitude: float, wavelength: float, rng) -> np.ndarray:
    """Bend a periodic texture's features running along `angle` into waves (stays periodic)."""
    from scipy import ndimage

    size = tex.shape[0]
    # integer wave numbers so the displacement tiles with the texture
    n_along = max(1, int(round(size / wavelength)))
    ky = int(round(n_along * np.sin(angle)))
    kx = int(round(n_along * np.cos(angle)))
    if kx == 0 and ky == 0:
        kx = 1
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    phase = rng.uniform(0, 2 * np.pi)
    d = amplitude * np.sin(2 * np.pi * (kx * xx + ky * yy) / size + phase)
    d += 0.5 * amplitude * np.sin(2 * np.pi * (2 * kx * xx + 2 * ky * yy) / size + 2 * phase)
    ny, nx = np.cos(angle), -np.sin(angle)  # across-fibre direction (row, col)
    return ndimage.map_coordinates(tex, [yy + d * ny, xx + d * nx], order=1, mode="grid-wrap")
