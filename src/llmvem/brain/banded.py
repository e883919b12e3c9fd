"""Banded ridge: one penalty per feature space per target (voxel), chosen by exact GCV over a grid of band ratios.

The model is Y ≈ Σ_i X_i β_i + b with the penalty Σ_i α_i ‖β_i‖² (2–4 feature spaces X_i, one α_i per space and per
target). Writing α_i = α / (γ_i c_i²) turns it into an ordinary ridge with one α on the rescaled design
X_γ = [√γ_1 c_1 X_1, …, √γ_S c_S X_S]:

- c_i² = mean_j ‖X_jc‖²_F / ‖X_ic‖²_F puts every (centred) space on the same total variance, so equal band weights
  mean equal say before the data decide;
- γ (the *band weights*, largest = 1) runs over a fixed grid: all combinations of ``band_levels`` (and 0: the space
  switched off, α_i = ∞) whose largest entry is 1 — 15 points for 2 spaces by default;
- for each γ, ONE float64 eigendecomposition of the rescaled Gram matrix — of D C D (p × p, C = X_cᵀX_c computed
  once, *primal*) when p ≤ n, of Σ_i γ_i c_i² X_ic X_icᵀ (n × n, *kernel*) when p > n — gives the exact GCV error of
  every target for every α at O(r·v) per α, as in :mod:`llmvem.brain.ridge`; every target keeps the (γ, α) with the
  smallest GCV error. GCV is exact for each grid point (the hat matrix of the banded model is linear in Y), so the
  search is a grid search of an exact criterion, not a stochastic one.

What touches Y: primal — Z = X_cᵀY_c once (one XᵀY GEMM), then per γ a p × r × v GEMM Q = (D V)ᵀ Z; kernel — per γ an
n × r × v GEMM UᵀY_c. With Q_k = s_k P_k the GCV residual is ‖Y_c‖² − Σ_k Q_k² (s_k² + 2α)/(s_k² + α)² and the
weights β = D V diag(1/(s_k² + α)) Q — no division by s_k anywhere, so float32 Q is safe. Weights of a target are
(re)written whenever a grid point improves its GCV error, so no basis is kept after its γ is done.

Backends: numpy or torch (CUDA when present), as :class:`llmvem.brain.ridge.RidgeEncoder`.
"""

from __future__ import annotations

import itertools
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.utils.validation import check_is_fitted

from llmvem.brain.memory import banded_memory, plan_target_batch
from llmvem.brain.metrics import r2_score_columns
from llmvem.brain.ridge import (
    DEFAULT_ALPHAS,
    _as_targets,
    _Backend,
    _check_alphas,
    _check_batch,
    _check_dtype,
    _check_form,
    _column_stats,
    _eigh,
)
from llmvem.errors import ConfigError, DataError

MAX_SPACES = 4
#: relative band weights (besides 0 = off) tried by default, by number of spaces: 15, 37 and 65 grid points
DEFAULT_BAND_LEVELS: dict[int, tuple[float, ...]] = {
    2: tuple(float(x) for x in np.logspace(0, -3, 7)),
    3: (1.0, 0.1, 0.01),
    4: (1.0, 0.1),
}
_WORK_ELEMENTS = 1 << 25  # r × batch working arrays per target batch

Spaces = Sequence[np.ndarray] | Mapping[str, np.ndarray] | np.ndarray


# ---------------------------------------------------------------------------------------------------- validation
def _space_names(spaces: Any, n: int, names: Sequence[str] | None) -> list[str]:
    if isinstance(spaces, Mapping):
        return [str(k) for k in spaces]
    if names is not None:
        if len(names) != n:
            raise ConfigError(f"space_names has {len(names)} names for {n} feature spaces; they must match")
        return [str(x) for x in names]
    return [f"space{i}" for i in range(n)]


def check_spaces(
    spaces: Any,
    where: str,
    *,
    space_sizes: Sequence[int] | None = None,
    space_names: Sequence[str] | None = None,
    n_rows: int | None = None,
) -> tuple[list[np.ndarray], list[str]]:
    """The feature spaces as finite float64 (n, p_i) arrays and their names; one clear DataError otherwise.

    Args:
        spaces: a sequence or a name → array mapping of 2-D arrays (n, p_i), or one (n, Σ p_i) array cut by
            ``space_sizes``.
        where: the caller, for messages.
        space_sizes: (S,) number of columns of each space, when ``spaces`` is one array.
        space_names: (S,) names (a mapping's keys win).
        n_rows: the number of rows every space must have (the targets' samples), if known.
    Returns:
        (list of S float64 arrays, list of S names).
    """
    if isinstance(spaces, np.ndarray) or (hasattr(spaces, "shape") and not isinstance(spaces, Mapping)):
        arr = np.asarray(spaces)
        if space_sizes is None:
            raise DataError(
                f"{where}: one 2-D array was given; pass space_sizes (columns per space) or a list of spaces"
            )
        sizes = [int(s) for s in space_sizes]
        if arr.ndim != 2 or sum(sizes) != arr.shape[1]:
            raise DataError(f"{where}: space_sizes {sizes} sum to {sum(sizes)} but X has shape {arr.shape}")
        cuts = np.cumsum([0, *sizes])
        raw: list[Any] = [arr[:, cuts[i] : cuts[i + 1]] for i in range(len(sizes))]
    elif isinstance(spaces, Mapping):
        raw = list(spaces.values())
    elif isinstance(spaces, Sequence) and not isinstance(spaces, str):
        raw = list(spaces)
    else:
        raise DataError(
            f"{where}: feature spaces must be a list or a name → array mapping, got {type(spaces).__name__}"
        )
    names = _space_names(spaces, len(raw), space_names)
    if len(raw) < 2:
        raise DataError(f"{where}: banded ridge needs 2–{MAX_SPACES} feature spaces, got {len(raw)}; use RidgeEncoder")
    if len(raw) > MAX_SPACES:
        raise DataError(
            f"{where}: banded ridge supports at most {MAX_SPACES} feature spaces, got {len(raw)} "
            f"({', '.join(names)}); space '{names[MAX_SPACES]}' and after are one too many — join related spaces"
        )
    out = [_check_space(x, name, where) for x, name in zip(raw, names, strict=True)]
    rows = n_rows if n_rows is not None else out[0].shape[0]
    ref = "the targets have" if n_rows is not None else f"space '{names[0]}' has"
    for x, name in zip(out, names, strict=True):
        if x.shape[0] != rows:
            raise DataError(
                f"{where}: space '{name}' has {x.shape[0]} rows but {ref} {rows}; every space must hold the same "
                "stimuli in the same order"
            )
    return out, names


def _check_space(x_raw: Any, name: str, where: str) -> np.ndarray:
    try:
        x = np.asarray(x_raw, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise DataError(f"{where}: space '{name}' must be a numeric array ({exc})") from exc
    if x.ndim != 2:
        raise DataError(f"{where}: space '{name}' must be 2-D (n_samples, n_features), got shape {x.shape}")
    if x.shape[1] < 2:
        raise DataError(
            f"{where}: space '{name}' has {x.shape[1]} column(s); a band needs at least 2 features "
            "(add a single regressor to another space)"
        )
    bad = ~np.isfinite(x)
    if bad.any():
        rows = np.flatnonzero(bad.any(axis=1))
        raise DataError(
            f"{where}: space '{name}' has NaN/inf in {rows.size} rows (rows {rows[:10].tolist()}); "
            "impute or drop those stimuli from every space and the targets"
        )
    return x


def band_grid(n_spaces: int, levels: Sequence[float] | None = None, allow_off: bool = True) -> np.ndarray:
    """Band-weight grid: every combination of ``levels`` (and 0 if ``allow_off``) whose largest entry is 1.

    Args:
        n_spaces: S, 2–4.
        levels: relative weights in (0, 1], 1 included (default :data:`DEFAULT_BAND_LEVELS`).
        allow_off: also try switching spaces off (weight 0; never all of them).
    Returns:
        (g, S) float64, equal weights first.
    """
    lv = np.asarray(DEFAULT_BAND_LEVELS[n_spaces] if levels is None else levels, dtype=np.float64)
    if lv.ndim != 1 or lv.size == 0 or not np.isfinite(lv).all() or (lv <= 0).any() or (lv > 1).any():
        raise ConfigError(f"band_levels must be weights in (0, 1], got {np.asarray(levels).tolist()}")
    vals = sorted(set(lv.tolist()) | {1.0} | ({0.0} if allow_off else set()), reverse=True)
    grid = [g for g in itertools.product(vals, repeat=n_spaces) if max(g) == 1.0]
    return np.asarray(grid, dtype=np.float64)


# ---------------------------------------------------------------------------------------------------- solver
@dataclass
class BandedFit:
    """Result of :func:`banded_ridge_gcv` (v targets, S spaces, p = Σ p_i features).

    Attributes:
        coef: (p, v) weights in the compute dtype (None if not asked for); 0 for masked targets.
        intercept: (v,) float64.
        alphas: (S, v) penalty of each space (∞: space switched off; NaN: masked target).
        band_weights: (S, v) the chosen γ (largest 1); alpha: (v,) the chosen overall α.
        gcv_mse: (v,) the GCV error at the chosen (γ, α).
        valid: (v,) bool, targets that were fitted; x_mean: (p,) training feature means.
        scales: (S,) c_i² of the spaces; form: "primal" | "kernel"; backend: "numpy" | "torch".
    """

    coef: np.ndarray | None
    intercept: np.ndarray
    alphas: np.ndarray
    band_weights: np.ndarray
    alpha: np.ndarray
    gcv_mse: np.ndarray
    valid: np.ndarray
    x_mean: np.ndarray
    scales: np.ndarray
    form: str
    backend: str


@dataclass
class _Design:
    xc: np.ndarray  # (n, p) centred float64
    x_mean: np.ndarray  # (p,)
    owner: np.ndarray  # (p,) space index of each column
    scales: np.ndarray  # (S,) c_i²
    kernel: bool
    gram: np.ndarray | None  # primal: X_cᵀX_c (p, p)
    kernels: list[np.ndarray]  # kernel: X_ic X_icᵀ (n, n) per space

    @classmethod
    def build(cls, xs: list[np.ndarray], fit_intercept: bool, form: str, where: str) -> _Design:
        x = np.hstack(xs)
        n, p = x.shape
        x_mean = x.mean(axis=0) if fit_intercept else np.zeros(p)
        xc = x - x_mean
        owner = np.concatenate([np.full(a.shape[1], i) for i, a in enumerate(xs)])
        tr = np.array([float((xc[:, owner == i] ** 2).sum()) for i in range(len(xs))])
        if (tr <= 0).any():
            raise DataError(f"{where}: space {int(np.flatnonzero(tr <= 0)[0])} has no variance over samples")
        scales = tr.mean() / tr
        kernel = form == "kernel" or (form == "auto" and p > n)
        gram = None if kernel else xc.T @ xc
        kernels = [xc[:, owner == i] @ xc[:, owner == i].T for i in range(len(xs))] if kernel else []
        return cls(xc, x_mean, owner, scales, kernel, gram, kernels)

    def basis(self, gamma: np.ndarray, be: _Backend) -> tuple[np.ndarray, Any, Any]:
        """(s² (r,), W = D V (p, r) backend, U (n, r) backend or None) of the design rescaled by ``gamma``."""
        d2 = (gamma * self.scales)[self.owner]  # (p,) squared column scales
        d = np.sqrt(d2)
        if self.kernel:
            lam, vecs = _eigh(sum(g * c * k for g, c, k in zip(gamma, self.scales, self.kernels, strict=True)))
        else:
            assert self.gram is not None
            lam, vecs = _eigh(d[:, None] * self.gram * d[None, :])
        lam, vecs = lam[::-1], vecs[:, ::-1]
        n, p = self.xc.shape
        tol = max(float(lam[0]), 0.0) * max(n, p) * np.finfo(np.float64).eps * 10
        keep = lam > tol
        s2 = lam[keep]
        if self.kernel:
            u = vecs[:, keep]
            w = d2[:, None] * (self.xc.T @ u) / np.sqrt(s2)  # D V with V = D X_cᵀ U / s
            return s2, be.put(w), be.put(u)
        return s2, be.put(d[:, None] * vecs[:, keep]), None


def _mask_targets(y: np.ndarray, fit_intercept: bool) -> tuple[np.ndarray, np.ndarray]:
    """(valid (v,) bool — finite and not constant —, fill (v,) the nan-mean of each invalid target)."""
    finite = np.isfinite(y).all(axis=0)
    valid = finite & (np.ptp(np.where(finite, y, 0), axis=0) > 0)
    fill = np.zeros(y.shape[1])
    if not valid.all():
        bad = np.asarray(y[:, ~valid], dtype=np.float64)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            m = np.nanmean(np.where(np.isfinite(bad), bad, np.nan), axis=0)
        fill[~valid] = np.nan_to_num(m, nan=0.0) if fit_intercept else 0.0
    return valid, fill


def _targets_on_backend(
    design: _Design, y: np.ndarray, idx: np.ndarray, fit_intercept: bool, be: _Backend, batch: int
) -> tuple[Any, np.ndarray, np.ndarray]:
    """(T, ‖Y_c‖² (b,), ȳ (b,)) for the valid targets ``idx``: T = X_cᵀY_c (p, b) in primal form, Y_c (n, b) in
    kernel form, on the backend in the compute dtype; Y is read in column batches."""
    n, p = design.xc.shape
    rows = n if design.kernel else p
    out = be.put(np.zeros((rows, idx.size), dtype=be.np_dtype))
    xct = None if design.kernel else be.put(design.xc.T)
    ss = np.zeros(idx.size)
    mean = np.zeros(idx.size)
    for start in range(0, idx.size, batch):
        cols = idx[start : start + batch]
        yb = np.take(y, cols, axis=1).astype(be.np_dtype, copy=False)  # (n, b) copy in the compute dtype
        if fit_intercept:
            m = yb.mean(axis=0, dtype=np.float64)
            yb -= m.astype(be.np_dtype)
            yb -= yb.mean(axis=0, dtype=np.float64).astype(be.np_dtype)  # float32: a second pass removes the rest
            mean[start : start + cols.size] = m
        ss[start : start + cols.size] = _column_stats(yb)[1]  # float64 partial sums
        ycb = be.put(yb)
        out[:, start : start + cols.size] = ycb if design.kernel else xct @ ycb
    return out, ss, mean


def banded_ridge_gcv(
    spaces: Spaces,
    Y: Any,
    alphas: Sequence[float] | np.ndarray = DEFAULT_ALPHAS,
    band_levels: Sequence[float] | None = None,
    *,
    allow_off: bool = True,
    fit_intercept: bool = True,
    target_batch_size: int | None = None,
    dtype: str | np.dtype[Any] = "float64",
    backend: str = "numpy",
    device: str | None = None,
    form: str = "auto",
    compute_coef: bool = True,
    space_sizes: Sequence[int] | None = None,
) -> BandedFit:
    """Banded ridge with one α per space and target by exact GCV over a band-ratio grid (see the module docstring).

    Args:
        spaces: S = 2–4 feature spaces, (n, p_i) each (a list, a name → array mapping, or one array + space_sizes).
        Y: (n, v) or (n,) targets; columns with NaN/inf or constant are masked out with a counted warning.
        alphas: (a,) overall penalties α > 0; band_levels / allow_off: the band-weight grid (:func:`band_grid`).
        fit_intercept: centre X and Y; target_batch_size: targets per batch (None: automatic).
        dtype: float type of everything that touches Y; backend / device: as :class:`RidgeEncoder`.
        form: ``"auto"`` (kernel when Σ p_i > n), ``"primal"`` or ``"kernel"``.
    Returns:
        :class:`BandedFit`.
    """
    where = "banded_ridge_gcv"
    y, _ = _as_targets(Y, where)
    xs, _ = check_spaces(spaces, where, space_sizes=space_sizes, n_rows=y.shape[0])
    if y.shape[0] < 3:
        raise DataError(f"{where}: need at least 3 samples, got {y.shape[0]}")
    a = _check_alphas(alphas, where)
    grid = band_grid(len(xs), band_levels, allow_off)
    be = _Backend.create(backend, device, _check_dtype(dtype, where), where)
    form = _check_form(form, where)
    batch = _plan_batch(xs, y, a, be, form, _check_batch(target_batch_size, where), compute_coef, where)
    design = _Design.build(xs, fit_intercept, form, where)
    return _solve(design, y, a, grid, be, fit_intercept, batch, compute_coef, where)


def _auto_batch(n: int, p: int) -> int:
    """Targets per batch of the grid search when none is given: ~``_WORK_ELEMENTS`` r × batch working arrays."""
    return max(256, _WORK_ELEMENTS // max(min(n, p), 1))


def _plan_batch(
    xs: list[np.ndarray], y: np.ndarray, a: np.ndarray, be: _Backend, form: str, batch: int | None,
    compute_coef: bool, where: str,
) -> int | None:  # fmt: skip
    """The target batch, after checking the fit's estimated peak memory (:mod:`llmvem.brain.memory`)."""
    n, v = y.shape
    p = sum(x.shape[1] for x in xs)
    est = banded_memory(
        n, p, v, n_spaces=len(xs), n_alphas=a.size, itemsize=be.np_dtype.itemsize, y_itemsize=y.dtype.itemsize,
        kernel=form == "kernel" or (form == "auto" and p > n), compute_coef=compute_coef,
    )  # fmt: skip
    return plan_target_batch(
        est, batch=batch, auto_batch=_auto_batch(n, p), where=where, float64=be.np_dtype == np.float64,
        batching_helps=False,
    )  # fmt: skip


def _solve(
    design: _Design,
    y: np.ndarray,
    a: np.ndarray,
    grid: np.ndarray,
    be: _Backend,
    fit_intercept: bool,
    batch: int | None,
    compute_coef: bool,
    where: str,
) -> BandedFit:
    n, p = design.xc.shape
    v = y.shape[1]
    valid, fill = _mask_targets(y, fit_intercept)
    idx = np.flatnonzero(valid)
    if idx.size == 0:
        raise DataError(f"{where}: all {v} targets contain NaN/inf or are constant; nothing to fit")
    size = batch or _auto_batch(n, p)
    t, ss, mean = _targets_on_backend(design, y, idx, fit_intercept, be, size)
    best = np.full(idx.size, np.inf)
    best_g = np.zeros(idx.size, dtype=np.int64)
    best_a = np.zeros(idx.size, dtype=np.int64)
    coef = np.zeros((p, v), dtype=be.np_dtype) if compute_coef else None
    for gi, gamma in enumerate(grid):
        s2, w, u = design.basis(gamma, be)
        trace = (s2[:, None] / (s2[:, None] + a[None, :])).sum(axis=0) + (1.0 if fit_intercept else 0.0)
        denom = np.maximum(1.0 - trace / n, 0.0) ** 2
        inv = np.where(denom > 0, 1.0 / (n * np.where(denom > 0, denom, 1.0)), np.inf)  # (a,)
        f = be.put(((s2[:, None] + 2 * a[None, :]) / (s2[:, None] + a[None, :]) ** 2).T)  # (a, r)
        for start in range(0, idx.size, size):
            sl = slice(start, min(idx.size, start + size))
            tb = t[:, sl]
            q = (u.T @ tb) * be.put(np.sqrt(s2))[:, None] if design.kernel else w.T @ tb  # (r, b)
            rss = np.maximum(ss[sl][None, :] - be.get(f @ (q * q)), 0.0)
            mse = rss * inv[:, None]
            ai = np.argmin(mse, axis=0)
            m = mse[ai, np.arange(ai.size)]
            better = np.flatnonzero(m < best[sl])
            if better.size == 0:
                continue
            pos = start + better
            best[pos], best_g[pos], best_a[pos] = m[better], gi, ai[better]
            if coef is not None:
                gain = be.put(1.0 / (s2[:, None] + a[ai[better]][None, :]))  # (r, k)
                coef[:, idx[pos]] = be.to_numpy(w @ (gain * be.cols(q, better)))
    return _finish(design, grid, a, idx, best, best_g, best_a, mean, fill, valid, coef, be, where)


def _finish(
    design: _Design,
    grid: np.ndarray,
    a: np.ndarray,
    idx: np.ndarray,
    best: np.ndarray,
    best_g: np.ndarray,
    best_a: np.ndarray,
    mean: np.ndarray,
    fill: np.ndarray,
    valid: np.ndarray,
    coef: np.ndarray | None,
    be: _Backend,
    where: str,
) -> BandedFit:
    v = valid.size
    n_spaces = grid.shape[1]
    weights = np.full((n_spaces, v), np.nan)
    weights[:, idx] = grid[best_g].T
    alpha = np.full(v, np.nan)
    alpha[idx] = a[best_a]
    with np.errstate(divide="ignore"):
        alphas = alpha[None, :] / (weights * design.scales[:, None])
    gcv = np.full(v, np.nan)
    gcv[idx] = best
    intercept = fill.copy()
    if coef is not None:
        intercept[idx] = mean - design.x_mean @ coef[:, idx].astype(np.float64)
    else:
        intercept[idx] = mean
    n_bad = v - idx.size
    if n_bad:
        warnings.warn(
            f"{where}: {n_bad} of {v} targets contain NaN/inf or are constant and are left out of the fit "
            "(coef 0, prediction = mean of their finite values); see valid_targets_",
            RuntimeWarning,
            stacklevel=4,
        )
    form = "kernel" if design.kernel else "primal"
    return BandedFit(coef, intercept, alphas, weights, alpha, gcv, valid, design.x_mean, design.scales, form, be.name)


# ---------------------------------------------------------------------------------------------------- estimator
class BandedRidgeEncoder(RegressorMixin, BaseEstimator):
    """Banded ridge encoding model: one penalty per feature space per target, by exact GCV over band ratios.

    ``fit(X, Y)`` takes X as a list (or name → array mapping) of S = 2–4 arrays (n, p_i), or as one (n, Σ p_i) array
    cut by ``space_sizes``; ``predict`` takes the same. See :func:`banded_ridge_gcv` and the module docstring.

    Parameters
    ----------
    alphas : sequence of float
        Overall penalties α (all > 0); the penalty of space i is α / (γ_i c_i²).
    band_levels : sequence of float or None
        Relative band weights in (0, 1] tried per space (None: :data:`DEFAULT_BAND_LEVELS` for S spaces).
    allow_off : bool
        Also try switching a space off (γ_i = 0, α_i = ∞).
    space_sizes : sequence of int or None
        Columns per space when X is one array. space_names : names of the spaces (a mapping's keys win).
    fit_intercept, target_batch_size, dtype, backend, device, form
        As :class:`llmvem.brain.ridge.RidgeEncoder`.

    Attributes
    ----------
    coef_ : (p, v) weights, rows in space order; intercept_ : (v,).
    alphas_ : (S, v) penalty of each space per target (∞ = switched off; NaN = masked target).
    band_weights_ : (S, v) chosen γ (largest 1); alpha_per_target_ : (v,) chosen overall α.
    gcv_mse_ : (v,) GCV error at the chosen penalties; valid_targets_ : (v,) bool.
    space_names_ : list of S names; space_sizes_ : list of S ints; scales_ : (S,) c_i².
    form_, backend_, n_features_in_ : as RidgeEncoder.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> A, B = rng.standard_normal((100, 5)), rng.standard_normal((100, 4))
    >>> Y = A @ rng.standard_normal((5, 3)) + 0.1 * rng.standard_normal((100, 3))
    >>> model = BandedRidgeEncoder(alphas=(0.1, 1.0, 10.0)).fit([A, B], Y)
    >>> model.alphas_.shape, model.coef_.shape
    ((2, 3), (9, 3))
    """

    def __init__(
        self,
        alphas: Sequence[float] | np.ndarray = DEFAULT_ALPHAS,
        band_levels: Sequence[float] | None = None,
        allow_off: bool = True,
        space_sizes: Sequence[int] | None = None,
        space_names: Sequence[str] | None = None,
        fit_intercept: bool = True,
        target_batch_size: int | None = None,
        dtype: str = "float32",
        backend: str = "auto",
        device: str | None = None,
        form: str = "auto",
    ) -> None:
        self.alphas = alphas
        self.band_levels = band_levels
        self.allow_off = allow_off
        self.space_sizes = space_sizes
        self.space_names = space_names
        self.fit_intercept = fit_intercept
        self.target_batch_size = target_batch_size
        self.dtype = dtype
        self.backend = backend
        self.device = device
        self.form = form

    def fit(self, X: Spaces, Y: Any) -> BandedRidgeEncoder:
        """Choose (γ, α) per target and solve for the weights.

        Args:
            X: S feature spaces (n, p_i) (see the class docstring).
            Y: (n, v) or (n,) responses; NaN/inf or constant columns are masked out with a warning.
        Returns:
            self.
        """
        where = "BandedRidgeEncoder.fit"
        y, one_d = _as_targets(Y, where)
        xs, names = check_spaces(
            X, where, space_sizes=self.space_sizes, space_names=self.space_names, n_rows=y.shape[0]
        )
        fit = banded_ridge_gcv(
            xs, y, self.alphas, self.band_levels, allow_off=self.allow_off, fit_intercept=self.fit_intercept,
            target_batch_size=self.target_batch_size, dtype=self.dtype, backend=self.backend, device=self.device,
            form=self.form,
        )  # fmt: skip
        assert fit.coef is not None
        self.coef_ = fit.coef
        self.intercept_ = fit.intercept.astype(fit.coef.dtype)
        self.alphas_ = fit.alphas
        self.band_weights_ = fit.band_weights
        self.alpha_per_target_ = fit.alpha
        self.gcv_mse_ = fit.gcv_mse
        self.valid_targets_ = fit.valid
        self.scales_ = fit.scales
        self.form_ = fit.form
        self.backend_ = fit.backend
        self.space_names_ = names
        self.space_sizes_ = [x.shape[1] for x in xs]
        self.n_features_in_ = int(sum(self.space_sizes_))
        self._x_mean = fit.x_mean
        self._fitted_1d = one_d
        return self

    def _spaces_for_predict(self, X: Spaces, where: str) -> list[np.ndarray]:
        check_is_fitted(self, "coef_")
        xs, _ = check_spaces(X, where, space_sizes=self.space_sizes, space_names=self.space_names_)
        sizes = [x.shape[1] for x in xs]
        if sizes != self.space_sizes_:
            raise DataError(f"{where}: spaces have {sizes} columns but the model was fitted with {self.space_sizes_}")
        return xs

    def predict(self, X: Spaces) -> np.ndarray:
        """Predicted responses (m, v) in ``dtype`` ((m,) if fitted on 1-D Y) from S spaces (m, p_i)."""
        xs = self._spaces_for_predict(X, "BandedRidgeEncoder.predict")
        out = np.hstack(xs).astype(self.coef_.dtype) @ self.coef_ + self.intercept_
        return out[:, 0] if self._fitted_1d else out

    def predict_split(self, X: Spaces) -> np.ndarray:
        """Each space's part of the prediction, (X_i − x̄_i,train) β_i: (S, m, v) float64.

        Their sum plus the training mean of Y is :meth:`predict`'s output.
        """
        xs = self._spaces_for_predict(X, "BandedRidgeEncoder.predict_split")
        cuts = np.cumsum([0, *self.space_sizes_])
        coef = self.coef_.astype(np.float64)
        return np.stack(
            [(x - self._x_mean[cuts[i] : cuts[i + 1]]) @ coef[cuts[i] : cuts[i + 1]] for i, x in enumerate(xs)]
        )

    def score(self, X: Spaces, Y: Any, sample_weight: None = None) -> float:
        """R² per target averaged over targets (targets with NaN/inf in ``Y`` skipped)."""
        if sample_weight is not None:
            raise ConfigError("BandedRidgeEncoder.score: sample_weight is not supported")
        pred = np.asarray(self.predict(X), dtype=np.float64)
        r2 = np.atleast_1d(r2_score_columns(np.asarray(Y, dtype=np.float64), pred))
        return float("nan") if np.isnan(r2).all() else float(np.nanmean(r2))
