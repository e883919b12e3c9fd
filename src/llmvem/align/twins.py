"""Baseline and language-aligned twins trained on frozen backbone features: a plan of the one training loop.

A twin maps backbone features (n, d_in) through a trunk MLP to an image embedding ``z`` (n, embed_dim). Two heads
read ``z``: a task head (here voxel regression, LLM-VEM's encoding loss) and a projection head into the text
embedding space. Training minimises ``task + λ · align(projection(z), text_embedding)``; the baseline twin is the
same model, data, seed and schedule with λ = 0, so any difference between the two comes from the language target.

The twin is trained by :func:`llmvem.align.trainer.fit` (the fine-tune's loop) with :class:`TwinPlan`; it is
identified by :class:`~llmvem.align.spec.TrainSpec` (:func:`twin_spec`) and, given a checkpoint directory, cached
there as a fine-tune is (one checkpoint when it ends: a twin trains in seconds).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from llmvem.align.checkpoint import Checkpointer
from llmvem.align.losses import ALIGN_LOSSES
from llmvem.align.spec import TrainSpec
from llmvem.align.trainer import TrainState, fit
from llmvem.config import TrainConfig
from llmvem.errors import DataError
from llmvem.hashing import hash_array


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


class TwinPlan:
    """The twin as a :class:`~llmvem.align.trainer.TrainingPlan`: AdamW, a cosine learning rate stepped per
    epoch, one seeded permutation per epoch (the last partial batch dropped: InfoNCE needs full batches), loss
    ``MSE(task) + λ · align``; history rows ``{"epoch", "task", "align"}``.

    ``x`` (n, d_in) standardised features, ``y`` (n, v) standardised targets or ``None``, ``t`` (n, d_text) text
    embeddings or ``None``, as tensors on ``device``.
    """

    def __init__(
        self, model: Any, cfg: TrainConfig, x: Any, y: Any, t: Any, lambda_align: float, seed: int, device: str,
        label: str,
    ) -> None:  # fmt: skip
        import torch

        self.model, self.x, self.y, self.t, self.lambda_align = model, x, y, t, lambda_align
        self.device, self.label, self.epochs, self.grad_accum = device, label, cfg.epochs, 1
        self.temperature = cfg.temperature
        self.gen = torch.Generator().manual_seed(seed)
        self.optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        self.sched = torch.optim.lr_scheduler.CosineAnnealingLR(self.optimizer, T_max=cfg.epochs)
        self.loss_fn = ALIGN_LOSSES.get(cfg.loss)
        self.bs = min(cfg.batch_size, len(x))

    def batches(self, epoch: int) -> Iterator[Any]:
        import torch

        self.model.train()
        n = len(self.x)
        perm = torch.randperm(n, generator=self.gen).to(self.device)
        for i in range(0, n - self.bs + 1, self.bs):
            yield perm[i : i + self.bs]

    def loss(self, idx: Any, epoch: int) -> dict[str, Any]:
        import torch

        model = self.model
        z = model.trunk(self.x[idx])
        parts: dict[str, Any] = {}
        loss = torch.zeros((), device=self.device)
        if self.y is not None and model.task is not None:
            parts["task"] = torch.mean((model.task(z) - self.y[idx]) ** 2)
            loss = loss + parts["task"]
        if self.t is not None and model.project is not None:
            parts["align"] = self.loss_fn(model.project(z), self.t[idx], temperature=self.temperature)
            loss = loss + self.lambda_align * parts["align"]
        parts["total"] = loss
        return parts

    def set_lr(self, step: int) -> None:
        """The learning rate follows the per-epoch cosine schedule (:meth:`end_epoch`)."""

    def end_epoch(self, epoch: int, means: dict[str, float], state: TrainState) -> dict[str, float]:
        self.sched.step()
        return {"epoch": epoch, "task": means.get("task", 0.0), "align": means.get("align", 0.0)}


def _checked(
    features: np.ndarray, task_targets: np.ndarray | None, text_embeddings: np.ndarray | None, lambda_align: float
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """``(x, y standardised, t)`` float32, or a :class:`DataError` naming what is wrong."""
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
    return x, y, t


def twin_spec(
    features: np.ndarray, task_targets: np.ndarray | None, text_embeddings: np.ndarray | None, cfg: TrainConfig,
    lambda_align: float, seed: int,
) -> TrainSpec:  # fmt: skip
    """The :class:`~llmvem.align.spec.TrainSpec` of a twin: its settings, λ, task, seed and data hashes (the text
    only when aligning)."""
    identity = {
        "inputs": hash_array(np.asarray(features, dtype=np.float32)),
        "targets": hash_array(np.asarray(task_targets, dtype=np.float32)) if task_targets is not None else None,
        "text": hash_array(np.asarray(text_embeddings, dtype=np.float32))
        if text_embeddings is not None and lambda_align > 0
        else None,
    }
    task = "voxels" if task_targets is not None else "none"
    return TrainSpec("twin", cfg, float(lambda_align), task, int(seed), identity)


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
    ckpt_dir: Path | None = None,
) -> TwinResult:
    """Train one twin on frozen features (or re-use the finished run in ``ckpt_dir``).

    Args:
        features: (n, d_in) backbone features of the training stimuli.
        task_targets: (n, v) voxel responses of the same stimuli (standardised internally), or ``None`` for no task.
        text_embeddings: (n, d_text) description embeddings, needed when ``lambda_align > 0``.
        cfg: architecture and schedule.
        lambda_align: weight of the alignment loss (0 for the baseline twin).
        seed: seeds initialisation, dropout and batch order.
        ckpt_dir: where the finished twin is cached (a study uses :meth:`TrainSpec.checkpoint_dir` of
            :func:`twin_spec`); ``None``: not cached.
    Returns:
        the trained :class:`TwinResult`.
    """
    import torch

    x, y, t = _checked(features, task_targets, text_embeddings, lambda_align)
    key = twin_spec(features, task_targets, text_embeddings, cfg, lambda_align, seed).key()
    ckpt = Checkpointer(Path(ckpt_dir), key) if ckpt_dir is not None else None
    x_mean = x.mean(0)
    x_std = np.where(x.std(0) > 0, x.std(0), 1.0).astype(np.float32)
    config = {"d_in": x.shape[1], "hidden_dim": cfg.hidden_dim, "embed_dim": cfg.embed_dim,
              "d_task": 0 if y is None else y.shape[1], "d_text": 0 if t is None else t.shape[1],
              "dropout": cfg.dropout}  # fmt: skip
    if ckpt is not None and ckpt.done():
        state = TrainState.from_json(ckpt.latest_state() or {})
        weights = {k: v.numpy() for k, v in ckpt.weights(ckpt.epoch_dir(state.epoch)).items()}
        return TwinResult(weights, x_mean, x_std, state.history, config)
    torch.manual_seed(seed)
    model = _build(config).to(device)
    tensor = {k: torch.from_numpy(v).to(device) if v is not None else None for k, v in (("x", (x - x_mean) / x_std),
              ("y", y), ("t", t))}  # fmt: skip
    plan = TwinPlan(model, cfg, tensor["x"], tensor["y"], tensor["t"], lambda_align, seed, device, label)
    state = fit(plan, TrainState(key), ckpt, progress=progress, save_every_epoch=False)
    if ckpt is not None:
        ckpt.finish(state.best_epoch)
    weights = {k: v.detach().cpu().numpy() for k, v in model.state_dict().items()}
    return TwinResult(weights, x_mean, x_std, state.history, config)
