"""Encoding-model metrics: column-wise Pearson r and R², the Algonauts noise-normalised score, r as a fraction of the
noise ceiling, inter-participant agreement ceilings, permutation p-values with Benjamini–Hochberg FDR, ROI tables."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pandas as pd

from llmvem.errors import DataError


def _paired_2d(y_true: np.ndarray, y_pred: np.ndarray, what: str) -> tuple[np.ndarray, np.ndarray, bool]:
    """Both inputs as float64 (n, v); the flag says they were 1-D."""
    try:
        a = np.asarray(y_true, dtype=np.float64)
        b = np.asarray(y_pred, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise DataError(f"{what}: inputs must be numeric arrays ({exc})") from exc
    if a.shape != b.shape:
        raise DataError(f"{what}: y_true has shape {a.shape} but y_pred has shape {b.shape}; they must match")
    if a.ndim not in (1, 2):
        raise DataError(f"{what}: inputs must be 1-D (n,) or 2-D (n, v), got {a.ndim}-D shape {a.shape}")
    one_d = a.ndim == 1
    if one_d:
        a, b = a[:, None], b[:, None]
    if a.shape[0] < 2:
        raise DataError(f"{what}: need at least 2 rows (samples), got {a.shape[0]}")
    return a, b, one_d


def pearson_r(y_true: np.ndarray, y_pred: np.ndarray) -> np.ndarray:
    """Pearson correlation of each column of ``y_true`` with the same column of ``y_pred``.

    Args:
        y_true: (n, v) or (n,) measured responses.
        y_pred: same shape, predicted responses.
    Returns:
        (v,) float64 (a 0-d array for 1-D inputs). A column that is constant in either input gets 0; a column holding
        NaN/inf in either input gets NaN.
    """
    a, b, one_d = _paired_2d(y_true, y_pred, "pearson_r")
    finite = np.isfinite(a).all(axis=0) & np.isfinite(b).all(axis=0)
    a = np.where(finite, a, 0.0)
    b = np.where(finite, b, 0.0)
    varying = (np.ptp(a, axis=0) > 0) & (np.ptp(b, axis=0) > 0)
    a = a - a.mean(axis=0)
    b = b - b.mean(axis=0)
    na = np.sqrt(np.einsum("ij,ij->j", a, a))
    nb = np.sqrt(np.einsum("ij,ij->j", b, b))
    num = np.einsum("ij,ij->j", a, b)
    den = na * nb
    # Exactly constant columns (max == min) are 0 even if the mean leaves rounding residue after centring.
    ok = varying & (den > 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        r = np.where(ok, num / np.where(ok, den, 1.0), 0.0)
    r = np.clip(r, -1.0, 1.0)
    r[~finite] = np.nan
    return r[0] if one_d else r


def pearson_r_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pearson correlation of each row of ``a`` with the same row of ``b``.

    Args:
        a: (m, d) e.g. predicted patterns, one per stimulus.
        b: (m, d) e.g. measured patterns.
    Returns:
        (m,) float64; constant rows give 0, rows with NaN/inf give NaN.
    """
    a = np.asarray(a)
    b = np.asarray(b)
    if a.ndim != 2 or b.ndim != 2:
        raise DataError(f"pearson_r_rows: inputs must be 2-D (m, d), got shapes {a.shape} and {b.shape}")
    return pearson_r(a.T, b.T)


def r2_score_columns(y_true: np.ndarray, y_pred: np.ndarray) -> np.ndarray:
    """Coefficient of determination of each column, 1 − SS_res / SS_tot.

    Args:
        y_true: (n, v) or (n,) measured responses.
        y_pred: same shape, predicted responses.
    Returns:
        (v,) float64 (0-d for 1-D inputs), ≤ 1 and unbounded below. A constant ``y_true`` column gets 1 when predicted
        exactly and 0 otherwise (scikit-learn's ``force_finite`` convention); columns with NaN/inf get NaN.
    """
    a, b, one_d = _paired_2d(y_true, y_pred, "r2_score_columns")
    finite = np.isfinite(a).all(axis=0) & np.isfinite(b).all(axis=0)
    a = np.where(finite, a, 0.0)
    b = np.where(finite, b, 0.0)
    ss_res = ((a - b) ** 2).sum(axis=0)
    ss_tot = ((a - a.mean(axis=0)) ** 2).sum(axis=0)
    ok = (ss_tot > 0) & (np.ptp(a, axis=0) > 0)
    r2 = np.where(ok, 1.0 - ss_res / np.where(ok, ss_tot, 1.0), np.where(ss_res == 0, 1.0, 0.0))
    r2[~finite] = np.nan
    return r2[0] if one_d else r2


def _nan_stat(fn: Callable[[np.ndarray], Any], x: np.ndarray) -> float:
    """``fn`` of the non-NaN entries of ``x`` (NaN when there are none)."""
    x = x[~np.isnan(x)]
    return float(fn(x)) if x.size else float("nan")


def _noise_ceiling_array(noise_ceiling: np.ndarray | Sequence[float], n: int, what: str) -> np.ndarray:
    nc = np.asarray(noise_ceiling, dtype=np.float64)
    if nc.shape != (n,):
        raise DataError(f"{what}: noise_ceiling has shape {nc.shape}, expected ({n},) to match the values")
    finite = nc[np.isfinite(nc)]
    if finite.size and finite.min() < 0:
        raise DataError(f"{what}: noise_ceiling has negative entries (min {finite.min():.4g}); it must be in [0, 1]")
    if finite.size and finite.max() > 1 + 1e-9:
        raise DataError(
            f"{what}: noise_ceiling must be in r² units (a fraction in [0, 1]) but its max is {finite.max():.4g}; "
            "if it is in percent, divide it by 100"
        )
    return nc


def algonauts_score(r: np.ndarray | Sequence[float], noise_ceiling: np.ndarray | Sequence[float]) -> np.ndarray:
    """Noise-normalised encoding accuracy (Algonauts 2023): the percent of explainable variance that is explained.

    score = 100 · max(r, 0)² / NC, clipped to [0, 100].

    Args:
        r: (v,) Pearson r of predicted vs measured responses per voxel.
        noise_ceiling: (v,) noise ceiling in r² units (fraction of variance in [0, 1]).
    Returns:
        (v,) float64 in [0, 100]; NaN where NC is 0 or NaN, or r is NaN.
    """
    rr = np.asarray(r, dtype=np.float64)
    if rr.ndim != 1:
        raise DataError(f"algonauts_score: r must be 1-D (v,), got shape {rr.shape}")
    nc = _noise_ceiling_array(noise_ceiling, rr.shape[0], "algonauts_score")
    ok = nc > 0  # False for NaN too
    num = 100.0 * np.maximum(rr, 0.0) ** 2
    with np.errstate(invalid="ignore", divide="ignore"):
        score = np.where(ok, num / np.where(ok, nc, 1.0), np.nan)
    return np.clip(score, 0.0, 100.0)


def r_over_ceiling(r: np.ndarray | Sequence[float], noise_ceiling: np.ndarray | Sequence[float]) -> float:
    """Encoding accuracy of a set of voxels as a fraction of its noise ceiling, in r units: mean r / mean √NC.

    The ceiling of a voxel's r is √NC (NC in r² units, as :attr:`BrainData.noise_ceiling`); the ratio of the means is
    taken over the voxels where both r and NC are finite (a mean of per-voxel r/√NC would be dominated by voxels with
    NC near 0). Not clipped: a negative mean r gives a negative value.

    Args:
        r: (v,) Pearson r per voxel.
        noise_ceiling: (v,) noise ceiling in r² units.
    Returns:
        float; NaN when no voxel has both, or their ceilings are all 0.
    """
    rr = np.asarray(r, dtype=np.float64)
    if rr.ndim != 1:
        raise DataError(f"r_over_ceiling: r must be 1-D (v,), got shape {rr.shape}")
    nc = _noise_ceiling_array(noise_ceiling, rr.shape[0], "r_over_ceiling")
    ok = np.isfinite(rr) & np.isfinite(nc)
    ceiling = float(np.sqrt(nc[ok]).mean()) if ok.any() else 0.0
    return float(rr[ok].mean() / ceiling) if ceiling > 0 else float("nan")


def inter_participant_agreement(responses: np.ndarray) -> np.ndarray:
    """Inter-participant agreement ceiling: each subject's responses vs the mean of the other subjects.

    For data in a shared space (fsaverage vertices, an MNI mask, the shared NSD images) this is the ceiling Doerig et
    al. (2025) put next to encoding accuracy: no model of "the typical brain" should predict a subject better than
    the other subjects do.

    Args:
        responses: (s, n, v) responses of s ≥ 2 subjects to the same n stimuli at the same v voxels.
    Returns:
        (s, v) Pearson r per subject and voxel (0 for constant voxels, NaN where a subject has NaN/inf).
    """
    x = np.asarray(responses, dtype=np.float64)
    if x.ndim != 3:
        raise DataError(f"inter_participant_agreement: responses must be (subjects, stimuli, voxels), got {x.shape}")
    s = x.shape[0]
    if s < 2:
        raise DataError(f"inter_participant_agreement: need at least 2 subjects, got {s}")
    total = x.sum(axis=0)
    return np.stack([pearson_r(x[i], (total - x[i]) / (s - 1)) for i in range(s)])


def permutation_pvalues(
    y_true: np.ndarray,
    y_pred: np.ndarray,
    n_permutations: int = 1000,
    seed: int | None = 0,
    batch: int = 50,
) -> tuple[np.ndarray, np.ndarray]:
    """One-sided permutation p-values of per-voxel Pearson r (is the prediction better than chance?).

    The stimuli (rows) of ``y_pred`` are shuffled jointly for all voxels, so the null keeps the spatial correlation;
    p = (1 + #{r_perm ≥ r}) / (1 + n_permutations) (never 0).

    Args:
        y_true: (n, v) measured responses.
        y_pred: (n, v) predicted responses.
        n_permutations: shuffles (≥ 1).
        seed: random seed.
        batch: permutations per vectorised step.
    Returns:
        r (v,) and p (v,); NaN where r is NaN.
    """
    if n_permutations < 1:
        raise DataError(f"permutation_pvalues: n_permutations must be ≥ 1, got {n_permutations}")
    a, b, _ = _paired_2d(y_true, y_pred, "permutation_pvalues")
    r = np.atleast_1d(pearson_r(a, b))
    za = a - a.mean(axis=0)
    zb = b - b.mean(axis=0)
    na = np.linalg.norm(za, axis=0)
    nb = np.linalg.norm(zb, axis=0)
    ok = (na > 0) & (nb > 0) & np.isfinite(r)
    za = np.where(ok, za / np.where(ok, na, 1.0), 0.0)
    zb = np.where(ok, zb / np.where(ok, nb, 1.0), 0.0)
    rng = np.random.default_rng(seed)
    n = a.shape[0]
    exceed = np.zeros(a.shape[1])
    done = 0
    while done < n_permutations:
        k = min(batch, n_permutations - done)
        perms = np.argsort(rng.random((k, n)), axis=1)
        r_perm = np.einsum("kiv,iv->kv", zb[perms], za)  # (k, v)
        exceed += (r_perm >= r[None, :] - 1e-12).sum(axis=0)
        done += k
    p = (1.0 + exceed) / (1.0 + n_permutations)
    p[~np.isfinite(r)] = np.nan
    return r, p


def fdr_bh(p_values: np.ndarray | Sequence[float], q: float = 0.05) -> tuple[np.ndarray, np.ndarray]:
    """Benjamini–Hochberg false discovery rate control.

    Args:
        p_values: (m,) p-values in [0, 1]; NaN entries are ignored (never rejected, adjusted p NaN).
        q: the FDR level.
    Returns:
        reject (m,) bool and the BH-adjusted p-values (m,) (``scipy.stats.false_discovery_control``'s values).
    """
    p = np.asarray(p_values, dtype=np.float64)
    if p.ndim != 1:
        raise DataError(f"fdr_bh: p_values must be 1-D, got shape {p.shape}")
    if not 0 < q < 1:
        raise DataError(f"fdr_bh: q must be in (0, 1), got {q}")
    finite = ~np.isnan(p)
    pf = p[finite]
    if pf.size and (pf.min() < 0 or pf.max() > 1):
        raise DataError(f"fdr_bh: p-values must be in [0, 1], got range [{pf.min():.3g}, {pf.max():.3g}]")
    m = pf.size
    order = np.argsort(pf, kind="stable")
    scaled = pf[order] * m / np.arange(1, m + 1)
    adj_sorted = np.minimum(np.minimum.accumulate(scaled[::-1])[::-1], 1.0)
    adj = np.full(p.shape, np.nan)
    tmp = np.empty(m)
    tmp[order] = adj_sorted
    adj[finite] = tmp
    reject = np.zeros(p.shape, dtype=bool)
    reject[finite] = tmp <= q
    return reject, adj


def roi_summary(
    values: np.ndarray | Sequence[float],
    rois: Sequence[str],
    noise_ceiling: np.ndarray | Sequence[float] | None = None,
    p_values: np.ndarray | Sequence[float] | None = None,
    fdr_q: float = 0.05,
    agreement: np.ndarray | Sequence[float] | None = None,
) -> pd.DataFrame:
    """One row per ROI (in order of first appearance) summarising per-voxel values, typically Pearson r.

    Args:
        values: (v,) one value per voxel (NaNs are ignored in the statistics).
        rois: length v, the ROI name of each voxel.
        noise_ceiling: optional (v,) noise ceiling in r² units; adds the columns ``noise_ceiling_mean`` (mean NC),
            ``mean_r2`` (mean of max(r, 0)²), ``mean_score`` (mean :func:`algonauts_score`, % of ceiling) and
            ``r_over_ceiling`` (:func:`r_over_ceiling`: mean r / mean √NC, the ceiling in r units).
        p_values: optional (v,) per-voxel p-values (e.g. :func:`permutation_pvalues`); adds ``frac_significant``, the
            fraction of the ROI's voxels (with a p-value) that survive Benjamini–Hochberg FDR at ``fdr_q`` over all
            voxels.
        agreement: optional (v,) inter-participant agreement r (e.g. the mean over subjects of
            :func:`inter_participant_agreement`); adds ``agreement_mean`` and ``mean_over_agreement``
            (mean of r / agreement over voxels with agreement > 0).
    Returns:
        DataFrame with columns ``roi, n_voxels, mean, median`` (+ the columns above when their inputs are given).
    """
    vals = np.asarray(values, dtype=np.float64)
    if vals.ndim != 1:
        raise DataError(f"roi_summary: values must be 1-D (v,), got shape {vals.shape}")
    labels = np.asarray([str(x) for x in rois], dtype=object)
    if labels.shape != vals.shape:
        raise DataError(f"roi_summary: {labels.shape[0]} ROI labels for {vals.shape[0]} values; they must match")
    nc = None if noise_ceiling is None else _noise_ceiling_array(noise_ceiling, vals.shape[0], "roi_summary")
    score = None if nc is None else algonauts_score(vals, nc)
    r2 = np.maximum(vals, 0.0) ** 2
    sig = None
    if p_values is not None:
        pv = np.asarray(p_values, dtype=np.float64)
        if pv.shape != vals.shape:
            raise DataError(f"roi_summary: p_values has shape {pv.shape}, expected {vals.shape} to match the values")
        sig, _ = fdr_bh(pv, fdr_q)
        has_p = ~np.isnan(pv)
    agr = None
    if agreement is not None:
        agr = np.asarray(agreement, dtype=np.float64)
        if agr.shape != vals.shape:
            raise DataError(f"roi_summary: agreement has shape {agr.shape}, expected {vals.shape} to match the values")
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = np.where(agr > 0, vals / np.where(agr > 0, agr, 1.0), np.nan)

    rows = []
    for roi in dict.fromkeys(labels.tolist()):
        m = labels == roi
        row: dict[str, object] = {
            "roi": roi,
            "n_voxels": int(m.sum()),
            "mean": _nan_stat(np.mean, vals[m]),
            "median": _nan_stat(np.median, vals[m]),
        }
        if nc is not None and score is not None:
            row["noise_ceiling_mean"] = _nan_stat(np.mean, nc[m])
            row["mean_r2"] = _nan_stat(np.mean, r2[m])
            row["mean_score"] = _nan_stat(np.mean, score[m])
            row["r_over_ceiling"] = r_over_ceiling(vals[m], nc[m])
        if sig is not None:
            denom = int((m & has_p).sum())
            row["frac_significant"] = float(sig[m].sum() / denom) if denom else float("nan")
        if agr is not None:
            row["agreement_mean"] = _nan_stat(np.mean, agr[m])
            row["mean_over_agreement"] = _nan_stat(np.mean, ratio[m])
        rows.append(row)
    columns = ["roi", "n_voxels", "mean", "median"]
    if nc is not None:
        columns += ["noise_ceiling_mean", "mean_r2", "mean_score", "r_over_ceiling"]
    if sig is not None:
        columns += ["frac_significant"]
    if agr is not None:
        columns += ["agreement_mean", "mean_over_agreement"]
    return pd.DataFrame(rows, columns=columns)
