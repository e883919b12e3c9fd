"""What identifies a training run: :class:`TrainSpec`, whose :meth:`~TrainSpec.key` is the only code that decides.

A run is identified by the settings that change its weights (the trainer's config section, less the settings named
here), the alignment weight λ and the task actually trained, the seed, and the identity of its data (content hashes
of the inputs, targets and text, the training and validation rows, the network's identity). Logging
(``tensorboard``), progress bars, devices and the number of processes are never part of it: switching them resumes
or re-uses the same run. The fine-tune and the twin are keyed by the same function; their checkpoint directories
(:meth:`TrainSpec.checkpoint_dir`) are the one cache of trained networks.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from llmvem.hashing import artifact_key

#: settings that only the alignment term uses: a twin (λ = 0) is the same run whatever their values
ALIGN_ONLY_KEYS = frozenset(
    {"projection", "loss", "temperature", "learn_temperature", "lambda_schedule", "vocabulary", "vocab_head_init",
     "bow_weighting"}
)  # fmt: skip
#: mixup / CutMix settings: keyed only when mixing is on
MIX_KEYS = frozenset({"mixup_alpha", "cutmix_alpha", "mix_prob"})
#: settings that change no weight, or that the spec holds as used: logging; which seeds, λ and task a study runs
#: (the run's own are keyed); which images are used and how many are held out (the data identity holds them)
NOT_IDENTITY = frozenset(
    {"tensorboard", "seeds", "lambda_align", "aligned_task", "task", "n_images", "val_fraction"}
)  # fmt: skip
#: the code version of each trainer: bump it when a trainer's numbers change for the same spec
TRAINER_VERSIONS = {"finetune": 2, "twin": 2}


def mixing(cfg: Any) -> bool:
    """Whether mixup or CutMix is on in ``cfg``."""
    return float(getattr(cfg, "mixup_alpha", 0.0)) > 0 or float(getattr(cfg, "cutmix_alpha", 0.0)) > 0


def unkeyed_settings(cfg: Any) -> set[str]:
    """Settings of ``cfg`` left out of the key because they are off: :data:`MIX_KEYS` when mixup and CutMix are off,
    ``model_kwargs`` when empty (the network's identity holds them when given), ``augment_min_scale`` without
    ``crop_flip``; and ``sync_batchnorm`` always (it acts only under torchrun on GPUs, whose world size is not keyed
    either: a run may resume on another number of GPUs)."""
    out = {"sync_batchnorm"} | (set() if mixing(cfg) else set(MIX_KEYS))
    if not getattr(cfg, "model_kwargs", None):
        out.add("model_kwargs")
    if getattr(cfg, "augment", "none") != "crop_flip":
        out.add("augment_min_scale")
    return out


@dataclass(frozen=True)
class TrainSpec:
    """Everything that determines a trained network's weights.

    Attributes:
        trainer: ``"finetune"`` (a backbone's top and its heads) or ``"twin"`` (an MLP on frozen features).
        cfg: the trainer's config section (:class:`~llmvem.config.FinetuneConfig`, or
            :class:`~llmvem.config.TrainConfig` for a twin).
        lambda_align: the alignment weight used (0: the twin of an aligned run).
        task: the task head trained (``"none"``, ``"multilabel"``, ``"classifier"``, ``"voxels"``, ``"voxels_pca"``).
        seed: seeds initialisation, batch order, augmentation, mixing, dropout.
        data: identity of the data: content hashes (``None`` for a part the run does not use) and the network's.

    Example:
        >>> from llmvem.config import FinetuneConfig
        >>> spec = TrainSpec("finetune", FinetuneConfig(), 1.0, "multilabel", 0, {"inputs": "sha256 of the inputs"})
        >>> quiet = TrainSpec("finetune", FinetuneConfig(tensorboard=False), 1.0, "multilabel", 0, spec.data)
        >>> quiet.key() == spec.key()  # logging changes no weight
        True
        >>> TrainSpec("finetune", FinetuneConfig(lr=1e-3), 1.0, "multilabel", 0, spec.data).key() == spec.key()
        False
    """

    trainer: str
    cfg: Any
    lambda_align: float
    task: str
    seed: int
    data: Mapping[str, Any] = field(default_factory=dict)

    def settings(self) -> dict[str, Any]:
        """The config settings that are part of the key (JSON values), see the module docstring."""
        out = set(NOT_IDENTITY) | unkeyed_settings(self.cfg)
        if self.lambda_align == 0:
            out |= ALIGN_ONLY_KEYS
        if self.task != "voxels_pca":
            out.add("pca_components")
        names = set(type(self.cfg).model_fields) - out
        return dict(self.cfg.model_dump(mode="json", include=names))

    def key(self) -> str:
        """The run's key: SHA-256 of the keyed settings, λ, task, seed, data identity and trainer version."""
        return artifact_key(
            {
                "trainer": self.trainer,
                "version": TRAINER_VERSIONS[self.trainer],
                "cfg": self.settings(),
                "lambda": float(self.lambda_align),
                "task": self.task,
                "seed": int(self.seed),
                "data": dict(self.data),
            }
        )

    def checkpoint_dir(self, root: str | Path) -> Path:
        """The run's checkpoint directory under a store root: ``<root>/runs/<key[:32]>``."""
        return Path(root) / "runs" / self.key()[:32]
