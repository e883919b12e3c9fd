"""Image features from an experiment config (``llmvem features``): a pretrained backbone's, or those of a model
fine-tuned in a run directory (``features.model``: pooled features, a head's output, or visual-words PIF)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np

    from llmvem.config import ExperimentConfig


def features_from_config(cfg: ExperimentConfig, images: Path) -> tuple[np.ndarray, list[str]]:
    """Features (n, D) float32 of the images of ``images`` (a folder, or NSD's nsd_stimuli.hdf5 with
    ``features.subset``) and their ids, as the ``features`` section says.

    Raises:
        ConfigError: ``features.pif`` without ``features.model``.
        DataError: ids that cannot be written one per line (checked before any work), unreadable images.
    """
    from llmvem.data.files import check_writable_ids
    from llmvem.data.nsd_stimuli import stimuli_from_path
    from llmvem.errors import ConfigError

    f = cfg.features
    if f.pif and f.model is None:
        raise ConfigError("--pif needs --model RUN_DIR of a visual_words run (finetune.loss=visual_words)")
    stim = stimuli_from_path(images, f.subset, design=f.design)
    check_writable_ids(stim.ids, f"images of {images}")  # before the work: the .ids.txt must round-trip
    if f.model is not None and f.pif:
        from llmvem.visualwords.run import pif_from_run

        pif = pif_from_run(stim, f.model, f.weights, batch_size=f.batch_size, device=cfg.device, progress=cfg.progress)
        return pif, list(stim.ids)
    if f.model is not None:
        from llmvem.align.finetune import features_from_run

        values = features_from_run(stim, f.model, f.weights, f.batch_size, cfg.device, cfg.progress, f.layer,
                                   f.pooling, head=f.head)  # fmt: skip
        return values, list(stim.ids)
    from llmvem.store import ArtifactStore
    from llmvem.vision import extract_features

    fm = extract_features(stim, backbone=f.backbone, batch_size=f.batch_size, device=cfg.device,
                          store=ArtifactStore(cfg.cache_dir), progress=cfg.progress, layer=f.layer,
                          pooling=f.pooling)  # fmt: skip
    return fm.values, list(fm.ids)
