"""Fine-tuning with a language target: heads, exact resume, divergence handling, early stopping."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from llmvem.align.finetune import FinetuneData, TrainingDivergedError, finetune, pooled_features
from llmvem.align.heads import PCAVoxelHead, projection_head, task_head
from llmvem.config import FinetuneConfig
from llmvem.errors import ConfigError, DataError
from llmvem.vision.trainable import split_backbone


@pytest.fixture(scope="module")
def split():  # type: ignore[no-untyped-def]
    return split_backbone("efficientnet_lite0", trainable_blocks=1)


@pytest.fixture(scope="module")
def data(split) -> FinetuneData:  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(0)
    with torch.inference_mode():
        acts = split.bottom(torch.from_numpy(rng.normal(size=(32, 3, 224, 224)).astype(np.float32))).numpy()
    text = rng.normal(size=(32, 16)).astype(np.float32)
    targets = (rng.random((32, 5)) < 0.4).astype(np.float32)
    return FinetuneData(acts, text, targets)


CFG = dict(epochs=3, batch_size=8, warmup_epochs=1, lr=1e-3, seeds=[0])
TRAIN, VAL = np.arange(24), np.arange(24, 32)


def test_split_top_matches_the_pretrained_network(split, data: FinetuneData) -> None:  # type: ignore[no-untyped-def]
    feats = pooled_features(None, split, data.activations[:4])
    assert feats.shape == (4, 1280) and np.isfinite(feats).all()


def test_resume_after_interruption_equals_uninterrupted(split, data: FinetuneData, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    cfg = FinetuneConfig(**CFG)
    full = finetune(split, data, TRAIN, VAL, cfg, 1.0, "multilabel", seed=3, ckpt_dir=tmp_path / "a")

    def stop(epoch: int) -> None:
        if epoch == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        finetune(split, data, TRAIN, VAL, cfg, 1.0, "multilabel", seed=3, ckpt_dir=tmp_path / "b", on_epoch_end=stop)
    assert (tmp_path / "b" / "epoch-0001").is_dir() and not (tmp_path / "b" / "epoch-0002").exists()
    resumed = finetune(split, data, TRAIN, VAL, cfg, 1.0, "multilabel", seed=3, ckpt_dir=tmp_path / "b")
    assert [h["epoch"] for h in resumed.history] == [0, 1, 2]
    for k, v in full.state.items():
        torch.testing.assert_close(resumed.state[k], v, rtol=0, atol=1e-6)
    assert (tmp_path / "b" / "metrics.csv").read_text() == (tmp_path / "a" / "metrics.csv").read_text()
    # the training changed the weights, and the aligned model differs from its twin
    twin = finetune(split, data, TRAIN, VAL, cfg, 0.0, "multilabel", seed=3, ckpt_dir=tmp_path / "t")
    f_full = pooled_features(full, split, data.activations)
    assert not np.allclose(f_full, pooled_features(None, split, data.activations))
    assert not np.allclose(f_full, pooled_features(twin, split, data.activations))
    assert "train_align" in full.history[-1] and "train_align" not in twin.history[-1]


def test_changed_config_never_resumes_a_stale_checkpoint(split, data: FinetuneData, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    finetune(split, data, TRAIN, VAL, FinetuneConfig(**CFG), 1.0, "multilabel", seed=0, ckpt_dir=tmp_path)
    other = finetune(
        split, data, TRAIN, VAL, FinetuneConfig(**{**CFG, "lr": 5e-4}), 1.0, "multilabel", seed=0, ckpt_dir=tmp_path
    )
    assert [h["epoch"] for h in other.history] == [0, 1, 2] and other.history[0]["lr"] != 1e-3


def test_nan_loss_stops_and_keeps_last_good_checkpoint(split, data: FinetuneData, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    poisoned = FinetuneData(data.activations, data.text.copy(), data.targets)  # type: ignore[union-attr]

    def poison(epoch: int) -> None:
        poisoned.text[:] = np.nan  # type: ignore[index]

    with pytest.raises(TrainingDivergedError, match="epoch 1"):
        finetune(
            split,
            poisoned,
            TRAIN,
            VAL,
            FinetuneConfig(**CFG),
            1.0,
            "multilabel",
            seed=0,
            ckpt_dir=tmp_path,
            on_epoch_end=poison,
        )
    assert (tmp_path / "epoch-0000" / "model.safetensors").is_file()


def test_early_stopping_restores_best(split, data: FinetuneData, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    cfg = FinetuneConfig(**{**CFG, "epochs": 6, "lr": 5e-2, "early_stopping_patience": 1})
    res = finetune(split, data, TRAIN, VAL, cfg, 1.0, "multilabel", seed=0, ckpt_dir=tmp_path)
    losses = [h["val_total"] for h in res.history]
    assert res.best_epoch == int(np.argmin(losses))
    assert len(res.history) <= 6


def test_bad_inputs(split, data: FinetuneData, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(DataError, match="needs description embeddings"):
        finetune(
            split,
            FinetuneData(data.activations, None, data.targets),
            TRAIN,
            VAL,
            FinetuneConfig(**CFG),
            1.0,
            "multilabel",
            0,
            tmp_path,
        )
    with pytest.raises(DataError, match="nothing to train"):
        finetune(split, data, TRAIN, VAL, FinetuneConfig(**CFG), 0.0, "none", 0, tmp_path)
    with pytest.raises(DataError, match="rows of text"):
        FinetuneData(data.activations, data.text[:3], None)  # type: ignore[index]


def test_heads() -> None:
    x = torch.randn(6, 10)
    assert projection_head("mlp_bn", 10, 4)(x).shape == (6, 4)
    assert projection_head("linear", 10, 4)(x).shape == (6, 4)
    with pytest.raises(ConfigError):
        projection_head("transformer", 10, 4)
    rng = np.random.default_rng(0)
    y = rng.normal(size=(20, 3)) @ rng.normal(size=(3, 50))
    pca = PCAVoxelHead(y, n_components=3)
    assert pca.explained == pytest.approx(1.0)
    head = task_head("voxels_pca", 10, 50, pca)
    assert head(x).shape == (6, 50)
    assert task_head("none", 10, 5) is None
