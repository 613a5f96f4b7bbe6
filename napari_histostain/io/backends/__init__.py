"""Slide backends: each reads one family of files behind the `SlideBackend` protocol.

`open_slide` tries each family's opener in turn; an opener returns `(SlideInfo, backend)` for a file it
reads, None for a file that is not its kind, and raises `SlideError` for its kind of file that is
broken.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

import numpy as np

from ..metadata import SlideInfo


class SlideBackend(Protocol):
    """Thread-safe pixel access of one open slide file."""

    name: str

    def read_region(
        self, location: tuple[int, int], level: int, size: tuple[int, int]
    ) -> np.ndarray:
        """(h, w, 3) uint8 RGB at level-0 `location` (x, y), `size` (w, h) in level pixels."""
        ...

    def associated_image(self, name: str) -> np.ndarray: ...

    def close(self) -> None: ...


Opener = Callable[[Path, str], "tuple[SlideInfo, SlideBackend] | None"]

#: Readers whose log lines ("<tifffile.TiffPages @8> invalid page offset") must not reach stderr by
#: Python's last-resort handler (in dask workers, scripts): a broken file reaches the user as our
#: own one-line error; the CLI shows the library's lines with --verbose.
QUIET_LIBRARY_LOGGERS = ("tifffile",)
for _name in QUIET_LIBRARY_LOGGERS:
    logging.getLogger(_name).addHandler(logging.NullHandler())


def composite_rgba(rgba: np.ndarray, background: tuple[int, int, int]) -> np.ndarray:
    """RGBA (non-premultiplied) -> RGB, blending transparent pixels onto `background`."""
    rgb = rgba[..., :3]
    alpha = rgba[..., 3]
    if alpha.min() == 255:
        return rgb  # a view: no copy on the hot path (callers that keep it may copy)
    a = alpha[..., None].astype(np.float32) / 255.0
    bg = np.asarray(background, np.float32)
    return (rgb.astype(np.float32) * a + bg * (1.0 - a) + 0.5).astype(np.uint8)
