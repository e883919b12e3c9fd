"""split_backbone for timm ResNet / ViT / ConvNeXt and CLIP vision towers: bottom + top = the whole network, only
the top trains, and a fine-tuned model's features come back from its run directory."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import yaml
from PIL import Image
from safetensors.torch import save_file

from llmvem.align.finetune import MIX_KEYS, FinetuneData, features_from_run, finetune, pooled_features, unkeyed_settings
from llmvem.config import ExperimentConfig, FinetuneConfig, load_config
from llmvem.data.stimuli import StimulusSet
from llmvem.errors import ConfigError
from llmvem.vision.trainable import split_backbone, split_from_config

TINY_VIT: dict[str, Any] = {"model_kwargs": {"img_size": 32, "patch_size": 8, "depth": 3}}
# (backbone, keyword arguments, image side, number of blocks)
FAMILIES = [
    ("timm:resnet18", {}, 32, 8),
    ("timm:vit_tiny_patch16_224", TINY_VIT, 32, 3),
    ("timm:deit_tiny_patch16_224", TINY_VIT, 32, 3),
    ("timm:convnext_atto", {}, 32, 12),
    ("hf_clip", {}, 32, 3),
]


def _split(name: str, kwargs: dict[str, Any], k: int | None, clip_dir: Path, **extra: Any) -> Any:
    return split_backbone(f"hf_clip:{clip_dir}" if name == "hf_clip" else name, k, **kwargs, **extra)


@pytest.mark.parametrize(("name", "kwargs", "side", "n_blocks"), FAMILIES, ids=[f[0] for f in FAMILIES])
def test_bottom_then_top_equals_the_backbone(
    name: str, kwargs: dict[str, Any], side: int, n_blocks: int, tiny_clip_dir: Path
) -> None:
    x = torch.randn(2, 3, side, side)
    for k in (0, 1, None):
        split = _split(name, kwargs, k, tiny_clip_dir)
        assert split.n_blocks == n_blocks and split.identity["trainable_blocks"] == (n_blocks if k is None else k)
        assert split.trains_whole_network == (k is None)
        with torch.inference_mode():
            whole = split.backbone.features(x)
            parts = split.top.eval()(split.bottom(x))
        assert whole.shape == (2, split.feature_dim)
        torch.testing.assert_close(parts, whole, rtol=1e-5, atol=1e-5)
        assert not any(p.requires_grad for p in split.bottom.parameters())
        if k is None:
            assert isinstance(split.bottom, torch.nn.Identity)
    with pytest.raises(ConfigError, match=f"between 0 and {n_blocks}"):
        _split(name, kwargs, n_blocks + 1, tiny_clip_dir)


def test_split_keeps_the_pooling(tiny_clip_dir: Path) -> None:
    x = torch.randn(2, 3, 32, 32)
    for name, kwargs in (("timm:resnet18", {}), ("timm:vit_tiny_patch16_224", TINY_VIT), ("hf_clip", {})):
        for pooling in ("avg", "max"):
            split = _split(name, kwargs, 1, tiny_clip_dir, pooling=pooling)
            assert split.identity["backbone"]["pooling"].startswith(pooling)
            with torch.inference_mode():
                torch.testing.assert_close(split.top.eval()(split.bottom(x)), split.backbone.features(x))
    lite0 = split_backbone("efficientnet_lite0", 2, pooling="max")
    x = torch.randn(1, 3, 224, 224)
    with torch.inference_mode():
        torch.testing.assert_close(lite0.top.eval()(lite0.bottom(x)), lite0.backbone.features(x), rtol=1e-4, atol=1e-5)


def test_unsupported_backbones() -> None:
    with pytest.raises(ConfigError, match="not supported"):
        split_backbone("timm:efficientnet_b0", 2)
    with pytest.raises(ConfigError, match="supports the backbones"):
        split_backbone("my_net", 2)


def test_model_kwargs_from_the_config() -> None:
    kwargs = {"img_size": 32, "patch_size": 8, "depth": 2, "drop_path_rate": 0.1}
    cfg = FinetuneConfig(backbone="timm:test_vit", model_kwargs=kwargs, trainable_blocks=None)
    split = split_from_config(cfg)
    assert split.identity["backbone"]["model_kwargs"] == dict(sorted(kwargs.items()))
    assert split.n_blocks == 2 and split.backbone.input_size == (3, 32, 32) and split.trains_whole_network
    assert split.backbone.module.blocks[-1].drop_path1.drop_prob == pytest.approx(0.1)
    with torch.inference_mode():
        assert split.top.eval()(split.bottom(torch.zeros(2, 3, 32, 32))).shape == (2, split.feature_dim)
    # without model_kwargs the identity (hence every cache key built on it) is what it was before the key existed
    plain = split_from_config(FinetuneConfig(backbone="timm:test_vit", trainable_blocks=1))
    assert "model_kwargs" not in plain.identity["backbone"] and plain.backbone.input_size == (3, 160, 160)
    dumped = FinetuneConfig().model_dump(exclude=unkeyed_settings(FinetuneConfig()))
    assert not {"model_kwargs", *MIX_KEYS} & set(dumped)
    assert "model_kwargs" in cfg.model_dump(exclude=unkeyed_settings(cfg))
    # dotted overrides reach it; backbones without timm keywords refuse it
    exp = load_config(overrides={"finetune.backbone": "timm:test_vit", "finetune.model_kwargs.img_size": "64"})
    assert exp.finetune.model_kwargs == {"img_size": 64}
    with pytest.raises(ConfigError, match="takes none"):
        load_config(overrides={"finetune.model_kwargs.img_size": "64"})  # efficientnet_lite0
    with pytest.raises(ConfigError, match="takes none"):
        load_config(overrides={"finetune.backbone": "hf_clip", "finetune.model_kwargs": "{img_size: 64}"})
    for name in ("efficientnet_lite0", "hf_clip:/nonexistent"):  # the Python API checks before loading anything
        with pytest.raises(ConfigError, match="takes none"):
            split_backbone(name, 1, model_kwargs={"img_size": 64})


@pytest.mark.parametrize(("name", "kwargs", "side", "n_blocks"), FAMILIES[:2] + FAMILIES[3:], ids=lambda v: str(v))
def test_training_changes_only_the_top(
    name: str, kwargs: dict[str, Any], side: int, n_blocks: int, tiny_clip_dir: Path, tmp_path: Path
) -> None:
    split = _split(name, kwargs, 1, tiny_clip_dir)
    bottom_before = {k: v.clone() for k, v in split.bottom.state_dict().items()}
    top_before = {k: v.clone() for k, v in split.top.state_dict().items()}
    rng = np.random.default_rng(0)
    with torch.inference_mode():
        acts = split.bottom(torch.from_numpy(rng.normal(size=(16, 3, side, side)).astype(np.float32))).numpy()
    data = FinetuneData(acts, rng.normal(size=(16, 8)).astype(np.float32), (rng.random((16, 4)) < 0.5) * 1.0)
    cfg = FinetuneConfig(epochs=2, batch_size=4, lr=1e-2, warmup_epochs=0, tensorboard=False)
    res = finetune(split, data, np.arange(12), np.arange(12, 16), cfg, 1.0, "multilabel", seed=0, ckpt_dir=tmp_path)
    for k, v in split.bottom.state_dict().items():  # the frozen bottom: bit for bit unchanged
        assert torch.equal(v, bottom_before[k]), k
    for k, v in split.top.state_dict().items():  # the split's own top stays pretrained (finetune copies it)
        assert torch.equal(v, top_before[k]), k
    trained = {k[len("top.") :]: v for k, v in res.state.items() if k.startswith("top.")}
    assert trained.keys() == top_before.keys()
    changed = [k for k, v in trained.items() if v.dtype.is_floating_point and not torch.equal(v, top_before[k])]
    assert changed, "training changed no weight of the top"
    assert not np.allclose(pooled_features(res, split, acts), pooled_features(None, split, acts))


def test_features_from_run_for_a_timm_split(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    paths = []
    for k in range(4):
        p = tmp_path / "imgs" / f"i{k}.png"
        p.parent.mkdir(exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (40, 52, 3), dtype=np.uint8)).save(p)
        paths.append(p)
    stim = StimulusSet.from_paths(paths)
    split = split_backbone("timm:test_resnet", 1)
    images = torch.stack([split.backbone.preprocess(stim.load(k)) for k in range(len(stim))])
    with torch.inference_mode():
        acts = split.bottom(images).numpy()
    data = FinetuneData(acts, rng.normal(size=(4, 8)).astype(np.float32), None)
    cfg = FinetuneConfig(epochs=1, batch_size=4, lr=1e-2, warmup_epochs=0, tensorboard=False)
    res = finetune(split, data, np.arange(4), np.arange(0), cfg, 1.0, "none", seed=0, ckpt_dir=tmp_path / "ckpt")

    run = tmp_path / "run"
    (run / "models").mkdir(parents=True)
    exp = ExperimentConfig.model_validate({"finetune": {"backbone": "timm:test_resnet", "trainable_blocks": 1}})
    (run / "config.yaml").write_text(yaml.safe_dump(exp.model_dump(mode="json")))
    save_file({k: v.contiguous() for k, v in res.state.items()}, str(run / "models" / "aligned-seed0.safetensors"))

    feats = features_from_run(stim, run, "aligned-seed0", batch_size=3)
    np.testing.assert_allclose(feats, pooled_features(res, split, acts), rtol=1e-4, atol=1e-5)
    # taps of the fine-tuned network: the frozen stages are the pretrained ones, the trained last block is not
    pre = split_backbone("timm:test_resnet", 1).backbone
    with torch.inference_mode():
        from llmvem.vision import tap_layer

        pre3 = tap_layer(pre, "layer3").features(images).numpy()
        pre4 = tap_layer(pre, "layer4").features(images).numpy()
    tapped3 = features_from_run(stim, run, "aligned-seed0", layer="layer3")
    np.testing.assert_allclose(tapped3, pre3, rtol=1e-4, atol=1e-5)
    assert not np.allclose(features_from_run(stim, run, "aligned-seed0", layer="layer4"), pre4, atol=1e-4)
