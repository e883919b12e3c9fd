"""Baseline and language-aligned twins trained on frozen backbone features.

A twin maps backbone features (n, d_in) through a trunk MLP to an image embedding ``z`` (n, embed_dim). Two heads
read ``z``: a task head (here voxel regression, LLM-VEM's encoding loss) and a projection head into the text
embedding space. Training minimises ``task + λ · align(projection(z), text_embedding)``; the baseline twin is the
same model, data, seed and schedule with λ = 0, so any difference between the two comes from the language target.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from llmvem.align.losses import ALIGN_LOSSES
from llmvem.config import TrainConfig
from llmvem.errors import DataError


@dataclass
class TwinResult:
    """A trained twin: its weights and the standardisation it was trained with."""

    state: dict[str, np.ndarray]
    x_mean: np.ndarray
    x_std: np.ndarray
    history: list[dict[str, float]] = field(default_factory=list)
    config: dict[str, Any] = field(default_factory=dict)

    def embed(self, features: np.ndarray, batch_size: int = 1024) -> np.ndarray:
        """Image embeddings ``z`` (n, embed_dim) float32 of backbone ``features`` (n, d_in)."""
        import torch

        model = _build(self.config, self.state)
        model.eval()
        x = (np.asarray(features, dtype=np.float32) - self.x_mean) / self.x_std
        out = []
        with torch.inference_mode():
            for i in range(0, len(x), batch_size):
                out.append(model.trunk(torch.from_numpy(x[i : i + batch_size])).numpy())
        return np.concatenate(out).astype(np.float32)


def _build(config: dict[str, Any], state: dict[str, np.ndarray] | None = None) -> Any:
    import torch
    from torch import nn

    class Twin(nn.Module):
        def __init__(self, d_in: int, hidden: int, d_emb: int, d_task: int, d_text: int, dropout: float) -> None:
            super().__init__()
            self.trunk = nn.Sequential(
                nn.Linear(d_in, hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden, d_emb)
            )
            self.task = nn.Linear(d_emb, d_task) if d_task > 0 else None
            self.project = (
                nn.Sequential(nn.Linear(d_emb, 2 * d_emb), nn.GELU(), nn.Linear(2 * d_emb, d_text)) if d_text else None
            )

    m = Twin(
        config["d_in"], config["hidden_dim"], config["embed_dim"], config["d_task"], config["d_text"], config["dropout"]
    )
    if state is not None:
        m.load_state_dict({k: torch.from_numpy(np.asarray(v)) for k, v in state.items()})
    return m


def train_twin(
    features: np.ndarray,
    task_targets: np.ndarray | None,
    text_embeddings: np.ndarray | None,
    cfg: TrainConfig,
    lambda_align: float,
    seed: int = 0,
    device: str = "cpu",
    progress: bool = False,
    label: str = "twin",
) -> TwinResult:
    """Train one twin on frozen features.

    Args:
        features: (n, d_in) backbone features of the training stimuli.
        task_targets: (n, v) voxel responses of the same stimuli (standardised internally), or ``None`` for no task.
        text_embeddings: (n, d_text) description embeddings, needed when ``lambda_align > 0``.
        cfg: architecture and schedule.
        lambda_align: weight of the alignment loss (0 for the baseline twin).
        seed: seeds initialisation, dropout and batch order.
    Returns:
        the trained :class:`TwinResult`.
    """
    import torch

    x = np.asarray(features, dtype=np.float32)
    n = x.shape[0]
    if x.ndim != 2 or n < 4:
        raise DataError(f"twin training needs (n ≥ 4, d) features, got shape {x.shape}")
    if not np.isfinite(x).all():
        raise DataError("twin training: features contain NaN or inf")
    y = None
    if task_targets is not None:
        y = np.asarray(task_targets, dtype=np.float32)
        if y.shape[0] != n:
            raise DataError(f"twin training: {y.shape[0]} task rows for {n} feature rows")
        y = np.nan_to_num((y - y.mean(0)) / np.where(y.std(0) > 0, y.std(0), 1.0))
    t = None
    if lambda_align > 0:
        if text_embeddings is None:
            raise DataError("the aligned twin (lambda_align > 0) needs text embeddings")
        t = np.asarray(text_embeddings, dtype=np.float32)
        if t.shape[0] != n:
            raise DataError(f"twin training: {t.shape[0]} text embeddings for {n} feature rows")
    if y is None and t is None:
        raise DataError("twin training needs a task (voxels) or an alignment target (lambda_align > 0)")

    x_mean = x.mean(0)
    x_std = np.where(x.std(0) > 0, x.std(0), 1.0).astype(np.float32)
    xs = (x - x_mean) / x_std
    config = {
        "d_in": x.shape[1],
        "hidden_dim": cfg.hidden_dim,
        "embed_dim": cfg.embed_dim,
        "d_task": 0 if y is None else y.shape[1],
        "d_text": 0 if t is None else t.shape[1],
        "dropout": cfg.dropout,
    }
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    model = _build(config).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=cfg.epochs)
    loss_fn = ALIGN_LOSSES.get(cfg.loss)
    X = torch.from_numpy(xs).to(device)
    Y = torch.from_numpy(y).to(device) if y is not None else None
    T = torch.from_numpy(t).to(device) if t is not None else None
    bs = min(cfg.batch_size, n)
    history: list[dict[str, float]] = []
    from llmvem.progress import progress_bar

    with progress_bar(f"train {label}", total=cfg.epochs, enabled=progress) as advance:
        for epoch in range(cfg.epochs):
            model.train()
            perm = torch.randperm(n, generator=gen).to(device)
            sums = {"task": 0.0, "align": 0.0}
            n_batches = 0
            for i in range(0, n - bs + 1, bs):  # drop the last partial batch: InfoNCE needs full batches
                idx = perm[i : i + bs]
                z = model.trunk(X[idx])
                loss = torch.zeros((), device=device)
                if Y is not None and model.task is not None:
                    task_loss = torch.mean((model.task(z) - Y[idx]) ** 2)
                    loss = loss + task_loss
                    sums["task"] += float(task_loss.detach())
                if T is not None and model.project is not None:
                    align_loss = loss_fn(model.project(z), T[idx], temperature=cfg.temperature)
                    loss = loss + lambda_align * align_loss
                    sums["align"] += float(align_loss.detach())
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                n_batches += 1
            sched.step()
            history.append({"epoch": epoch, **{k: v / max(n_batches, 1) for k, v in sums.items()}})
            advance(1)
    state = {k: v.detach().cpu().numpy() for k, v in model.state_dict().items()}
    return TwinResult(state=state, x_mean=x_mean, x_std=x_std, history=history, config=config)
