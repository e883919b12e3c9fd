"""Representational similarity analysis: RDMs from features, RDM comparison, leave-one-subject-out noise ceiling.

RDMs are passed either as square (n, n) matrices (symmetric, zero diagonal) or as condensed vectors of their upper
triangle (k = n(n−1)/2 entries, row-major, the order of :func:`scipy.spatial.distance.squareform`); stacks of either
((m, n, n) or (m, k)) are accepted wherever a set of RDMs is expected.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
from scipy.spatial.distance import pdist, squareform
from scipy.stats import rankdata

from llmvem.errors import ConfigError, DataError

RDMMetric = Literal["correlation", "euclidean", "cosine"]
CompareMethod = Literal["spearman", "pearson", "kendall_tau_a", "cosine"]
PoolMethod = Literal["auto", "mean"]

RDM_METRICS: tuple[str, ...] = ("correlation", "euclidean", "cosine")
COMPARE_METHODS: tuple[str, ...] = ("spearman", "pearson", "kendall_tau_a", "cosine")

_TAU_CHUNK_ELEMENTS = 1 << 21  # Kendall tau-a: RDM pairs per batch × k stays below this


def compute_rdm(features: np.ndarray, metric: RDMMetric | str = "correlation") -> np.ndarray:
    """Representational dissimilarity matrix of the rows of ``features``.

    Args:
        features: (n, d) one pattern (feature vector, voxel pattern) per stimulus, n ≥ 2.
        metric: ``"correlation"`` (1 − Pearson r), ``"euclidean"`` or ``"cosine"`` (1 − cosine similarity).
    Returns:
        (n, n) float64, symmetric, zero diagonal.
    """
    if metric not in RDM_METRICS:
        raise ConfigError(f"compute_rdm: unknown metric {metric!r}; choose one of {list(RDM_METRICS)}")
    try:
        x = np.asarray(features, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise DataError(f"compute_rdm: features must be a numeric array ({exc})") from exc
    if x.ndim != 2:
        raise DataError(f"compute_rdm: features must be 2-D (n_stimuli, n_features), got shape {x.shape}")
    n, d = x.shape
    if n < 2 or d < 1:
        raise DataError(f"compute_rdm: need at least 2 stimuli and 1 feature, got shape {x.shape}")
    bad = ~np.isfinite(x).all(axis=1)
    if bad.any():
        raise DataError(
            f"compute_rdm: features of {int(bad.sum())} stimuli contain NaN/inf "
            f"(rows {np.flatnonzero(bad)[:10].tolist()})"
        )
    if metric == "euclidean":
        rdm = squareform(pdist(x, "euclidean"))
    else:
        if metric == "correlation":
            if d < 2:
                raise DataError("compute_rdm: correlation distance needs at least 2 features per stimulus")
            const = np.ptp(x, axis=1) == 0
            if const.any():
                raise DataError(
                    f"compute_rdm: correlation distance is undefined for constant patterns; rows "
                    f"{np.flatnonzero(const)[:10].tolist()} are constant (use metric='euclidean' or drop them)"
                )
            x = x - x.mean(axis=1, keepdims=True)
        norms = np.linalg.norm(x, axis=1)
        zero = norms == 0
        if zero.any():
            raise DataError(
                f"compute_rdm: {metric} distance is undefined for all-zero patterns; rows "
                f"{np.flatnonzero(zero)[:10].tolist()} are zero"
            )
        u = x / norms[:, None]
        rdm = 1.0 - np.clip(u @ u.T, -1.0, 1.0)
        rdm = 0.5 * (rdm + rdm.T)
    np.fill_diagonal(rdm, 0.0)
    return rdm


def upper_tri(rdm: np.ndarray) -> np.ndarray:
    """Condensed vector of an RDM (or a stack of RDMs): its strict upper triangle, row-major.

    Args:
        rdm: (n, n) or (m, n, n).
    Returns:
        (k,) or (m, k) with k = n(n−1)/2, in the order of :func:`scipy.spatial.distance.squareform`.
    """
    a = np.asarray(rdm)
    if a.ndim not in (2, 3) or a.shape[-1] != a.shape[-2]:
        raise DataError(f"upper_tri: expected a square (n, n) RDM or an (m, n, n) stack, got shape {a.shape}")
    iu, ju = np.triu_indices(a.shape[-1], k=1)
    return a[..., iu, ju]


def _n_from_k(k: int) -> int | None:
    """n such that n(n−1)/2 == k, else None."""
    n = int(np.rint((1 + np.sqrt(1 + 8 * k)) / 2))
    return n if n * (n - 1) // 2 == k else None


def _looks_square_rdm(a: np.ndarray) -> bool:
    """Whether a 2-D array is a square RDM (zero diagonal) rather than a stack of condensed vectors."""
    if a.shape[0] != a.shape[1]:
        return False
    scale = max(1.0, float(np.nanmax(np.abs(a)))) if a.size else 1.0
    return bool(np.all(np.abs(np.diag(a)) <= 1e-8 * scale))


def _as_vectors(rdms: np.ndarray, what: str) -> tuple[np.ndarray, bool]:
    """RDM input → float64 condensed stack (m, k); the flag says a single RDM was given."""
    try:
        a = np.asarray(rdms, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise DataError(f"{what}: RDMs must be numeric arrays ({exc})") from exc
    single = False
    if a.ndim == 1:
        vec, single = a[None, :], True
    elif a.ndim == 2 and _looks_square_rdm(a):
        _check_symmetric(a[None], what)
        vec, single = upper_tri(a)[None, :], True
    elif a.ndim == 2:
        if a.shape[0] == a.shape[1] and _n_from_k(a.shape[1]) is None:
            raise DataError(
                f"{what}: square {a.shape} input has a nonzero diagonal "
                f"(max |d| = {np.nanmax(np.abs(np.diag(a))):.3g}); an RDM needs zeros on its diagonal "
                "(for a similarity matrix S pass 1 − S)"
            )
        vec = a  # a stack of condensed vectors (m, k)
    elif a.ndim == 3:
        if a.shape[1] != a.shape[2]:
            raise DataError(f"{what}: a stack of RDMs must have shape (m, n, n), got {a.shape}")
        _check_symmetric(a, what)
        vec = upper_tri(a)
    else:
        raise DataError(f"{what}: expected an RDM (n, n), a condensed vector (k,) or a stack, got shape {a.shape}")
    if vec.shape[0] == 0 or vec.shape[1] < 3:
        raise DataError(f"{what}: need at least one RDM with at least 3 conditions (k ≥ 3), got shape {a.shape}")
    if _n_from_k(vec.shape[1]) is None:
        raise DataError(
            f"{what}: condensed RDM length {vec.shape[1]} is not n(n−1)/2 for any n; pass square (n, n) RDMs or the "
            "strict upper triangle"
        )
    bad = ~np.isfinite(vec).all(axis=1)
    if bad.any():
        raise DataError(f"{what}: RDMs {np.flatnonzero(bad)[:10].tolist()} contain NaN/inf")
    return vec, single


def _check_symmetric(a: np.ndarray, what: str) -> None:
    """Raise if any (n, n) RDM in the (m, n, n) stack ``a`` is not symmetric with a zero diagonal."""
    scale = max(1.0, float(np.nanmax(np.abs(a)))) if a.size else 1.0
    tol = 1e-8 * scale
    asym = np.abs(a - np.swapaxes(a, 1, 2)).max(axis=(1, 2)) > tol
    diag = np.abs(np.diagonal(a, axis1=1, axis2=2)).max(axis=1) > tol
    bad = asym | diag
    if bad.any():
        raise DataError(
            f"{what}: RDMs {np.flatnonzero(bad)[:10].tolist()} are not symmetric with a zero diagonal; "
            "symmetrise them ((D + D.T) / 2) or pass condensed vectors"
        )


def _rank_rows(x: np.ndarray) -> np.ndarray:
    """Average ranks (1-based, ties share their mean rank) of each row of (m, k) → (m, k) float64.

    The numbers of ``scipy.stats.rankdata(x, axis=1)``, several times faster: an unstable sort, and tie handling
    only for the rows that have ties.
    """
    m, k = x.shape
    threads = min(8, _n_cpus())
    if threads >= 4 and m >= 16 and m * k >= 1 << 18:  # row chunks in threads (numpy sorts without the GIL)
        from concurrent.futures import ThreadPoolExecutor

        bounds = np.linspace(0, m, threads + 1).astype(int)
        with ThreadPoolExecutor(threads) as pool:
            parts = pool.map(lambda j: _rank_rows_serial(x[bounds[j] : bounds[j + 1]]), range(threads))
            return np.concatenate(list(parts))
    return _rank_rows_serial(x)


def _n_cpus() -> int:
    import os

    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def _rank_rows_serial(x: np.ndarray) -> np.ndarray:
    m, k = x.shape
    order = np.argsort(x, axis=1)
    rows = np.arange(m)[:, None]
    xs = x[rows, order]
    tied = xs[:, 1:] == xs[:, :-1]
    ranks = np.empty((m, k))
    ranks[rows, order] = np.arange(1.0, k + 1.0)
    has_ties = np.flatnonzero(tied.any(axis=1))
    if has_ties.size:
        start = np.ones((has_ties.size, k), dtype=bool)
        start[:, 1:] = ~tied[has_ties]
        end = np.ones((has_ties.size, k), dtype=bool)
        end[:, :-1] = start[:, 1:]
        pos = np.arange(k)
        first = np.maximum.accumulate(np.where(start, pos, 0), axis=1)
        last = np.minimum.accumulate(np.where(end, pos, k - 1)[:, ::-1], axis=1)[:, ::-1]
        ranks[has_ties[:, None], order[has_ties]] = (first + last) / 2.0 + 1.0
    return ranks


def _zscore_rows(v: np.ndarray, what: str) -> np.ndarray:
    """Rows centred and scaled to unit norm (so that row dot products are Pearson r)."""
    const = np.ptp(v, axis=1) == 0
    if const.any():
        raise DataError(f"{what}: RDMs {np.flatnonzero(const)[:10].tolist()} are constant; correlation is undefined")
    c = v - v.mean(axis=1, keepdims=True)
    return c / np.linalg.norm(c, axis=1, keepdims=True)


def _unit_rows(v: np.ndarray, what: str) -> np.ndarray:
    norms = np.linalg.norm(v, axis=1, keepdims=True)
    if (norms == 0).any():
        raise DataError(f"{what}: RDMs {np.flatnonzero(norms[:, 0] == 0)[:10].tolist()} are all zero")
    return v / norms


def _tied_pairs(x: np.ndarray) -> np.ndarray:
    """Number of tied pairs within each row of (m, k) → (m,) int64.

    Each element of a tie group of size t has max-rank − min-rank = t − 1, so the row sum is Σ t(t − 1) = 2 Σ C(t, 2).
    """
    spread = rankdata(x, method="max", axis=1) - rankdata(x, method="min", axis=1)
    return (spread.sum(axis=1) // 2).astype(np.int64)


def _count_inversions(seq: np.ndarray) -> np.ndarray:
    """Strict inversions (i < j with seq_i > seq_j) of each row of a non-negative int (P, k) array → (P,) int64.

    Bottom-up merge counting, vectorised over rows and blocks: at block width w, every element of a right block is
    looked up (one flat ``searchsorted`` with per-block offsets) in its sorted left neighbour. O(k log² k) per row.
    """
    n_rows, k = seq.shape
    size = 1 << max(0, (k - 1).bit_length())
    pad = int(seq.max()) + 1  # padding at the end is larger than everything: it adds no inversions
    cur = np.full((n_rows, size), pad, dtype=np.int64)
    cur[:, :k] = seq
    span = np.int64(pad + 1)
    total = np.zeros(n_rows, dtype=np.int64)
    width = 1
    while width < size:
        n_blocks = n_rows * (size // (2 * width))
        blocks = cur.reshape(n_blocks, 2, width)  # both halves of each block are already sorted
        offset = np.arange(n_blocks, dtype=np.int64)[:, None] * span
        left = (blocks[:, 0, :] + offset).ravel()
        right = (blocks[:, 1, :] + offset).ravel()
        n_le = np.searchsorted(left, right, side="right").reshape(n_blocks, width) - offset // span * width
        total += (width - n_le).reshape(n_rows, -1).sum(axis=1)
        cur = np.sort(blocks.reshape(n_rows, -1, 2 * width), axis=-1).reshape(n_rows, size)
        width *= 2
    return total


def _kendall_tau_a_pairs(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Kendall tau-a of row i of ``x`` with row i of ``y``, both (P, k) → (P,).

    tau-a = (concordant − discordant) / (k(k−1)/2); pairs tied in either vector count as neither. With D the
    discordant pairs (strict inversions of y once the pairs are sorted by x, then y), concordant + discordant =
    all − ties in x − ties in y + ties in both.
    """
    k = x.shape[1]
    rx = rankdata(x, method="dense", axis=1).astype(np.int64)
    ry = rankdata(y, method="dense", axis=1).astype(np.int64)
    joint = rx * (k + 1) + ry  # sorting by this sorts by x, then y
    order = np.argsort(joint, axis=1, kind="stable")
    discordant = _count_inversions(np.take_along_axis(ry, order, axis=1))
    total = k * (k - 1) // 2
    untied = total - _tied_pairs(rx) - _tied_pairs(ry) + _tied_pairs(joint)
    return (untied - 2 * discordant) / total


def _kendall_tau_a(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Kendall tau-a of every row of ``a`` (ma, k) with every row of ``b`` (mb, k) → (ma, mb)."""
    ma, mb = a.shape[0], b.shape[0]
    ia, ib = np.divmod(np.arange(ma * mb), mb)
    out = np.empty(ma * mb)
    step = max(1, _TAU_CHUNK_ELEMENTS // a.shape[1])
    for start in range(0, ma * mb, step):
        sl = slice(start, start + step)
        out[sl] = _kendall_tau_a_pairs(a[ia[sl]], b[ib[sl]])
    return out.reshape(ma, mb)


def _compare_vectors(va: np.ndarray, vb: np.ndarray, method: str, what: str) -> np.ndarray:
    """All-pairs comparison of condensed stacks (ma, k) × (mb, k) → (ma, mb)."""
    if method == "pearson":
        return np.clip(_zscore_rows(va, what) @ _zscore_rows(vb, what).T, -1.0, 1.0)
    if method == "spearman":
        ra = _rank_rows(va)
        rb = _rank_rows(vb) if vb is not va else ra
        return np.clip(_zscore_rows(ra, what) @ _zscore_rows(rb, what).T, -1.0, 1.0)
    if method == "cosine":
        return np.clip(_unit_rows(va, what) @ _unit_rows(vb, what).T, -1.0, 1.0)
    if method == "kendall_tau_a":
        return _kendall_tau_a(va, vb)
    raise ConfigError(f"{what}: unknown method {method!r}; choose one of {list(COMPARE_METHODS)}")


def compare_rdms(a: np.ndarray, b: np.ndarray, method: CompareMethod | str = "spearman") -> np.ndarray:
    """Similarity of RDMs (on their upper triangles).

    Args:
        a: one RDM ((n, n) or condensed (k,)) or a stack ((m_a, n, n) or (m_a, k)).
        b: the same, with the same n.
        method: ``"spearman"`` (Pearson r of ranks, ties averaged), ``"pearson"``, ``"kendall_tau_a"`` (ties count as
            neither concordant nor discordant; the denominator is all k(k−1)/2 pairs) or ``"cosine"``.
    Returns:
        float64 array: shape () for two single RDMs, (m_b,) or (m_a,) when one side is a stack, (m_a, m_b) for two
        stacks. A typical call is ``compare_rdms(model_rdm, subject_rdms)`` → (n_subjects,).
    """
    if method not in COMPARE_METHODS:
        raise ConfigError(f"compare_rdms: unknown method {method!r}; choose one of {list(COMPARE_METHODS)}")
    va, single_a = _as_vectors(a, "compare_rdms (a)")
    vb, single_b = _as_vectors(b, "compare_rdms (b)")
    if va.shape[1] != vb.shape[1]:
        raise DataError(
            f"compare_rdms: the RDMs describe different numbers of conditions "
            f"({_n_from_k(va.shape[1])} vs {_n_from_k(vb.shape[1])})"
        )
    out = _compare_vectors(va, vb, method, "compare_rdms")
    if single_a and single_b:
        return np.asarray(out[0, 0])
    if single_a:
        return out[0]
    if single_b:
        return out[:, 0]
    return out


def _pool_transform(v: np.ndarray, method: str, pool: str) -> np.ndarray:
    """Per-subject transform applied before averaging RDMs into a group RDM."""
    if pool == "mean":
        return v
    if method in ("spearman", "kendall_tau_a"):
        return _rank_rows(v)
    if method == "pearson":
        return _zscore_rows(v, "noise_ceiling")
    return _unit_rows(v, "noise_ceiling")  # cosine


def noise_ceiling(
    subject_rdms: np.ndarray, method: CompareMethod | str = "spearman", pool: PoolMethod | str = "auto"
) -> tuple[float, float]:
    """Leave-one-subject-out noise ceiling of a set of subject RDMs (Nili et al., 2014).

    upper = mean over subjects of compare(RDM_s, group RDM of all subjects);
    lower = mean over subjects of compare(RDM_s, group RDM of the other subjects).

    The group RDM follows rsatoolbox (``pool_rdm``): with ``pool="auto"`` each subject's condensed RDM is first put
    on the scale the comparison is invariant to — rank-transformed for spearman / kendall_tau_a, z-scored for pearson,
    scaled to unit norm for cosine — and then averaged. ``pool="mean"`` averages the raw RDMs instead (the original
    MATLAB toolbox); on the Cichy et al. (2014) IT RDMs the two differ by < 0.01.

    Args:
        subject_rdms: (s, n, n) or (s, k) RDMs of s ≥ 2 subjects.
        method: comparison method, as in :func:`compare_rdms`.
        pool: ``"auto"`` or ``"mean"``.
    Returns:
        (lower, upper) floats.
    """
    if method not in COMPARE_METHODS:
        raise ConfigError(f"noise_ceiling: unknown method {method!r}; choose one of {list(COMPARE_METHODS)}")
    if pool not in ("auto", "mean"):
        raise ConfigError(f"noise_ceiling: unknown pool {pool!r}; choose 'auto' or 'mean'")
    v, single = _as_vectors(subject_rdms, "noise_ceiling")
    s = v.shape[0]
    if single or s < 2:
        raise DataError(f"noise_ceiling: need RDMs of at least 2 subjects, got {s}")
    t = _pool_transform(v, method, pool)
    total = t.sum(axis=0)
    group_all = total / s
    group_loo = (total[None, :] - t) / (s - 1)  # (s, k): mean of the others
    if method == "spearman":  # Pearson of ranks: rank the subjects once (t already holds them with pool="auto")
        rv = t if pool == "auto" else _rank_rows(v)
        upper = _compare_vectors(rv, _rank_rows(group_all[None, :]), "pearson", "noise_ceiling")[:, 0]
        lower = _compare_rowwise(rv, _rank_rows(group_loo), "pearson")
    else:
        upper = _compare_vectors(v, group_all[None, :], method, "noise_ceiling")[:, 0]
        lower = _compare_rowwise(v, group_loo, method)
    return float(lower.mean()), float(upper.mean())


def _compare_rowwise(va: np.ndarray, vb: np.ndarray, method: str) -> np.ndarray:
    """compare(va[i], vb[i]) for each row i of two (m, k) stacks → (m,)."""
    if method == "kendall_tau_a":
        return _kendall_tau_a_pairs(va, vb)
    if method == "spearman":
        va, vb = _rank_rows(va), _rank_rows(vb)
    if method in ("spearman", "pearson"):
        za, zb = _zscore_rows(va, "noise_ceiling"), _zscore_rows(vb, "noise_ceiling")
    else:
        za, zb = _unit_rows(va, "noise_ceiling"), _unit_rows(vb, "noise_ceiling")
    return np.clip(np.einsum("ij,ij->i", za, zb), -1.0, 1.0)


@dataclass(frozen=True)
class RSAResult:
    """A model RDM compared with each subject's RDM.

    Attributes:
        scores: (s,) similarity of the model RDM with each subject's RDM.
        mean: mean of ``scores``.
        sem: standard error of the mean, std(ddof=1) / sqrt(s) (NaN for one subject).
        noise_lower: lower bound of the leave-one-subject-out noise ceiling (NaN for one subject).
        noise_upper: upper bound of the noise ceiling (NaN for one subject).
        method: the comparison method.
        mean_over_ceiling: ``mean`` as a fraction of the upper bound (:data:`RSA_CEILING_BOUND`), NaN without a
            positive bound (:func:`over_ceiling`).
    """

    scores: np.ndarray
    mean: float
    sem: float
    noise_lower: float
    noise_upper: float
    method: str = "spearman"

    @property
    def mean_over_ceiling(self) -> float:
        return over_ceiling(self.mean, self.noise_upper)


RSA_CEILING_BOUND = "noise_upper"
"""The noise-ceiling bound that normalises RSA scores (``mean_over_ceiling``): the upper bound, each subject against
the group mean including itself (Nili et al. 2014): for a positive score the conservative fraction (never above what
the lower bound would give)."""


def over_ceiling(score: float, bound: float) -> float:
    """``score`` as a fraction of a noise-ceiling bound: score / bound, NaN when the bound is NaN or ≤ 0."""
    return float(score / bound) if np.isfinite(bound) and bound > 0 else float("nan")


def rsa_scores(model_rdm: np.ndarray, subject_rdms: np.ndarray, method: CompareMethod | str = "spearman") -> RSAResult:
    """Compare one model RDM with every subject RDM and put the result next to the noise ceiling.

    Args:
        model_rdm: (n, n) or condensed (k,) RDM of the model.
        subject_rdms: (s, n, n) or (s, k) RDMs of the subjects (a single (n, n) RDM counts as s = 1).
        method: comparison method, as in :func:`compare_rdms`.
    Returns:
        :class:`RSAResult`.
    """
    vm, single_m = _as_vectors(model_rdm, "rsa_scores (model_rdm)")
    if not single_m:
        raise DataError(f"rsa_scores: model_rdm must be one RDM, got a stack of {vm.shape[0]}")
    vs, _ = _as_vectors(subject_rdms, "rsa_scores (subject_rdms)")
    if vm.shape[1] != vs.shape[1]:
        raise DataError(
            f"rsa_scores: model RDM has {_n_from_k(vm.shape[1])} conditions but subject RDMs have "
            f"{_n_from_k(vs.shape[1])}"
        )
    scores = np.asarray(compare_rdms(vm[0], vs, method), dtype=np.float64)
    s = scores.shape[0]
    if s >= 2:
        sem = float(scores.std(ddof=1) / np.sqrt(s))
        lower, upper = noise_ceiling(vs, method)
    else:
        sem, lower, upper = float("nan"), float("nan"), float("nan")
    return RSAResult(
        scores=scores, mean=float(scores.mean()), sem=sem, noise_lower=lower, noise_upper=upper, method=str(method)
    )


def _pair_index(n: int) -> np.ndarray:
    """(n, n) int map from a square (i, j), i ≠ j, to its position in the condensed vector (−1 on the diagonal)."""
    iu, ju = np.triu_indices(n, k=1)
    idx = np.full((n, n), -1, dtype=np.int64)
    idx[iu, ju] = np.arange(iu.size)
    idx[ju, iu] = idx[iu, ju]
    return idx


@dataclass(frozen=True)
class BootstrapCI:
    """Bootstrap distribution of the mean RSA score.

    Attributes:
        mean: mean score over subjects on the original data.
        low: lower bound of the percentile interval.
        high: upper bound.
        samples: (n_boot,) mean score in each bootstrap sample.
        over: ``"subjects"``, ``"stimuli"`` or ``"both"``.
        level: the confidence level (0.95).
    """

    mean: float
    low: float
    high: float
    samples: np.ndarray
    over: str
    level: float


def bootstrap_rsa(
    model_rdm: np.ndarray,
    subject_rdms: np.ndarray,
    method: CompareMethod | str = "spearman",
    *,
    over: Literal["subjects", "stimuli", "both"] | str = "subjects",
    n_boot: int = 1000,
    level: float = 0.95,
    seed: int | None = 0,
) -> BootstrapCI:
    """Percentile bootstrap interval of the mean model–subject RDM similarity.

    Resampling subjects generalises to new subjects; resampling stimuli (rows and columns of the RDMs, with
    replacement; pairs of a stimulus with its own copy are left out, as in rsatoolbox) generalises to new stimuli from
    the same population; ``"both"`` does both at once.

    Args:
        model_rdm: (n, n) or condensed (k,) model RDM.
        subject_rdms: (s, n, n) or (s, k) subject RDMs.
        method: comparison, as in :func:`compare_rdms`.
        over: what to resample.
        n_boot: bootstrap samples.
        level: confidence level in (0, 1).
        seed: random seed.
    Returns:
        :class:`BootstrapCI`.
    """
    if over not in ("subjects", "stimuli", "both"):
        raise ConfigError(f"bootstrap_rsa: over must be 'subjects', 'stimuli' or 'both', got {over!r}")
    if method not in COMPARE_METHODS:
        raise ConfigError(f"bootstrap_rsa: unknown method {method!r}; choose one of {list(COMPARE_METHODS)}")
    if not 0 < level < 1:
        raise ConfigError(f"bootstrap_rsa: level must be in (0, 1), got {level}")
    if n_boot < 1:
        raise ConfigError(f"bootstrap_rsa: n_boot must be ≥ 1, got {n_boot}")
    vm, single = _as_vectors(model_rdm, "bootstrap_rsa (model_rdm)")
    if not single:
        raise DataError(f"bootstrap_rsa: model_rdm must be one RDM, got a stack of {vm.shape[0]}")
    vs, _ = _as_vectors(subject_rdms, "bootstrap_rsa (subject_rdms)")
    if vm.shape[1] != vs.shape[1]:
        raise DataError(
            f"bootstrap_rsa: model RDM has {_n_from_k(vm.shape[1])} conditions, subjects {_n_from_k(vs.shape[1])}"
        )
    s = vs.shape[0]
    if over in ("subjects", "both") and s < 2:
        raise DataError("bootstrap_rsa: resampling subjects needs at least 2 subjects")
    n = _n_from_k(vm.shape[1])
    assert n is not None
    if over in ("stimuli", "both") and n < 4:
        raise DataError(f"bootstrap_rsa: resampling stimuli needs at least 4 stimuli, got {n}")
    base = _compare_vectors(vm, vs, str(method), "bootstrap_rsa")[0]
    rng = np.random.default_rng(seed)
    pair = _pair_index(n)
    samples = np.empty(n_boot)
    for b in range(n_boot):
        if over == "subjects":
            samples[b] = base[rng.integers(0, s, s)].mean()
            continue
        while True:
            idx = rng.integers(0, n, n)
            if np.unique(idx).size >= 3:
                break
        iu, ju = np.triu_indices(n, k=1)
        a, c = idx[iu], idx[ju]
        keep = a != c
        cols = pair[a[keep], c[keep]]
        subj = vs[:, cols] if over == "stimuli" else vs[rng.integers(0, s, s)][:, cols]
        model = vm[:, cols]
        try:
            samples[b] = _compare_vectors(model, subj, str(method), "bootstrap_rsa")[0].mean()
        except DataError:  # a resample in which an RDM is constant: correlation undefined
            samples[b] = np.nan
    tail = (1 - level) / 2
    low, high = np.nanquantile(samples, [tail, 1 - tail])
    return BootstrapCI(float(base.mean()), float(low), float(high), samples, str(over), float(level))


def subsampled_rdm_correlation(
    rdm_a: np.ndarray,
    rdm_b: np.ndarray,
    *,
    set_size: int = 100,
    n_splits: int = 1,
    method: CompareMethod | str = "pearson",
    seed: int | None = 0,
) -> np.ndarray:
    """Doerig et al. (2025): split the stimuli into non-overlapping random sets of ``set_size``, compare the
    ``set_size × set_size`` sub-RDMs, average over sets (and over ``n_splits`` random partitions).

    Stimuli left over after the last full set are not used in that partition.

    Args:
        rdm_a: (n, n) RDM, or an (m_a, n, n) stack.
        rdm_b: (n, n) RDM, or an (m_b, n, n) stack (e.g. subjects).
        set_size: stimuli per set (≥ 3, ≤ n).
        n_splits: random partitions to average over.
        method: comparison, as in :func:`compare_rdms` (Doerig: ``"pearson"``).
        seed: random seed.
    Returns:
        like :func:`compare_rdms`: () for two single RDMs, (m,) when one side is a stack, (m_a, m_b) for two.
    """
    a = np.asarray(rdm_a, dtype=np.float64)
    b = np.asarray(rdm_b, dtype=np.float64)
    for name, arr in (("rdm_a", a), ("rdm_b", b)):
        if arr.ndim not in (2, 3) or arr.shape[-1] != arr.shape[-2]:
            raise DataError(f"subsampled_rdm_correlation: {name} must be square (n, n) or (m, n, n), got {arr.shape}")
    n = a.shape[-1]
    if b.shape[-1] != n:
        raise DataError(f"subsampled_rdm_correlation: the RDMs have {n} and {b.shape[-1]} conditions")
    if not 3 <= set_size <= n:
        raise ConfigError(f"subsampled_rdm_correlation: set_size must be in [3, {n}], got {set_size}")
    if n_splits < 1:
        raise ConfigError(f"subsampled_rdm_correlation: n_splits must be ≥ 1, got {n_splits}")
    a3 = a if a.ndim == 3 else a[None]
    b3 = b if b.ndim == 3 else b[None]
    _as_vectors(a3, "subsampled_rdm_correlation (rdm_a)")  # validates symmetry / finiteness
    _as_vectors(b3, "subsampled_rdm_correlation (rdm_b)")
    rng = np.random.default_rng(seed)
    total = np.zeros((a3.shape[0], b3.shape[0]))
    count = 0
    for _ in range(n_splits):
        perm = rng.permutation(n)
        for start in range(0, n - set_size + 1, set_size):
            sel = perm[start : start + set_size]
            sa = upper_tri(a3[:, sel][:, :, sel])
            sb = upper_tri(b3[:, sel][:, :, sel])
            total += _compare_vectors(sa, sb, str(method), "subsampled_rdm_correlation")
            count += 1
    out = total / count
    if a.ndim == 2 and b.ndim == 2:
        return np.asarray(out[0, 0])
    if a.ndim == 2:
        return out[0]
    if b.ndim == 2:
        return out[:, 0]
    return out
