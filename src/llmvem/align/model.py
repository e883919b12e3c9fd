"""Model assembly of the fine-tune: the split network's top with a projection head and a task head
(:func:`build_model`), its optimizer (:func:`make_optimizer`) and SyncBatchNorm under DDP (:func:`sync_batchnorm`)."""

from __future__ import annotations

import copy
import math
from typing import Any

import numpy as np

from llmvem.align.heads import PCAVoxelHead, projection_head, task_head
from llmvem.config import FinetuneConfig


def build_model(
    split: Any,
    cfg: FinetuneConfig,
    text_dim: int | None,
    n_labels: int | None,
    task: str,
    text_prior: np.ndarray | None = None,
    pca: PCAVoxelHead | None = None,
) -> Any:
    """The trainable model: the split network's top, a projection head (if aligning) and a task head.

    With ``cfg.loss == "visual_words"`` the projection head is a vocabulary head (``text_dim`` = V outputs, see
    :func:`llmvem.visualwords.vocab_head`), its bias starting at ``log text_prior`` (the mean training target) when
    given. ``task="voxels_pca"`` needs ``pca`` (fit on the training voxels) for its fixed inverse map.
    """
    import torch
    from torch import nn

    class Aligned(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.top = copy.deepcopy(split.top)  # every run starts from the pretrained weights
            self.project = _projection(cfg, split.feature_dim, text_dim, text_prior) if text_dim else None
            self.task = task_head(task, split.feature_dim, n_labels or 0, pca=pca) if task != "none" else None
            self.log_temp = nn.Parameter(torch.tensor(math.log(cfg.temperature)), requires_grad=cfg.learn_temperature)

        def forward(self, a: torch.Tensor) -> dict[str, torch.Tensor]:
            f = self.top(a)
            out = {"features": f}
            if self.project is not None:
                out["projection"] = self.project(f)
            if self.task is not None:
                out["task"] = self.task(f)
            return out

    return Aligned()


def _projection(cfg: FinetuneConfig, in_dim: int, out_dim: int, prior: np.ndarray | None) -> Any:
    if cfg.loss != "visual_words":
        return projection_head(cfg.projection, in_dim, out_dim)
    from llmvem.visualwords import load_vocabulary, vocab_head

    vocab = load_vocabulary(cfg.vocabulary)
    vocab.check_size(out_dim, "the visual-word targets (text columns)")
    emb = vocab.embeddings if cfg.vocab_head_init == "embeddings" else None
    return vocab_head(in_dim, out_dim, cfg.vocab_head_init, embeddings=emb, prior=prior)


def make_optimizer(params: list[Any], cfg: FinetuneConfig, device: str) -> Any:
    """The config's optimizer (AdamW or SGD with momentum) over ``params``.

    On CUDA the fused implementation updates every tensor in one kernel launch, which matters when a step is short
    (a few trainable blocks: the launches, not the arithmetic, set its time); elsewhere torch's default is used.
    """
    import torch

    fused = True if torch.device(device).type == "cuda" else None
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay, fused=fused)
    return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay, fused=fused)


def sync_batchnorm(model: Any, device: str, enabled: bool = True) -> int:
    """Under DDP on GPUs, turn ``model``'s BatchNorm layers (in place) into SyncBatchNorm, which normalises by the
    statistics of the global batch rather than of each rank's share; returns how many layers were converted.

    Only CUDA devices are converted (torch's SyncBatchNorm has no CPU / gloo implementation): on CPU each rank keeps
    its own statistics, as plain DDP does. Parameter and buffer names do not change, so checkpoints load either way.
    """
    import torch
    from torch import nn

    if not enabled or torch.device(device).type != "cuda":
        return 0
    n = sum(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())
    if n:
        for name, child in list(model.named_children()):
            setattr(model, name, nn.SyncBatchNorm.convert_sync_batchnorm(child))
    return n
