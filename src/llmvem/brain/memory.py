"""Peak memory of the ridge-family fits, estimated from their shapes and checked before any work (issue 15).

A fit too large for the machine used to end deep inside numpy or BLAS ("Unable to allocate …", an OpenBLAS
allocation message, or the kernel's OOM killer) after minutes of work. :class:`~llmvem.brain.ridge.RidgeEncoder`
(so every encoding and decoding fit), :func:`~llmvem.brain.ridge.ridge_cv_alphas` and the banded ridge call
:func:`plan_target_batch` first: it compares the estimate with :func:`available_memory` and either returns the
target batch to use or stops with one :class:`~llmvem.errors.ResourceError` that says how much is needed, how much is
available and what would make it fit (fewer targets, float32, a smaller ``target_batch_size``).

An estimate is the largest of a fit's phases, each ``fixed + per_target × v + per_batch_target × batch`` bytes:
``fixed`` for what depends only on the design (the centred copy of X, the Gram matrix and its eigendecomposition, the
bases), ``per_target`` for the arrays that hold every target (weights, CV errors), ``per_batch_target`` for the
working arrays of one batch of targets. The
targets Y themselves are not counted: they are already in memory. With the automatic batch size
(``target_batch_size=None``) the batch shrinks until the fit fits; a batch the caller chose is checked as given.
On a GPU (torch backend) the batch's working arrays live on the device and are not counted here.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from llmvem.errors import ResourceError

_F8 = 8  # float64 bytes
_FRAC_GRID = 100  # fracridge's α grid: about this many points (10⁻² s_min² … 10⁴ s_max² in steps of 10^0.2)
_UNLIMITED = 1 << 60  # a cgroup "limit" at least this large means none


@dataclass(frozen=True)
class Phase:
    """Bytes held at the peak of one phase of a fit: ``fixed + per_target × v + per_batch_target × batch``."""

    fixed: float
    per_target: float = 0.0
    per_batch_target: float = 0.0


@dataclass(frozen=True)
class MemoryEstimate:
    """Estimated peak bytes of one fit: the largest of its phases (see the module docstring).

    Attributes:
        phases: what each phase of the fit holds at once (a phase's temporaries are freed before the next).
        n_targets: v.
    """

    phases: tuple[Phase, ...]
    n_targets: int

    def total(self, batch: int) -> float:
        """Peak bytes with ``batch`` targets per batch."""
        b = min(batch, self.n_targets)
        return max(ph.fixed + ph.per_target * self.n_targets + ph.per_batch_target * b for ph in self.phases)

    @property
    def fixed(self) -> float:
        """The largest part that does not depend on the targets."""
        return max(ph.fixed for ph in self.phases)

    def largest_batch(self, available: float) -> int:
        """The most targets per batch that fit in ``available`` bytes (0 if none; v if all)."""
        fits = [
            (available - ph.fixed - ph.per_target * self.n_targets) // ph.per_batch_target
            for ph in self.phases
            if ph.per_batch_target > 0
        ]
        return int(max(0, min([self.n_targets, *fits])))

    def targets_that_fit(self, available: float, batch: int) -> int:
        """How many targets (at most v) would fit in ``available`` bytes with batches of at most ``batch``."""
        fits = [(available - ph.fixed - ph.per_batch_target * batch) // max(ph.per_target, 1.0) for ph in self.phases]
        return int(max(0, min([self.n_targets, *fits])))


def _gram_bytes(n: int, p: int) -> float:
    """One float64 basis from an (n, p) design: the centred copy of X, the m × m Gram matrix with its eigenvectors and
    LAPACK's workspace (≈ 2 m², dsyevd), and U (n, r), V (p, r) with one temporary, m = r = min(n, p)."""
    m = min(n, p)
    return _F8 * (n * p + 4 * m * m + 2 * (n + p) * m)


def ridge_memory(
    n: int,
    p: int,
    v: int,
    *,
    n_grid: int,
    cv: str | int,
    itemsize: int,
    y_itemsize: int,
    compute_coef: bool,
    on_gpu: bool = False,
) -> MemoryEstimate:
    """Estimate of :func:`llmvem.brain.ridge._fit_ridge` (``RidgeEncoder.fit``, ``ridge_cv_alphas``).

    Phases: the float64 basis (X centred, Gram matrix, eigendecomposition); then the fit, holding the bases, the
    weights (p, v), the CV errors (grid, v) and one batch of working arrays.

    Args:
        n, p, v: samples, features, targets; n_grid: alphas (or fractions with ``cv="frac"``).
        cv: ``"gcv"``, ``"loo"``, ``"frac"`` or K; itemsize: bytes of the compute dtype (4 or 8); y_itemsize: bytes
            of Y's own dtype (a batch of Y in another dtype is converted).
        compute_coef: the (p, v) weights are kept; on_gpu: the batch work runs on a CUDA device.
    """
    it = itemsize
    r = min(n, p)
    folds = cv if isinstance(cv, int) else (5 if cv == "frac" else 0)
    fixed = _F8 * (n + p) * r + it * (2 * n * (r + 1) + p * r) + _F8 * r * n_grid + it * folds * n * r
    per_target = _F8 * (n_grid + 3) + (it * p if compute_coef else 0)
    if cv == "frac":
        per_target += _F8 * 2 * n_grid  # held-out R² and the α table
    if cv == "gcv":
        batch = it * (3 * r + 1) + _F8 * 4 * n_grid
    elif cv == "loo":
        fixed += (_F8 + it) * n * (r + 2 * n_grid)  # U in float64, 1 − H_ii per α
        batch = (3 * _F8 + 4 * it) * n + (_F8 + 2 * it) * r + 2 * _F8 * n_grid
    else:  # K-fold / frac: the batch's training and test rows, centred, and the held-out error
        batch = 4 * it * n + 2 * it * r + 2 * _F8 * n_grid
        if cv == "frac":
            batch += 4 * _F8 * _FRAC_GRID + _F8 * r
    if y_itemsize != it:
        batch += it * n  # a batch of Y converted to the compute dtype
    if on_gpu:
        batch = it * r + 2 * _F8 * n_grid  # what comes back to the host per target
    return MemoryEstimate((Phase(_gram_bytes(n, p)), Phase(fixed, per_target, batch)), v)


def banded_memory(
    n: int, p: int, v: int, *, n_spaces: int, n_alphas: int, itemsize: int, y_itemsize: int, kernel: bool,
    compute_coef: bool,
) -> MemoryEstimate:  # fmt: skip
    """Estimate of the banded ridge (:func:`llmvem.brain.banded.banded_ridge_gcv`), Σ p_i = p features.

    Phases: the validity mask of Y (a full-size mask and a zero-filled copy); the products T = X_cᵀY_c (p, v) — or
    Y_c (n, v) in kernel form —, built batch by batch and kept whole for the grid search (so a smaller batch shrinks
    only the working arrays); the grid search with the weights (p, v) and one batch of working arrays.
    """
    it = itemsize
    r = min(n, p)
    rows = n if kernel else p
    design = _F8 * (2 * n * p + (n_spaces * n * n if kernel else p * p))  # stacked X, centred X, Gram(s)
    mask = Phase(design, (1 + y_itemsize) * n)
    products = Phase(design + it * n * p, it * rows, it * (n + p) + (it * n if y_itemsize != it else 0))
    basis = design + _F8 * 3 * r * r + it * (p + n) * r
    work = 2 * it * r + 4 * _F8 * n_alphas + (it * (3 * r + p) if compute_coef else 0)  # + a batch's new weights
    search = Phase(basis, it * rows + _F8 * 5 + (it * p if compute_coef else 0), work)
    return MemoryEstimate((mask, products, search), v)


def _meminfo_available() -> int | None:
    try:
        for line in Path("/proc/meminfo").read_text(encoding="ascii", errors="replace").splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def _read_int(path: Path) -> int | None:
    try:
        text = path.read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError):
        return None
    return int(text) if text.isdigit() else None


def _inactive_file(stat: Path, key: str) -> int:
    """Reclaimable page cache of a cgroup (counted in its usage, but the kernel frees it under pressure)."""
    try:
        for line in stat.read_text(encoding="ascii").splitlines():
            name, _, value = line.partition(" ")
            if name == key and value.strip().isdigit():
                return int(value)
    except OSError:
        pass
    return 0


def _cgroup_available(root: Path = Path("/sys/fs/cgroup")) -> int | None:
    """Limit − usage (+ reclaimable page cache) of this process's memory cgroup (v2, else v1), or None if unlimited."""
    for limit_f, usage_f, stat_f, key in (
        ("memory.max", "memory.current", "memory.stat", "inactive_file"),
        ("memory/memory.limit_in_bytes", "memory/memory.usage_in_bytes", "memory/memory.stat", "total_inactive_file"),
    ):
        limit, usage = _read_int(root / limit_f), _read_int(root / usage_f)
        if limit is not None and usage is not None and limit < _UNLIMITED:
            return max(0, limit - usage + _inactive_file(root / stat_f, key))
    return None


def available_memory() -> int | None:
    """Bytes this process can still allocate without swapping: the system's available memory (psutil when installed,
    else ``MemAvailable`` of /proc/meminfo, else free pages from ``os.sysconf``), capped by the memory cgroup's limit;
    None when it cannot be told."""
    system: int | None = None
    try:
        import psutil

        system = int(psutil.virtual_memory().available)
    except ImportError:
        system = _meminfo_available()
        if system is None:
            try:
                system = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
            except (ValueError, OSError, AttributeError):
                system = None
    cgroup = _cgroup_available()
    values = [x for x in (system, cgroup) if x is not None]
    return min(values) if values else None


def _gb(nbytes: float) -> str:
    return f"{nbytes / 1e9:.3g} GB"


def plan_target_batch(
    estimate: MemoryEstimate,
    *,
    batch: int | None,
    auto_batch: int,
    where: str,
    float64: bool,
    batching_helps: bool = True,
    min_batch: int = 64,
) -> int | None:
    """The target batch a fit should use, after checking its peak memory against :func:`available_memory`.

    Args:
        estimate: the fit's :class:`MemoryEstimate`.
        batch: the caller's ``target_batch_size`` (None: automatic).
        auto_batch: the automatic batch size of the fit.
        where: the fit's name, for the message.
        float64: the compute dtype is float64 (float32 would halve most arrays).
        batching_helps: whether a smaller batch reduces the peak (it does not for the arrays held whole).
        min_batch: the smallest automatic batch worth running (smaller batches make slow, thin GEMMs).
    Returns:
        ``batch`` unchanged, or, when it is None, None if the automatic batch fits, else the largest batch that fits.
    Raises:
        ResourceError: the fit needs more memory than is available even with the smallest batch.
    """
    available = available_memory()
    size = batch or auto_batch
    if available is None or estimate.total(size) <= available:
        return batch
    smallest = 1 if batch else min(min_batch, size)
    if batch is None and estimate.total(smallest) <= available:
        return max(smallest, min(estimate.largest_batch(available), size))
    advice = []
    if batch and estimate.total(1) <= available and batching_helps:
        advice.append(f"target_batch_size ≤ {max(1, estimate.largest_batch(available))} (now {batch})")
    n_fit = estimate.targets_that_fit(available, smallest)
    advice.append(f"fewer targets (voxels: now {estimate.n_targets}, ≈ {n_fit} fit; e.g. select ROIs)")
    if float64:
        advice.append("float32 (dtype='float32', config evaluate.encoding.ridge_dtype: float32)")
    if estimate.fixed > available / 2:
        advice.append(f"fewer features or samples (the design alone needs ≈ {_gb(estimate.fixed)})")
    raise ResourceError(
        f"{where}: needs ≈ {_gb(estimate.total(size if batch else smallest))} of memory, {_gb(available)} available; "
        f"use {', or '.join(advice)}"
    )
