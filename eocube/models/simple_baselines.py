"""Trivial baselines that every shipped model stands beside, fitted on the same training
cities and applied to the same inputs: a per-pixel logistic regression on the model's bands,
one threshold on VV (dB) and one on NDBI, post-classification change of two yearly maps, and
volume × one mean material intensity for stock. (Mean height per land use, the height
baseline, lives with the height model: :func:`eocube.models.height.land_use_mean_height`.)

Torch-free; the logistic regression is scikit-learn's. Each ``fit_*`` takes plain arrays
or Datasets of the training cities and returns a small frozen rule that ``apply`` / ``predict``
uses on a held-out city, so the same fitted baseline can be scored over splits and seeds.
(The module is not called ``baselines``: that is the population baselines' module, and no
module name is in two folders.)
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import TYPE_CHECKING, Literal

import numpy as np

from eocube.errors import ConfigError

if TYPE_CHECKING:
    import xarray as xr

__all__ = ["PixelLogistic", "ThresholdRule", "baseline_features", "best_f1_threshold",
           "fit_pixel_logistic", "fit_stock_intensity", "fit_threshold_rule",
           "post_classification", "volume_stock"]

Transform = Literal["identity", "db"]


def _band(ds: xr.Dataset, band: str, transform: Transform) -> np.ndarray:
    if band not in ds:
        raise ConfigError(f"the baseline needs band {band!r}; the input has "
                          f"{sorted(map(str, ds.data_vars))}.")
    a = ds[band].to_numpy().astype(np.float64)
    if transform == "db":
        with np.errstate(divide="ignore", invalid="ignore"):
            a = 10.0 * np.log10(np.where(a > 0, a, np.nan))
    return a


def baseline_features(ds: xr.Dataset, /, *, kind: Literal["vv_db", "ndbi"]) -> np.ndarray:
    """One (y, x) feature of a composite: VV backscatter in dB, or NDBI from B11 and B08
    (``(swir − nir)/(swir + nir)``). NaN where the input is missing."""
    if kind == "vv_db":
        return _band(ds, "vv", "db")
    if kind == "ndbi":
        swir, nir = _band(ds, "B11", "identity"), _band(ds, "B08", "identity")
        with np.errstate(divide="ignore", invalid="ignore"):
            return (swir - nir) / (swir + nir)
    raise ConfigError(f"kind must be 'vv_db' or 'ndbi', not {kind!r}.")


@dataclasses.dataclass(frozen=True)
class PixelLogistic:
    """A fitted per-pixel logistic regression: bands (with transforms), the standardisation,
    the coefficients and the decision threshold. ``probability(ds)`` gives P(built-up) per
    pixel (NaN where a band is missing); ``predict(ds)`` the map ``probability > threshold``,
    the threshold fitted for the best F1 on the training pixels (0.5 under-calls the minority
    class: a baseline judged by F1 should be fitted for F1, as the VV and NDBI thresholds are).
    """

    bands: tuple[str, ...]
    transforms: tuple[Transform, ...]
    mean: np.ndarray
    std: np.ndarray
    coef: np.ndarray
    intercept: float
    threshold: float = 0.5

    def _x(self, ds: xr.Dataset) -> np.ndarray:
        x = np.stack([_band(ds, b, t) for b, t in zip(self.bands, self.transforms,
                                                       strict=True)])
        return (x - self.mean[:, None, None]) / self.std[:, None, None]

    def probability(self, ds: xr.Dataset, /) -> np.ndarray:
        """P(built-up) on (y, x) of a composite holding :attr:`bands`."""
        z = np.tensordot(self.coef, self._x(ds), axes=1) + self.intercept
        with np.errstate(over="ignore"):
            return 1.0 / (1.0 + np.exp(-z))

    def predict(self, ds: xr.Dataset, /) -> np.ndarray:
        """The built-up map ``probability > threshold`` (False where a band is missing)."""
        p = self.probability(ds)
        return np.isfinite(p) & (p > self.threshold)


def fit_pixel_logistic(images: Sequence[xr.Dataset], labels: Sequence[np.ndarray], /, *,
                       bands: Sequence[str], transforms: Sequence[Transform] | None = None,
                       n_samples: int = 40_000, seed: int = 0,
                       c: float = 1.0) -> PixelLogistic:
    """Fit P(built-up | bands of one pixel) on the training composites.

    Parameters
    ----------
    images
        Composites (Datasets with a (y, x) variable per band), one per city and year.
    labels
        0/1 arrays on the same grids (built-up truth).
    bands, transforms
        The model's bands and their transforms (``"db"`` for S1 power; default ``"db"`` for
        ``vv``/``vh`` and ``"identity"`` otherwise).
    n_samples
        Pixels drawn (seeded, evenly over the images) from the finite ones.
    seed
        Seed of the draw.
    c
        Inverse L2 regularisation of scikit-learn's ``LogisticRegression``.

    Returns
    -------
    PixelLogistic
    """
    from sklearn.linear_model import LogisticRegression

    if len(images) != len(labels) or not images:
        raise ConfigError(f"fit_pixel_logistic needs one label array per image, got "
                          f"{len(images)} images and {len(labels)} labels.")
    tr = tuple(transforms) if transforms is not None else tuple(
        "db" if b in ("vv", "vh") else "identity" for b in bands)
    rng = np.random.default_rng(seed)
    xs, ys = [], []
    per = max(n_samples // len(images), 1)
    for ds, lab in zip(images, labels, strict=True):
        x = np.stack([_band(ds, b, t) for b, t in zip(bands, tr, strict=True)]).reshape(
            len(bands), -1)
        y = np.asarray(lab).reshape(-1)
        ok = np.flatnonzero(np.isfinite(x).all(axis=0))
        pick = rng.choice(ok, size=min(per, ok.size), replace=False)
        xs.append(x[:, pick])
        ys.append(y[pick])
    x = np.concatenate(xs, axis=1)
    y = np.concatenate(ys).astype(int)
    if np.unique(y).size < 2:
        raise ConfigError("the training labels hold one class only; a logistic baseline "
                          "needs built-up and non-built-up pixels.")
    mean, std = x.mean(axis=1), x.std(axis=1)
    std = np.where(std > 0, std, 1.0)
    xs_ = ((x - mean[:, None]) / std[:, None]).T
    lr = LogisticRegression(C=c, max_iter=1000).fit(xs_, y)
    threshold, _ = best_f1_threshold(lr.predict_proba(xs_)[:, 1], y)
    return PixelLogistic(bands=tuple(bands), transforms=tr, mean=mean, std=std,
                         coef=lr.coef_[0].astype(np.float64),
                         intercept=float(lr.intercept_[0]), threshold=threshold)


def best_f1_threshold(values: np.ndarray, labels: np.ndarray, /, *,
                      above: bool = True) -> tuple[float, float]:
    """The threshold ``t`` maximising F1 of ``values > t`` (``< t`` when not ``above``)
    against ``labels`` over the finite values, and that F1. Exact: every distinct value is
    tried (through the sorted cumulative counts)."""
    v = np.asarray(values, dtype=np.float64).ravel()
    y = np.asarray(labels).ravel().astype(bool)
    ok = np.isfinite(v)
    v, y = v[ok], y[ok]
    if not above:
        v = -v
    order = np.argsort(-v, kind="stable")
    vs, ys = v[order], y[order]
    tp = np.cumsum(ys)
    fp = np.cumsum(~ys)
    # candidate cut after each run of equal values: predict positive for the first i + 1
    last = np.r_[vs[1:] != vs[:-1], True]
    tp, fp = tp[last], fp[last]
    pos = ys.sum()
    f1 = 2 * tp / np.maximum(tp + fp + pos, 1)
    i = int(np.argmax(f1))
    cut_vals = vs[last]
    nxt = cut_vals[i + 1] if i + 1 < cut_vals.size else cut_vals[i] - 1.0
    t = (cut_vals[i] + nxt) / 2.0
    return (float(t) if above else float(-t)), float(f1[i])


@dataclasses.dataclass(frozen=True)
class ThresholdRule:
    """``feature > threshold`` (or ``<`` when not ``above``) on one baseline feature."""

    kind: Literal["vv_db", "ndbi"]
    threshold: float
    above: bool = True

    @property
    def label(self) -> str:
        name = {"vv_db": "VV (dB)", "ndbi": "NDBI"}[self.kind]
        return f"{name} {'>' if self.above else '<'} {self.threshold:.3f}"

    def apply(self, ds: xr.Dataset, /) -> np.ndarray:
        """Boolean (y, x) map; False where the feature is missing."""
        f = baseline_features(ds, kind=self.kind)
        with np.errstate(invalid="ignore"):
            return (f > self.threshold) if self.above else (f < self.threshold)


def fit_threshold_rule(images: Sequence[xr.Dataset], labels: Sequence[np.ndarray], /, *,
                       kind: Literal["vv_db", "ndbi"], above: bool = True) -> ThresholdRule:
    """The one threshold on ``kind`` that maximises F1 over all training pixels pooled."""
    f = np.concatenate([baseline_features(ds, kind=kind).ravel() for ds in images])
    y = np.concatenate([np.asarray(lab).ravel() for lab in labels])
    t, _ = best_f1_threshold(f, y, above=above)
    return ThresholdRule(kind=kind, threshold=t, above=above)


def post_classification(before: np.ndarray, after: np.ndarray, /) -> np.ndarray:
    """New built-up by post-classification: built in ``after`` and not in ``before``."""
    return np.asarray(after, dtype=bool) & ~np.asarray(before, dtype=bool)


def fit_stock_intensity(volume_m3: np.ndarray, stock_t: np.ndarray, /) -> float:
    """One mean material intensity (t per m³ of building volume) from training buildings:
    total stock over total volume, the structure and age of each building ignored."""
    v = np.asarray(volume_m3, dtype=np.float64)
    s = np.asarray(stock_t, dtype=np.float64)
    ok = np.isfinite(v) & np.isfinite(s) & (v > 0)
    if not ok.any():
        raise ConfigError("fit_stock_intensity needs buildings with a positive volume.")
    return float(s[ok].sum() / v[ok].sum())


def volume_stock(volume_m3: np.ndarray, /, *, intensity_t_per_m3: float) -> np.ndarray:
    """Stock (t) as volume × one mean intensity (:func:`fit_stock_intensity`)."""
    return np.asarray(volume_m3, dtype=np.float64) * float(intensity_t_per_m3)
