"""Fine-tune the top of a pretrained backbone with a task loss plus λ · an alignment loss (GPT4Image, LLM-VEM,
Doerig's image→LLM networks), with checkpoints that resume exactly.

Inputs are the cached activations of the frozen bottom (see :mod:`llmvem.vision.trainable`). Every epoch's batch
order comes from a generator seeded by ``(seed, epoch)`` and the global torch RNG state (dropout, drop-connect) is
checkpointed, so a run killed after epoch k and resumed reproduces the uninterrupted run.

When the whole network trains (``trainable_blocks: null``) the inputs are the preprocessed images and
``cfg.augment`` (``flip`` / ``crop_flip``) crops and flips each training sample on the fly; the sample keeps its own
text embedding and labels, and the crops come from a generator seeded by ``(seed, epoch)``, so resuming stays exact.
With a frozen bottom the cached activations cannot be augmented: asking for it is a configuration error.
``cfg.mixup_alpha`` / ``cfg.cutmix_alpha`` (whole network only, too) then mix each training image with its partner,
the global batch flipped (:mod:`llmvem.vision.mix`), and mix the targets with the same weight: task labels (soft
cross-entropy for a classifier), and the alignment target (soft InfoNCE targets, the mix of the two text embeddings
for cosine / BYOL, of the two word distributions for visual words). The mixing of every batch comes from a
generator seeded by ``(seed, epoch)`` too; validation is never augmented nor mixed.

Checkpoints: ``<ckpt_dir>/epoch-NNNN/`` (``model.safetensors``, ``optim.pt``, ``state.json``) published by an
atomic rename, then ``latest.json`` points at it; ``metrics.csv`` logs every epoch, and (``cfg.tensorboard``, when
the ``tensorboard`` package is installed) ``<ckpt_dir>/tb/`` holds the same metrics as TensorBoard scalars
(``train/total``, ``train/task``, ``train/align``, ``val/*``, ``lambda``, ``lr``; step = epoch).
"""

from __future__ import annotations

import contextlib
import copy
import json
import math
import os
import shutil
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from llmvem.align.distributed import dist_info, gather_with_grad
from llmvem.align.heads import PCAVoxelHead, projection_head, task_head, task_loss
from llmvem.align.losses import ALIGN_LOSSES
from llmvem.config import FinetuneConfig
from llmvem.errors import ConfigError, DataError, LlmvemError
from llmvem.hashing import artifact_key
from llmvem.store import atomic_write_text
from llmvem.vision.pixels import PixelArray


class TrainingDivergedError(LlmvemError):
    """The loss became NaN or infinite; the last good checkpoint is kept."""


@dataclass
class FinetuneData:
    """Training inputs, row-aligned.

    Attributes:
        activations: (n, C, h, w) float32 outputs of the frozen bottom; for whole-network training also a
            :class:`~llmvem.vision.pixels.PixelArray` (8-bit pixels normalised batch by batch).
        text: (n, t) description embeddings (for ``loss: visual_words``: (n, V) visual-word target distributions),
            or ``None`` (no alignment possible).
        targets: the task's targets, or ``None``: (n, L) multi-hot labels (``multilabel``); (n,) integer class
            indices 0 … K−1 (``classifier``); (n, v) voxel responses, best standardised on the training images
            (``voxels``, ``voxels_pca``).
        n_classes: ``classifier``: K, the number of classes (default: the largest target + 1).
    """

    activations: Any
    text: np.ndarray | None = None
    targets: np.ndarray | None = None
    n_classes: int | None = None

    def __post_init__(self) -> None:
        n = len(self.activations)
        for name in ("text", "targets"):
            v = getattr(self, name)
            if v is not None and len(v) != n:
                raise DataError(f"fine-tuning data: {len(v)} rows of {name} for {n} images")
        if not isinstance(self.activations, PixelArray) and not np.isfinite(self.activations).all():  # 8-bit: finite
            raise DataError("fine-tuning data: activations contain NaN or inf")
        if self.targets is not None and not np.isfinite(np.asarray(self.targets, dtype=np.float64)).all():
            raise DataError("fine-tuning data: targets contain NaN or inf (mask or drop those voxels / labels first)")

    def n_outputs(self, task: str) -> int | None:
        """Width of the task head: K classes (``classifier``), else the targets' columns (``None``: no targets)."""
        if self.targets is None:
            return None
        t = np.asarray(self.targets)
        if task == "classifier":
            if t.ndim != 1 or not np.array_equal(t, np.round(t)) or (t.size and t.min() < 0):
                raise DataError(f"task 'classifier' needs (n,) integer class indices ≥ 0, got shape {t.shape}")
            k = self.n_classes if self.n_classes is not None else int(t.max()) + 1 if t.size else 0
            if t.size and t.max() >= k:
                raise DataError(f"class index {int(t.max())} out of range for n_classes={k}")
            return k
        if t.ndim != 2:
            raise DataError(f"task {task!r} needs (n, outputs) targets, got shape {t.shape}")
        return int(t.shape[1])


@dataclass
class FinetuneResult:
    """A fine-tuned model: its weights, training history and the checkpoint directory."""

    state: dict[str, Any]
    history: list[dict[str, float]] = field(default_factory=list)
    best_epoch: int = -1
    ckpt_dir: Path | None = None


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


#: settings that only the alignment term uses: a twin (λ = 0) is the same run whatever their values
ALIGN_ONLY_KEYS = frozenset(
    {"projection", "loss", "temperature", "learn_temperature", "lambda_schedule", "vocabulary", "vocab_head_init",
     "bow_weighting"}
)  # fmt: skip
#: mixup / CutMix settings: keyed only when mixing is on
MIX_KEYS = frozenset({"mixup_alpha", "cutmix_alpha", "mix_prob"})


def unkeyed_settings(cfg: FinetuneConfig) -> set[str]:
    """Settings of ``cfg`` to leave out of artifact keys because they are off, so that runs cached before these
    settings existed keep their keys: :data:`MIX_KEYS` when mixup and CutMix are off, ``model_kwargs`` when empty;
    and ``sync_batchnorm`` always (it acts only under torchrun on GPUs, whose world size is not keyed either: a run
    may resume on another number of GPUs)."""
    out = {"sync_batchnorm"} | (set() if _mixing(cfg) else set(MIX_KEYS))
    if not cfg.model_kwargs:
        out.add("model_kwargs")
    return out


def _mixing(cfg: FinetuneConfig) -> bool:
    return cfg.mixup_alpha > 0 or cfg.cutmix_alpha > 0


def _projection(cfg: FinetuneConfig, in_dim: int, out_dim: int, prior: np.ndarray | None) -> Any:
    if cfg.loss != "visual_words":
        return projection_head(cfg.projection, in_dim, out_dim)
    from llmvem.visualwords import load_vocabulary, vocab_head

    vocab = load_vocabulary(cfg.vocabulary)
    vocab.check_size(out_dim, "the visual-word targets (text columns)")
    emb = vocab.embeddings if cfg.vocab_head_init == "embeddings" else None
    return vocab_head(in_dim, out_dim, cfg.vocab_head_init, embeddings=emb, prior=prior)


def _lambda_at(cfg: FinetuneConfig, lambda_align: float, epoch: int) -> float:
    if cfg.lambda_schedule == "linear_warmup" and cfg.warmup_epochs > 0:
        return lambda_align * min(1.0, (epoch + 1) / cfg.warmup_epochs)
    return lambda_align


def _lr_factor(cfg: FinetuneConfig, step: int, steps_per_epoch: int) -> float:
    warm = cfg.warmup_epochs * steps_per_epoch
    total = max(cfg.epochs * steps_per_epoch, 1)
    if step < warm:
        return (step + 1) / warm
    return 0.5 * (1 + math.cos(math.pi * (step - warm) / max(total - warm, 1)))


def _save_checkpoint(ckpt_dir: Path, epoch: int, model: Any, opt: Any, state: dict[str, Any]) -> Path:
    import torch
    from safetensors.torch import save_file

    ckpt_dir.mkdir(parents=True, exist_ok=True)
    final = ckpt_dir / f"epoch-{epoch:04d}"
    tmp = ckpt_dir / f".tmp-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    save_file({k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}, str(tmp / "model.safetensors"))
    torch.save({"optimizer": opt.state_dict(), "torch_rng": torch.get_rng_state()}, tmp / "optim.pt")
    (tmp / "state.json").write_text(json.dumps(state, indent=1))
    for p in tmp.iterdir():
        with open(p, "rb") as fh:
            os.fsync(fh.fileno())
    if final.exists():
        shutil.rmtree(final)
    os.rename(tmp, final)
    atomic_write_text(ckpt_dir / "latest.json", json.dumps({"epoch": epoch, "path": final.name}))
    return final


def _load_state_dict(path: Path) -> dict[str, Any]:
    from safetensors.torch import load_file

    return load_file(str(path / "model.safetensors"))


def finetune(
    split: Any,
    data: FinetuneData,
    train_idx: np.ndarray,
    val_idx: np.ndarray,
    cfg: FinetuneConfig,
    lambda_align: float,
    task: str,
    seed: int,
    ckpt_dir: Path,
    device: str = "cpu",
    progress: bool = False,
    label: str = "model",
    on_epoch_end: Callable[[int], None] | None = None,
) -> FinetuneResult:
    """Train (or resume training) one model; see the module docstring.

    Args:
        split: a :class:`llmvem.vision.trainable.SplitNet` (its ``top`` is trained in place).
        data: activations, text embeddings, task targets.
        train_idx, val_idx: row indices of the training and validation images.
        cfg: optimiser, schedule, heads, loss.
        lambda_align: alignment weight (0: the twin).
        task: ``"multilabel"`` (BCE on ``data.targets``), ``"classifier"`` (cross-entropy on integer classes, with
            ``cfg.label_smoothing``), ``"voxels"`` (MSE to voxel responses), ``"voxels_pca"`` (MSE through
            ``cfg.pca_components`` PCA components fit on the training rows' voxels only) or ``"none"``.
        seed: seeds initialisation of the heads, batch order, dropout.
        ckpt_dir: checkpoint folder; an existing compatible checkpoint is resumed.
        on_epoch_end: called after each epoch's checkpoint (tests use it to interrupt a run).
    Returns:
        the trained weights (best validation epoch when early stopping is on, else the last) and the history.
    """
    import torch

    if lambda_align > 0 and data.text is None:
        raise DataError("the aligned model (lambda_align > 0) needs description embeddings for its images")
    if task != "none" and data.targets is None:
        raise DataError(f"task {task!r} needs targets for every image")
    if lambda_align == 0 and task == "none":
        raise DataError("nothing to train: no task and lambda_align = 0")
    if len(train_idx) < cfg.batch_size and len(train_idx) < 4:
        raise DataError(f"too few training images ({len(train_idx)})")
    augment = cfg.augment
    if augment != "none" and not getattr(split, "trains_whole_network", False):
        raise ConfigError(
            f"finetune.augment={augment!r} needs the whole network to train (trainable_blocks: null): with a frozen "
            "bottom the inputs are cached activations, which cannot be cropped or flipped"
        )
    if augment != "none" and data.activations.ndim != 4:
        raise DataError(f"augmentation needs images (n, 3, H, W), got activations of shape {data.activations.shape}")
    mixing = _mixing(cfg)
    if mixing and not getattr(split, "trains_whole_network", False):
        raise ConfigError(
            "finetune.mixup_alpha / cutmix_alpha need the whole network to train (trainable_blocks: null): with a "
            "frozen bottom the inputs are cached activations, which cannot be mixed"
        )
    if mixing and data.activations.ndim != 4:
        raise DataError(f"mixup / CutMix need images (n, 3, H, W), got activations of shape {data.activations.shape}")
    run_spec = {
        # λ and the task actually used are keyed below: a twin (λ = 0) is the same run whatever the aligned λ
        "cfg": cfg.model_dump(
            mode="json",
            # augmentation is keyed below only when it is on (older runs stay valid); logging changes no weight
            # the task and its PCA size are keyed below only where they matter (multilabel keys stay as they were)
            exclude={"seeds", "n_images", "lambda_align", "aligned_task", "augment", "augment_min_scale", "tensorboard"}
            | {"task", "pca_components"}
            | (ALIGN_ONLY_KEYS if lambda_align == 0 else set())
            | unkeyed_settings(cfg),  # mixing and model_kwargs: keyed only when used
        ),
        "lambda": lambda_align,
        "task": task,
        "seed": seed,
        "n": len(data.activations),
        "split": split.identity,
    }
    if augment != "none":
        run_spec["augment"] = {"mode": augment, "min_scale": cfg.augment_min_scale}
    n_outputs = data.n_outputs(task) if task != "none" else None
    pca = None
    if task == "classifier":
        run_spec["n_classes"] = n_outputs
    elif task == "voxels_pca":  # the PCA sees the training images' voxels only
        assert data.targets is not None
        pca = PCAVoxelHead(np.asarray(data.targets)[train_idx], cfg.pca_components)
        run_spec["pca_components"] = int(pca.components.shape[0])
    run_key = artifact_key(run_spec)

    torch.manual_seed(seed)
    model = build_model(
        split,
        cfg,
        data.text.shape[1] if (data.text is not None and lambda_align > 0) else None,
        n_outputs,
        task,
        text_prior=(
            np.asarray(data.text[train_idx], dtype=np.float64).mean(0)
            if data.text is not None and lambda_align > 0 and cfg.loss == "visual_words"
            else None
        ),
        pca=pca,
    ).to(device)
    rank, world = dist_info()
    train_model: Any = model
    if world > 1:  # torchrun: gradients averaged by DDP, negatives gathered across ranks
        from torch.nn.parallel import DistributedDataParallel

        if cfg.batch_size % world:
            raise DataError(f"batch_size {cfg.batch_size} must be divisible by the number of ranks ({world})")
        sync_batchnorm(model, device, cfg.sync_batchnorm)
        train_model = DistributedDataParallel(model)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = make_optimizer(params, cfg, device)
    loss_fn = ALIGN_LOSSES.get(cfg.loss)
    acts: Any = data.activations
    if isinstance(acts, PixelArray):  # 8-bit pixels: each batch travels as bytes, normalised on the device
        pixels = acts

        def load(ix: torch.Tensor) -> torch.Tensor:
            return pixels.rows(ix, device)
    else:
        acts = torch.from_numpy(np.ascontiguousarray(acts, dtype=np.float32))

        def load(ix: torch.Tensor) -> torch.Tensor:
            return acts[ix].to(device)

    text = torch.from_numpy(np.asarray(data.text, dtype=np.float32)) if data.text is not None else None
    targets = None
    if data.targets is not None:  # class indices stay integers (cross-entropy); labels and voxels are float
        targets = torch.from_numpy(np.asarray(data.targets, dtype=np.int64 if task == "classifier" else np.float32))
    bs = min(cfg.batch_size, len(train_idx))
    steps_per_epoch = max(len(train_idx) // bs // cfg.grad_accum, 1)
    amp = cfg.amp and str(device).startswith("cuda")

    history: list[dict[str, float]] = []
    start_epoch, step, best = 0, 0, (math.inf, -1)
    latest = ckpt_dir / "latest.json"
    if latest.is_file():
        pointer = json.loads(latest.read_text())
        state = json.loads((ckpt_dir / pointer["path"] / "state.json").read_text())
        if state.get("run_key") == run_key:
            model.load_state_dict(_load_state_dict(ckpt_dir / pointer["path"]))
            saved = torch.load(ckpt_dir / pointer["path"] / "optim.pt", weights_only=False)
            opt.load_state_dict(saved["optimizer"])
            torch.set_rng_state(saved["torch_rng"])
            history, step = state["history"], state["step"]
            start_epoch, best = state["epoch"] + 1, (state["best_loss"], state["best_epoch"])
            done = ckpt_dir / "done.json"
            if done.is_file() and json.loads(done.read_text()).get("run_key") == run_key:
                start_epoch = cfg.epochs  # finished (possibly stopped early): nothing left to train
        elif rank == 0:  # a different configuration: start afresh, never mix
            shutil.rmtree(ckpt_dir)

    def run_batch(
        idx: torch.Tensor, lam: float, train: bool, aug: np.ndarray | None = None, mix: MixParams | None = None
    ) -> dict[str, torch.Tensor]:
        # In training under torchrun each rank takes every world-th sample of the global batch; the alignment loss
        # is computed on the projections gathered from all ranks (in rank order, hence `gathered` below).
        distributed = train and world > 1
        local = idx[rank::world] if distributed else idx
        gathered = torch.cat([idx[r::world] for r in range(world)]) if distributed else idx
        a = load(local)
        if aug is not None:  # crop/flip each sample in place in the batch: its text and labels stay its own
            a = apply_augment(a, aug[rank::world] if distributed else aug)
        mixed = mix is not None and mix.active
        if mixed:  # partners pair up the *global* batch (flipped): a partner's pixels may belong to another rank
            assert mix is not None
            mate = partner_positions(len(idx))
            pos = np.arange(len(idx))[rank::world] if distributed else np.arange(len(idx))
            local_mates = idx[torch.from_numpy(mate[pos])]
            b = load(local_mates)
            if aug is not None:  # the partner as augmented for itself
                b = apply_augment(b, aug[mate[pos]])
            a = apply_mix(a, b, mix)
            # the partner of each gathered row, as a row of the gathered batch
            g_pos = np.concatenate([np.arange(len(idx))[r::world] for r in range(world)]) if distributed else pos
            row_of = np.argsort(g_pos)
            align_mates = torch.from_numpy(row_of[mate[g_pos]]).to(device)
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=amp):
            out = (train_model if train else model)(a)
        parts: dict[str, torch.Tensor] = {}
        if "task" in out and targets is not None:
            parts["task"] = task_loss(
                task,
                out["task"].float(),
                targets[local].to(device),
                cfg.label_smoothing,
                partner_target=targets[local_mates].to(device) if mixed else None,
                lam=mix.lam if mix is not None and mixed else 1.0,
            )
        if "projection" in out and text is not None:
            temp = model.log_temp.exp()
            proj = gather_with_grad(out["projection"].float()) if distributed else out["projection"].float()
            mix_kw = {"partner": align_mates, "lam": mix.lam} if mix is not None and mixed else {}
            parts["align"] = loss_fn(proj, text[gathered].to(device), temperature=temp, **mix_kw)
        total = sum((parts[k] * (lam if k == "align" else 1.0) for k in parts), torch.zeros((), device=device))
        parts["total"] = total
        return parts

    from llmvem.progress import progress_bar
    from llmvem.vision.augment import apply_augment, sample_augment_params
    from llmvem.vision.mix import MixParams, apply_mix, partner_positions, sample_mix_params

    patience_left = cfg.early_stopping_patience
    log_tb = cfg.tensorboard and rank == 0 and start_epoch < cfg.epochs
    with (
        progress_bar(f"train {label}", total=cfg.epochs, enabled=progress) as advance,
        _tensorboard_writer(ckpt_dir / "tb", log_tb, history) as tb,
    ):
        advance(start_epoch)
        for epoch in range(start_epoch, cfg.epochs):
            lam = _lambda_at(cfg, lambda_align, epoch)
            model.train()
            model.top.train()
            gen = torch.Generator().manual_seed(seed * 100_003 + epoch)
            order = torch.from_numpy(np.asarray(train_idx))[torch.randperm(len(train_idx), generator=gen)]
            aug_rng = np.random.default_rng([seed, epoch, 0xA06]) if augment != "none" else None
            mix_rng = np.random.default_rng([seed, epoch, 0x313]) if mixing else None
            sums: dict[str, float] = {}
            n_batches = 0
            opt.zero_grad(set_to_none=True)
            for b in range(steps_per_epoch * cfg.grad_accum):
                idx = order[b * bs : (b + 1) * bs]
                aug = None
                if aug_rng is not None:  # parameters for the global batch, so every rank count crops alike
                    h, w = acts.shape[-2:]
                    aug = sample_augment_params(aug_rng, len(idx), h, w, augment, cfg.augment_min_scale)
                mix = None
                if mix_rng is not None:  # one draw per global batch: every rank mixes alike
                    h, w = acts.shape[-2:]
                    mix = sample_mix_params(mix_rng, h, w, cfg.mixup_alpha, cfg.cutmix_alpha, cfg.mix_prob)
                parts = run_batch(idx, lam, True, aug, mix)
                if not torch.isfinite(parts["total"]):
                    raise TrainingDivergedError(
                        f"{label}: loss became {float(parts['total'].detach())} at epoch {epoch}, batch {b}; "
                        f"the last good checkpoint is kept in {ckpt_dir} (lower the learning rate or λ)"
                    )
                (parts["total"] / cfg.grad_accum).backward()
                if (b + 1) % cfg.grad_accum == 0:
                    for g in opt.param_groups:
                        g["lr"] = cfg.lr * _lr_factor(cfg, step, steps_per_epoch)
                    opt.step()
                    opt.zero_grad(set_to_none=True)
                    step += 1
                for k, v in parts.items():
                    sums[f"train_{k}"] = sums.get(f"train_{k}", 0.0) + float(v.detach())
                n_batches += 1
            row: dict[str, float] = {"epoch": epoch, "lambda": lam, "lr": opt.param_groups[0]["lr"]}
            row.update({k: v / n_batches for k, v in sums.items()})
            row.update(_evaluate(model, run_batch, val_idx, bs, lam, task, load, targets))
            history.append(row)
            val_loss = row.get("val_total", row.get("train_total", math.inf))
            improved = val_loss < best[0]
            if improved:
                best = (val_loss, epoch)
            state = {
                "run_key": run_key,
                "epoch": epoch,
                "step": step,
                "history": history,
                "best_loss": best[0],
                "best_epoch": best[1],
            }
            if tb is not None:  # before the checkpoint: a resumed run rewrites the events from its history
                _log_scalars(tb, row)
            if rank == 0:  # one writer; the other ranks wait for the checkpoint
                path = _save_checkpoint(ckpt_dir, epoch, model, opt, state)
                _prune_checkpoints(ckpt_dir, keep={path.name, f"epoch-{best[1]:04d}"})
                _write_metrics_csv(ckpt_dir / "metrics.csv", history)
            _barrier(world)
            advance(1)
            if on_epoch_end is not None:
                on_epoch_end(epoch)
            if cfg.early_stopping_patience:
                patience_left = cfg.early_stopping_patience if improved else patience_left - 1
                if patience_left <= 0:
                    break
    if world > 1:  # BatchNorm running statistics drift per rank after DDP's last broadcast: take rank 0's
        import torch.distributed as dist

        for buf in model.buffers():
            dist.broadcast(buf, 0)
    if rank == 0:
        atomic_write_text(ckpt_dir / "done.json", json.dumps({"run_key": run_key, "best_epoch": best[1]}))
    _barrier(world)
    final_state = model.state_dict()
    if cfg.early_stopping_patience and best[1] >= 0 and (ckpt_dir / f"epoch-{best[1]:04d}").is_dir():
        final_state = _load_state_dict(ckpt_dir / f"epoch-{best[1]:04d}")
        model.load_state_dict(final_state)
    return FinetuneResult({k: v.detach().cpu() for k, v in final_state.items()}, history, best[1], ckpt_dir)


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


def _barrier(world: int) -> None:
    if world > 1:
        import torch.distributed as dist

        dist.barrier()


def _evaluate(
    model: Any,
    run_batch: Any,
    val_idx: np.ndarray,
    bs: int,
    lam: float,
    task: str,
    load: Any,
    targets: Any,
) -> dict[str, float]:
    import torch

    if len(val_idx) == 0:
        return {}
    model.eval()
    sums: dict[str, float] = {}
    logits = []
    n = 0
    with torch.inference_mode():
        for i in range(0, len(val_idx), bs):
            idx = torch.from_numpy(np.asarray(val_idx[i : i + bs]))
            if len(idx) < 2:
                continue
            parts = run_batch(idx, lam, False)
            for k, v in parts.items():
                sums[f"val_{k}"] = sums.get(f"val_{k}", 0.0) + float(v) * len(idx)
            n += len(idx)
            if task != "none":
                logits.append(model(load(idx))["task"].float().cpu())
    out = {k: v / max(n, 1) for k, v in sums.items()}
    if logits and targets is not None:
        pred = torch.cat(logits).numpy()
        true = targets[torch.from_numpy(np.asarray(val_idx[: len(pred)]))].numpy()
        if task == "multilabel":
            out["val_label_accuracy"] = float(((pred > 0) == (true > 0.5)).mean())
        elif task == "classifier":
            out["val_accuracy"] = float((pred.argmax(1) == true).mean())
        elif task in ("voxels", "voxels_pca") and len(pred) > 2:
            from llmvem.brain.metrics import pearson_r

            with np.errstate(divide="ignore", invalid="ignore"):
                out["val_mean_r"] = float(np.nanmean(np.asarray(pearson_r(true, pred), dtype=np.float64)))
    return out


def _prune_checkpoints(ckpt_dir: Path, keep: set[str]) -> None:
    for p in ckpt_dir.glob("epoch-*"):
        if p.name not in keep:
            shutil.rmtree(p, ignore_errors=True)


@contextlib.contextmanager
def _tensorboard_writer(log_dir: Path, enabled: bool, history: list[dict[str, float]]) -> Iterator[Any]:
    """A TensorBoard ``SummaryWriter`` on ``log_dir`` (or ``None``: disabled, or tensorboard not installed).

    A resumed run replaces the event files an interrupted run left with one new file that replays the checkpointed
    ``history`` first, so every epoch appears exactly once. (TensorBoard's ``purge_step`` is not enough: event files
    are read in file-name order, and two files written in the same second are ordered by a per-process counter
    compared as text, "….10" before "….9".)
    """
    writer: Any = None
    if enabled:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:  # tensorboard is optional at run time: metrics.csv is always written
            writer = None
        else:
            if log_dir.is_dir():
                for old in log_dir.glob("events.out.tfevents.*"):
                    old.unlink()
            writer = SummaryWriter(log_dir=str(log_dir))
            for row in history:
                _log_scalars(writer, row)
    try:
        yield writer
    finally:
        if writer is not None:
            writer.close()


def _log_scalars(writer: Any, row: dict[str, float]) -> None:
    """One epoch's metrics as scalars at step = epoch: ``train_total`` → ``train/total``, ``lambda``, ``lr`` ..."""
    epoch = int(row["epoch"])
    for key, value in row.items():
        if key != "epoch":
            tag = key.replace("_", "/", 1) if key.startswith(("train_", "val_")) else key
            writer.add_scalar(tag, float(value), global_step=epoch)
    writer.flush()


def _write_metrics_csv(path: Path, history: list[dict[str, float]]) -> None:
    cols = sorted({k for row in history for k in row}, key=lambda c: (c != "epoch", c))
    lines = [",".join(cols)] + [",".join(f"{row.get(c, '')}" for c in cols) for row in history]
    atomic_write_text(path, "\n".join(lines) + "\n")


def pooled_features(
    result: FinetuneResult | None, split: Any, activations: np.ndarray, batch_size: int = 128, device: str = "cpu"
) -> np.ndarray:
    """Pooled features (n, D) float32 of a fine-tuned top (or the pretrained one when ``result`` is ``None``) on
    cached ``activations``; ``split`` itself is left untouched."""
    import torch

    top = copy.deepcopy(split.top)
    if result is not None:
        top.load_state_dict({k[len("top.") :]: v for k, v in result.state.items() if k.startswith("top.")})
    top.eval().to(device)
    out = []
    with torch.inference_mode():
        for i in range(0, len(activations), batch_size):
            out.append(top(torch.from_numpy(np.ascontiguousarray(activations[i : i + batch_size])).to(device)).cpu())
    return torch.cat(out).numpy().astype(np.float32)


def head_outputs(state: dict[str, Any], head: str, features: np.ndarray, projection: str = "mlp_bn") -> np.ndarray:
    """A trained model's ``head`` applied to its pooled ``features`` (n, D); returns (n, K) float32.

    Args:
        state: the model's state dict (``FinetuneResult.state`` or a saved ``*.safetensors``).
        head: ``"project"`` (the projection into the text-embedding space, of kind ``projection``) or ``"task"``
            (a linear task head: category logits, voxel predictions).
    Raises:
        DataError: the model has no such head (a twin has no projection; an alignment-only model no task head).
    """
    import torch
    from torch import nn

    prefix = f"{head}."
    sub = {k[len(prefix) :]: torch.as_tensor(v) for k, v in state.items() if k.startswith(prefix)}
    if not sub:
        have = sorted({k.split(".")[0] for k in state})
        raise DataError(f"the model has no {head!r} head (its weights hold: {', '.join(have)})")
    d = features.shape[1]
    if "weight" in sub:  # a linear head
        module: Any = nn.Linear(d, sub["weight"].shape[0])
    else:  # the projection MLP: its last Linear gives the output size
        last = max(int(k.split(".")[0]) for k in sub if k.endswith("weight") and sub[k].ndim == 2)
        module = projection_head(projection, d, sub[f"{last}.weight"].shape[0])
    module.load_state_dict(sub)
    with torch.inference_mode():
        return module.eval()(torch.from_numpy(np.asarray(features, dtype=np.float32))).numpy().astype(np.float32)


def features_from_run(
    stimuli: Any,
    run_dir: str | Path,
    weights: str = "aligned-seed0",
    batch_size: int = 32,
    device: str = "cpu",
    progress: bool = False,
    layer: str | None = None,
    pooling: str | None = None,
    head: str | None = None,
) -> np.ndarray:
    """Pooled features (n, D) float32 of ``stimuli`` from a fine-tuned model saved in a run directory.

    Args:
        run_dir: a run directory of the ``nsd_objects92`` experiment (``config.yaml`` + ``models/*.safetensors``).
        weights: model file stem, e.g. ``"aligned-seed0"`` or ``"twin-seed1"``.
        layer: tap this named module of the fine-tuned network (names of the backbone, e.g. ``"_blocks.14"``,
            ``"layer4.0"``, ``"blocks.10"``) instead of its pooled output; ``pooling`` as in
            :func:`llmvem.vision.taps.tap_layer`.
        head: instead of the pooled features, a head's output (n, K): ``"project"`` (the aligned model's projection
            into the text-embedding space; a visual-words model's vocabulary logits) or ``"task"`` (task logits or
            voxel predictions), see :func:`head_outputs`.
    """
    import torch
    import yaml
    from safetensors.torch import load_file

    from llmvem.config import ExperimentConfig
    from llmvem.progress import progress_bar
    from llmvem.vision.taps import tap_layer
    from llmvem.vision.trainable import split_from_config

    if head is not None and layer is not None:
        raise ConfigError("choose a layer tap or a head's output, not both")
    run_dir = Path(run_dir)
    path = run_dir / "models" / f"{weights}.safetensors"
    if not path.is_file():
        have = sorted(p.stem for p in (run_dir / "models").glob("*.safetensors"))
        raise DataError(f"no model {weights!r} in {run_dir}; available: {have or 'none (is this a training run?)'}")
    cfg = ExperimentConfig.model_validate(yaml.safe_load((run_dir / "config.yaml").read_text()))
    split = split_from_config(cfg.finetune, device=device)
    state = load_file(str(path))
    if head is not None and not any(k.startswith(f"{head}.") for k in state):
        head_outputs(state, head, np.zeros((1, 1), np.float32))  # raises, naming the heads this model has
    split.top.load_state_dict({k[len("top.") :]: v for k, v in state.items() if k.startswith("top.")})
    split.top.eval()
    bb = split.backbone  # shares its modules with bottom and top: it now holds the fine-tuned weights
    tapped = tap_layer(bb, layer, pooling=pooling) if layer is not None else None
    out = []
    with progress_bar(f"features ({weights})", total=len(stimuli), enabled=progress) as advance, torch.inference_mode():
        for i in range(0, len(stimuli), batch_size):
            batch = torch.stack([bb.preprocess(stimuli.load(k)) for k in range(i, min(i + batch_size, len(stimuli)))])
            if tapped is not None:
                out.append(tapped.features(batch).cpu().numpy())
            else:
                out.append(split.top(split.bottom(batch.to(device))).cpu().numpy())
            advance(len(batch))
    feats = np.concatenate(out).astype(np.float32)
    return head_outputs(state, head, feats, cfg.finetune.projection) if head is not None else feats
