"""The fine-tune as a :class:`~llmvem.align.trainer.TrainingPlan`: batches, augmentation, mixing, the loss of a
batch (task + λ · alignment, under DDP on the gathered projections), the schedules and the validation.

Every epoch's batch order comes from a generator seeded by ``(seed, epoch)``, the crops and flips from
``default_rng([seed, epoch, 0xA06])`` and the mixing from ``default_rng([seed, epoch, 0x313])``, each drawn for the
global batch (every rank draws alike): a resumed run reproduces the uninterrupted one.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from llmvem.align.distributed import gather_with_grad
from llmvem.align.heads import task_loss
from llmvem.align.losses import ALIGN_LOSSES
from llmvem.align.trainer import TrainState
from llmvem.config import FinetuneConfig


def lambda_at(cfg: FinetuneConfig, lambda_align: float, epoch: int) -> float:
    """The alignment weight of ``epoch``: ``lambda_align``, ramped up over the warm-up with ``linear_warmup``."""
    if cfg.lambda_schedule == "linear_warmup" and cfg.warmup_epochs > 0:
        return lambda_align * min(1.0, (epoch + 1) / cfg.warmup_epochs)
    return lambda_align


def lr_factor(cfg: FinetuneConfig, step: int, steps_per_epoch: int) -> float:
    """The learning-rate factor of optimizer step ``step``: linear warm-up, then a cosine decay to 0."""
    warm = cfg.warmup_epochs * steps_per_epoch
    total = max(cfg.epochs * steps_per_epoch, 1)
    if step < warm:
        return (step + 1) / warm
    return 0.5 * (1 + math.cos(math.pi * (step - warm) / max(total - warm, 1)))


@dataclass
class FinetuneBatch:
    """One global batch: row indices (B,), crop/flip parameters (or ``None``), mixing parameters (or ``None``)."""

    idx: Any
    aug: np.ndarray | None = None
    mix: Any = None


class FinetunePlan:
    """What a fine-tune trains (see the module docstring); ``load(ix)`` gives the inputs of rows ``ix`` on the
    device, ``text`` (n, t) and ``targets`` the alignment and task targets (tensors, or ``None``)."""

    def __init__(
        self, model: Any, train_model: Any, optimizer: Any, cfg: FinetuneConfig, load: Any, shape: tuple[int, ...],
        text: Any, targets: Any, train_idx: np.ndarray, val_idx: np.ndarray, lambda_align: float, task: str,
        seed: int, rank: int = 0, world: int = 1, device: str = "cpu", label: str = "model",
    ) -> None:  # fmt: skip
        self.model, self.train_model, self.optimizer, self.cfg = model, train_model, optimizer, cfg
        self.load, self.hw, self.text, self.targets = load, tuple(shape[-2:]), text, targets
        self.train_idx, self.val_idx = np.asarray(train_idx), np.asarray(val_idx)
        self.lambda_align, self.task, self.seed = lambda_align, task, seed
        self.rank, self.world, self.device, self.label = rank, world, device, label
        self.epochs, self.grad_accum = cfg.epochs, cfg.grad_accum
        self.bs = min(cfg.batch_size, len(self.train_idx))
        self.steps_per_epoch = max(len(self.train_idx) // self.bs // cfg.grad_accum, 1)
        self.amp = cfg.amp and str(device).startswith("cuda")
        self.loss_fn = ALIGN_LOSSES.get(cfg.loss)

    def batches(self, epoch: int) -> Iterator[FinetuneBatch]:
        """The seeded training batches of ``epoch`` (the model set to training mode first)."""
        import torch

        from llmvem.vision.augment import sample_augment_params
        from llmvem.vision.mix import sample_mix_params

        cfg = self.cfg
        self.model.train()
        self.model.top.train()
        gen = torch.Generator().manual_seed(self.seed * 100_003 + epoch)
        order = torch.from_numpy(self.train_idx)[torch.randperm(len(self.train_idx), generator=gen)]
        aug_rng = np.random.default_rng([self.seed, epoch, 0xA06]) if cfg.augment != "none" else None
        mixing = cfg.mixup_alpha > 0 or cfg.cutmix_alpha > 0
        mix_rng = np.random.default_rng([self.seed, epoch, 0x313]) if mixing else None
        h, w = self.hw
        for b in range(self.steps_per_epoch * cfg.grad_accum):
            idx = order[b * self.bs : (b + 1) * self.bs]
            batch = FinetuneBatch(idx)
            if aug_rng is not None:  # parameters for the global batch, so every rank count crops alike
                batch.aug = sample_augment_params(aug_rng, len(idx), h, w, cfg.augment, cfg.augment_min_scale)
            if mix_rng is not None:  # one draw per global batch: every rank mixes alike
                batch.mix = sample_mix_params(mix_rng, h, w, cfg.mixup_alpha, cfg.cutmix_alpha, cfg.mix_prob)
            yield batch

    def loss(self, batch: FinetuneBatch, epoch: int) -> dict[str, Any]:
        """Loss parts of a training batch at ``epoch``'s λ."""
        return self.batch_loss(batch, lambda_at(self.cfg, self.lambda_align, epoch), train=True)

    def set_lr(self, step: int) -> None:
        for g in self.optimizer.param_groups:
            g["lr"] = self.cfg.lr * lr_factor(self.cfg, step, self.steps_per_epoch)

    def end_epoch(self, epoch: int, means: dict[str, float], state: TrainState) -> dict[str, float]:
        """The epoch's row: λ, learning rate, mean training losses (``train_*``) and the validation (``val_*``)."""
        lam = lambda_at(self.cfg, self.lambda_align, epoch)
        row: dict[str, float] = {"epoch": epoch, "lambda": lam, "lr": self.optimizer.param_groups[0]["lr"]}
        row.update({f"train_{k}": v for k, v in means.items()})
        row.update(self.evaluate(lam))
        return row

    def _inputs(self, batch: FinetuneBatch, train: bool) -> tuple[Any, Any, Any, Any]:
        """``(inputs, local rows, gathered rows, partners)`` of a batch: under torchrun in training each rank takes
        every world-th sample of the global batch (``gathered``: the rows in rank order); ``partners`` (mixing
        only, else ``None``): ``(local partner rows, partner of each gathered row as a row of the gathered batch)``."""
        import torch

        from llmvem.vision.augment import apply_augment
        from llmvem.vision.mix import apply_mix, partner_positions

        idx, aug, mix, rank, world = batch.idx, batch.aug, batch.mix, self.rank, self.world
        distributed = train and world > 1
        local = idx[rank::world] if distributed else idx
        gathered = torch.cat([idx[r::world] for r in range(world)]) if distributed else idx
        a = self.load(local)
        if aug is not None:  # crop/flip each sample in place in the batch: its text and labels stay its own
            a = apply_augment(a, aug[rank::world] if distributed else aug)
        if mix is None or not mix.active:
            return a, local, gathered, None
        # partners pair up the *global* batch (flipped): a partner's pixels may belong to another rank
        mate = partner_positions(len(idx))
        pos = np.arange(len(idx))[rank::world] if distributed else np.arange(len(idx))
        local_mates = idx[torch.from_numpy(mate[pos])]
        b = self.load(local_mates)
        if aug is not None:  # the partner as augmented for itself
            b = apply_augment(b, aug[mate[pos]])
        g_pos = np.concatenate([np.arange(len(idx))[r::world] for r in range(world)]) if distributed else pos
        row_of = np.argsort(g_pos)
        align_mates = torch.from_numpy(row_of[mate[g_pos]]).to(self.device)
        return apply_mix(a, b, mix), local, gathered, (local_mates, align_mates)

    def batch_loss(self, batch: FinetuneBatch, lam: float, train: bool) -> dict[str, Any]:
        """``{"task", "align", "total"}`` of a batch (the parts the model has); ``total = task + lam · align``."""
        import torch

        a, local, gathered, mates = self._inputs(batch, train)
        mix_lam = batch.mix.lam if mates is not None else 1.0
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=self.amp):
            out = (self.train_model if train else self.model)(a)
        parts: dict[str, Any] = {}
        if "task" in out and self.targets is not None:
            partner = self.targets[mates[0]].to(self.device) if mates is not None else None
            parts["task"] = task_loss(self.task, out["task"].float(), self.targets[local].to(self.device),
                                      self.cfg.label_smoothing, partner_target=partner, lam=mix_lam)  # fmt: skip
        if "projection" in out and self.text is not None:
            temp = self.model.log_temp.exp()
            proj = out["projection"].float()
            proj = gather_with_grad(proj) if train and self.world > 1 else proj
            mix_kw = {"partner": mates[1], "lam": mix_lam} if mates is not None else {}
            parts["align"] = self.loss_fn(proj, self.text[gathered].to(self.device), temperature=temp, **mix_kw)
        zero = torch.zeros((), device=self.device)
        parts["total"] = sum((parts[k] * (lam if k == "align" else 1.0) for k in parts), zero)
        return parts

    def evaluate(self, lam: float) -> dict[str, float]:
        """Validation losses (``val_*``, sample-weighted over batches of ≥ 2 images, never augmented nor mixed)
        and the task's score: ``val_label_accuracy``, ``val_accuracy`` or ``val_mean_r``."""
        import torch

        if len(self.val_idx) == 0:
            return {}
        self.model.eval()
        sums: dict[str, float] = {}
        logits, n = [], 0
        with torch.inference_mode():
            for i in range(0, len(self.val_idx), self.bs):
                idx = torch.from_numpy(self.val_idx[i : i + self.bs])
                if len(idx) < 2:
                    continue
                for k, v in self.batch_loss(FinetuneBatch(idx), lam, train=False).items():
                    sums[f"val_{k}"] = sums.get(f"val_{k}", 0.0) + float(v) * len(idx)
                n += len(idx)
                if self.task != "none":
                    logits.append(self.model(self.load(idx))["task"].float().cpu())
        out = {k: v / max(n, 1) for k, v in sums.items()}
        if logits and self.targets is not None:
            pred = torch.cat(logits).numpy()
            true = self.targets[torch.from_numpy(self.val_idx[: len(pred)])].numpy()
            out.update(val_task_score(self.task, pred, true))
        return out


def val_task_score(task: str, pred: np.ndarray, true: np.ndarray) -> dict[str, float]:
    """The validation score of a task head's outputs ``pred`` (n, K) against ``true``."""
    if task == "multilabel":
        return {"val_label_accuracy": float(((pred > 0) == (true > 0.5)).mean())}
    if task == "classifier":
        return {"val_accuracy": float((pred.argmax(1) == true).mean())}
    if task in ("voxels", "voxels_pca") and len(pred) > 2:
        from llmvem.brain.metrics import pearson_r

        with np.errstate(divide="ignore", invalid="ignore"):
            return {"val_mean_r": float(np.nanmean(np.asarray(pearson_r(true, pred), dtype=np.float64)))}
    return {}
