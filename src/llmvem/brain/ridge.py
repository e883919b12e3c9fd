"""Ridge encoding models with the penalty chosen per target (voxel) by GCV, exact leave-one-out or K-fold CV.

One eigendecomposition of the (centred) Gram matrix gives X_c = U diag(s) Vᵀ (rank r = min(n, p) at most): of XᵀX
(p × p, the *primal* form) when p ≤ n, of XXᵀ (n × n, the *kernel* form) when p > n — chosen automatically, always in
float64 (it does not depend on the targets and costs n·p·r). Everything that touches the targets is then a product
with P = UᵀY_c (r × v) and O(r·v) work per α:

- ``cv="gcv"`` (default): generalised cross-validation, ‖r(α)‖²/n / (1 − tr H(α)/n)² with
  ‖r(α)‖² = ‖Y_c‖² − Σ_k w_k(α) P_k², w_k(α) = 1 − (α/(s_k² + α))², tr H(α) = [1] + Σ_k s_k²/(s_k² + α).
  Cost: one n·r·v GEMM (UᵀY), an (a × r)·(r × v) GEMM for all α, the p·r·v GEMM of the weights. This is the
  "speed limit": about one XᵀY-sized GEMM in all.
- ``cv="loo"``: exact leave-one-out, e_i(α)/(1 − H_ii(α)). Needs the n × v residual for every α: a·n·r·v, so about
  ``len(alphas)`` times dearer than GCV; it is what scikit-learn's ``RidgeCV(alpha_per_target=True)`` computes.
- ``cv=K`` (int ≥ 2): K contiguous folds (scikit-learn ``KFold`` without shuffling), the mean over folds of the
  held-out MSE, X and Y centred with the training-fold means (himalaya's ``RidgeCV`` protocol). About a·n·r·v too.
- ``cv="frac"``: fractional ridge (Rokem & Kay 2020). For each target and fraction f of the OLS weight norm, the α
  with ‖β(α)‖ = f‖β_OLS‖, interpolated on fracridge's α grid exactly as the ``fracridge`` package does (equal to its
  α and weights to ~1e-13); the fraction per target by the best held-out R² over 5 contiguous folds (the protocol of
  fracridge's ``FracRidgeRegressorCV``, which Doerig et al. use with one fraction for all voxels:
  ``alpha_per_target=False``). About f·n·r·v, like K-fold.

GCV replaces each leverage H_ii by its mean tr(H)/n; with many more samples than features (n ≫ p, the fMRI case) the
two criteria pick the same or a neighbouring α for nearly every voxel and the held-out accuracy is indistinguishable
(see docs/decisions/0004-brain.md). Targets are processed in batches, so peak memory stays ≈ Y + one batch;
Y is read once per pass and never copied whole or converted to float64.

Backends: ``"numpy"`` or ``"torch"`` (on ``device``; ``"auto"`` picks torch on CUDA when present, else numpy).
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.utils.validation import check_is_fitted

from llmvem.brain.memory import plan_target_batch, ridge_memory
from llmvem.brain.metrics import r2_score_columns
from llmvem.errors import ConfigError, DataError

DEFAULT_ALPHAS: tuple[float, ...] = tuple(float(a) for a in np.logspace(-2, 6, 20))
_BATCH_ELEMENTS = 1 << 26  # auto target batch when batch copies of Y are made (LOO, K-fold): n × batch ≈ this
_BATCH_ELEMENTS_GPU = 1 << 27
_GCV_WORK_ELEMENTS = 1 << 25  # GCV on numpy: Y is only viewed, the working arrays are r × batch ≈ this

# Fractional ridge (cv="frac"): Doerig et al.'s grid, np.linspace(1/20, 1 + 1/20, 20) in
# adriendoerig/visuo_llm nsd_llm_encoding_model.py (taken from fracridge's examples/plot_alpha_vs_gamma.py)
DEFAULT_FRACTIONS: tuple[float, ...] = tuple(float(f) for f in np.linspace(1 / 20, 1 + 1 / 20, 20))
MAX_FRACTION = 1.1  # every fraction ≥ 1 is the OLS solution (α = 0); Doerig et al.'s grid ends at 1.05
FRAC_FOLDS = 5  # fracridge's FracRidgeRegressorCV: GridSearchCV(cv=None), 5 contiguous folds
_FRAC_BIG_BIAS, _FRAC_SMALL_BIAS, _FRAC_BIAS_STEP = 10e3, 10e-3, 0.2  # fracridge's α grid (fracridge.py)

CV = Literal["gcv", "loo", "frac"] | int
Form = Literal["auto", "primal", "kernel"]


# ---------------------------------------------------------------------------------------------------- validation
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


def _as_targets(Y: Any, where: str) -> tuple[np.ndarray, bool]:
    """Y as an (n, v) numeric array *without copying or converting it*; the flag says it was 1-D."""
    if hasattr(Y, "detach") and hasattr(Y, "cpu"):  # a torch tensor
        Y = Y.detach().cpu().numpy()
    try:
        y = np.asarray(Y)
    except (TypeError, ValueError) as exc:
        raise DataError(f"{where}: Y must be a numeric array ({exc})") from exc
    if not (np.issubdtype(y.dtype, np.number) or y.dtype == np.bool_):
        raise DataError(f"{where}: Y must be a numeric array, got dtype {y.dtype}")
    if y.ndim not in (1, 2):
        raise DataError(f"{where}: Y must be 1-D (n_samples,) or 2-D (n_samples, n_targets), got shape {y.shape}")
    one_d = y.ndim == 1
    if one_d:
        y = y[:, None]
    if y.shape[1] == 0:
        raise DataError(f"{where}: Y has no targets (shape {y.shape})")
    return y, one_d


def _check_fit_inputs(X: Any, Y: Any, where: str, min_samples: int = 3) -> tuple[np.ndarray, np.ndarray, bool]:
    """(x (n, p) float64, y (n, v) as given, y_was_1d); Y may hold NaN/inf (handled by the caller)."""
    x = _check_x(X, where)
    y, one_d = _as_targets(Y, where)
    if y.shape[0] != x.shape[0]:
        raise DataError(f"{where}: X has {x.shape[0]} rows but Y has {y.shape[0]}; they must be the same samples")
    if x.shape[0] < min_samples:
        raise DataError(f"{where}: need at least {min_samples} samples for this cross-validation, got {x.shape[0]}")
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


def _check_cv(cv: Any, n: int, where: str, allowed: tuple[str, ...] = ("gcv", "loo", "frac")) -> str | int:
    """One of ``allowed`` ('gcv', 'loo', 'frac') or a number of folds 2 ≤ K ≤ n/2."""
    choices = ", ".join(repr(a) for a in allowed)
    if isinstance(cv, str):
        if cv not in allowed:
            raise ConfigError(f"{where}: cv must be {choices} or a number of folds ≥ 2, got {cv!r}")
        if cv == "frac" and n < 2 * FRAC_FOLDS:
            raise DataError(
                f"{where}: cv='frac' chooses the fraction by {FRAC_FOLDS}-fold CV, which needs at least "
                f"{2 * FRAC_FOLDS} samples; there are only {n}"
            )
        return cv
    if isinstance(cv, bool) or not isinstance(cv, int | np.integer):
        raise ConfigError(f"{where}: cv must be {choices} or a number of folds ≥ 2, got {cv!r}")
    if cv < 2:
        raise ConfigError(f"{where}: cv={cv} folds; need at least 2")
    if cv > n // 2:
        raise DataError(f"{where}: {cv}-fold CV needs at least 2 samples per fold, but there are only {n} samples")
    return int(cv)


def _check_fractions(fractions: Any, where: str) -> np.ndarray:
    """(f,) float64 fractions of the OLS weight norm: finite, in (0, MAX_FRACTION], strictly increasing."""
    try:
        f = np.atleast_1d(np.asarray(fractions, dtype=np.float64))
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{where}: fractions must be a sequence of numbers ({exc})") from exc
    if f.ndim != 1 or f.size == 0:
        raise ConfigError(f"{where}: fractions must be a non-empty 1-D sequence, got shape {f.shape}")
    bad = ~(np.isfinite(f) & (f > 0) & (f <= MAX_FRACTION))
    if bad.any():
        raise ConfigError(
            f"{where}: every fraction of the OLS weight norm must be in (0, {MAX_FRACTION}] (1 is OLS itself, and so "
            f"is anything above it); got {f[bad].tolist()}"
        )
    if f.size > 1 and not (np.diff(f) > 0).all():
        raise ConfigError(f"{where}: fractions must be strictly increasing (as fracridge requires), got {f.tolist()}")
    return f


def _check_form(form: Any, where: str) -> str:
    if form not in ("auto", "primal", "kernel"):
        raise ConfigError(f"{where}: form must be 'auto', 'primal' or 'kernel', got {form!r}")
    return str(form)


# ---------------------------------------------------------------------------------------------------- backends
class _Backend:
    """The handful of array operations the solver needs, for numpy or torch (CPU or CUDA).

    Arithmetic (``@``, ``*``, ``+``, ``.T``, ``.sum(0)``, ``.mean(0)``) is written directly on the arrays; only
    conversion, float64 reductions and the α-selection argmin go through here.
    """

    def __init__(self, name: str, device: str | None, dtype: np.dtype[Any]) -> None:
        self.name = name
        self.np_dtype = dtype
        self.device = device
        self.pool: Any = None  # a thread pool for the column statistics, set for the duration of a fit
        if name == "torch":
            import torch

            self.torch = torch
            self.t_dtype = torch.float32 if dtype == np.float32 else torch.float64
            self.dev = torch.device(device or "cpu")

    @classmethod
    def create(cls, backend: str, device: str | None, dtype: np.dtype[Any], where: str) -> _Backend:
        if backend not in ("auto", "numpy", "torch"):
            raise ConfigError(f"{where}: backend must be 'auto', 'numpy' or 'torch', got {backend!r}")
        if backend == "numpy":
            if device not in (None, "cpu"):
                raise ConfigError(f"{where}: the numpy backend runs on the CPU only; got device={device!r}")
            return cls("numpy", None, dtype)
        if backend == "auto" and device in (None, "cpu") and not _maybe_gpu():
            return cls("numpy", None, dtype)  # no GPU driver: do not pay torch's import (seconds) to find out
        try:
            import torch
        except ImportError as exc:  # pragma: no cover - torch is a dependency
            if backend == "torch":
                raise ConfigError(f"{where}: backend='torch' needs PyTorch installed") from exc
            return cls("numpy", None, dtype)
        if backend == "auto":
            if device is None:
                device = "cuda" if torch.cuda.is_available() else None
            if device in (None, "cpu"):
                return cls("numpy", None, dtype)
        dev = device or ("cuda" if torch.cuda.is_available() else "cpu")
        if str(dev).startswith("cuda") and not torch.cuda.is_available():
            raise ConfigError(f"{where}: device={dev!r} requested but CUDA is not available")
        return cls("torch", str(dev), dtype)

    @property
    def is_gpu(self) -> bool:
        return self.name == "torch" and self.dev.type == "cuda"

    def put(self, a: np.ndarray, dtype: np.dtype[Any] | None = None) -> Any:
        """A numpy array on the backend, in ``dtype`` (default: the compute dtype), C-contiguous."""
        dt = self.np_dtype if dtype is None else dtype
        arr = np.ascontiguousarray(a, dtype=dt)
        if self.name == "numpy":
            return arr
        return self.torch.from_numpy(arr).to(self.dev, non_blocking=False)

    def put_view(self, a: np.ndarray) -> Any:
        """Like :meth:`put`, but a numpy array already in the compute dtype is used as is (no copy; strided is fine)."""
        if self.name == "numpy" and a.dtype == self.np_dtype:
            return a
        if self.name == "torch" and a.dtype == self.np_dtype:
            return self.torch.from_numpy(np.ascontiguousarray(a)).to(self.dev)
        return self.put(a)

    def get(self, a: Any) -> np.ndarray:
        """Back to a numpy float64 array."""
        if self.name == "numpy":
            return np.asarray(a, dtype=np.float64)
        return a.detach().to("cpu", self.torch.float64).numpy()

    def to_numpy(self, a: Any) -> np.ndarray:
        """Back to a numpy array in the compute dtype."""
        return a if self.name == "numpy" else a.detach().cpu().numpy()

    def sumsq0(self, a: Any) -> Any:
        """Column sums of squares, accumulated in float64 → (b,) float64 on the backend."""
        if self.name == "numpy":
            return _column_stats(a, self.pool)[1]
        return (a * a).sum(0, dtype=self.torch.float64)

    def col_stats(self, a: Any) -> tuple[np.ndarray, np.ndarray]:
        """(column sums, column sums of squares), float64 numpy, in one pass over ``a``."""
        if self.name == "numpy":
            return _column_stats(a, self.pool)
        return self.get(a.sum(0, dtype=self.torch.float64)), self.get((a * a).sum(0, dtype=self.torch.float64))

    def mean0(self, a: Any) -> Any:
        """Column means accumulated in float64, returned in the compute dtype → (b,)."""
        if self.name == "numpy":
            return a.mean(axis=0, dtype=np.float64).astype(self.np_dtype)
        return a.mean(0, dtype=self.torch.float64).to(self.t_dtype)

    def sum0(self, a: Any) -> Any:
        """Column sums accumulated in float64 → (b,)."""
        return a.sum(axis=0, dtype=np.float64) if self.name == "numpy" else a.sum(0, dtype=self.torch.float64)

    def cast(self, a: Any) -> Any:
        """A backend array in the compute dtype."""
        return a.astype(self.np_dtype, copy=False) if self.name == "numpy" else a.to(self.t_dtype)

    def rows(self, a: Any, idx: np.ndarray) -> Any:
        return a[idx] if self.name == "numpy" else a[self.torch.from_numpy(idx).to(self.dev)]

    def cols(self, a: Any, idx: np.ndarray) -> Any:
        """``a[:, idx]`` as a C-contiguous array (numpy's fancy indexing would return it transposed in memory, and
        elementwise products with C-ordered arrays then run 15× slower)."""
        if self.name == "numpy":
            return np.take(a, idx, axis=1)
        return a.index_select(1, self.torch.from_numpy(np.ascontiguousarray(idx, dtype=np.int64)).to(self.dev))


def _maybe_gpu() -> bool:
    """Whether a CUDA GPU may be present: torch already imported, or an NVIDIA device node exists."""
    import os
    import sys

    return "torch" in sys.modules or os.path.exists("/dev/nvidiactl") or os.path.exists("/dev/nvidia0")


def _n_threads() -> int:
    import os

    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def _column_stats(a: np.ndarray, pool: Any = None, sums: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Column sums and sums of squares of an (n, b) array (any strides) → float64 (b,), (b,).

    Sums: one BLAS GEMV (multi-threaded), unless ``sums`` are given (the solver gets them from its projection GEMM).
    Squares: one ``einsum`` per block of ≤ 2,048 rows, blocks in parallel threads (numpy releases the GIL), partial
    sums added in float64. numpy's own axis-0 reductions are single-threaded and would cost half the GEMM on a
    16-core machine; this costs ~7 % of it.
    """
    n, b = a.shape
    s1 = np.asarray(np.ones(n, dtype=a.dtype) @ a if sums is None else sums, dtype=np.float64)
    threads = _n_threads() if n * b >= 1 << 20 else 1
    n_blocks = max(threads, -(-n // 2048))
    bounds = np.linspace(0, n, n_blocks + 1).astype(int)

    def part(j: int) -> np.ndarray:
        blk = a[bounds[j] : bounds[j + 1]]
        return np.einsum("ij,ij->j", blk, blk)

    if threads == 1:
        parts = [part(j) for j in range(n_blocks)]
    elif pool is not None:
        parts = list(pool.map(part, range(n_blocks)))
    else:
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(threads) as own:
            parts = list(own.map(part, range(n_blocks)))
    s2 = np.zeros(b)
    for q in parts:
        s2 += q
    return s1, s2


# ---------------------------------------------------------------------------------------------------- basis
def _eigh(gram: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric eigendecomposition; multi-threaded for large matrices or on a machine with idle cores to spare,
    else single-threaded (threads only contend there: 5× slower on a loaded 2-core machine; on an idle 16-core one
    threads halve the 768 × 768 case, 0.10 → 0.045 s)."""
    import os

    n_threads = _n_threads()
    try:
        idle = n_threads >= 8 and os.getloadavg()[0] < n_threads / 2
    except OSError:  # pragma: no cover - no load average
        idle = False
    if gram.shape[0] > 2048 or (idle and gram.shape[0] > 256):
        return np.linalg.eigh(gram)
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1):
        return np.linalg.eigh(gram)


@dataclass(frozen=True)
class _RidgeBasis:
    """X_c = U diag(s) Vᵀ restricted to the non-null singular values, from one float64 eigendecomposition.

    Attributes:
        u: (n, r) orthonormal columns (they sum to 0 with an intercept).
        s: (r,) singular values, descending.
        v: (p, r) orthonormal columns.
        x_mean: (p,) column means of X (zeros without intercept).
        fit_intercept: whether X was centred and an unpenalised intercept is part of the model.
        form: ``"primal"`` (eigh of XᵀX) or ``"kernel"`` (eigh of XXᵀ).
    """

    u: np.ndarray
    s: np.ndarray
    v: np.ndarray
    x_mean: np.ndarray
    fit_intercept: bool
    form: str

    @classmethod
    def from_design(cls, x: np.ndarray, fit_intercept: bool, form: str = "auto") -> _RidgeBasis:
        """Basis of X (n, p) float64; eigenvalues below rounding level (rank deficiency, p > n) are dropped."""
        n, p = x.shape
        x_mean = x.mean(axis=0) if fit_intercept else np.zeros(p)
        xc = x - x_mean
        use_kernel = form == "kernel" or (form == "auto" and p > n)
        gram = xc @ xc.T if use_kernel else xc.T @ xc
        lam, vecs = _eigh(gram)
        lam, vecs = lam[::-1], vecs[:, ::-1]
        top = max(float(lam[0]), 0.0) if lam.size else 0.0
        tol = top * max(n, p) * np.finfo(np.float64).eps * 10
        keep = lam > tol
        if not keep.any():
            raise DataError("ridge: X has no variance (every feature is constant over samples); nothing to fit")
        s = np.sqrt(lam[keep])
        if use_kernel:
            u = vecs[:, keep]
            v = (xc.T @ u) / s
        else:
            v = vecs[:, keep]
            u = (xc @ v) / s
        return cls(u=u, s=s, v=v, x_mean=x_mean, fit_intercept=fit_intercept, form="kernel" if use_kernel else "primal")


@dataclass
class _Fold:
    """One K-fold split with its training-set basis on the backend."""

    train: np.ndarray
    test: np.ndarray
    u: Any  # (n_train, r) backend
    t: Any  # (n_test, r) backend: (X_test − mean_train) V
    s: np.ndarray


def _folds(x: np.ndarray, k: int, fit_intercept: bool, form: str, be: _Backend) -> list[_Fold]:
    n = x.shape[0]
    sizes = np.full(k, n // k)
    sizes[: n % k] += 1  # scikit-learn KFold: the first n % k folds get one more sample
    bounds = np.concatenate([[0], np.cumsum(sizes)])
    out = []
    for j in range(k):
        test = np.arange(bounds[j], bounds[j + 1])
        train = np.setdiff1d(np.arange(n), test)
        b = _RidgeBasis.from_design(x[train], fit_intercept, form)
        out.append(_Fold(train, test, be.put(b.u), be.put((x[test] - b.x_mean) @ b.v), b.s))
    return out


# ---------------------------------------------------------------------------------------------------- kernels
def _gcv_mse(proj: Any, ss: np.ndarray, basis: _RidgeBasis, alphas: np.ndarray, n: int, be: _Backend) -> np.ndarray:
    """GCV error (a, b) from P = UᵀY_c (r, b) on the backend and ‖Y_c‖² (b,) float64."""
    s2 = basis.s[:, None] ** 2
    keep_frac = alphas[None, :] / (s2 + alphas[None, :])  # (r, a)
    w = be.put((1.0 - keep_frac**2).T)  # (a, r): fraction of P_k² that the fit removes from the residual
    expl = be.get(w @ (proj * proj))  # (a, b)
    rss = np.maximum(ss[None, :] - expl, 0.0)  # rounding can push a perfect fit's residual below 0
    trace = (s2 / (s2 + alphas[None, :])).sum(axis=0) + (1.0 if basis.fit_intercept else 0.0)  # (a,)
    denom = np.maximum(1.0 - trace / n, 0.0) ** 2
    with np.errstate(divide="ignore"):
        inv = np.where(denom > 0, 1.0 / np.where(denom > 0, denom, 1.0), np.inf)
    return rss * (inv / n)[:, None]


def _loo_mse(yc64: Any, basis: _RidgeBasis, alphas: np.ndarray, be64: _Backend, be: _Backend) -> np.ndarray:
    """Exact LOO error (a, b): e_i(α) / (1 − H_ii(α)), the residual rebuilt for every α (a GEMMs of n·r·b).

    P = UᵀY_c and the residual outside span(U) in float64 (``be64``), the per-α products in the compute dtype.
    """
    n = yc64.shape[0]
    u64 = be64.put(basis.u)
    proj64 = u64.T @ yc64
    resid_full = be.cast(yc64 - u64 @ proj64)  # the part of Y outside span(U): the same for every α
    u, proj = be.put(basis.u), be.cast(proj64)
    s2 = basis.s**2
    shrink = alphas[None, :] / (s2[:, None] + alphas[None, :])  # (r, a): 1 − s²/(s² + α)
    u2 = basis.u**2
    # 1 − H_ii(α) = (1 − 1/n − Σ_j U_ij²) + Σ_j U_ij² α/(s_j² + α), written so nothing cancels when p ≥ n.
    base = 1.0 - u2.sum(axis=1) - (1.0 / n if basis.fit_intercept else 0.0)
    one_minus_h = np.maximum(base, 0.0)[:, None] + u2 @ shrink  # (n, a)
    inv_denom = be.put(1.0 / np.maximum(one_minus_h, np.finfo(np.float64).tiny))
    shrink_d = be.put(shrink)
    rows = []
    for j in range(alphas.size):
        loo = (resid_full + u @ (shrink_d[:, j : j + 1] * proj)) * inv_denom[:, j : j + 1]
        rows.append(be.get(be.sumsq0(loo)) / n)
    return np.stack(rows)


def _kfold_mse(yb: Any, folds: list[_Fold], alphas: np.ndarray, fit_intercept: bool, be: _Backend) -> np.ndarray:
    """Mean over folds of the held-out MSE (a, b); X and Y centred with the training-fold means."""
    tot = np.zeros((alphas.size, yb.shape[1]))
    for f in folds:
        ytr, yte = be.rows(yb, f.train), be.rows(yb, f.test)
        if fit_intercept:
            m = be.mean0(ytr)
            ytr, yte = ytr - m, yte - m
        proj = f.u.T @ ytr
        gain = be.put(f.s[:, None] / (f.s[:, None] ** 2 + alphas[None, :]))  # (r, a)
        for j in range(alphas.size):
            err = yte - f.t @ (gain[:, j : j + 1] * proj)
            tot[j] += be.get(be.sumsq0(err)) / f.test.size
    return tot / len(folds)


# ---------------------------------------------------------------------------------------------------- driver
@dataclass
class _RidgeFit:
    coef: np.ndarray | None  # (p, v) in dtype; None when not requested
    intercept: np.ndarray  # (v,) float64
    best_alphas: np.ndarray  # (v,) NaN where masked
    cv_mse: np.ndarray  # (a, v) NaN where masked
    valid: np.ndarray  # (v,) bool
    alpha: float | None  # the shared α (alpha_per_target=False)
    form: str
    backend: str
    fractions: np.ndarray | None = None  # (v,) chosen fraction of the OLS norm (cv="frac"), NaN where masked
    cv_r2: np.ndarray | None = None  # (f, v) held-out R² per fraction (cv="frac")


@dataclass
class _Batch:
    """One batch of targets, reduced to its valid columns."""

    cols: np.ndarray  # (b',) global indices of the valid targets
    valid: np.ndarray  # (b,) bool over the batch
    fill: np.ndarray  # (b,) the nan-mean of each invalid target (0 for valid ones)
    y: Any  # (n, b') raw valid targets on the backend (None unless asked for)
    proj: Any  # (r, b') UᵀY_c on the backend
    ss: np.ndarray  # (b',) ‖Y_c‖² float64
    mean: np.ndarray  # (b',) float64 target means (0 without intercept)


def _batches(v: int, n: int, r: int, batch: int | None, be: _Backend, views_only: bool) -> Iterator[slice]:
    """Slices of the targets, one batch at a time.

    ``views_only`` (GCV and the weight pass on numpy): Y is only viewed, the batch's own arrays are r × batch, so a
    batch holds up to ``_GCV_WORK_ELEMENTS`` / r targets, capped so that those arrays (about four of them) stay
    within half of Y — few, large GEMMs run closest to one XᵀY GEMM. Otherwise (LOO and K-fold copy the batch, and
    torch moves it to the device): ~256 MB (CPU) / 512 MB (GPU) batch copies, and at most ~1/8 of the targets so
    that peak memory stays near Y even when Y is small.
    """
    size = _batch_size(v, n, r, batch, be, views_only)
    for start in range(0, v, size):
        yield slice(start, min(v, start + size))


def _batch_size(v: int, n: int, r: int, batch: int | None, be: _Backend, views_only: bool) -> int:
    """Targets per batch of :func:`_batches`: ``batch`` when given, else the automatic size."""
    if batch:
        return batch
    if views_only and be.name == "numpy":
        return max(512, min(_GCV_WORK_ELEMENTS // max(r, 1), (n * v) // (8 * max(r, 1))))
    return max(1, min((_BATCH_ELEMENTS_GPU if be.is_gpu else _BATCH_ELEMENTS) // max(n, 1), max(512, -(-v // 8))))


def _read_batch(
    y: np.ndarray, sl: slice, ua: Any, usum: np.ndarray, fit_intercept: bool, be: _Backend, keep_y: bool = False
) -> _Batch:
    """Project one batch of targets: one GEMM UᵀY gives P, one pass the column sums and ‖Y‖².

    NaN/inf stay confined to their own columns in the GEMM; they and constant targets are dropped afterwards.
    ``keep_y``: also return the batch's valid raw targets (K-fold needs them; a copy when some are invalid).
    """
    yb = be.put_view(y[:, sl])
    if be.name == "numpy":  # ua = [U, 1]: one GEMM gives P and the column sums; one threaded pass the squares
        full = ua.T @ yb  # (r + 1, b)
        proj = full[:-1]
        s1, s2 = _column_stats(yb, be.pool, sums=full[-1])
    else:
        proj = ua.T @ yb  # (r, b)
        s1, s2 = be.col_stats(yb)
    return _finish_batch(y, sl, proj, s1, s2, ua, usum, fit_intercept, be, yb if keep_y else None)


def _row_streamed_batch(y: np.ndarray, ua: Any, usum: np.ndarray, fit_intercept: bool, be: _Backend) -> _Batch:
    """All targets as one batch, torch backend: Y streamed to the device in contiguous row blocks.

    P = Σ_blocks U_blockᵀ Y_block and the column sums / sums of squares accumulate on the device, so no strided
    column slab is gathered on the host (that copy, not the arithmetic, dominated the column-batch path on a GPU).
    """
    torch = be.torch
    n, v = y.shape
    rows = max(1, _BATCH_ELEMENTS_GPU // max(v, 1))
    proj = torch.zeros((ua.shape[1], v), dtype=be.t_dtype, device=be.dev)
    s1 = torch.zeros(v, dtype=torch.float64, device=be.dev)
    s2 = torch.zeros(v, dtype=torch.float64, device=be.dev)
    for start in range(0, n, rows):
        yb = be.put(y[start : start + rows])
        proj.addmm_(ua[start : start + rows].T, yb)
        s1 += yb.sum(0, dtype=torch.float64)
        s2 += (yb * yb).sum(0, dtype=torch.float64)
        del yb
    return _finish_batch(y, slice(0, v), proj, be.get(s1), be.get(s2), ua, usum, fit_intercept, be, None)


def _stream_fits(r: int, v: int, n: int, be: _Backend) -> bool:
    """Whether the row-streamed path's device arrays (about six r × v, one row block) fit in free GPU memory."""
    if not be.is_gpu:
        return True
    free, _ = be.torch.cuda.mem_get_info(be.dev)
    item = 4 if be.np_dtype == np.float32 else 8
    return 6 * (r + 1) * v * item + _BATCH_ELEMENTS_GPU * item < 0.8 * free


def _finish_batch(
    y: np.ndarray,
    sl: slice,
    proj: Any,
    s1: np.ndarray,
    s2: np.ndarray,
    ua: Any,
    usum: np.ndarray,
    fit_intercept: bool,
    be: _Backend,
    yb: Any,
) -> _Batch:
    """From raw UᵀY (r, b) and column sums / sums of squares of Y[:, sl]: mask bad targets, centre, build the batch.

    ``yb``: the batch's raw targets on the backend, kept (valid columns only) when given.
    """
    n = y.shape[0]
    finite = np.isfinite(s1) & np.isfinite(s2)
    mean = np.where(finite, s1, 0.0) / n if fit_intercept else np.zeros(s1.size)
    ss = np.where(finite, s2, 0.0) - (n * mean**2 if fit_intercept else 0.0)
    valid = finite.copy()
    maybe_const = np.flatnonzero(finite & (ss <= 1e-6 * np.where(finite, s2, 0.0)))
    if maybe_const.size:  # confirm exactly: max == min over samples
        raw = np.asarray(y[:, sl][:, maybe_const])
        valid[maybe_const] = np.ptp(raw, axis=0) > 0
    fill = np.zeros(s1.size)
    if not valid.all():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns: mean of nothing
            bad = np.asarray(y[:, sl][:, ~valid], dtype=np.float64)
            fill[~valid] = np.nan_to_num(np.nanmean(np.where(np.isfinite(bad), bad, np.nan), axis=0), nan=0.0)
    idx = np.flatnonzero(valid)
    all_valid = idx.size == valid.size
    if not all_valid:
        proj = be.cols(proj, idx)
    mean, ss = mean[idx], ss[idx]
    if fit_intercept:  # P = UᵀY − (1ᵀU)ᵀ ȳ: exact centring with the U actually used in the GEMM
        proj -= be.put(usum)[:, None] * be.put(mean)[None, :]
        # offsets larger than the spread: sums and a GEMM on uncentred data lose the signal to rounding, so those
        # targets are centred first and projected again, in column chunks of bounded size
        off = np.flatnonzero(mean**2 > ss / n)
        chunk = max(1, _BATCH_ELEMENTS // max(n, 1))
        for start in range(0, off.size, chunk):
            pos = off[start : start + chunk]
            yc = be.put(np.asarray(y[:, sl][:, idx[pos]])) - be.put(mean[pos])
            new_proj = (ua.T @ yc)[: proj.shape[0]]
            if be.name == "numpy":
                proj[:, pos] = new_proj
            else:
                proj[:, be.torch.from_numpy(pos).to(proj.device)] = new_proj
            ss[pos] = be.col_stats(yc)[1]
    yv = None
    if yb is not None:
        yv = yb if all_valid else be.cols(yb, idx)
    return _Batch(
        cols=np.arange(sl.start, sl.stop)[idx],
        valid=valid,
        fill=fill,
        y=yv,
        proj=proj,
        ss=ss,
        mean=mean,
    )


def _write_weights(
    b: _Batch,
    g: Any,
    coef: np.ndarray,
    v_d: Any,
    x_mean_d: np.ndarray,
    intercept: np.ndarray,
    fit_intercept: bool,
    be: _Backend,
) -> None:
    """β = V (g ⊙ P) into ``coef[:, b.cols]`` (and the intercepts); ``g`` (r, b') are the gains s / (s² + α_t) of
    the batch's targets on the backend, multiplied by P in place."""
    g *= b.proj
    contiguous = b.cols.size == b.valid.size
    if be.name == "numpy" and contiguous:
        w = coef[:, b.cols[0] : b.cols[-1] + 1]
        np.matmul(g.T, v_d.T, out=w.T)  # wᵀ = gᵀ Vᵀ: a C-contiguous (b, p) output, so BLAS writes in place
    else:
        w = be.to_numpy(v_d @ g)  # (p, b)
        if contiguous:
            coef[:, b.cols[0] : b.cols[-1] + 1] = w
        else:
            coef[:, b.cols] = w
    if fit_intercept:
        intercept[b.cols] = b.mean - x_mean_d @ w


def _fit_ridge_impl(
    x: np.ndarray,
    y: np.ndarray,
    alphas: np.ndarray,
    *,
    cv: str | int,
    fit_intercept: bool,
    alpha_per_target: bool,
    batch: int | None,
    be: _Backend,
    form: str,
    compute_coef: bool,
    where: str,
) -> _RidgeFit:
    """Choose α per target and (optionally) solve for the weights; Y (n, v) is read batch by batch."""
    n, p = x.shape
    v = y.shape[1]
    basis = _RidgeBasis.from_design(x, fit_intercept, form)
    u32 = basis.u.astype(be.np_dtype)
    # numpy: a column of ones rides along in the projection GEMM and yields the targets' column sums
    ua = be.put(np.column_stack([u32, np.ones(n, dtype=be.np_dtype)]) if be.name == "numpy" else u32)
    usum = u32.sum(axis=0, dtype=np.float64)
    u64 = _Backend(be.name, be.device, np.dtype(np.float64)) if cv == "loo" else None
    folds = _folds(x, cv, fit_intercept, form, be) if isinstance(cv, int) else []
    cv_mse = np.full((alphas.size, v), np.nan)
    best = np.full(v, np.nan)
    valid_all = np.zeros(v, dtype=bool)
    intercept = np.zeros(v)
    # Fortran order: a batch of targets is a contiguous slab that the weight GEMM writes straight into
    coef = np.zeros((p, v), dtype=be.np_dtype, order="F") if compute_coef else None
    gain_table = be.put(basis.s[:, None] / (basis.s[:, None] ** 2 + alphas[None, :]))  # (r, a): s / (s² + α)
    x_mean_d = basis.x_mean.astype(be.np_dtype)
    v_d = be.put(basis.v) if compute_coef else None

    def solve(b: _Batch, a_idx: np.ndarray) -> None:
        """β = V diag(s / (s² + α_t)) P for the batch's targets, α_t = alphas[a_idx]."""
        assert coef is not None and v_d is not None
        _write_weights(b, be.cols(gain_table, a_idx), coef, v_d, x_mean_d, intercept, fit_intercept, be)

    r = basis.s.size
    stream = cv == "gcv" and be.name == "torch" and batch is None and _stream_fits(r, v, n, be)

    def read_batches(views_only: bool, keep_y: bool) -> Iterator[tuple[slice, _Batch]]:
        if stream:
            yield slice(0, v), _row_streamed_batch(y, ua, usum, fit_intercept, be)
            return
        for sl in _batches(v, n, r, batch, be, views_only=views_only):
            yield sl, _read_batch(y, sl, ua, usum, fit_intercept, be, keep_y=keep_y)

    for sl, b in read_batches(views_only=cv == "gcv", keep_y=isinstance(cv, int)):
        valid_all[sl] = b.valid
        intercept[sl] = b.fill if fit_intercept else 0.0
        if b.cols.size == 0:
            continue
        if cv == "gcv":
            mse = _gcv_mse(b.proj, b.ss, basis, alphas, n, be)
        elif cv == "loo":
            # in float64: with p ≳ n the residual outside span(U) is tiny and 1 − H_ii small, so rounding would count
            assert u64 is not None
            raw64 = np.asarray(y[:, b.cols], dtype=np.float64)
            y64 = u64.put(raw64 - raw64.mean(axis=0) if fit_intercept else raw64)
            mse = _loo_mse(y64, basis, alphas, u64, be)
        else:
            mse = _kfold_mse(b.y, folds, alphas, fit_intercept, be)
        cv_mse[:, b.cols] = mse
        if alpha_per_target:
            a_idx = np.argmin(mse, axis=0)
            best[b.cols] = alphas[a_idx]
            if compute_coef:
                solve(b, a_idx)
    if not valid_all.any():
        raise DataError(f"{where}: all {v} targets contain NaN/inf or are constant; nothing to fit")
    shared = None
    if not alpha_per_target:
        shared_idx = int(np.argmin(np.nanmean(cv_mse, axis=1)))
        shared = float(alphas[shared_idx])
        best[valid_all] = shared
        if compute_coef:  # a second pass: the shared α is known only now
            for _, b in read_batches(views_only=True, keep_y=False):
                if b.cols.size:
                    solve(b, np.full(b.cols.size, shared_idx))
    _warn_masked(valid_all, where)
    return _RidgeFit(coef, intercept, best, cv_mse, valid_all, shared, basis.form, be.name)


def _warn_masked(valid: np.ndarray, where: str) -> None:
    """One warning that counts the targets left out of the fit (``valid`` (v,) bool)."""
    n_bad = int((~valid).sum())
    if n_bad:
        warnings.warn(
            f"{where}: {n_bad} of {valid.size} targets contain NaN/inf or are constant and are left out of the fit "
            "(coef 0, prediction = mean of their finite values); see valid_targets_",
            RuntimeWarning,
            stacklevel=4,
        )


def _fit_ridge(x: np.ndarray, y: np.ndarray, grid: np.ndarray, *, be: _Backend, **kw: Any) -> _RidgeFit:
    """:func:`_fit_ridge_impl` (``grid``: the alphas) or, with ``cv="frac"``, :func:`_fit_frac_impl` (``grid``: the
    fractions), with one thread pool for the whole fit (numpy backend, large Y)."""
    kw["batch"] = _plan_batch(x, y, grid, be, kw)
    if kw["cv"] == "frac":
        impl: Any = _fit_frac_impl
        kw = {k: a for k, a in kw.items() if k not in ("cv", "compute_coef")}
    else:
        impl = _fit_ridge_impl
    if be.name != "numpy" or y.size < 1 << 22 or _n_threads() == 1:
        return impl(x, y, grid, be=be, **kw)
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(_n_threads()) as pool:
        be.pool = pool
        try:
            return impl(x, y, grid, be=be, **kw)
        finally:
            be.pool = None


def _plan_batch(x: np.ndarray, y: np.ndarray, grid: np.ndarray, be: _Backend, kw: dict[str, Any]) -> int | None:
    """The target batch of the fit, after checking its estimated peak memory (:mod:`llmvem.brain.memory`)."""
    n, p = x.shape
    v = y.shape[1]
    cv = kw["cv"]
    est = ridge_memory(
        n, p, v, n_grid=grid.size, cv=cv, itemsize=be.np_dtype.itemsize, y_itemsize=y.dtype.itemsize,
        compute_coef=kw.get("compute_coef", True), on_gpu=be.is_gpu,
    )  # fmt: skip
    auto = _batch_size(v, n, min(n, p), None, be, views_only=cv == "gcv")
    return plan_target_batch(
        est, batch=kw["batch"], auto_batch=auto, where=kw["where"], float64=be.np_dtype == np.float64
    )


# ---------------------------------------------------------------------------------------------------- fractional ridge
def _frac_alpha_grid(s: np.ndarray) -> np.ndarray:
    """fracridge's candidate penalties for singular values ``s`` (r,), descending → (g,) float64.

    0 (the OLS solution) and 10^k for k from ⌊log10(10⁻² s_min²)⌋ to below ⌈log10(10⁴ s_max²)⌉ in steps of 0.2,
    as ``fracridge.fracridge`` (Rokem & Kay 2020) builds it: the α of a fraction is interpolated on this grid.
    """
    lo, hi = _FRAC_SMALL_BIAS * s[-1] ** 2, _FRAC_BIG_BIAS * s[0] ** 2
    return np.concatenate([[0.0], 10 ** np.arange(np.floor(np.log10(lo)), np.ceil(np.log10(hi)), _FRAC_BIAS_STEP)])


def _interp_columns(x: np.ndarray, xp: np.ndarray, fp: np.ndarray) -> np.ndarray:
    """``np.interp(x, xp[:, j], fp)`` for every column j at once (same formula and end clamping).

    Args:
        x: (f,) points; xp: (g, b) increasing down each column; fp: (g,) values.
    Returns:
        (f, b) float64.
    """
    g, b = xp.shape
    cols = np.arange(b)
    out = np.empty((x.size, b))
    for i, xv in enumerate(x):
        j = (xp <= xv).sum(axis=0) - 1  # the last grid point at or below xv (−1: below the first)
        jj = np.clip(j, 0, g - 2)
        x0, x1 = xp[jj, cols], xp[jj + 1, cols]
        with np.errstate(divide="ignore", invalid="ignore"):
            val = (fp[jj + 1] - fp[jj]) / (x1 - x0) * (xv - x0) + fp[jj]
        out[i] = np.where(j < 0, fp[0], np.where(j >= g - 1, fp[-1], val))
    return out


def _fraction_alphas(proj: Any, s: np.ndarray, fractions: np.ndarray, be: _Backend) -> np.ndarray:
    """The α of every target that shrinks its weight norm to each fraction of the OLS norm, as ``fracridge`` finds it.

    ‖β(α)‖² = Σ_k (s_k / (s_k² + α))² P_k² on fracridge's grid (:func:`_frac_alpha_grid`), divided by its value at
    α = 0 (the OLS norm), then α interpolated linearly in log(1 + α) against that relative norm.

    Args:
        proj: (r, b) P = UᵀY_c on the backend; s: (r,) singular values; fractions: (f,) in (0, 1.1].
    Returns:
        (f, b) float64 α ≥ 0 (0 for fractions ≥ 1, and for targets orthogonal to X, whose weights are 0 anyway).
    """
    grid = _frac_alpha_grid(s)
    s2 = s[None, :] ** 2
    shrink2 = (s2 / (s2 + grid[:, None])) ** 2 / s2  # (g, r): squared gain of P_k at each α
    norm = np.sqrt(np.maximum(be.get(be.put(shrink2) @ (proj * proj)), 0.0))  # (g, b) ‖β(α)‖
    ols = norm[0]
    zero = ~(ols > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        rel = norm / np.where(zero, 1.0, ols)
    rel[:, zero] = np.linspace(1.0, 0.0, grid.size)[:, None]  # any monotone curve: their α is set to 0 below
    alphas = np.exp(_interp_columns(fractions, rel[::-1], np.log(1 + grid)[::-1])) - 1
    alphas[:, zero] = 0.0
    return np.maximum(alphas, 0.0)


def _frac_cv_scores(
    yb: Any, folds: list[_Fold], fractions: np.ndarray, fit_intercept: bool, be: _Backend
) -> tuple[np.ndarray, np.ndarray]:
    """Held-out MSE and R² (f, b) of every fraction, each averaged over the folds (fracridge's GridSearchCV protocol).

    Per fold: X and Y centred with the training means, α per target and fraction from the training fold's own
    spectrum, R² = 1 − SSE/SST on the test fold (SST around the test mean; scikit-learn's ``r2_score`` with its
    ``force_finite`` rule for a constant test fold: 1 if predicted exactly, else 0).
    """
    mse = np.zeros((fractions.size, yb.shape[1]))
    r2 = np.zeros_like(mse)
    for f in folds:
        ytr, yte = be.rows(yb, f.train), be.rows(yb, f.test)
        if fit_intercept:
            m = be.mean0(ytr)
            ytr, yte = ytr - m, yte - m
        proj = f.u.T @ ytr
        alphas = be.put(_fraction_alphas(proj, f.s, fractions, be))  # (f, b)
        sst = be.get(be.sumsq0(yte - be.mean0(yte)))
        s_d = be.put(f.s[:, None])
        for j in range(fractions.size):
            err = yte - f.t @ (s_d / (s_d * s_d + alphas[j : j + 1]) * proj)
            sse = be.get(be.sumsq0(err))
            mse[j] += sse / f.test.size
            with np.errstate(divide="ignore", invalid="ignore"):
                r2[j] += np.where(sst > 0, 1.0 - sse / np.where(sst > 0, sst, 1.0), np.where(sse == 0, 1.0, 0.0))
    return mse / len(folds), r2 / len(folds)


def _fit_frac_impl(
    x: np.ndarray,
    y: np.ndarray,
    fractions: np.ndarray,
    *,
    fit_intercept: bool,
    alpha_per_target: bool,
    batch: int | None,
    be: _Backend,
    form: str,
    where: str,
) -> _RidgeFit:
    """Fractional ridge: the fraction per target by K-fold held-out R², then α and weights on all samples."""
    n, p = x.shape
    v = y.shape[1]
    basis = _RidgeBasis.from_design(x, fit_intercept, form)
    u32 = basis.u.astype(be.np_dtype)
    ua = be.put(np.column_stack([u32, np.ones(n, dtype=be.np_dtype)]) if be.name == "numpy" else u32)
    usum = u32.sum(axis=0, dtype=np.float64)
    folds = _folds(x, FRAC_FOLDS, fit_intercept, form, be)
    cv_mse, cv_r2, alpha_table = (np.full((fractions.size, v), np.nan) for _ in range(3))
    chosen = np.full(v, -1)
    valid_all = np.zeros(v, dtype=bool)
    intercept = np.zeros(v)
    coef = np.zeros((p, v), dtype=be.np_dtype, order="F")
    v_d, s_d, x_mean_d = be.put(basis.v), be.put(basis.s[:, None]), basis.x_mean.astype(be.np_dtype)

    def solve(b: _Batch) -> None:
        alpha = be.put(alpha_table[chosen[b.cols], b.cols])[None, :]  # (1, b')
        _write_weights(b, s_d / (s_d * s_d + alpha), coef, v_d, x_mean_d, intercept, fit_intercept, be)

    r = basis.s.size
    for sl in _batches(v, n, r, batch, be, views_only=False):
        b = _read_batch(y, sl, ua, usum, fit_intercept, be, keep_y=True)
        valid_all[sl] = b.valid
        intercept[sl] = b.fill if fit_intercept else 0.0
        if b.cols.size == 0:
            continue
        cv_mse[:, b.cols], cv_r2[:, b.cols] = _frac_cv_scores(b.y, folds, fractions, fit_intercept, be)
        alpha_table[:, b.cols] = _fraction_alphas(b.proj, basis.s, fractions, be)
        if alpha_per_target:
            chosen[b.cols] = np.argmax(cv_r2[:, b.cols], axis=0)  # the first (smallest) fraction on ties
            solve(b)
    if not valid_all.any():
        raise DataError(f"{where}: all {v} targets contain NaN/inf or are constant; nothing to fit")
    if not alpha_per_target:  # one fraction for all targets: the best mean R² over targets, as GridSearchCV scores
        chosen[valid_all] = int(np.argmax(np.nanmean(cv_r2, axis=1)))
        for sl in _batches(v, n, r, batch, be, views_only=True):
            b = _read_batch(y, sl, ua, usum, fit_intercept, be)
            if b.cols.size:
                solve(b)
    _warn_masked(valid_all, where)
    best = np.full(v, np.nan)
    frac = np.full(v, np.nan)
    best[valid_all] = alpha_table[chosen[valid_all], np.flatnonzero(valid_all)]
    frac[valid_all] = fractions[chosen[valid_all]]
    fit = _RidgeFit(coef, intercept, best, cv_mse, valid_all, None, basis.form, be.name)
    fit.fractions, fit.cv_r2 = frac, cv_r2
    return fit


def ridge_cv_alphas(
    X: np.ndarray,
    Y: np.ndarray,
    alphas: Sequence[float] | np.ndarray = DEFAULT_ALPHAS,
    *,
    cv: CV = "gcv",
    fit_intercept: bool = True,
    target_batch_size: int | None = None,
    dtype: str | np.dtype[Any] = "float64",
    backend: str = "numpy",
    device: str | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Best ridge penalty of every target by GCV, exact leave-one-out or K-fold CV (see the module docstring).

    Args:
        X: (n, p) design, finite, n ≥ 3 (p may exceed n).
        Y: (n, v) or (n,) targets, finite (use :class:`RidgeEncoder` to mask bad targets).
        alphas: (a,) candidate penalties, all > 0.
        cv: ``"gcv"``, ``"loo"`` or a number of contiguous folds K ≥ 2 (fractional ridge: ``RidgeEncoder(cv="frac")``).
        fit_intercept: centre X and Y and leave the intercept unpenalised.
        target_batch_size: targets per batch (None: automatic, ~64 MB working arrays).
        dtype: float type of the products that touch Y (``"float32"`` halves memory and time).
        backend: ``"numpy"``, ``"torch"`` or ``"auto"``; device: torch device (``"cuda"``, ``"cpu"``).
    Returns:
        best_alphas (v,) — the α with the smallest CV error per target (first one on ties) — and
        cv_mse (a, v), the CV mean squared error of every target for every α.
    """
    where = f"ridge_cv_alphas(cv={cv!r})"
    x, y, _ = _check_fit_inputs(X, Y, where)
    a = _check_alphas(alphas, where)
    cvc = _check_cv(cv, x.shape[0], where, allowed=("gcv", "loo"))
    bad = ~np.isfinite(y).all(axis=0)
    if bad.any():
        raise DataError(
            f"{where}: targets {np.flatnonzero(bad)[:10].tolist()} contain NaN/inf; drop them "
            "(RidgeEncoder masks them for you)"
        )
    be = _Backend.create(backend, device, _check_dtype(dtype, where), where)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        fit = _fit_ridge(
            x, y, a, cv=cvc, fit_intercept=fit_intercept, alpha_per_target=True,
            batch=_check_batch(target_batch_size, where), be=be, form="auto", compute_coef=False, where=where,
        )  # fmt: skip
    mse = fit.cv_mse
    const = ~fit.valid  # constant targets: every α fits them perfectly
    mse[:, const] = 0.0
    best = a[np.argmin(mse, axis=0)]
    return best, mse


def ridge_loo_alphas(
    X: np.ndarray,
    Y: np.ndarray,
    alphas: Sequence[float] | np.ndarray = DEFAULT_ALPHAS,
    *,
    fit_intercept: bool = True,
    target_batch_size: int | None = None,
    dtype: str | np.dtype[Any] = "float64",
) -> tuple[np.ndarray, np.ndarray]:
    """Best ridge penalty of every target by exact leave-one-out error: ``ridge_cv_alphas(..., cv="loo")``.

    Returns:
        best_alphas (v,) and loo_mse (a, v), the mean squared LOO error of every target for every α.
    """
    return ridge_cv_alphas(
        X, Y, alphas, cv="loo", fit_intercept=fit_intercept, target_batch_size=target_batch_size, dtype=dtype
    )


class RidgeEncoder(RegressorMixin, BaseEstimator):
    """Linear encoding model Y ≈ X β + b with a ridge penalty per target chosen by GCV, exact LOO, K-fold CV or as a
    fraction of the OLS weight norm (fractional ridge).

    Parameters
    ----------
    alphas : sequence of float
        Candidate penalties (all > 0), stored as given.
    cv : {"gcv", "loo", "frac"} or int
        How α is chosen: generalised cross-validation (default, about one XᵀY-sized GEMM in all), exact leave-one-out
        (what scikit-learn's RidgeCV computes; ~len(alphas)× dearer), K contiguous folds (himalaya's protocol) or
        ``"frac"``: fractional ridge (Rokem & Kay 2020, the method of Doerig et al.). For each target and each of
        ``fractions``, the α whose weights have that fraction of the OLS weight norm (found as the ``fracridge``
        package finds it); the fraction with the best held-out R² averaged over 5 contiguous folds (fracridge's
        ``FracRidgeRegressorCV`` protocol, here per target); then α and weights on all samples. ``alphas`` is unused.
    fractions : sequence of float
        Fractions of the OLS weight norm for ``cv="frac"``, strictly increasing, in (0, 1.1] (≥ 1: OLS, α = 0).
        Default: Doerig et al.'s grid, ``np.linspace(0.05, 1.05, 20)``.
    fit_intercept : bool
        Fit an unpenalised intercept (X and Y are centred).
    alpha_per_target : bool
        Choose α per target (voxel); if False, one α minimising the CV error averaged over targets (``cv="frac"``: one
        fraction maximising the held-out R² averaged over targets, exactly ``FracRidgeRegressorCV``; each target keeps
        its own α for that fraction).
    target_batch_size : int or None
        Targets per batch (None: automatic, ~64 MB working arrays on the CPU, ~512 MB on a GPU).
    dtype : {"float32", "float64"}
        Float type of the products that touch Y and of ``coef_`` and predictions. The eigendecomposition of the Gram
        matrix is always float64.
    backend : {"auto", "numpy", "torch"}
        ``"auto"``: torch on CUDA when a GPU is present, else numpy.
    device : str or None
        torch device for ``backend="torch"`` (None: CUDA when present, else CPU).
    form : {"auto", "primal", "kernel"}
        Eigendecompose XᵀX (primal) or XXᵀ (kernel); ``"auto"`` picks kernel when p > n.

    Attributes
    ----------
    coef_ : (p, v) weights; zero for masked targets.
    intercept_ : (v,) intercepts; for masked targets the mean of their finite values (0 if none, or without
        intercept).
    best_alphas_ : (v,) chosen α per target (NaN for masked targets; 0 for a fraction ≥ 1 with ``cv="frac"``).
    alpha_ : float, the shared α (only with ``alpha_per_target=False`` and ``cv`` other than ``"frac"``).
    cv_mse_ : (a, v) CV mean squared error per α and target (NaN for masked targets); ``cv="frac"``: (f, v) per
        fraction.
    fractions_ : (v,) the chosen fraction of the OLS weight norm per target (``cv="frac"`` only; NaN where masked).
    cv_r2_ : (f, v) held-out R² per fraction and target, mean over the folds (``cv="frac"`` only).
    valid_targets_ : (v,) bool, targets that were fitted (finite and not constant in the training data).
    form_ : "primal" or "kernel"; backend_ : "numpy" or "torch".
    n_features_in_ : int, p.

    Targets (columns of Y) holding NaN/inf or constant over samples are masked out of the fit with a warning.
    ``score`` is R² of each target averaged uniformly over targets (like scikit-learn's ``uniform_average``).

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> X = rng.standard_normal((200, 10)); Y = X @ rng.standard_normal((10, 3)) + rng.standard_normal((200, 3))
    >>> model = RidgeEncoder(alphas=(0.1, 1.0, 10.0)).fit(X, Y)
    >>> model.coef_.shape, model.best_alphas_.shape
    ((10, 3), (3,))
    """

    def __init__(
        self,
        alphas: Sequence[float] | np.ndarray = DEFAULT_ALPHAS,
        cv: CV = "gcv",
        fit_intercept: bool = True,
        alpha_per_target: bool = True,
        target_batch_size: int | None = None,
        dtype: str = "float32",
        backend: str = "auto",
        device: str | None = None,
        form: Form = "auto",
        fractions: Sequence[float] | np.ndarray = DEFAULT_FRACTIONS,
    ) -> None:
        self.alphas = alphas
        self.cv = cv
        self.fit_intercept = fit_intercept
        self.alpha_per_target = alpha_per_target
        self.target_batch_size = target_batch_size
        self.dtype = dtype
        self.backend = backend
        self.device = device
        self.form = form
        self.fractions = fractions

    def fit(self, X: np.ndarray, Y: np.ndarray) -> RidgeEncoder:
        """Choose α per target and solve for the weights.

        Args:
            X: (n, p) features, finite, n ≥ 3 (n ≥ 2K for K-fold, n ≥ 10 for ``cv="frac"``).
            Y: (n, v) or (n,) responses (float32 stays float32: Y is never copied whole); columns with NaN/inf or
                constant values are masked out.
        Returns:
            self.
        """
        where = "RidgeEncoder.fit"
        x, y, one_d = _check_fit_inputs(X, Y, where)
        cv = _check_cv(self.cv, x.shape[0], where)
        grid = _check_fractions(self.fractions, where) if cv == "frac" else _check_alphas(self.alphas, where)
        dtype = _check_dtype(self.dtype, where)
        be = _Backend.create(self.backend, self.device, dtype, where)
        fit = _fit_ridge(
            x, y, grid, cv=cv, fit_intercept=self.fit_intercept, alpha_per_target=self.alpha_per_target,
            batch=_check_batch(self.target_batch_size, where), be=be, form=_check_form(self.form, where),
            compute_coef=True, where=where,
        )  # fmt: skip
        assert fit.coef is not None
        self.coef_ = fit.coef.astype(dtype, copy=False)
        self.intercept_ = fit.intercept.astype(dtype)
        self.best_alphas_ = fit.best_alphas
        if fit.alpha is not None:
            self.alpha_ = fit.alpha
        self.cv_mse_ = fit.cv_mse
        if fit.fractions is not None:
            self.fractions_ = fit.fractions
            self.cv_r2_ = fit.cv_r2
        self.valid_targets_ = fit.valid
        self.form_ = fit.form
        self.backend_ = fit.backend
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
