"""Held-out scores of a trained network's heads: label metrics (multilabel), classification accuracy, per-voxel
r of voxel heads, image → own-description retrieval of the projection head."""

from __future__ import annotations

import warnings

import numpy as np


def label_accuracy(logits: np.ndarray, labels: np.ndarray) -> float:
    """Share of image × label cells where the logit's sign (n, L) says what the multi-hot label (n, L) says."""
    return float(((logits > 0) == (np.asarray(labels) > 0.5)).mean())


def label_metrics(logits: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """Multilabel scores of task-head ``logits`` (n, L) against multi-hot ``labels`` (n, L): ``label_accuracy``
    (logit > 0 vs label > 0.5, over every image × label) and ``mean_average_precision`` (macro over the labels
    that are neither absent from nor present in every image)."""
    from sklearn.metrics import average_precision_score

    keep = (labels.sum(0) > 0) & (labels.sum(0) < len(labels))
    return {
        "label_accuracy": label_accuracy(logits, labels),
        "mean_average_precision": float(average_precision_score(labels[:, keep], logits[:, keep], average="macro")),
    }


def task_scores(task: str, outputs: np.ndarray, targets: np.ndarray) -> dict[str, float]:
    """Held-out scores of a task head's ``outputs`` against ``targets`` (rows: held-out images).

    classifier: ``top1`` (and ``top5`` with ≥ 5 classes) accuracy of logits (n, K) for classes (n,);
    multilabel: ``label_accuracy`` (thresholded logits (n, L) vs multi-hot labels); voxels: ``mean_r`` and
    ``median_r`` over voxels of the per-voxel Pearson r (:func:`voxel_r`).
    """
    if task == "classifier":
        y = np.asarray(targets, dtype=np.int64)
        out = {"top1": float((outputs.argmax(1) == y).mean())}
        if outputs.shape[1] >= 5:
            top5 = np.argsort(-outputs, axis=1, kind="stable")[:, :5]
            out["top5"] = float((top5 == y[:, None]).any(1).mean())
        return out
    if task == "multilabel":
        return {"label_accuracy": label_accuracy(outputs, targets)}
    r = voxel_r(outputs, targets)
    return {"mean_r": float(np.nanmean(r)), "median_r": float(np.nanmedian(r))}


def voxel_r(pred: np.ndarray, true: np.ndarray) -> np.ndarray:
    """Per-voxel Pearson r (v,) float64 of held-out predictions (n, v) with the measured responses (n, v)."""
    from llmvem.brain.metrics import pearson_r

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.asarray(pearson_r(true, pred), dtype=np.float64)


def retrieval_top1(projection: np.ndarray, text: np.ndarray) -> float:
    """Fraction of held-out images whose projection (n, t) is closest (cosine) to their own text embedding (n, t)
    among the n held-out texts (chance 1/n)."""
    p = projection / np.maximum(np.linalg.norm(projection, axis=1, keepdims=True), 1e-12)
    t = text / np.maximum(np.linalg.norm(text, axis=1, keepdims=True), 1e-12)
    return float(((p @ t.T).argmax(1) == np.arange(len(p))).mean())
