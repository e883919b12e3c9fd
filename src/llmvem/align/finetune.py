"""Fine-tune the top of a pretrained backbone with a task loss plus λ · an alignment loss (GPT4Image, LLM-VEM,
Doerig's image→LLM networks), with checkpoints that resume exactly: :func:`finetune`.

Inputs are the cached activations of the frozen bottom (see :mod:`llmvem.vision.trainable`). When the whole network
trains (``trainable_blocks: null``) the inputs are the preprocessed images, and ``cfg.augment`` (``flip`` /
``crop_flip``) and ``cfg.mixup_alpha`` / ``cfg.cutmix_alpha`` augment and mix the training images (targets mixed
with the same weight; validation never augmented nor mixed); with a frozen bottom asking for them is a
configuration error. :func:`finetune` wires the parts:

- :class:`~llmvem.align.spec.TrainSpec` — what identifies the run (its key names the checkpoints);
- :mod:`llmvem.align.model` — the model (top + projection head + task head) and its optimizer;
- :class:`~llmvem.align.finetune_plan.FinetunePlan` — batches, augmentation, mixing, the loss of a batch, schedules,
  validation;
- :func:`~llmvem.align.trainer.fit` — the loop, with a :class:`~llmvem.align.checkpoint.Checkpointer`
  (``<ckpt_dir>/epoch-NNNN/``, ``latest.json``, ``done.json``), a :class:`~llmvem.align.metrics_log.MetricsLog`
  (``metrics.csv``; TensorBoard scalars in ``<ckpt_dir>/tb/`` with ``cfg.tensorboard``), early stopping and the
  NaN stop;
- :class:`~llmvem.align.network.TrainedNetwork` — features and heads of the trained network
  (:func:`pooled_features`, :func:`head_outputs` and :func:`features_from_run` are thin wrappers over it).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from llmvem.align.checkpoint import Checkpointer
from llmvem.align.distributed import dist_info
from llmvem.align.heads import PCAVoxelHead
from llmvem.align.metrics_log import MetricsLog
from llmvem.align.model import build_model, make_optimizer, sync_batchnorm
from llmvem.align.network import TrainedNetwork, apply_head, rebuild_head
from llmvem.align.spec import ALIGN_ONLY_KEYS, MIX_KEYS, TrainSpec, mixing, unkeyed_settings
from llmvem.align.trainer import EarlyStopping, TrainingDivergedError, TrainState, fit
from llmvem.config import FinetuneConfig
from llmvem.errors import ConfigError, DataError
from llmvem.hashing import hash_array
from llmvem.vision.pixels import PixelArray

__all__ = [
    "ALIGN_ONLY_KEYS", "MIX_KEYS", "FinetuneData", "FinetuneResult", "TrainedNetwork", "TrainingDivergedError",
    "build_model", "features_from_run", "finetune", "finetune_spec", "head_outputs", "make_optimizer",
    "pooled_features", "sync_batchnorm", "unkeyed_settings",
]  # fmt: skip


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

    The arrays are part of a run's identity (:meth:`digest`, computed once per object): do not modify them in
    place after building a ``FinetuneData``; build a new one.
    """

    activations: Any
    text: np.ndarray | None = None
    targets: np.ndarray | None = None
    n_classes: int | None = None
    _digests: dict[str, str] = field(default_factory=dict, init=False, repr=False, compare=False)

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

    def digest(self, name: str) -> str | None:
        """Content hash of ``activations``, ``text`` or ``targets`` (``None`` when absent), computed once."""
        if name not in self._digests:
            value = getattr(self, name)
            if value is None:
                return None
            self._digests[name] = hash_array(value)
        return self._digests[name]


@dataclass
class FinetuneResult:
    """A fine-tuned model: its weights, training history and the checkpoint directory."""

    state: dict[str, Any]
    history: list[dict[str, float]] = field(default_factory=list)
    best_epoch: int = -1
    ckpt_dir: Path | None = None


def check_inputs(
    split: Any, data: FinetuneData, train_idx: np.ndarray, cfg: FinetuneConfig, lambda_align: float, task: str
) -> None:
    """Raise a :class:`DataError` / :class:`ConfigError` for a run that cannot train (before anything is built).

    Augmentation and mixing with a frozen bottom: :meth:`~llmvem.config.FinetuneConfig.needs_whole_network` (the
    rule the config validator checks too), asked of the split given here (callers of the Python API build one by
    hand).
    """
    if lambda_align > 0 and data.text is None:
        raise DataError("the aligned model (lambda_align > 0) needs description embeddings for its images")
    if task != "none" and data.targets is None:
        raise DataError(f"task {task!r} needs targets for every image")
    if lambda_align == 0 and task == "none":
        raise DataError("nothing to train: no task and lambda_align = 0")
    if len(train_idx) < cfg.batch_size and len(train_idx) < 4:
        raise DataError(f"too few training images ({len(train_idx)})")
    problem = cfg.needs_whole_network(getattr(split, "trains_whole_network", False))
    if problem is not None:
        raise ConfigError(problem)
    if (cfg.augment != "none" or mixing(cfg)) and data.activations.ndim != 4:
        raise DataError(f"augmentation and mixing need images (n, 3, H, W), got activations of shape "
                        f"{data.activations.shape}")  # fmt: skip


def finetune_spec(
    split: Any, data: FinetuneData, train_idx: np.ndarray, val_idx: np.ndarray, cfg: FinetuneConfig,
    lambda_align: float, task: str, seed: int,
) -> TrainSpec:  # fmt: skip
    """The :class:`~llmvem.align.spec.TrainSpec` of a fine-tune: its settings, λ, task, seed and the identity of its
    data (inputs, the text when aligning, the targets when a task trains, the rows, the network)."""
    aligned, has_task = lambda_align > 0, task != "none"
    identity = {
        "inputs": data.digest("activations"),
        "text": data.digest("text") if aligned else None,
        "targets": data.digest("targets") if has_task else None,
        "n_classes": data.n_outputs(task) if task == "classifier" else None,
        "train": hash_array(np.asarray(train_idx, dtype=np.int64)),
        "val": hash_array(np.asarray(val_idx, dtype=np.int64)),
        "net": split.identity,
    }
    return TrainSpec("finetune", cfg, float(lambda_align), task, int(seed), identity)


def _assemble(
    split: Any, data: FinetuneData, train_idx: np.ndarray, cfg: FinetuneConfig, lambda_align: float, task: str,
    seed: int, device: str,
) -> Any:  # fmt: skip
    """The model of a run, seeded (heads initialised from ``seed``), on ``device``."""
    import torch

    aligned = data.text is not None and lambda_align > 0
    pca = None
    if task == "voxels_pca":  # the PCA sees the training images' voxels only
        pca = PCAVoxelHead(np.asarray(data.targets)[train_idx], cfg.pca_components)
    prior = None
    if aligned and cfg.loss == "visual_words":  # the vocabulary head's bias starts at log(mean training target)
        prior = np.asarray(data.text, dtype=np.float64)[train_idx].mean(0)
    torch.manual_seed(seed)
    n_outputs = data.n_outputs(task) if task != "none" else None
    text_dim = data.text.shape[1] if aligned else None  # type: ignore[union-attr]
    return build_model(split, cfg, text_dim, n_outputs, task, text_prior=prior, pca=pca).to(device)


def _plan(
    model: Any, data: FinetuneData, train_idx: np.ndarray, val_idx: np.ndarray, cfg: FinetuneConfig,
    lambda_align: float, task: str, seed: int, device: str, label: str,
) -> Any:  # fmt: skip
    """The :class:`~llmvem.align.finetune_plan.FinetunePlan` of a run: DDP under torchrun, optimizer, tensors."""
    import torch

    from llmvem.align.finetune_plan import FinetunePlan

    rank, world = dist_info()
    train_model: Any = model
    if world > 1:  # torchrun: gradients averaged by DDP, negatives gathered across ranks
        from torch.nn.parallel import DistributedDataParallel

        if cfg.batch_size % world:
            raise DataError(f"batch_size {cfg.batch_size} must be divisible by the number of ranks ({world})")
        sync_batchnorm(model, device, cfg.sync_batchnorm)
        train_model = DistributedDataParallel(model)
    opt = make_optimizer([p for p in model.parameters() if p.requires_grad], cfg, device)
    acts: Any = data.activations
    if isinstance(acts, PixelArray):  # 8-bit pixels: each batch travels as bytes, normalised on the device
        pixels = acts

        def load(ix: torch.Tensor) -> torch.Tensor:
            return pixels.rows(ix, device)
    else:
        floats = torch.from_numpy(np.ascontiguousarray(acts, dtype=np.float32))

        def load(ix: torch.Tensor) -> torch.Tensor:
            return floats[ix].to(device)

    text = torch.from_numpy(np.asarray(data.text, dtype=np.float32)) if data.text is not None else None
    targets = None
    if data.targets is not None:  # class indices stay integers (cross-entropy); labels and voxels are float
        targets = torch.from_numpy(np.asarray(data.targets, dtype=np.int64 if task == "classifier" else np.float32))
    return FinetunePlan(model, train_model, opt, cfg, load, tuple(acts.shape), text, targets, train_idx, val_idx,
                        lambda_align, task, seed, rank, world, device, label)  # fmt: skip


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
    """Train (or resume training, or re-use) one model; see the module docstring.

    Args:
        split: a :class:`llmvem.vision.trainable.SplitNet` (its ``top`` is copied: the split stays pretrained).
        data: activations, text embeddings, task targets.
        train_idx, val_idx: row indices of the training and validation images.
        cfg: optimiser, schedule, heads, loss.
        lambda_align: alignment weight (0: the twin).
        task: ``"multilabel"`` (BCE on ``data.targets``), ``"classifier"`` (cross-entropy on integer classes, with
            ``cfg.label_smoothing``), ``"voxels"`` (MSE to voxel responses), ``"voxels_pca"`` (MSE through
            ``cfg.pca_components`` PCA components fit on the training rows' voxels only) or ``"none"``.
        seed: seeds initialisation of the heads, batch order, augmentation, mixing, dropout.
        ckpt_dir: checkpoint folder (a study uses :meth:`TrainSpec.checkpoint_dir` of :func:`finetune_spec`); a
            checkpoint of the same run is resumed, a finished one re-used, another run's cleared.
        on_epoch_end: called after each epoch's checkpoint (tests use it to interrupt a run).
    Returns:
        the trained weights (best validation epoch when early stopping is on, else the last) and the history.
    """
    check_inputs(split, data, train_idx, cfg, lambda_align, task)
    spec = finetune_spec(split, data, train_idx, val_idx, cfg, lambda_align, task, seed)
    model = _assemble(split, data, train_idx, cfg, lambda_align, task, seed, device)
    plan = _plan(model, data, train_idx, val_idx, cfg, lambda_align, task, seed, device, label)
    ckpt = Checkpointer(Path(ckpt_dir), spec.key(), plan.rank, plan.world)
    saved = ckpt.latest_state()
    state = TrainState(spec.key()) if saved is None else TrainState.from_json(saved)
    if saved is not None:
        ckpt.restore(saved, model, plan.optimizer)
    if not (saved is not None and ckpt.done()):
        log = MetricsLog(ckpt.directory, tensorboard=cfg.tensorboard and plan.rank == 0, csv=plan.rank == 0)
        fit(plan, state, ckpt, log, EarlyStopping(cfg.early_stopping_patience), progress, on_epoch_end)
        if plan.world > 1:  # BatchNorm running statistics drift per rank after DDP's last broadcast: take rank 0's
            import torch.distributed as dist

            for buf in model.buffers():
                dist.broadcast(buf, 0)
        ckpt.finish(state.best_epoch)
    final = model.state_dict()
    best = ckpt.epoch_dir(state.best_epoch)
    if cfg.early_stopping_patience and state.best_epoch >= 0 and best.is_dir():
        final = ckpt.weights(best)
        model.load_state_dict(final)
    return FinetuneResult({k: v.detach().cpu() for k, v in final.items()}, state.history, state.best_epoch, ckpt_dir)


def pooled_features(
    result: FinetuneResult | None, split: Any, activations: np.ndarray, batch_size: int = 128, device: str = "cpu"
) -> np.ndarray:
    """Pooled features (n, D) float32 of a fine-tuned top (or the pretrained one when ``result`` is ``None``) on
    cached ``activations``; ``split`` itself is left untouched (see :meth:`TrainedNetwork.features`)."""
    state = result.state if result is not None else None
    return TrainedNetwork(split, state, device).features(activations, batch_size)


def head_outputs(state: dict[str, Any], head: str, features: np.ndarray, projection: str | None = None) -> np.ndarray:
    """A trained model's ``head`` (``"project"`` or ``"task"``) applied to its pooled ``features`` (n, D); returns
    (n, K) float32. The head's kind is read off its weights (:func:`~llmvem.align.network.rebuild_head`), so
    ``projection`` (the config's kind) is accepted for callers and not needed.

    Raises:
        DataError: the model has no such head (a twin has no projection; an alignment-only model no task head).
    """
    return apply_head(rebuild_head(state, head).eval(), features)


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
    """Pooled features (n, D) float32 of ``stimuli`` from a fine-tuned model saved in a run directory
    (:meth:`TrainedNetwork.from_run`).

    Args:
        run_dir: a run directory of a fine-tuning study (``config.yaml`` + ``models/*.safetensors``).
        weights: model file stem, e.g. ``"aligned-seed0"`` or ``"twin-seed1"``.
        layer: tap this named module of the fine-tuned network (names of the backbone, e.g. ``"_blocks.14"``,
            ``"layer4.0"``, ``"blocks.10"``) instead of its pooled output; ``pooling`` as in
            :func:`llmvem.vision.taps.tap_layer`.
        head: instead of the pooled features, a head's output (n, K): ``"project"`` (the aligned model's projection
            into the text-embedding space; a visual-words model's vocabulary logits) or ``"task"`` (task logits or
            voxel predictions).
    """
    if head is not None and layer is not None:
        raise ConfigError("choose a layer tap or a head's output, not both")
    net = TrainedNetwork.from_run(run_dir, weights, device)
    if head is not None:
        net.head_module(head)  # raises before the images are read, naming the heads this model has
    feats = net.image_features(stimuli, batch_size, progress, layer, pooling, label=f"features ({weights})")
    return net.head(head, feats) if head is not None else feats
