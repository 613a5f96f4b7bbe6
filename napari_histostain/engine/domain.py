"""The domain reference: does a tile (and a slide) look like what the model was trained on?

A model file may carry a compact description of its training tiles' embeddings: a PCA basis
(`DIMS` components) with a Ledoit-Wolf shrinkage covariance of the projections. A tile's raw
distance is its Mahalanobis distance inside the basis plus its reconstruction residual outside
it (each divided by its median on the fitting tiles); its **domain score** is that distance as a
percentile (0-100) of held-out training-domain tiles, so 99 means "farther than 99 % of tiles
like the training ones" (100: farther than all of them).

A tile is out of domain above `tile_cut` (a percentile); a slide is out of domain when the share of
its tiles out of domain is above `max_out_share`, when its tiles' mean score is above
`max_mean_score` (a mild shift moves every tile a little: few cross the tile cut, but the mean
moves), or when it has enough tissue tiles but fewer than `min_in_domain_tiles` of them are in
domain. The slide cuts are set on held-out training-domain slides to a stated slide false-flag
rate (`fit_reference`), split between the two slide rules. Only scoring is here (numpy); fitting needs
scikit-learn (the `train` extra).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from ..errors import HistostainError
from .no_call import MIN_TISSUE_TILES

METHOD = "pca-ledoit-wolf-mahalanobis+residual"
#: PCA components kept
DIMS = 64
#: tile cut: a tile farther than this percentile of held-out training-domain tiles is out of domain
TILE_CUT = 99.0
#: the slide false-flag rate the slide rule is set to
FALSE_FLAG_RATE = 0.02
#: the slide rule never allows fewer in-domain tiles than this share (small held-out sets)
MIN_MAX_OUT_SHARE = 0.2
#: the mean-score rule never flags a slide whose tiles' mean percentile is at or below this (the
#: training domain's mean is 50 by construction)
MIN_MAX_MEAN_SCORE = 75.0
#: held-out score quantiles stored (0, 0.1, ..., 100 percent)
N_QUANTILES = 1001
ARRAY_NAMES = ("mean", "components", "precision", "quantiles")


class DomainError(HistostainError):
    """A domain reference cannot be fitted or read."""


@dataclass
class DomainReference:
    """Scores tiles against a model's training domain (see the module docstring)."""

    mean: np.ndarray  # (D,)
    components: np.ndarray  # (k, D), orthonormal rows
    precision: np.ndarray  # (k, k) inverse shrinkage covariance of the projections
    quantiles: np.ndarray  # (N_QUANTILES,) raw distances of held-out tiles at 0..100 %
    scales: tuple[float, float]  # medians of the Mahalanobis and residual parts (fitting tiles)
    tile_cut: float = TILE_CUT
    max_out_share: float = MIN_MAX_OUT_SHARE
    max_mean_score: float | None = None  # None: no mean-score rule (references made before it)
    min_in_domain_tiles: int = MIN_TISSUE_TILES
    info: dict = field(default_factory=dict)  # what it was fitted on, rates measured

    # -- scoring --------------------------------------------------------------------------------
    def raw(self, features: np.ndarray) -> np.ndarray:
        """(N,) raw distances of (N, D) tile embeddings."""
        x = np.asarray(features, np.float64).reshape(len(features), -1)
        if x.shape[1] != self.mean.shape[0]:
            raise DomainError(
                f"tile embeddings are {x.shape[1]}-d but the domain reference is "
                f"{self.mean.shape[0]}-d; use the tile encoder the model was trained with."
            )
        d = x - self.mean
        z = d @ self.components.T
        maha = np.einsum("ni,ij,nj->n", z, self.precision, z)
        resid = np.maximum((d * d).sum(1) - (z * z).sum(1), 0.0)
        return maha / self.scales[0] + resid / self.scales[1]

    def percentile(self, raw: np.ndarray) -> np.ndarray:
        """Raw distances as percentiles (0-100) of the held-out tiles."""
        grid = np.linspace(0.0, 100.0, len(self.quantiles))
        return np.interp(np.asarray(raw, np.float64), self.quantiles, grid)

    def score(self, features: np.ndarray) -> np.ndarray:
        """(N,) domain scores (percentiles) of (N, D) tile embeddings."""
        return self.percentile(self.raw(features))

    def in_domain(self, scores: np.ndarray) -> np.ndarray:
        """(N,) bool: tiles at or below the tile cut."""
        return np.asarray(scores) <= self.tile_cut

    def verdict(self, scores: np.ndarray) -> dict:
        """A slide's verdict from its tiles' scores: {"in_domain", "score" (share of tiles out of
        domain), "threshold" (largest share allowed), "tiles", "in_domain_tiles"}."""
        scores = np.asarray(scores, np.float64)
        inside = self.in_domain(scores)
        n = int(scores.size)
        n_in = int(inside.sum())
        share = 1.0 - n_in / n if n else 0.0
        mean = float(scores.mean()) if n else 0.0
        enough_tissue = n >= self.min_in_domain_tiles
        ok = share <= self.max_out_share and not (enough_tissue and n_in < self.min_in_domain_tiles)
        shifted = self.max_mean_score is not None and n > 0 and mean > self.max_mean_score
        out = {
            "in_domain": bool(ok and not shifted),
            "score": round(share, 4),
            "threshold": round(self.max_out_share, 4),
            "tiles": n,
            "in_domain_tiles": n_in,
        }
        if self.max_mean_score is not None:
            out["mean_score"] = round(mean, 2)
            out["mean_threshold"] = round(self.max_mean_score, 2)
        return out

    # -- storage --------------------------------------------------------------------------------
    def to_config(self) -> tuple[dict, dict]:
        """(ModelConfig.domain summary, ModelConfig.domain_arrays)."""
        summary = {
            "method": METHOD,
            "dims": int(self.components.shape[0]),
            "embedding_dim": int(self.mean.shape[0]),
            "scales": [float(v) for v in self.scales],
            "tile_cut": float(self.tile_cut),
            "max_out_share": float(self.max_out_share),
            **({} if self.max_mean_score is None else {"max_mean_score": self.max_mean_score}),
            "min_in_domain_tiles": int(self.min_in_domain_tiles),
            **self.info,
        }
        arrays = {
            "mean": self.mean.astype(np.float32),
            "components": self.components.astype(np.float32),
            "precision": self.precision.astype(np.float32),
            "quantiles": self.quantiles.astype(np.float64),
        }
        return summary, arrays

    @classmethod
    def from_config(cls, summary: dict, arrays: dict) -> DomainReference | None:
        """The reference of a model config (None when the model has none)."""
        if not summary:
            return None
        missing = [k for k in ARRAY_NAMES if k not in arrays]
        if summary.get("method") != METHOD or missing:
            raise DomainError(
                f"the model's domain reference is of method {summary.get('method')!r} or lacks "
                f"{missing}; add it again with `histostain add-domain`."
            )
        keys = (
            "method",
            "dims",
            "embedding_dim",
            "scales",
            "tile_cut",
            "max_out_share",
            "max_mean_score",
        )
        mean_cut = summary.get("max_mean_score")
        return cls(
            mean=np.asarray(arrays["mean"], np.float64),
            components=np.asarray(arrays["components"], np.float64),
            precision=np.asarray(arrays["precision"], np.float64),
            quantiles=np.asarray(arrays["quantiles"], np.float64),
            scales=(float(summary["scales"][0]), float(summary["scales"][1])),
            tile_cut=float(summary["tile_cut"]),
            max_out_share=float(summary["max_out_share"]),
            max_mean_score=None if mean_cut is None else float(mean_cut),
            min_in_domain_tiles=int(summary.get("min_in_domain_tiles", MIN_TISSUE_TILES)),
            info={k: v for k, v in summary.items() if k not in (*keys, "min_in_domain_tiles")},
        )


def domain_text(verdict: dict, plural: bool = False) -> str:
    """Why a slide is out of a model's domain, in words (from `DomainReference.verdict`);
    `plural` when said of several models at once."""
    their = "their" if plural else "its"
    n, n_in = verdict["tiles"], verdict["in_domain_tiles"]
    if verdict["score"] > verdict["threshold"] or (n >= MIN_TISSUE_TILES > n_in):
        return (
            f"{n - n_in} of {n} tiles ({verdict['score']:.0%}) do not look like {their} training "
            f"tissue (at most {verdict['threshold']:.0%} may): the slide is out of {their} domain."
        )
    return (
        f"the slide's tiles are on average farther from {their} training tissue than usual (mean "
        f"domain score {verdict.get('mean_score', 0):.0f}, at most "
        f"{verdict.get('mean_threshold', 0):.0f} on slides like the training ones): the slide is "
        f"out of {their} domain (a shift of stain, scanner or tissue)."
    )


def reference_of(cfg) -> DomainReference | None:
    """The domain reference stored in a `ModelConfig` (None: none)."""
    return DomainReference.from_config(cfg.domain, cfg.domain_arrays)


def fit_reference(
    fit_tiles: np.ndarray,
    heldout_slides: Sequence[np.ndarray],
    *,
    dims: int = DIMS,
    tile_cut: float = TILE_CUT,
    false_flag_rate: float = FALSE_FLAG_RATE,
    fitted_on: str = "",
    seed: int = 0,
) -> DomainReference:
    """Fit a reference: PCA + Ledoit-Wolf on `fit_tiles` (N, D) (training tiles); the percentile
    scale, the tile cut and the slide rule on `heldout_slides` (each (n_i, D): tiles of one held-out
    training-domain slide, not in `fit_tiles`): `max_out_share` is the (1 - rate / 2) quantile of
    the held-out slides' out-of-domain shares (at least `MIN_MAX_OUT_SHARE`), `max_mean_score` the
    (1 - rate / 2) quantile of their mean tile scores (at least `MIN_MAX_MEAN_SCORE`)."""
    from sklearn.covariance import LedoitWolf
    from sklearn.decomposition import PCA

    x = np.asarray(fit_tiles, np.float64)
    slides = [np.asarray(s, np.float64) for s in heldout_slides if len(s)]
    dims = min(dims, x.shape[1] - 1) if x.ndim == 2 else dims
    if len(x) < 2 * dims or len(slides) < 5:
        raise DomainError(
            f"a domain reference needs at least {2 * dims} fitting tiles and 5 held-out slides "
            f"(got {len(x)} tiles, {len(slides)} slides); use a larger cohort."
        )
    pca = PCA(n_components=dims, random_state=seed).fit(x)
    z = pca.transform(x)
    lw = LedoitWolf(assume_centered=True).fit(z)
    ref = DomainReference(
        mean=pca.mean_,
        components=pca.components_,
        precision=lw.precision_,
        quantiles=np.zeros(2),
        scales=(1.0, 1.0),
        tile_cut=tile_cut,
    )
    d = x - ref.mean
    zz = d @ ref.components.T
    maha = np.einsum("ni,ij,nj->n", zz, ref.precision, zz)
    resid = np.maximum((d * d).sum(1) - (zz * zz).sum(1), 0.0)
    floor = 1e-6 * float(np.median((d * d).sum(1))) + 1e-12  # residual ~0 with few dims
    ref.scales = (float(np.median(maha)), float(max(np.median(resid), floor)))
    raw = [ref.raw(s) for s in slides]
    ref.quantiles = np.quantile(np.concatenate(raw), np.linspace(0, 1, N_QUANTILES))
    scores = [ref.percentile(r) for r in raw]
    shares = np.array([1.0 - ref.in_domain(s).mean() for s in scores])
    means = np.array([s.mean() for s in scores])
    level = 1.0 - false_flag_rate / 2.0  # the two slide rules share the false-flag budget
    ref.max_out_share = max(float(np.quantile(shares, level, method="higher")), MIN_MAX_OUT_SHARE)
    mean_cut = float(np.quantile(means, level, method="higher"))
    ref.max_mean_score = max(mean_cut, MIN_MAX_MEAN_SCORE)
    flagged = sum(not ref.verdict(s)["in_domain"] for s in scores)
    ref.info = {
        "fitted_on": fitted_on,
        "fit_tiles": int(len(x)),
        "heldout_tiles": int(sum(len(s) for s in slides)),
        "heldout_slides": len(slides),
        "false_flag_rate_target": float(false_flag_rate),
        "heldout_slides_flagged": int(flagged),
        "lw_shrinkage": float(lw.shrinkage_),
        "explained_variance": float(pca.explained_variance_ratio_.sum()),
    }
    return ref


def wilson_interval(k: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval of a proportion k/n (scipy's `binomtest`)."""
    from scipy.stats import binomtest

    if n <= 0:
        return (math.nan, math.nan)
    ci = binomtest(k, n).proportion_ci(confidence_level=confidence, method="wilson")
    return (float(ci.low), float(ci.high))
