"""Held-out splits of a stimulus set: the one seeded way of holding images out (the runner keeps the result as
``Stimuli.splits``: ``train`` / ``test`` ids)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

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


def brain_heldout(brain: Any, heldout: str, min_val: int = 3) -> tuple[np.ndarray, np.ndarray] | None:
    """(train, held-out) row indices from a split of ``brain`` (already reordered to the images), or None.

    ``heldout`` is ``auto`` (the split ``test`` if it names ≥ ``min_val`` images and leaves ≥ 4 to train on, else
    None: the caller draws a seeded split), ``seeded`` (None) or a split name, which must exist and be usable.

    Raises:
        ConfigError: a named split that the brain data lacks, or one too small or too large to hold out.
    """
    from llmvem.errors import ConfigError

    if heldout == "seeded":
        return None
    name = "test" if heldout == "auto" else heldout
    if name not in brain.splits:
        if heldout == "auto":
            return None
        raise ConfigError(f"heldout={heldout!r}: the brain data has no such split; it has {sorted(brain.splits)}")
    val_idx = brain.split_indices(name)
    n = len(brain.stimulus_ids)
    if not min_val <= len(val_idx) <= n - 4:
        if heldout == "auto":
            return None
        raise ConfigError(
            f"heldout={heldout!r}: the split names {len(val_idx)} of the {n} images; hold out ≥ {min_val} "
            "and leave ≥ 4 to train on"
        )
    val_idx = np.sort(val_idx.astype(np.int64))
    return np.setdiff1d(np.arange(n), val_idx), val_idx


def images_split(
    n: int, fraction: float, seed: int, classes: list[str] | None = None, min_val: int = 2,
    brain: Any = None, split_from: str = "seeded",
) -> tuple[np.ndarray, np.ndarray, str]:  # fmt: skip
    """(train, held-out, where from) of ``n`` images: the brain data's own split (:func:`brain_heldout`, when
    ``split_from`` is not ``seeded`` and it is usable), else :func:`heldout_split` (stratified by ``classes``).

    Raises:
        DataError: fewer than 4 training images left.
    """
    from llmvem.errors import DataError

    own = brain_heldout(brain, split_from) if brain is not None else None
    if own is not None:
        train, val = own
        where = f"brain split {'test' if split_from == 'auto' else split_from!r}"
    else:
        train, val = heldout_split(n, fraction, seed, classes, min_val=min_val)
        where = "seeded"
    if len(train) < 4:
        raise DataError(f"{len(train)} training image(s) after holding out {len(val)}: need ≥ 4")
    return train, val, where
