"""Projection and task heads (torch modules), built by :func:`projection_head` / :func:`task_head`.

Projection heads map a pooled image feature into the text-embedding space: ``linear``, or GPT4Image's MLP
in → 2D → D with BatchNorm (ResNet recipe) or without it (DeiT recipe). Task heads: ``classifier`` (single-label
logits), ``multilabel`` (independent logits, BCE), ``voxels`` (linear regression to voxels) and ``voxels_pca``
(regression to PCA components of the voxels, mapped back by a fixed inverse — LLM-VEM's "PCA-based voxel mapping").
"""

from __future__ import annotations

from typing import Any

import numpy as np

from llmvem.errors import ConfigError

PROJECTIONS = ("linear", "mlp", "mlp_bn")
TASKS = ("none", "classifier", "multilabel", "voxels", "voxels_pca")


def projection_head(kind: str, in_dim: int, out_dim: int) -> Any:
    """A projection head ``(B, in_dim) → (B, out_dim)``; ``kind`` in :data:`PROJECTIONS`."""
    from torch import nn

    if kind == "linear":
        return nn.Linear(in_dim, out_dim)
    if kind == "mlp":
        return nn.Sequential(nn.Linear(in_dim, 2 * out_dim), nn.GELU(), nn.Linear(2 * out_dim, out_dim))
    if kind == "mlp_bn":
        return nn.Sequential(
            nn.Linear(in_dim, 2 * out_dim), nn.BatchNorm1d(2 * out_dim), nn.ReLU(), nn.Linear(2 * out_dim, out_dim)
        )
    raise ConfigError(f"unknown projection head {kind!r}; choose one of {', '.join(PROJECTIONS)}")


class PCAVoxelHead:
    """Factory for a head predicting ``n_components`` PCA scores, mapped back to voxels by a fixed inverse.

    Args:
        train_voxels: (n, v) training responses used to fit the PCA (mean and components).
        n_components: number of components kept (≤ min(n, v)).
    """

    def __init__(self, train_voxels: np.ndarray, n_components: int) -> None:
        y = np.asarray(train_voxels, dtype=np.float64)
        k = min(n_components, *y.shape)
        self.mean = y.mean(0)
        _, s, vt = np.linalg.svd(y - self.mean, full_matrices=False)
        self.components = vt[:k]  # (k, v)
        self.explained = float((s[:k] ** 2).sum() / max((s**2).sum(), 1e-30))

    def module(self, in_dim: int) -> Any:
        import torch
        from torch import nn

        comps = torch.tensor(self.components, dtype=torch.float32)
        mean = torch.tensor(self.mean, dtype=torch.float32)

        class Head(nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.scores = nn.Linear(in_dim, comps.shape[0])
                self.register_buffer("components", comps)
                self.register_buffer("mean", mean)

            def forward(self, x: Any) -> Any:
                return self.scores(x) @ self.components + self.mean

        return Head()


def task_head(kind: str, in_dim: int, out_dim: int, pca: PCAVoxelHead | None = None) -> Any:
    """A task head ``(B, in_dim) → (B, out_dim)`` (``None`` for ``kind="none"``)."""
    from torch import nn

    if kind == "none":
        return None
    if kind in ("classifier", "multilabel", "voxels"):
        return nn.Linear(in_dim, out_dim)
    if kind == "voxels_pca":
        if pca is None:
            raise ConfigError("task 'voxels_pca' needs the training voxels to fit its PCA")
        return pca.module(in_dim)
    raise ConfigError(f"unknown task head {kind!r}; choose one of {', '.join(TASKS)}")


def task_loss(
    kind: str,
    output: Any,
    target: Any,
    label_smoothing: float = 0.0,
    partner_target: Any = None,
    lam: float = 1.0,
) -> Any:
    """The task loss of a head's output (B, L) against its target (cross-entropy, BCE or MSE).

    A mixed batch (mixup / CutMix) passes its partners' targets ``partner_target`` (shaped like ``target``) and the
    weight ``lam`` of each sample's own: the classifier loss is ``lam · CE(y) + (1 - lam) · CE(y_partner)`` (each
    with the label smoothing), multi-label and voxel targets are mixed linearly.
    """
    import torch.nn.functional as F

    mixed = partner_target is not None and lam < 1.0
    if kind == "classifier":
        loss = F.cross_entropy(output, target.long(), label_smoothing=label_smoothing)
        if mixed:
            partner = F.cross_entropy(output, partner_target.long(), label_smoothing=label_smoothing)
            loss = lam * loss + (1.0 - lam) * partner
        return loss
    if kind in ("multilabel", "voxels", "voxels_pca"):
        y = target.float()
        if mixed:
            y = lam * y + (1.0 - lam) * partner_target.float()
        if kind == "multilabel":
            return F.binary_cross_entropy_with_logits(output, y)
        return F.mse_loss(output, y)
    raise ConfigError(f"task {kind!r} has no loss")
