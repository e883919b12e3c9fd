"""Paired comparisons of two representations' scores: differences over seeds and paired tests over subjects.

Example
-------
>>> import numpy as np
>>> a = np.array([[0.30, 0.25, 0.35], [0.32, 0.27, 0.33]])   # (seeds, subjects) scores of one representation
>>> b = np.array([[0.20, 0.22, 0.30], [0.21, 0.20, 0.31]])   # of the other
>>> d = paired_difference(a, b)
>>> round(d["diff_mean"], 4), d["per_seed"] == [0.06, 0.0667]
(0.0633, False)
>>> 0 < d["p_paired_t_subjects"] < 1
True
"""

from __future__ import annotations

from typing import Any

import numpy as np


def ci95(x: np.ndarray) -> tuple[float, float, float]:
    """Mean and two-sided 95 % t confidence interval of ``x`` (n,) (e.g. paired differences over seeds).

    Returns:
        ``(mean, low, high)``; the bounds are NaN when ``n < 2``.
    """
    from scipy import stats

    x = np.asarray(x, dtype=np.float64)
    m = float(x.mean())
    if len(x) < 2:
        return m, float("nan"), float("nan")
    h = float(stats.t.ppf(0.975, len(x) - 1) * x.std(ddof=1) / np.sqrt(len(x)))
    return m, m - h, m + h


def paired_difference(a: np.ndarray, b: np.ndarray) -> dict[str, Any]:
    """``a − b`` from per-(seed, subject) scores ``a``, ``b`` (n_seeds, n_subjects) of two representations.

    Returns:
        ``diff_mean`` (mean over seeds of the per-seed mean difference), ``ci95`` (its 95 % t interval over seeds;
        NaN with one seed), ``per_seed`` (n_seeds,), ``p_paired_t_subjects`` (paired t-test over subjects of the
        seed-averaged scores; NaN with one subject) and ``ratio_aligned_over_twin`` (mean a / mean b; NaN unless
        mean b > 0).
    """
    from scipy import stats

    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 2:
        raise ValueError(f"paired_difference needs two (seeds, subjects) arrays of one shape, got {a.shape}, {b.shape}")
    per_seed = (a - b).mean(1)
    m, lo, hi = ci95(per_seed)
    p_subjects = float(stats.ttest_rel(a.mean(0), b.mean(0)).pvalue) if a.shape[1] > 1 else float("nan")
    ratio = float(a.mean() / b.mean()) if b.mean() > 0 else float("nan")
    return {"diff_mean": m, "ci95": [lo, hi], "per_seed": per_seed.tolist(), "p_paired_t_subjects": p_subjects,
            "ratio_aligned_over_twin": ratio}  # fmt: skip
