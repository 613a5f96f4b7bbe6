"""Per-slide cache of tile embeddings: features (float16, zip-compressed), tile coordinates, encoder
id, version and weights fingerprint.

One `<key>.npz` per slide, written atomically, so an interrupted run leaves only finished slides and
a re-run skips them. A slide's identity is its path relative to the manifest's folder (else its
absolute path), never its file name alone: two slides named `s.tiff` in two folders get two
entries, and an entry records whose it is, so a slide is never served another's features (a clash
is an error naming both files). The folder's `cache.json` records the encoder (and its
fingerprint) and tiling; a cache made with another encoder, other weights or another tiling is
refused rather than mixed.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from napari_histostain.errors import HistostainError

log = logging.getLogger(__name__)

CACHE_FORMAT = 1
INDEX_NAME = "cache.json"


class CacheError(HistostainError):
    """The embedding cache is missing entries, corrupt, or made with another encoder / tiling."""


@dataclass
class SlideEmbeddings:
    """Tile embeddings of one slide."""

    features: np.ndarray  # (N, D) float16
    coords: np.ndarray  # (N, 2) int64 level-0 (x, y) of tile top-left
    tissue_fraction: np.ndarray  # (N,) float32
    meta: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.features)


@dataclass
class EmbedSummary:
    embedded: list[Path]
    skipped: list[Path]
    tiles: int
    seconds: float

    @property
    def tiles_per_second(self) -> float:
        return self.tiles / self.seconds if self.seconds > 0 else float("nan")


class EmbeddingCache:
    """A cache folder for one encoder and one tiling (tile_mpp, tile_size, min_tissue)."""

    def __init__(
        self,
        folder: str | Path,
        *,
        encoder_id: str,
        encoder_version: str,
        tile_mpp: float = 1.0,
        tile_size: int = 224,
        min_tissue: float = 0.25,
        root: str | Path | None = None,
        encoder_weights: str = "",
    ):
        self.folder = Path(folder)
        self.root = Path(root).resolve() if root is not None else None
        self.settings: dict[str, Any] = {
            "format": CACHE_FORMAT,
            "encoder_id": str(encoder_id),
            "encoder_version": str(encoder_version),
            "tile_mpp": float(tile_mpp),
            "tile_size": int(tile_size),
            "min_tissue": float(min_tissue),
        }
        if encoder_weights:
            self.settings["encoder_weights"] = str(encoder_weights)

    @classmethod
    def for_encoder(
        cls,
        folder: str | Path,
        encoder,
        *,
        tile_mpp: float | None = None,
        tile_size: int | None = None,
        min_tissue: float = 0.25,
        root: str | Path | None = None,
    ) -> EmbeddingCache:
        """A cache for `encoder`'s embeddings (its id, version and weights fingerprint), tiled at
        `tile_mpp` / `tile_size`, by default the encoder's own (a foundation-model preset's
        published input; EfficientNet-Lite0: 224 px at 1.0 um/px)."""
        from napari_histostain.defaults import TILE_MPP

        return cls(
            folder,
            encoder_id=encoder.id,
            encoder_version=encoder_version(encoder),
            tile_mpp=tile_mpp or encoder.tile_mpp or TILE_MPP,
            tile_size=tile_size or encoder.tile_size,
            min_tissue=min_tissue,
            root=root,
            encoder_weights=encoder.fingerprint,
        )

    @classmethod
    def open(cls, folder: str | Path, root: str | Path | None = None) -> EmbeddingCache:
        """An existing cache, with the settings recorded in its `cache.json`."""
        index = Path(folder) / INDEX_NAME
        try:
            s = json.loads(index.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise CacheError(
                f"{folder} is not an embedding cache (no {INDEX_NAME}); "
                "make it with `histostain embed MANIFEST --cache FOLDER`."
            ) from None
        except (OSError, ValueError) as exc:
            raise CacheError(f"cannot read {index}: {exc}") from None
        return cls(
            folder,
            encoder_id=s["encoder_id"],
            encoder_version=s["encoder_version"],
            tile_mpp=s["tile_mpp"],
            tile_size=s["tile_size"],
            min_tissue=s["min_tissue"],
            root=root,
            encoder_weights=s.get("encoder_weights", ""),
        )

    def check_or_create(self) -> None:
        """Write `cache.json`, or check that the existing one has the same encoder and tiling."""
        from napari_histostain.io.atomic import ensure_dir, write_json

        ensure_dir(self.folder)
        index = self.folder / INDEX_NAME
        if index.exists():
            old = json.loads(index.read_text(encoding="utf-8"))
            # caches made before weights were fingerprinted do not record them: not a mismatch
            diff = {
                k: (old.get(k), v)
                for k, v in self.settings.items()
                if old.get(k) != v and not (k == "encoder_weights" and k not in old)
            }
            if diff:
                raise CacheError(
                    f"cache {self.folder} was made with other settings "
                    + ", ".join(f"{k}: {a!r} (cache) vs {b!r} (now)" for k, (a, b) in diff.items())
                    + "; use another --cache folder."
                )
        else:
            write_json(index, self.settings)

    def slide_id(self, slide_path: str | Path) -> str:
        """A slide's identity: its path relative to `root` (the manifest's folder), else its
        absolute path (POSIX form)."""
        p = Path(slide_path).expanduser().resolve()
        if self.root is not None:
            try:
                return p.relative_to(self.root).as_posix()
            except ValueError:
                pass
        return p.as_posix()

    def key(self, slide_path: str | Path) -> str:
        """File stem of a slide's entry: its relative path made safe; for a slide outside `root`,
        its name and a hash of its absolute path (never the name alone)."""
        ident = self.slide_id(slide_path)
        if self.root is not None and not Path(ident).is_absolute():
            return _safe(ident)
        return f"{_safe(Path(ident).name)}-{hashlib.sha1(ident.encode()).hexdigest()[:12]}"

    def path_for(self, slide_path: str | Path) -> Path:
        return self.folder / f"{self.key(slide_path)}.npz"

    def has(self, slide_path: str | Path) -> bool:
        """Whether the slide is embedded here; `CacheError` when its entry holds another slide."""
        path = self.path_for(slide_path)
        if not path.is_file():
            return False
        self._check_owner(path, slide_path, _entry_meta(path))
        return True

    def _check_owner(self, path: Path, slide_path: str | Path, meta: dict) -> None:
        owner, me = meta.get("slide_id"), self.slide_id(slide_path)
        if owner is not None and owner != me:  # entries of older versions record no identity
            raise CacheError(
                f"cache entry {path} holds the embeddings of {owner}, not of {me}: the two slides "
                "map to one cache file. Rename one of them, or use another --cache folder."
            )

    def check_distinct(self, slide_paths: Sequence[str | Path]) -> None:
        """`CacheError` naming both files when two different slides would share one entry."""
        seen: dict[str, str] = {}
        for p in slide_paths:
            key, ident = self.key(p), self.slide_id(p)
            if seen.setdefault(key, ident) != ident:
                raise CacheError(
                    f"slides {seen[key]} and {ident} would share the embedding cache entry "
                    f"{key}.npz; rename one of them."
                )

    def save(self, slide_path: str | Path, emb: SlideEmbeddings) -> Path:
        from napari_histostain.io.atomic import atomic_path

        target = self.path_for(slide_path)
        meta = {
            **self.settings,
            **emb.meta,
            "slide": Path(slide_path).name,
            "slide_id": self.slide_id(slide_path),
        }
        with atomic_path(target) as tmp, open(tmp, "wb") as fh:
            np.savez_compressed(
                fh,
                features=emb.features.astype(np.float16),
                coords=emb.coords.astype(np.int64),
                tissue_fraction=emb.tissue_fraction.astype(np.float32),
                meta=np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8),
            )
        return target

    def load(self, slide_path: str | Path) -> SlideEmbeddings:
        path = self.path_for(slide_path)
        if not path.is_file():
            raise CacheError(
                f"slide {slide_path} is not in the embedding cache {self.folder}; "
                "run `histostain embed` on the manifest first."
            )
        try:
            with np.load(path) as z:
                meta = json.loads(z["meta"].tobytes().decode())
                emb = SlideEmbeddings(z["features"], z["coords"], z["tissue_fraction"], meta)
        except (OSError, ValueError, KeyError) as exc:
            raise CacheError(
                f"cache entry {path} is corrupt ({exc}); delete it and re-run `histostain embed`."
            ) from None
        self._check_owner(path, slide_path, meta)
        if meta.get("encoder_id") != self.settings["encoder_id"]:
            raise CacheError(
                f"cache entry {path} was made by encoder {meta.get('encoder_id')!r}, "
                f"not {self.settings['encoder_id']!r}; use another --cache folder."
            )
        return emb


def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "__", text)


def _entry_meta(path: Path) -> dict:
    """The metadata of a cache entry ({} when unreadable: loading it then says it is corrupt)."""
    try:
        with np.load(path) as z:
            return json.loads(z["meta"].tobytes().decode())
    except (OSError, ValueError, KeyError):
        return {}


def optical_density_tissue(slide, *, target_mpp: float = 8.0):
    """Tissue mask of a (faint) IHC slide: the engine's `detect_tissue`, which thresholds optical
    density as well as saturation, so hematoxylin-only sections are found."""
    from napari_histostain.engine.tissue import detect_tissue

    return detect_tissue(slide, target_mpp=target_mpp)


def embed_slide(
    slide_path: str | Path,
    encoder,
    *,
    tile_mpp: float = 1.0,
    tile_size: int = 224,
    min_tissue: float = 0.25,
    batch_size: int | None = None,
    threads: int | None = None,
    tissue: str = "saturation",
    on_tiles: Callable[[int], None] | None = None,
) -> SlideEmbeddings:
    """Embed every tissue tile of one slide with `encoder` (the inference engine's tile encoder,
    on its device; `batch_size` and `threads` default to the device's, as in prediction).

    `tissue`: "saturation" uses the engine's `detect_tissue` (as inference does on H&E);
    "optical-density" uses `optical_density_tissue` (for faint IHC slides).
    """
    from napari_histostain.defaults import READER_THREADS
    from napari_histostain.engine.device import reader_threads_for
    from napari_histostain.engine.tile_stream import embedded_batches
    from napari_histostain.engine.tiling import make_grid
    from napari_histostain.io.slide import open_slide

    with open_slide(slide_path) as slide:
        mask = optical_density_tissue(slide) if tissue == "optical-density" else None
        grid = make_grid(
            slide, tile_mpp=tile_mpp, tile_size=tile_size, min_tissue=min_tissue, tissue=mask
        )
        feats = np.zeros((len(grid), encoder.dim), np.float16)
        if len(grid):
            threads = threads or reader_threads_for(encoder.device, READER_THREADS)
            batches = embedded_batches(slide, grid, encoder, batch_size=batch_size, threads=threads)
            for idx, _tiles, batch_feats in batches:
                feats[idx] = batch_feats.cpu().numpy().astype(np.float16)
                if on_tiles:
                    on_tiles(len(idx))
        meta = {
            "n_tiles": len(grid),
            "dim": int(encoder.dim),
            "tissue": tissue,
            "slide_mpp": list(grid.slide_mpp),
            "slide_dimensions": list(grid.slide_dimensions),
        }
        return SlideEmbeddings(feats, grid.coords, grid.tissue_fraction, meta)


def encoder_version(encoder) -> str:
    """The encoder's version tag (its `.version` if it has one, else the package version)."""
    from napari_histostain import __version__

    return str(getattr(encoder, "version", None) or __version__)


def embed_slides(
    slide_paths: Sequence[str | Path],
    cache: EmbeddingCache,
    encoder,
    *,
    batch_size: int | None = None,
    threads: int | None = None,
    progress: bool = True,
    limit: int | None = None,
    stop: Callable[[], bool] | None = None,
    ihc_slides: set | None = None,
) -> EmbedSummary:
    """Embed the slides not yet in `cache`; finished slides are skipped, so a re-run resumes.

    `limit` embeds at most that many new slides (then returns); `stop()` returning True ends the run
    between slides. Slides without tissue are cached with zero tiles (and reported). Slides in
    `ihc_slides` get optical-density tissue detection.
    """
    ihc_slides = {Path(p) for p in (ihc_slides or ())}
    from tqdm.auto import tqdm

    cache.check_distinct(slide_paths)
    cache.check_or_create()
    cached = {Path(p): cache.has(p) for p in slide_paths}
    todo = [p for p, there in cached.items() if not there]
    skipped = [p for p, there in cached.items() if there]
    done: list[Path] = []
    tiles = 0
    t0 = time.perf_counter()
    s = cache.settings
    bar = tqdm(total=len(todo), unit="slide", desc="embedding", disable=not progress)
    try:
        for p in todo:
            if (limit is not None and len(done) >= limit) or (stop is not None and stop()):
                break
            emb = embed_slide(
                p,
                encoder,
                tile_mpp=s["tile_mpp"],
                tile_size=s["tile_size"],
                min_tissue=s["min_tissue"],
                batch_size=batch_size,
                threads=threads,
                tissue="optical-density" if Path(p) in ihc_slides else "saturation",
            )
            if len(emb) == 0:
                log.warning("slide %s has no tissue tiles", p)
            cache.save(p, emb)
            done.append(p)
            tiles += len(emb)
            bar.update(1)
            bar.set_postfix(tiles=tiles)
    finally:
        bar.close()
    return EmbedSummary(done, skipped, tiles, time.perf_counter() - t0)
