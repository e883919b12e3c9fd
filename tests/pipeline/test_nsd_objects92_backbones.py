"""The NSD → objects92 experiment with a non-default fine-tuning backbone and pooling, from config keys alone."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from llmvem.config import load_config


def test_timm_backbone_with_max_pooling_runs_end_to_end(data_dir: Path, tmp_path: Path) -> None:
    from llmvem.align.finetune import features_from_run
    from llmvem.data.datasets import load_dataset
    from llmvem.pipeline import run_nsd_objects92
    from llmvem.runner.legacy import LegacyConfigWarning

    cfg = load_config(
        Path(__file__).resolve().parents[2] / "configs" / "nsd-objects92.yaml",
        overrides={"data_dir": str(data_dir), "cache_dir": str(tmp_path / "cache"), "output_dir": str(tmp_path / "r"),
                   "progress": False, "finetune.backbone": "timm:resnet18", "finetune.pooling": "max",
                   "finetune.n_images": 40, "finetune.seeds": "[0]", "finetune.epochs": 1,
                   "finetune.trainable_blocks": 1, "finetune.batch_size": 16},
    )  # fmt: skip
    with pytest.warns(LegacyConfigWarning, match="timm:resnet18"):  # the study YAML to use instead
        run = run_nsd_objects92(cfg)
    metrics = json.loads((run.path / "metrics.json").read_text())
    assert set(metrics["results"]["rsa"]) >= {"aligned", "twin", "pretrained", "descriptions"}
    assert (run.path / "training.png").is_file()
    # the run directory rebuilds the same network (timm ResNet-18, max pooling) for new images
    obj = load_dataset("objects92", data_dir)
    feats = features_from_run(obj.stimuli.subset(obj.stimuli.ids[:4]), run.path, "aligned-seed0")
    assert feats.shape == (4, 512) and np.isfinite(feats).all() and (feats >= 0).all()  # max over ReLU maps
