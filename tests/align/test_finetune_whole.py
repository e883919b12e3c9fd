"""Fine-tuning the whole network with on-the-fly augmentation (exact resume), and the TensorBoard log."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

import llmvem.align.finetune as finetune_mod
from llmvem.align.finetune import FinetuneData, finetune
from llmvem.config import FinetuneConfig
from llmvem.errors import ConfigError
from llmvem.vision.trainable import split_backbone

TRAIN, VAL = np.arange(16), np.arange(16, 20)


@pytest.fixture(scope="module")
def whole() -> Any:
    return split_backbone("timm:test_resnet", trainable_blocks=None)  # 0.4 M parameters, BatchNorm


@pytest.fixture(scope="module")
def images() -> FinetuneData:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(20, 3, 32, 32)).astype(np.float32)  # "activations" = preprocessed images
    return FinetuneData(x, rng.normal(size=(20, 8)).astype(np.float32), (rng.random((20, 4)) < 0.4) * 1.0)


def _cfg(**kw: Any) -> FinetuneConfig:
    base = dict(epochs=3, batch_size=8, warmup_epochs=1, lr=1e-3, trainable_blocks=None, tensorboard=False)
    return FinetuneConfig(**{**base, **kw})


def test_resume_with_augmentation_equals_uninterrupted(whole: Any, images: FinetuneData, tmp_path: Path) -> None:
    cfg = _cfg(augment="crop_flip", augment_min_scale=0.3)
    full = finetune(whole, images, TRAIN, VAL, cfg, 1.0, "multilabel", seed=2, ckpt_dir=tmp_path / "a")

    def stop(epoch: int) -> None:
        if epoch == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        finetune(whole, images, TRAIN, VAL, cfg, 1.0, "multilabel", seed=2, ckpt_dir=tmp_path / "b", on_epoch_end=stop)
    resumed = finetune(whole, images, TRAIN, VAL, cfg, 1.0, "multilabel", seed=2, ckpt_dir=tmp_path / "b")
    assert [h["epoch"] for h in resumed.history] == [0, 1, 2]
    for k, v in full.state.items():
        torch.testing.assert_close(resumed.state[k], v, rtol=0, atol=1e-6)
    assert (tmp_path / "b" / "metrics.csv").read_text() == (tmp_path / "a" / "metrics.csv").read_text()

    # the augmentation did something, and is a different run (never resumed from an unaugmented checkpoint)
    plain = finetune(whole, images, TRAIN, VAL, _cfg(), 1.0, "multilabel", seed=2, ckpt_dir=tmp_path / "a")
    assert [h["epoch"] for h in plain.history] == [0, 1, 2]
    assert plain.history[0]["train_total"] != full.history[0]["train_total"]
    assert any(not torch.equal(plain.state[k], full.state[k]) for k in full.state if k.startswith("top."))
    # validation never sees augmented images: at epoch 0 both runs start from the same weights
    flip = finetune(whole, images, TRAIN, VAL, _cfg(augment="flip", epochs=1), 1.0, "multilabel", 2, tmp_path / "f")
    assert flip.history[0]["train_total"] != plain.history[0]["train_total"]


def test_augmentation_needs_the_whole_network(images: FinetuneData, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="needs trainable_blocks: null"):
        FinetuneConfig(augment="flip", trainable_blocks=2)
    partial = split_backbone("timm:test_resnet", trainable_blocks=1)
    with torch.inference_mode():
        acts = partial.bottom(torch.from_numpy(images.activations)).numpy()
    data = FinetuneData(acts, images.text, images.targets)
    with pytest.raises(ConfigError, match="needs the whole network to train"):
        finetune(partial, data, TRAIN, VAL, _cfg(augment="flip"), 1.0, "multilabel", 0, tmp_path)


def _scalars(log_dir: Path) -> dict[str, list[tuple[int, float]]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(log_dir))
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def test_tensorboard_scalars_and_resume_purge(
    whole: Any, images: FinetuneData, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("tensorboard")
    cfg = _cfg(epochs=2, tensorboard=True)
    res = finetune(whole, images, TRAIN, VAL, cfg, 0.5, "multilabel", seed=0, ckpt_dir=tmp_path / "a")
    assert list((tmp_path / "a" / "tb").glob("events.out.tfevents.*"))
    got = _scalars(tmp_path / "a" / "tb")
    want = {"train/total", "train/task", "train/align", "val/total", "val/task", "val/align", "lambda", "lr"}
    assert want <= set(got) and "val/label_accuracy" in got
    for tag, key in (("train/total", "train_total"), ("val/align", "val_align"), ("lr", "lr"), ("lambda", "lambda")):
        assert [s for s, _ in got[tag]] == [0, 1]
        np.testing.assert_allclose([v for _, v in got[tag]], [h[key] for h in res.history], rtol=1e-6)

    # killed after epoch 1's scalars were written but before its checkpoint: the resumed run logs epoch 1 again and
    # TensorBoard shows it once (the stale event file is replaced)
    save = finetune_mod._save_checkpoint

    def crash_at_1(ckpt_dir: Path, epoch: int, *args: Any) -> Path:
        if epoch == 1:
            raise KeyboardInterrupt
        return save(ckpt_dir, epoch, *args)

    monkeypatch.setattr(finetune_mod, "_save_checkpoint", crash_at_1)
    cfg3 = _cfg(epochs=3, tensorboard=True, lr=3e-3)
    with pytest.raises(KeyboardInterrupt):
        finetune(whole, images, TRAIN, VAL, cfg3, 0.5, "multilabel", seed=0, ckpt_dir=tmp_path / "b")
    monkeypatch.undo()
    resumed = finetune(whole, images, TRAIN, VAL, cfg3, 0.5, "multilabel", seed=0, ckpt_dir=tmp_path / "b")
    assert len(list((tmp_path / "b" / "tb").glob("events.out.tfevents.*"))) == 1  # one file, replayed history first
    got = _scalars(tmp_path / "b" / "tb")
    assert [s for s, _ in got["train/total"]] == [0, 1, 2]
    np.testing.assert_allclose([v for _, v in got["train/total"]], [h["train_total"] for h in resumed.history])
