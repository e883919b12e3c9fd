"""Encoding-model metrics: column-wise Pearson r and R², the Algonauts noise-normalised score, per-ROI tables."""

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


def roi_summary(
    values: np.ndarray | Sequence[float],
    rois: Sequence[str],
    noise_ceiling: np.ndarray | Sequence[float] | None = None,
) -> pd.DataFrame:
    """One row per ROI (in order of first appearance) summarising per-voxel values, typically Pearson r.

    Args:
        values: (v,) one value per voxel (NaNs are ignored in the statistics).
        rois: length v, the ROI name of each voxel.
        noise_ceiling: optional (v,) noise ceiling in r² units; adds the columns ``noise_ceiling_mean`` (mean NC),
            ``mean_r2`` (mean of max(r, 0)²) and ``mean_score`` (mean :func:`algonauts_score`, % of ceiling).
    Returns:
        DataFrame with columns ``roi, n_voxels, mean, median`` (+ the three above when ``noise_ceiling`` is given).
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
        rows.append(row)
    columns = ["roi", "n_voxels", "mean", "median"]
    if nc is not None:
        columns += ["noise_ceiling_mean", "mean_r2", "mean_score"]
    return pd.DataFrame(rows, columns=columns)
