"""Voxelwise encoding of :class:`~llmvem.data.brain.BrainData` from a stimulus feature matrix, in one call."""

from __future__ import annotations

import warnings
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from llmvem.brain.metrics import algonauts_score, pearson_r, roi_summary
from llmvem.brain.ridge import DEFAULT_ALPHAS, RidgeEncoder
from llmvem.data.brain import ROI_PREFIX, BrainData
from llmvem.data.stimuli import align_ids
from llmvem.errors import DataError


@dataclass
class EncodingResult:
    """An encoding model scored on held-out stimuli.

    Attributes:
        model: the fitted :class:`RidgeEncoder`.
        r: (v,) Pearson r per voxel on the test stimuli (NaN for masked voxels).
        score: (v,) Algonauts noise-normalised score (NaN without a noise ceiling).
        summary: one row per ROI (:func:`roi_table`).
        train_ids, test_ids: the stimuli used.
    """

    model: RidgeEncoder
    r: np.ndarray
    score: np.ndarray
    summary: pd.DataFrame
    train_ids: list[str]
    test_ids: list[str]


def fit_encoding_model(
    features: np.ndarray,
    feature_ids: Sequence[str],
    brain: BrainData,
    *,
    train_split: str = "train",
    test_split: str = "test",
    alphas: Sequence[float] = DEFAULT_ALPHAS,
    **ridge_kwargs: Any,
) -> EncodingResult:
    """Fit voxelwise ridge on ``brain.splits[train_split]`` and score per voxel and ROI on ``test_split``.

    Args:
        features: (n_features_rows, p) one feature vector per stimulus.
        feature_ids: stimulus id of each feature row; every id of both splits must be present (order free).
        brain: responses with ``splits`` holding ``train_split`` and ``test_split``.
        alphas: candidate penalties.
        ridge_kwargs: more :class:`RidgeEncoder` parameters (``cv``, ``dtype``, ``backend`` ...).
    Returns:
        :class:`EncodingResult`.
    """
    f = np.asarray(features)
    ids = [str(i) for i in feature_ids]
    if f.ndim != 2:
        raise DataError(f"fit_encoding_model: features must be 2-D (stimuli, dims), got shape {f.shape}")
    if len(ids) != f.shape[0]:
        raise DataError(f"fit_encoding_model: {len(ids)} feature ids for {f.shape[0]} feature rows")
    tr = brain.split_indices(train_split)
    te = brain.split_indices(test_split)
    if len(tr) < 3 or len(te) < 3:
        raise DataError(
            f"fit_encoding_model: need ≥ 3 stimuli in each split, got {len(tr)} in {train_split!r} and {len(te)} in "
            f"{test_split!r}"
        )
    train_ids = [brain.stimulus_ids[i] for i in tr]
    test_ids = [brain.stimulus_ids[i] for i in te]
    f_tr = f[align_ids(train_ids, ids, f"{brain.name} {train_split}", "features")]
    f_te = f[align_ids(test_ids, ids, f"{brain.name} {test_split}", "features")]
    model = RidgeEncoder(alphas=tuple(alphas), **ridge_kwargs).fit(f_tr, brain.responses[tr])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        r = np.asarray(pearson_r(brain.responses[te], model.predict(f_te)), dtype=np.float64)
    r[~model.valid_targets_] = np.nan
    nc = brain.noise_ceiling
    score = algonauts_score(r, nc) if nc is not None else np.full(r.shape, np.nan)
    summary = roi_table(r, brain)
    return EncodingResult(model, r, score, summary, train_ids, test_ids)


ENCODING_CEILING_BOUND = "noise_ceiling_r"
"""What ``r_over_ceiling`` of an encoding table divides by: √NC, the voxels' noise ceiling in r units (NC from the
ncsnr, :attr:`BrainData.noise_ceiling`), averaged over the same voxels as r; the table's ``noise_ceiling_r`` column."""

TOTAL_ROI = "all"
"""The table row over every voxel once, added when the ROIs overlap or leave voxels out (:func:`roi_table`)."""


def roi_voxel_masks(brain: BrainData) -> dict[str, np.ndarray]:
    """(n_voxels,) bool mask of every ROI of every class (:attr:`BrainData.rois`) and, unless those ROIs hold each
    voxel exactly once, of :data:`TOTAL_ROI` (every voxel once), so a per-voxel total stays per voxel."""
    masks = {roi: brain.roi_mask(roi) for roi in brain.rois}
    counts = np.sum(list(masks.values()), axis=0) if masks else np.zeros(brain.n_voxels, dtype=int)
    if not (counts == 1).all():
        masks[TOTAL_ROI if TOTAL_ROI not in masks else "all voxels"] = np.ones(brain.n_voxels, dtype=bool)
    return masks


def roi_table(
    values: np.ndarray,
    brain: BrainData,
    p_values: np.ndarray | None = None,
    masks: dict[str, np.ndarray] | None = None,
) -> pd.DataFrame:
    """:func:`~llmvem.brain.metrics.roi_summary` of per-voxel ``values`` (v,) over ``masks`` (default
    :func:`roi_voxel_masks`).

    A voxel counts in every ROI that labels it (``FFA-1`` of ``floc-faces`` and ``ventral`` of ``streams``); the
    noise ceiling is ``brain.noise_ceiling``; FDR over ``p_values`` (v,) runs over all voxels, as in ``roi_summary``.

    Returns:
        One row per ROI, columns as :func:`~llmvem.brain.metrics.roi_summary`.
    """
    masks = roi_voxel_masks(brain) if masks is None else masks
    nc = brain.noise_ceiling
    by_class = brain.rois_by_class()
    counts = Counter(n for names in by_class.values() for n in names)
    found: dict[str, dict[str, Any]] = {}
    for cls in by_class:  # one roi_summary per class column, for the names only that class holds
        column = ROI_PREFIX + cls if brain.roi_classes else "roi"
        labels = brain.voxels[column].astype(str).tolist()
        summary = roi_summary(values, labels, noise_ceiling=nc, p_values=p_values).set_index("roi")
        found.update({n: row for n, row in summary.to_dict("index").items() if counts.get(n) == 1 and n in masks})
    rows = []
    for roi, mask in masks.items():
        if roi not in found:  # a name in several classes, or the total
            labels = ["in" if m else "" for m in mask]
            found[roi] = roi_summary(values, labels, nc, p_values).set_index("roi").to_dict("index")["in"]
        rows.append({"roi": roi, **found[roi]})
    return pd.DataFrame(rows)


def encoding_rows(
    model_name: str, r: np.ndarray, brain: BrainData, p_values: np.ndarray | None = None
) -> list[dict[str, Any]]:
    """Rows of an encoding table (one per ROI) for per-voxel held-out ``r`` (v,) of ``model_name`` on ``brain``.

    Columns: ``model, roi, n_voxels, mean_r, median_r, noise_ceiling_r`` (mean √NC over the ROI's voxels; NaN
    without a ceiling), ``mean_score`` (% of ceiling, NaN without), ``r_over_ceiling`` (mean r / mean √NC over the
    voxels with both: :func:`~llmvem.brain.metrics.r_over_ceiling`; NaN without a ceiling), ``ceiling_bound`` (the
    bound that normalises it: :data:`ENCODING_CEILING_BOUND`) and, with ``p_values``, ``frac_significant``.
    Every ROI of every class has a row (a voxel counts in each ROI that labels it), plus :data:`TOTAL_ROI` over
    every voxel once when the ROIs overlap or leave voxels out (:func:`roi_table`).
    """
    nc = brain.noise_ceiling
    masks = roi_voxel_masks(brain)
    summary = roi_table(r, brain, p_values=p_values, masks=masks)
    rows = []
    for _, s in summary.iterrows():
        mask = masks[str(s["roi"])]
        row = {
            "model": model_name,
            "roi": s["roi"],
            "n_voxels": int(s["n_voxels"]),
            "mean_r": float(s["mean"]),
            "median_r": float(s["median"]),
            "noise_ceiling_r": float(np.mean(np.sqrt(np.clip(nc[mask], 0, None)))) if nc is not None else float("nan"),
            "mean_score": float(s["mean_score"]) if "mean_score" in s else float("nan"),
            "r_over_ceiling": float(s["r_over_ceiling"]) if "r_over_ceiling" in s else float("nan"),
            "ceiling_bound": ENCODING_CEILING_BOUND,
        }
        if p_values is not None:
            row["frac_significant"] = float(s["frac_significant"])
        rows.append(row)
    return rows
