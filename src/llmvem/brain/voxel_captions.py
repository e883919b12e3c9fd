"""Captions for voxels and ROIs: an encoding model's weights read out as sentences (BrainSCUBA, Luo et al. 2024).

An encoding model fitted on text-embedding (or CLIP) features predicts voxel ``v`` as ``x · w_v``, so ``w_v`` is the
direction of the embedding space that drives the voxel. BrainSCUBA maps that direction onto the manifold of natural
embeddings with a softmax-weighted projection onto a corpus (temperature τ; 1/150 in the paper, on cosine
similarities) and reads it out as text. Here the corpus is a caption corpus, embedded by the same text encoder as the
features, and the readout is (a) its nearest captions and, optionally, (b) one sentence written by a served language
model from them (:mod:`llmvem.describe.summarise`).

Definitions (shapes: ``d`` embedding dims, ``v`` voxels, ``c`` corpus captions):

* voxel direction ``u_v = w_v / ‖w_v‖`` (the constant offset of a corpus embedding changes no ranking: ``w · (m + b)``
  shifts every caption's score by the same ``w · b``);
* projection ``p_v = Σ_i softmax_i(cos(u_v, m_i) / τ) · m_i``, renormalised;
* ROI direction: the mean of ``u_v`` over the ROI's voxels, each weighted by its held-out encoding r (voxels with
  r ≤ 0 or non-finite are left out; all weights 1 when no r is given), then projected like a voxel.

Example
-------
>>> import numpy as np
>>> corpus = np.eye(3)                     # three captions along the axes
>>> w = np.array([[0.1, 2.0, 0.0]]).T      # (d=3, v=1): the voxel wants caption 1
>>> vc = caption_voxels(w, corpus, ["a", "b", "c"], k=1)
>>> vc.captions
[['b']]
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from llmvem.errors import DataError

#: BrainSCUBA's softmax temperature on cosine similarities
DEFAULT_TEMPERATURE = 1.0 / 150.0


def _unit_rows(x: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return np.divide(x, norms, out=np.zeros_like(x), where=norms > 0)


def project_to_corpus(
    directions: np.ndarray, corpus: np.ndarray, temperature: float = DEFAULT_TEMPERATURE, batch: int = 1024
) -> np.ndarray:
    """BrainSCUBA's softmax-weighted projection of directions onto a corpus of embeddings.

    Args:
        directions: (v, d) voxel (or ROI) directions; any scale.
        corpus: (c, d) caption embeddings.
        temperature: τ of the softmax over cosine similarities (> 0; small τ → the nearest caption).
        batch: directions per block (memory ∝ batch · c).
    Returns:
        (v, d) unit-length projections; a zero direction gives a zero row.
    """
    if not np.isfinite(temperature) or temperature <= 0:
        raise DataError(f"voxel captions: temperature must be > 0, got {temperature}")
    u, m = _unit_rows(np.asarray(directions, np.float64)), np.asarray(corpus, np.float64)
    mu = _unit_rows(m)
    out = np.zeros_like(u)
    for s in range(0, len(u), batch):
        logits = (u[s : s + batch] @ mu.T) / temperature
        logits -= logits.max(axis=1, keepdims=True)
        p = np.exp(logits)
        p /= p.sum(axis=1, keepdims=True)
        out[s : s + batch] = p @ m
    out = _unit_rows(out)
    out[~np.any(u != 0, axis=1)] = 0.0
    return out


@dataclass
class VoxelCaptions:
    """The nearest corpus captions of each projected direction.

    Attributes:
        captions: v lists of k captions, nearest first (empty for a voxel whose weights are all zero).
        indices: (v, k) corpus indices (−1 where none).
        scores: (v, k) cosine similarity of the projection with each caption (NaN where none).
        projected: (v, d) unit projections.
    """

    captions: list[list[str]]
    indices: np.ndarray
    scores: np.ndarray
    projected: np.ndarray


def _nearest(projected: np.ndarray, corpus: np.ndarray, texts: Sequence[str], k: int) -> VoxelCaptions:
    """Nearest captions of each non-zero row; a zero row (no direction) gets no captions, index −1, score NaN."""
    from llmvem.brain.decode import retrieve_captions

    live = np.flatnonzero(np.any(projected != 0, axis=1))
    indices = np.full((len(projected), k), -1, dtype=np.int64)
    scores = np.full((len(projected), k), np.nan)
    captions: list[list[str]] = [[] for _ in range(len(projected))]
    if len(live):
        ret = retrieve_captions(projected[live], corpus, texts, k=k, metric="cosine")
        indices[live], scores[live] = ret.indices, ret.scores
        for j, row in zip(live, ret.texts, strict=True):
            captions[j] = row
    return VoxelCaptions(captions, indices, scores, projected)


def _check(weights: np.ndarray, corpus: np.ndarray, texts: Sequence[str], k: int) -> tuple[np.ndarray, np.ndarray]:
    w, c = np.asarray(weights), np.asarray(corpus)
    if w.ndim != 2 or c.ndim != 2 or w.shape[0] != c.shape[1]:
        raise DataError(
            f"voxel captions: weights (d, v) = {w.shape} and corpus embeddings (c, d) = {c.shape} must share d; "
            "embed the corpus with the encoder that made the features"
        )
    if len(texts) != c.shape[0]:
        raise DataError(f"voxel captions: {len(texts)} captions for {c.shape[0]} corpus embeddings")
    if not np.isfinite(c).all():
        raise DataError("voxel captions: the corpus embeddings hold NaN/inf")
    if not 1 <= k <= c.shape[0]:
        raise DataError(f"voxel captions: k must be in [1, {c.shape[0]}], got {k}")
    return np.nan_to_num(w.T.astype(np.float64)), c


def caption_voxels(
    weights: np.ndarray,
    corpus: np.ndarray,
    texts: Sequence[str],
    *,
    k: int = 5,
    temperature: float = DEFAULT_TEMPERATURE,
) -> VoxelCaptions:
    """The k captions of a corpus nearest to each voxel's projected weight direction.

    Args:
        weights: (d, v) encoding weights (``RidgeEncoder.coef_``) on features in the corpus's embedding space.
        corpus: (c, d) caption embeddings (same encoder as the features).
        texts: c captions.
        k: captions per voxel.
        temperature: see :func:`project_to_corpus`.
    Returns:
        :class:`VoxelCaptions` with v rows.
    """
    w, c = _check(weights, corpus, texts, k)
    return _nearest(project_to_corpus(w, c, temperature), c, texts, k)


def roi_directions(
    weights: np.ndarray, rois: Sequence[str], r: np.ndarray | None = None
) -> tuple[list[str], np.ndarray, np.ndarray]:
    """One direction per ROI: the r-weighted mean of its voxels' unit weight directions.

    Args:
        weights: (d, v) encoding weights.
        rois: v ROI labels.
        r: (v,) held-out encoding r; voxels with r ≤ 0 / NaN are left out. ``None``: every voxel, weight 1.
    Returns:
        (ROI names, (n_rois, d) directions, (n_rois,) voxels used per ROI).
    """
    u = _unit_rows(np.nan_to_num(np.asarray(weights, np.float64).T))
    if len(rois) != len(u):
        raise DataError(f"voxel captions: {len(rois)} ROI labels for {len(u)} voxels")
    wt = np.ones(len(u)) if r is None else np.where(np.isfinite(r) & (np.asarray(r) > 0), np.asarray(r), 0.0)
    names = list(dict.fromkeys(str(x) for x in rois))
    labels = np.asarray([str(x) for x in rois])
    dirs = np.zeros((len(names), u.shape[1]))
    used = np.zeros(len(names), dtype=np.int64)
    for j, name in enumerate(names):
        sel = (labels == name) & (wt > 0)
        used[j] = int(sel.sum())
        if used[j]:
            dirs[j] = (wt[sel, None] * u[sel]).sum(axis=0) / wt[sel].sum()
    return names, dirs, used


def caption_rois(
    weights: np.ndarray,
    rois: Sequence[str],
    corpus: np.ndarray,
    texts: Sequence[str],
    *,
    r: np.ndarray | None = None,
    k: int = 5,
    temperature: float = DEFAULT_TEMPERATURE,
) -> pd.DataFrame:
    """The k nearest corpus captions of each ROI's projected direction (see :func:`roi_directions`).

    Returns:
        long table: ``roi``, ``rank`` (1 = nearest), ``caption``, ``score`` (cosine), ``n_voxels`` (voxels used);
        a ROI with no usable voxel gets one row with an empty caption and ``n_voxels`` 0.
    """
    w, c = _check(weights, corpus, texts, k)
    names, dirs, used = roi_directions(w.T, rois, r)
    near = _nearest(project_to_corpus(dirs, c, temperature), c, texts, k)
    rows = []
    for j, name in enumerate(names):
        if not used[j]:
            rows.append({"roi": name, "rank": 1, "caption": "", "score": np.nan, "n_voxels": 0})
            continue
        for rank, (cap, score) in enumerate(zip(near.captions[j], near.scores[j], strict=True), start=1):
            rows.append({"roi": name, "rank": rank, "caption": cap, "score": float(score), "n_voxels": int(used[j])})
    return pd.DataFrame(rows)
