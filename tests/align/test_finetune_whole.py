"""Fine-tuning the whole network with on-the-fly augmentation and mixup / CutMix (exact resume), and the
TensorBoard log."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from llmvem.align.checkpoint import Checkpointer
from llmvem.align.finetune import FinetuneData, finetune
from llmvem.config import FinetuneConfig, load_config
from llmvem.errors import ConfigError
from llmvem.vision.augment import apply_augment, sample_augment_params
from llmvem.vision.mix import apply_mix, partner_positions, sample_mix_params
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


def _interrupted_run_equals_uninterrupted(
    whole: Any, images: FinetuneData, cfg: FinetuneConfig, seed: int, tmp_path: Path
) -> Any:
    """Train 3 epochs in ``tmp_path/a``; train again in ``tmp_path/b``, stopped after epoch 1 and resumed; check the
    resumed run equals the uninterrupted one (weights, metrics log) and return the uninterrupted result."""
    full = finetune(whole, images, TRAIN, VAL, cfg, 1.0, "multilabel", seed=seed, ckpt_dir=tmp_path / "a")

    def stop(epoch: int) -> None:
        if epoch == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        finetune(whole, images, TRAIN, VAL, cfg, 1.0, "multilabel", seed, ckpt_dir=tmp_path / "b", on_epoch_end=stop)
    resumed = finetune(whole, images, TRAIN, VAL, cfg, 1.0, "multilabel", seed=seed, ckpt_dir=tmp_path / "b")
    assert [h["epoch"] for h in resumed.history] == [0, 1, 2]
    for k, v in full.state.items():
        torch.testing.assert_close(resumed.state[k], v, rtol=0, atol=1e-6)
    assert (tmp_path / "b" / "metrics.csv").read_text() == (tmp_path / "a" / "metrics.csv").read_text()
    return full


def test_resume_with_augmentation_equals_uninterrupted(whole: Any, images: FinetuneData, tmp_path: Path) -> None:
    cfg = _cfg(augment="crop_flip", augment_min_scale=0.3)
    full = _interrupted_run_equals_uninterrupted(whole, images, cfg, 2, tmp_path)

    # the augmentation did something, and is a different run (never resumed from an unaugmented checkpoint)
    plain = finetune(whole, images, TRAIN, VAL, _cfg(), 1.0, "multilabel", seed=2, ckpt_dir=tmp_path / "a")
    assert [h["epoch"] for h in plain.history] == [0, 1, 2]
    assert plain.history[0]["train_total"] != full.history[0]["train_total"]
    assert any(not torch.equal(plain.state[k], full.state[k]) for k in full.state if k.startswith("top."))
    # validation never sees augmented images: at epoch 0 both runs start from the same weights
    flip = finetune(whole, images, TRAIN, VAL, _cfg(augment="flip", epochs=1), 1.0, "multilabel", 2, tmp_path / "f")
    assert flip.history[0]["train_total"] != plain.history[0]["train_total"]


def test_augmentation_and_mixing_need_the_whole_network(images: FinetuneData, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="needs trainable_blocks: null"):
        FinetuneConfig(augment="flip", trainable_blocks=2)
    for key in ("mixup_alpha", "cutmix_alpha"):
        with pytest.raises(ValueError, match="need trainable_blocks: null"):
            FinetuneConfig(**{key: 0.2, "trainable_blocks": 2})
        with pytest.raises(ConfigError, match="need trainable_blocks: null"):
            load_config(overrides={f"finetune.{key}": "0.2"})  # the default trainable_blocks is 3
    with pytest.raises(ConfigError, match="mixup_alpha"):
        load_config(overrides={"finetune.mixup_alpha": "-1", "finetune.trainable_blocks": "null"})
    with pytest.raises(ConfigError, match="mix_prob"):
        load_config(overrides={"finetune.mix_prob": "1.5"})
    assert load_config(overrides={"finetune.mixup_alpha": "0.2", "finetune.trainable_blocks": "null"})
    partial = split_backbone("timm:test_resnet", trainable_blocks=1)
    with torch.inference_mode():
        acts = partial.bottom(torch.from_numpy(images.activations)).numpy()
    data = FinetuneData(acts, images.text, images.targets)
    with pytest.raises(ConfigError, match="needs the whole network to train"):
        finetune(partial, data, TRAIN, VAL, _cfg(augment="flip"), 1.0, "multilabel", 0, tmp_path)
    with pytest.raises(ConfigError, match="need the whole network to train"):
        finetune(partial, data, TRAIN, VAL, _cfg(cutmix_alpha=1.0), 1.0, "multilabel", 0, tmp_path)


def test_resume_with_mixup_and_cutmix_equals_uninterrupted(whole: Any, images: FinetuneData, tmp_path: Path) -> None:
    cfg = _cfg(augment="crop_flip", mixup_alpha=0.4, cutmix_alpha=1.0, mix_prob=0.8)
    full = _interrupted_run_equals_uninterrupted(whole, images, cfg, 4, tmp_path)

    # mixing changes the run, and is keyed: never resumed from the unmixed checkpoint
    unmixed_cfg = _cfg(augment="crop_flip")
    unmixed = finetune(whole, images, TRAIN, VAL, unmixed_cfg, 1.0, "multilabel", seed=4, ckpt_dir=tmp_path / "a")
    assert [h["epoch"] for h in unmixed.history] == [0, 1, 2]
    assert unmixed.history[0]["train_total"] != full.history[0]["train_total"]
    # ... but only when it is on: mix_prob without an alpha is the same run as before (its finished checkpoint)
    done = (tmp_path / "a" / "done.json").read_text()
    again = finetune(whole, images, TRAIN, VAL, _cfg(augment="crop_flip", mix_prob=0.3), 1.0, "multilabel", 4,
                     tmp_path / "a")  # fmt: skip
    assert (tmp_path / "a" / "done.json").read_text() == done and again.history == unmixed.history


def test_the_network_sees_mixed_images_and_unmixed_validation(images: FinetuneData, tmp_path: Path) -> None:
    split = split_backbone("timm:test_vit", None, model_kwargs={"img_size": 32, "patch_size": 8, "depth": 1})
    seen: list[tuple[bool, torch.Tensor]] = []
    hook = split.top.register_forward_pre_hook(lambda mod, args: seen.append((mod.training, args[0].clone())))
    try:  # (finetune trains a copy of split.top: the hook comes with it)
        for kw in ({"cutmix_alpha": 1.0}, {"mixup_alpha": 0.5}):
            seen.clear()
            cfg = _cfg(epochs=1, warmup_epochs=0, augment="crop_flip", projection="linear", **kw)
            finetune(split, images, TRAIN, VAL, cfg, 1.0, "multilabel", seed=7, ckpt_dir=tmp_path / str(kw))
            # what the trainer should feed: the seeded batch order, crops, then the batch mixed with its flip
            x = torch.from_numpy(images.activations)
            order = torch.from_numpy(TRAIN)[torch.randperm(16, generator=torch.Generator().manual_seed(7 * 100_003))]
            aug_rng, mix_rng = np.random.default_rng([7, 0, 0xA06]), np.random.default_rng([7, 0, 0x313])
            train_inputs = [t for training, t in seen if training]
            assert len(train_inputs) == 2
            for b, got in enumerate(train_inputs):
                idx = order[b * 8 : (b + 1) * 8]
                aug = sample_augment_params(aug_rng, 8, 32, 32, "crop_flip", 0.25)
                mix = sample_mix_params(mix_rng, 32, 32, cfg.mixup_alpha, cfg.cutmix_alpha)
                assert mix.mode == ("cutmix" if "cutmix_alpha" in kw else "mixup") and mix.lam < 1
                mate = partner_positions(8)
                own, other = apply_augment(x[idx], aug), apply_augment(x[idx[mate]], aug[mate])
                torch.testing.assert_close(got, apply_mix(own, other, mix), rtol=0, atol=1e-6)
            for training, t in seen:  # validation: the raw validation images
                if not training:
                    assert any(torch.equal(t, x[VAL[i : i + len(t)]]) for i in range(len(VAL)))
            assert any(not training for training, _ in seen)
    finally:
        hook.remove()


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
    save = Checkpointer._write

    def crash_at_1(self: Checkpointer, epoch: int, *args: Any) -> Path:
        if epoch == 1:
            raise KeyboardInterrupt
        return save(self, epoch, *args)

    monkeypatch.setattr(Checkpointer, "_write", crash_at_1)
    cfg3 = _cfg(epochs=3, tensorboard=True, lr=3e-3)
    with pytest.raises(KeyboardInterrupt):
        finetune(whole, images, TRAIN, VAL, cfg3, 0.5, "multilabel", seed=0, ckpt_dir=tmp_path / "b")
    monkeypatch.undo()
    resumed = finetune(whole, images, TRAIN, VAL, cfg3, 0.5, "multilabel", seed=0, ckpt_dir=tmp_path / "b")
    assert len(list((tmp_path / "b" / "tb").glob("events.out.tfevents.*"))) == 1  # one file, replayed history first
    got = _scalars(tmp_path / "b" / "tb")
    assert [s for s, _ in got["train/total"]] == [0, 1, 2]
    np.testing.assert_allclose([v for _, v in got["train/total"]], [h["train_total"] for h in resumed.history])
