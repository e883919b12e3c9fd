"""`TrainSpec.key()`: the one run identity — logging, progress and devices never in it, every weight-affecting
setting in it; a run whose key did not change is re-used (tensorboard on/off gives a cache hit)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from llmvem.align.finetune import FinetuneData, finetune, finetune_spec
from llmvem.align.spec import ALIGN_ONLY_KEYS, NOT_IDENTITY, TrainSpec
from llmvem.align.twins import train_twin, twin_spec
from llmvem.config import FinetuneConfig, TrainConfig

#: for every keyed fine-tune setting: another value (from a base where the setting acts, see `_active`)
FINETUNE_CHANGES: dict[str, Any] = {
    "backbone": "timm:test_resnet", "pooling": "max", "checkpoint_path": "/weights.pt", "trainable_blocks": 2,
    "augment": "flip", "augment_min_scale": 0.5, "mixup_alpha": 0.4, "cutmix_alpha": 1.0, "mix_prob": 0.5,
    "model_kwargs": {"img_size": 64}, "projection": "linear", "pca_components": 10, "label_smoothing": 0.1,
    "loss": "cosine", "vocabulary": "clip", "vocab_head_init": "random", "bow_weighting": "tf", "temperature": 0.05,
    "learn_temperature": True, "lambda_schedule": "linear_warmup", "optimizer": "sgd", "lr": 1e-3,
    "weight_decay": 0.01, "momentum": 0.8, "epochs": 11, "warmup_epochs": 2, "batch_size": 32, "grad_accum": 2,
    "amp": False, "early_stopping_patience": 2,
}  # fmt: skip
#: settings that change no weight (logging; bookkeeping the spec holds as used or the data identity holds)
FINETUNE_SAME: dict[str, Any] = {
    "tensorboard": False, "seeds": [4, 5], "n_images": 500, "val_fraction": 0.3, "sync_batchnorm": False,
    "lambda_align": 0.5, "aligned_task": "none", "task": "classifier",
}  # fmt: skip
TWIN_CHANGES: dict[str, Any] = {
    "embed_dim": 64, "hidden_dim": 128, "epochs": 10, "batch_size": 16, "lr": 3e-3, "weight_decay": 0.0,
    "dropout": 0.2, "loss": "cosine", "temperature": 0.2,
}  # fmt: skip


def _active(**kw: Any) -> FinetuneConfig:
    """A config in which every setting acts: crop_flip, mixup, timm model_kwargs (validation skipped: the key reads
    the settings only)."""
    base = FinetuneConfig().model_copy(
        update={"trainable_blocks": None, "augment": "crop_flip", "mixup_alpha": 0.2, "model_kwargs": {"a": 1}}
    )
    return base.model_copy(update=kw)


def _spec(cfg: Any, lam: float = 1.0, task: str = "voxels_pca", trainer: str = "finetune") -> TrainSpec:
    return TrainSpec(trainer, cfg, lam, task, 0, {"inputs": "abc"})


def test_every_setting_is_classified() -> None:  # a new setting must say whether it changes the weights
    fields = set(FinetuneConfig.model_fields)
    assert set(FINETUNE_CHANGES) | set(FINETUNE_SAME) == fields and not set(FINETUNE_CHANGES) & set(FINETUNE_SAME)
    assert set(TWIN_CHANGES) == set(TrainConfig.model_fields) - NOT_IDENTITY


@pytest.mark.parametrize("name", sorted(FINETUNE_CHANGES))
def test_weight_settings_change_the_key(name: str) -> None:
    assert getattr(_active(), name) != FINETUNE_CHANGES[name]
    assert _spec(_active(**{name: FINETUNE_CHANGES[name]})).key() != _spec(_active()).key()


@pytest.mark.parametrize("name", sorted(FINETUNE_SAME))
def test_logging_and_bookkeeping_never_change_the_key(name: str) -> None:
    assert _spec(_active(**{name: FINETUNE_SAME[name]})).key() == _spec(_active()).key()


@pytest.mark.parametrize("name", sorted(TWIN_CHANGES))
def test_twin_settings_change_the_key(name: str) -> None:
    cfg = TrainConfig()
    assert (
        _spec(cfg.model_copy(update={name: TWIN_CHANGES[name]}), trainer="twin").key()
        != _spec(cfg, trainer="twin").key()
    )


def test_settings_that_do_not_act_are_not_keyed() -> None:
    plain = FinetuneConfig()
    for name in ALIGN_ONLY_KEYS:  # a twin (λ = 0) is the same run whatever the alignment settings
        changed = plain.model_copy(update={name: FINETUNE_CHANGES[name]})
        assert _spec(changed, 0.0, "multilabel").key() == _spec(plain, 0.0, "multilabel").key()
        assert _spec(changed, 1.0, "multilabel").key() != _spec(plain, 1.0, "multilabel").key()
    for name in ("mix_prob", "augment_min_scale", "pca_components"):  # mixing off, no crops, no PCA
        changed = plain.model_copy(update={name: FINETUNE_CHANGES[name]})
        assert _spec(changed, task="voxels").key() == _spec(plain, task="voxels").key()
    for lam, task, seed, data in ((0.5, "voxels_pca", 0, "abc"), (1.0, "voxels", 0, "abc"), (1.0, "voxels_pca", 1,
                                  "abc"), (1.0, "voxels_pca", 0, "abd")):  # fmt: skip
        assert TrainSpec("finetune", plain, lam, task, seed, {"inputs": data}).key() != _spec(plain).key()
    assert _spec(plain, trainer="twin").key() != _spec(plain).key()


@pytest.fixture(scope="module")
def small() -> tuple[Any, FinetuneData]:
    from llmvem.vision.trainable import split_backbone

    rng = np.random.default_rng(0)
    x = rng.normal(size=(12, 3, 32, 32)).astype(np.float32)
    data = FinetuneData(x, rng.normal(size=(12, 8)).astype(np.float32), (rng.random((12, 3)) < 0.4) * 1.0)
    return split_backbone("timm:test_resnet", trainable_blocks=None), data


def test_data_identity_and_tensorboard_off_is_a_cache_hit(small: tuple[Any, FinetuneData], tmp_path: Path) -> None:
    split, data = small
    tr, va = np.arange(8), np.arange(8, 12)
    on = FinetuneConfig(epochs=1, warmup_epochs=0, batch_size=4, trainable_blocks=None, tensorboard=True)
    off = on.model_copy(update={"tensorboard": False})
    spec_on, spec_off = (finetune_spec(split, data, tr, va, c, 1.0, "multilabel", 0) for c in (on, off))
    assert spec_on.key() == spec_off.key() and spec_on.checkpoint_dir(tmp_path) == spec_off.checkpoint_dir(tmp_path)
    # the text is part of an aligned run's identity, not of its twin's; the rows are part of both
    other_text = FinetuneData(data.activations, data.text[::-1].copy(), data.targets)  # type: ignore[index]
    assert finetune_spec(split, other_text, tr, va, on, 1.0, "multilabel", 0).key() != spec_on.key()
    twin = finetune_spec(split, data, tr, va, on, 0.0, "multilabel", 0).key()
    assert finetune_spec(split, other_text, tr, va, on, 0.0, "multilabel", 0).key() == twin
    assert finetune_spec(split, data, tr[1:], va, on, 0.0, "multilabel", 0).key() != twin

    ckpt = spec_on.checkpoint_dir(tmp_path)
    first = finetune(split, data, tr, va, on, 1.0, "multilabel", 0, ckpt)
    trained: list[int] = []
    again = finetune(split, data, tr, va, off, 1.0, "multilabel", 0, ckpt, progress=True, on_epoch_end=trained.append)
    assert trained == [] and again.history == first.history  # re-used, not retrained
    for k, v in first.state.items():
        assert np.array_equal(v.numpy(), again.state[k].numpy())


def test_twin_cache_hit_and_same_numbers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(1)
    x = rng.normal(size=(32, 6)).astype(np.float32)
    y, t = rng.normal(size=(32, 3)).astype(np.float32), rng.normal(size=(32, 4)).astype(np.float32)
    cfg = TrainConfig(epochs=3, batch_size=8, embed_dim=4, hidden_dim=8)
    plain = train_twin(x, y, t, cfg, 1.0, seed=2)
    ckpt = twin_spec(x, y, t, cfg, 1.0, 2).checkpoint_dir(tmp_path)
    cached = train_twin(x, y, t, cfg, 1.0, seed=2, ckpt_dir=ckpt)
    assert (ckpt / "done.json").is_file() and cached.history == plain.history
    import llmvem.align.twins as twins

    def no_training(*args: Any, **kw: Any) -> None:
        raise AssertionError("a cached twin was trained again")

    monkeypatch.setattr(twins, "fit", no_training)
    again = train_twin(x, y, t, cfg, 1.0, seed=2, ckpt_dir=ckpt)
    np.testing.assert_array_equal(again.embed(x), plain.embed(x))
    assert again.history == plain.history
    # the baseline twin's key ignores the text and the alignment settings
    assert twin_spec(x, y, None, cfg, 0.0, 2).key() == twin_spec(x, y, t, cfg.model_copy(update={"loss": "cosine"}),
                                                                 0.0, 2).key()  # fmt: skip
