"""Ridge encoding models with the penalty chosen per target (voxel) by exact, efficient leave-one-out.

The route is the classic "GCV" one: one thin SVD of the centred design X_c = U diag(s) Vᵀ (n × p, p < n or p > n);
for a penalty α the ridge hat matrix is H(α) = 11ᵀ/n + U diag(s² / (s² + α)) Uᵀ (the first term only with an
intercept, which is not penalised), and the leave-one-out residual of sample i is e_i(α) / (1 − H_ii(α)) with e the
ordinary in-sample residual. All targets are handled at once with matrix products, in batches of targets to bound
memory.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.utils.validation import check_is_fitted

from llmvem.brain.metrics import r2_score_columns
from llmvem.errors import ConfigError, DataError

DEFAULT_ALPHAS: tuple[float, ...] = tuple(float(a) for a in np.logspace(-2, 6, 20))
_BATCH_ELEMENTS = 1 << 23  # auto target batch: about this many entries per (n, batch) working array


def _check_x(X: Any, where: str, n_features: int | None = None) -> np.ndarray:
    """X as finite float64 (n, p)."""
    try:
        x = np.asarray(X, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise DataError(f"{where}: X must be a numeric array ({exc})") from exc
    if x.ndim != 2:
        raise DataError(f"{where}: X must be 2-D (n_samples, n_features), got shape {x.shape}")
    if x.shape[1] == 0:
        raise DataError(f"{where}: X has no features (shape {x.shape})")
    if n_features is not None and x.shape[1] != n_features:
        raise DataError(f"{where}: X has {x.shape[1]} features but the model was fitted with {n_features}")
    bad = ~np.isfinite(x)
    if bad.any():
        rows = np.flatnonzero(bad.any(axis=1))
        cols = np.flatnonzero(bad.any(axis=0))
        raise DataError(
            f"{where}: X contains {int(bad.sum())} NaN/inf values (rows {rows[:10].tolist()}, "
            f"columns {cols[:10].tolist()}); impute or drop them first"
        )
    return x


def _check_fit_inputs(X: Any, Y: Any, where: str) -> tuple[np.ndarray, np.ndarray, bool]:
    """(x (n, p) float64, y (n, v) float64, y_was_1d); Y may hold NaN/inf (handled by the caller)."""
    x = _check_x(X, where)
    try:
        y = np.asarray(Y, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise DataError(f"{where}: Y must be a numeric array ({exc})") from exc
    if y.ndim not in (1, 2):
        raise DataError(f"{where}: Y must be 1-D (n_samples,) or 2-D (n_samples, n_targets), got shape {y.shape}")
    one_d = y.ndim == 1
    if one_d:
        y = y[:, None]
    if y.shape[0] != x.shape[0]:
        raise DataError(f"{where}: X has {x.shape[0]} rows but Y has {y.shape[0]}; they must be the same samples")
    if x.shape[0] < 3:
        raise DataError(f"{where}: need at least 3 samples for leave-one-out, got {x.shape[0]}")
    if y.shape[1] == 0:
        raise DataError(f"{where}: Y has no targets (shape {y.shape})")
    return x, y, one_d


def _check_alphas(alphas: Any, where: str) -> np.ndarray:
    try:
        a = np.atleast_1d(np.asarray(alphas, dtype=np.float64))
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{where}: alphas must be a sequence of numbers ({exc})") from exc
    if a.ndim != 1 or a.size == 0:
        raise ConfigError(f"{where}: alphas must be a non-empty 1-D sequence, got shape {a.shape}")
    if not (np.isfinite(a).all() and (a > 0).all()):
        raise ConfigError(f"{where}: every alpha must be finite and > 0, got {a.tolist()}")
    return a


def _check_dtype(dtype: Any, where: str) -> np.dtype[Any]:
    try:
        dt = np.dtype(dtype)
    except TypeError as exc:
        raise ConfigError(f"{where}: dtype must be 'float32' or 'float64', got {dtype!r}") from exc
    if dt not in (np.dtype(np.float32), np.dtype(np.float64)):
        raise ConfigError(f"{where}: dtype must be 'float32' or 'float64', got {dtype!r}")
    return dt


def _check_batch(target_batch_size: int | None, where: str) -> int | None:
    if target_batch_size is None:
        return None
    if isinstance(target_batch_size, bool) or not isinstance(target_batch_size, int | np.integer):
        raise ConfigError(f"{where}: target_batch_size must be a positive int or None, got {target_batch_size!r}")
    if target_batch_size < 1:
        raise ConfigError(f"{where}: target_batch_size must be ≥ 1, got {target_batch_size}")
    return int(target_batch_size)


@dataclass(frozen=True)
class _RidgeSVD:
    """Thin SVD of the (centred) design, the state shared by the LOO search and the final solve.

    Attributes:
        u: (n, r) left singular vectors of the non-null singular values.
        s: (r,) singular values.
        vt: (r, p) right singular vectors.
        x_mean: (p,) column means of X (zeros without intercept).
        fit_intercept: whether X was centred and an unpenalised intercept is part of the model.
    """

    u: np.ndarray
    s: np.ndarray
    vt: np.ndarray
    x_mean: np.ndarray
    fit_intercept: bool

    @classmethod
    def from_design(cls, x: np.ndarray, fit_intercept: bool) -> _RidgeSVD:
        """SVD of X (n, p) float64, dropping singular values at rounding level (rank-deficient or p > n designs)."""
        x_mean = x.mean(axis=0) if fit_intercept else np.zeros(x.shape[1])
        u, s, vt = np.linalg.svd(x - x_mean, full_matrices=False)
        tol = (s[0] if s.size else 0.0) * max(x.shape) * np.finfo(np.float64).eps
        keep = s > tol
        return cls(u=u[:, keep], s=s[keep], vt=vt[keep], x_mean=x_mean, fit_intercept=fit_intercept)

    def _batches(self, v: int, batch: int | None) -> list[slice]:
        """Slices of ``batch`` targets (automatic size: ~_BATCH_ELEMENTS entries per (max(n, p), batch) array)."""
        size = batch or max(1, _BATCH_ELEMENTS // max(self.u.shape[0], self.vt.shape[1]))
        return [slice(start, min(v, start + size)) for start in range(0, v, size)]

    def _centred(self, y: np.ndarray) -> np.ndarray:
        return y - y.mean(axis=0) if self.fit_intercept else y

    def loo_mse(self, y: np.ndarray, alphas: np.ndarray, batch: int | None, dtype: np.dtype[Any]) -> np.ndarray:
        """Mean squared leave-one-out error of every target for every α.

        Args:
            y: (n, v) finite float64 targets.
            alphas: (a,) penalties.
            batch: targets per batch (None: automatic).
            dtype: float type of the per-α products.
        Returns:
            (a, v) float64.
        """
        n, v = y.shape
        u, s2 = self.u, self.s**2
        shrink = alphas[None, :] / (s2[:, None] + alphas[None, :])  # (r, a): 1 − s²/(s² + α), the part not fitted
        u2 = u**2
        # 1 − H_ii(α) = (1 − 1/n − Σ_j U_ij²) + Σ_j U_ij² α/(s_j² + α), written so nothing cancels when p ≥ n.
        base = 1.0 - u2.sum(axis=1) - (1.0 / n if self.fit_intercept else 0.0)
        one_minus_h = np.maximum(base, 0.0)[:, None] + u2 @ shrink  # (n, a)
        inv_denom = (1.0 / np.maximum(one_minus_h, np.finfo(np.float64).tiny)).astype(dtype)
        shrink_d = shrink.astype(dtype)
        u_d = u.astype(dtype)
        out = np.empty((alphas.size, v))
        for sl in self._batches(v, batch):
            yc = self._centred(y[:, sl])
            proj = u.T @ yc  # (r, b)
            resid_full = (yc - u @ proj).astype(dtype)  # residual outside the span of U: the same for every α
            proj_d = proj.astype(dtype)
            for j in range(alphas.size):
                # in-sample residual e(α) = resid_full + U diag(α/(s² + α)) Uᵀ y_c, then e_i / (1 − H_ii)
                loo = (resid_full + u_d @ (shrink_d[:, j, None] * proj_d)) * inv_denom[:, j, None]
                out[j, sl] = np.einsum("ij,ij->j", loo, loo, dtype=np.float64) / n
        return out

    def coef(self, y: np.ndarray, alpha_per_target: np.ndarray, batch: int | None) -> np.ndarray:
        """Ridge weights β = V diag(s / (s² + α_t)) Uᵀ y_c for each target t.

        Args:
            y: (n, v) finite float64 targets.
            alpha_per_target: (v,) penalty of each target.
            batch: targets per batch (None: automatic).
        Returns:
            (p, v) float64.
        """
        v = y.shape[1]
        out = np.empty((self.vt.shape[1], v))
        for sl in self._batches(v, batch):
            proj = self.u.T @ self._centred(y[:, sl])
            gain = self.s[:, None] / (self.s[:, None] ** 2 + alpha_per_target[None, sl])
            out[:, sl] = self.vt.T @ (gain * proj)
        return out


def ridge_loo_alphas(
    X: np.ndarray,
    Y: np.ndarray,
    alphas: Sequence[float] | np.ndarray = DEFAULT_ALPHAS,
    *,
    fit_intercept: bool = True,
    target_batch_size: int | None = None,
    dtype: str | np.dtype[Any] = "float64",
) -> tuple[np.ndarray, np.ndarray]:
    """Best ridge penalty of every target by exact leave-one-out error.

    Args:
        X: (n, p) design, finite, n ≥ 3 (p may exceed n).
        Y: (n, v) or (n,) targets, finite.
        alphas: (a,) candidate penalties, all > 0.
        fit_intercept: centre X and Y and leave the intercept unpenalised.
        target_batch_size: targets per batch (None: automatic, ~64 MB working arrays).
        dtype: float type of the per-α products (``"float32"`` halves memory and time).
    Returns:
        best_alphas (v,) — the α with the smallest LOO error per target (first one on ties) — and
        loo_mse (a, v), the mean squared LOO error of every target for every α.
    """
    where = "ridge_loo_alphas"
    x, y, _ = _check_fit_inputs(X, Y, where)
    a = _check_alphas(alphas, where)
    bad = ~np.isfinite(y).all(axis=0)
    if bad.any():
        raise DataError(
            f"{where}: targets {np.flatnonzero(bad)[:10].tolist()} contain NaN/inf; drop them "
            "(RidgeEncoder masks them for you)"
        )
    svd = _RidgeSVD.from_design(x, fit_intercept)
    mse = svd.loo_mse(y, a, _check_batch(target_batch_size, where), _check_dtype(dtype, where))
    return a[np.argmin(mse, axis=0)], mse


class RidgeEncoder(RegressorMixin, BaseEstimator):
    """Linear encoding model Y ≈ X β + b with a ridge penalty per target chosen by exact leave-one-out.

    Parameters
    ----------
    alphas : sequence of float
        Candidate penalties (all > 0), stored as given.
    fit_intercept : bool
        Fit an unpenalised intercept (X and Y are centred).
    alpha_per_target : bool
        Choose α per target (voxel); if False, one α minimising the LOO error averaged over targets.
    target_batch_size : int or None
        Targets per batch in the LOO search and the solve (None: automatic, ~64 MB working arrays).
    dtype : {"float32", "float64"}
        Float type of the heavy per-α products and of ``coef_``, ``intercept_`` and predictions. The SVD is always
        computed in float64.

    Attributes
    ----------
    coef_ : (p, v) weights; zero for masked targets.
    intercept_ : (v,) intercepts; for masked targets the mean of their finite values (0 if none, or without
        intercept).
    best_alphas_ : (v,) chosen α per target (NaN for masked targets).
    alpha_ : float, the shared α (only with ``alpha_per_target=False``).
    loo_mse_ : (a, v) mean squared LOO error per α and target (NaN for masked targets).
    valid_targets_ : (v,) bool, targets that were fitted (finite and not constant in the training data).
    n_features_in_ : int, p.

    Targets (columns of Y) holding NaN/inf or constant over samples are masked out of the fit with a warning.
    ``score`` is R² of each target averaged uniformly over targets (like scikit-learn's ``uniform_average``).
    """

    def __init__(
        self,
        alphas: Sequence[float] | np.ndarray = DEFAULT_ALPHAS,
        fit_intercept: bool = True,
        alpha_per_target: bool = True,
        target_batch_size: int | None = None,
        dtype: str = "float32",
    ) -> None:
        self.alphas = alphas
        self.fit_intercept = fit_intercept
        self.alpha_per_target = alpha_per_target
        self.target_batch_size = target_batch_size
        self.dtype = dtype

    def fit(self, X: np.ndarray, Y: np.ndarray) -> RidgeEncoder:
        """Choose α per target by LOO and solve for the weights.

        Args:
            X: (n, p) features, finite, n ≥ 3.
            Y: (n, v) or (n,) responses; columns with NaN/inf or constant values are masked out.
        Returns:
            self.
        """
        where = "RidgeEncoder.fit"
        x, y, one_d = _check_fit_inputs(X, Y, where)
        alphas = _check_alphas(self.alphas, where)
        dtype = _check_dtype(self.dtype, where)
        batch = _check_batch(self.target_batch_size, where)
        n_targets = y.shape[1]

        finite = np.isfinite(y).all(axis=0)
        valid = finite & (np.ptp(np.where(finite, y, 0.0), axis=0) > 0)
        n_bad = int((~valid).sum())
        if n_bad == n_targets:
            raise DataError(f"{where}: all {n_targets} targets contain NaN/inf or are constant; nothing to fit")
        if n_bad:
            warnings.warn(
                f"{where}: {n_bad} of {n_targets} targets contain NaN/inf or are constant and are left out of the "
                "fit (coef 0, prediction = mean of their finite values); see valid_targets_",
                RuntimeWarning,
                stacklevel=2,
            )
        yv = y[:, valid]

        svd = _RidgeSVD.from_design(x, self.fit_intercept)
        mse = svd.loo_mse(yv, alphas, batch, dtype)
        if self.alpha_per_target:
            best = alphas[np.argmin(mse, axis=0)]
        else:
            self.alpha_ = float(alphas[int(np.argmin(mse.mean(axis=1)))])
            best = np.full(yv.shape[1], self.alpha_)
        coef_valid = svd.coef(yv, best, batch)

        coef = np.zeros((x.shape[1], n_targets))
        coef[:, valid] = coef_valid
        intercept = np.zeros(n_targets)
        if self.fit_intercept:
            intercept[valid] = yv.mean(axis=0) - svd.x_mean @ coef_valid
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns: mean of nothing
                y_finite = np.where(np.isfinite(y), y, np.nan)
                means = np.nanmean(y_finite[:, ~valid], axis=0)
            intercept[~valid] = np.nan_to_num(means, nan=0.0)
        self.coef_ = coef.astype(dtype)
        self.intercept_ = intercept.astype(dtype)
        self.best_alphas_ = np.full(n_targets, np.nan)
        self.best_alphas_[valid] = best
        self.loo_mse_ = np.full((alphas.size, n_targets), np.nan)
        self.loo_mse_[:, valid] = mse
        self.valid_targets_ = valid
        self.n_features_in_ = x.shape[1]
        self._fitted_1d = one_d
        return self

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Predicted responses.

        Args:
            X: (m, p) features.
        Returns:
            (m, v) in ``dtype`` ((m,) if fitted on 1-D Y).
        """
        check_is_fitted(self, "coef_")
        x = _check_x(X, "RidgeEncoder.predict", self.n_features_in_).astype(self.coef_.dtype)
        out = x @ self.coef_ + self.intercept_
        return out[:, 0] if self._fitted_1d else out

    def score(self, X: np.ndarray, Y: np.ndarray, sample_weight: None = None) -> float:
        """R² per target averaged uniformly over targets (targets with NaN/inf in ``Y`` are skipped).

        Args:
            X: (m, p) features.
            Y: (m, v) or (m,) measured responses.
        Returns:
            mean R² (float, ≤ 1).
        """
        if sample_weight is not None:
            raise ConfigError("RidgeEncoder.score: sample_weight is not supported")
        pred = self.predict(X)
        r2 = np.atleast_1d(r2_score_columns(np.asarray(Y, dtype=np.float64), pred.astype(np.float64)))
        if np.isnan(r2).all():
            return float("nan")
        return float(np.nanmean(r2))
