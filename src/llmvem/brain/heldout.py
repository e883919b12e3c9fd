"""Held-out scores of a fitted encoding model: per-voxel Pearson r, optionally with permutation p-values."""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np


def heldout_r(
    model: Any, x_test: np.ndarray, y_test: np.ndarray, permutations: int = 0, seed: int = 0, what: str = "encoding"
) -> tuple[np.ndarray, np.ndarray | None]:
    """Per-voxel Pearson r (v,) of a fitted :class:`~llmvem.brain.RidgeEncoder` on held-out rows (x_test (n, p),
    y_test (n, v)), and with ``permutations`` > 0 their permutation p-values
    (:func:`~llmvem.brain.permutation_pvalues`, else ``None``).

    Voxels the fit left out (``valid_targets_``) and voxels with NaN/inf in the test rows only get r = NaN; the
    latter are counted in a warning naming ``what`` (the fit's own warning counts only the training rows).
    """
    from llmvem.brain import permutation_pvalues
    from llmvem.brain.metrics import pearson_r

    pred = model.predict(x_test)
    p_values = None
    if permutations:
        r, p_values = permutation_pvalues(y_test, pred, permutations, seed=seed)
    else:
        r = pearson_r(y_test, pred)
    r = np.asarray(r, dtype=np.float64)
    valid = np.asarray(model.valid_targets_, dtype=bool)
    r[~valid] = np.nan
    bad = valid & ~np.isfinite(y_test).all(axis=0)
    if bad.any():
        r[bad] = np.nan
        warnings.warn(
            f"{what}: {int(bad.sum())} of {len(bad)} voxels hold NaN/inf in the test stimuli only and are left out of "
            "the scores",
            RuntimeWarning,
            stacklevel=2,
        )
    return r, p_values
