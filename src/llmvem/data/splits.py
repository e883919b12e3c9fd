"""Held-out splits of a stimulus set: the one seeded way of holding images out (the runner keeps the result as
``Stimuli.splits``: ``train`` / ``test`` ids)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def heldout_split(
    n: int, val_fraction: float, seed: int | Sequence[int], classes: list[str] | None = None, min_val: int = 2
) -> tuple[np.ndarray, np.ndarray]:
    """Sorted (train, held-out) row indices: a seeded random share ``val_fraction`` of ``n`` rows, at least
    ``min_val`` (``seed``: an int, or ints naming an independent numpy stream); with ``classes`` (length n)
    stratified, each class giving ≥ 1 image to each side."""
    rng = np.random.default_rng(seed)
    if classes is None:
        n_val = min(max(round(val_fraction * n), min_val), n - 2)
        perm = rng.permutation(n)
        return np.sort(perm[n_val:]), np.sort(perm[:n_val])
    labels = np.asarray(classes)
    val: list[int] = []
    for c in sorted(set(classes)):
        rows = np.flatnonzero(labels == c)
        rng.shuffle(rows)
        k = min(max(round(val_fraction * len(rows)), 1), len(rows) - 1)
        val.extend(rows[:k].tolist())
    val_idx = np.sort(np.asarray(val, dtype=np.int64))
    return np.setdiff1d(np.arange(n), val_idx), val_idx
