"""Training targets of a fine-tune built from brain data: voxel responses standardised on the training images."""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from llmvem.errors import DataError

if TYPE_CHECKING:
    from llmvem.data.brain import BrainData


@dataclass
class VoxelTargets:
    """Voxel responses of the images, standardised on the training rows.

    Attributes:
        valid: (v,) bool, the voxels trained on (finite and not constant).
        targets: (n, v_valid) float32 z-scores (training-row mean and sd).
        mean, sd: (v_valid,) the training rows' mean and standard deviation of the raw responses.
    """

    valid: np.ndarray
    targets: np.ndarray
    mean: np.ndarray
    sd: np.ndarray


def voxel_targets(brain: BrainData, train_idx: np.ndarray, source: str = "", log: Any = None) -> VoxelTargets:
    """Mask the NaN/inf and constant voxels of ``brain`` (rows: the images; a counted ``RuntimeWarning``) and
    z-score the rest with the mean and sd of the training rows ``train_idx``.

    Raises:
        DataError: no usable voxel.
    """
    valid = brain.check_finite()
    n_bad = int((~valid).sum())
    if not valid.any():
        raise DataError(
            f"brain data {source}: all {brain.n_voxels} voxels hold NaN/inf or are constant over the images"
        )
    if n_bad:
        msg = (
            f"brain data {source}: {n_bad} of {brain.n_voxels} voxels contain NaN/inf or are constant and are left "
            "out of training and scoring (their r is NaN)"
        )
        warnings.warn(msg, RuntimeWarning, stacklevel=2)
        if log is not None:
            log(f"  [yellow]{msg}[/yellow]")
    y = np.asarray(brain.responses[:, valid], dtype=np.float64)
    mean, sd = y[train_idx].mean(0), y[train_idx].std(0)
    sd = np.where(sd > 0, sd, 1.0)
    return VoxelTargets(valid, ((y - mean) / sd).astype(np.float32), mean, sd)
