"""Named-layer feature taps for every backbone family, their cache keys, errors and the CLI flag."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from llmvem.data.stimuli import StimulusSet
from llmvem.errors import BackendError, ConfigError
from llmvem.hashing import artifact_key
from llmvem.store import ArtifactStore
from llmvem.vision import extract_features, layer_names, load_backbone, tap_layer
from llmvem.vision.features import FEATURES_KIND

TINY_VIT: dict[str, Any] = {"model_kwargs": {"img_size": 32, "patch_size": 8, "depth": 3}}


@pytest.fixture(scope="module")
def resnet() -> Any:
    return load_backbone("timm:resnet18")


@pytest.fixture
def images(tmp_path: Path) -> list[Path]:
    rng = np.random.default_rng(0)
    out = []
    for k in range(3):
        p = tmp_path / "imgs" / f"img{k}.png"
        p.parent.mkdir(exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (48, 40, 3), dtype=np.uint8)).save(p)
        out.append(p)
    return out


def test_resnet_layer_tap_equals_the_stage_output(resnet: Any) -> None:
    bb = tap_layer(resnet, "layer3")
    assert bb.feature_dim == 256 and bb.identity["layer"] == "layer3" and bb.name == "timm:resnet18@layer3"
    assert bb.identity["weights"] == resnet.identity["weights"] and "avg over H x W" in bb.identity["pooling"]
    net: Any = resnet.module
    x = torch.randn(2, 3, 64, 64)
    with torch.inference_mode():
        ref = net.layer3(net.layer2(net.layer1(net.maxpool(net.act1(net.bn1(net.conv1(x)))))))
        torch.testing.assert_close(bb.features(x), ref.mean(dim=(2, 3)))
        torch.testing.assert_close(tap_layer(resnet, "layer3", pooling="max").features(x), ref.amax(dim=(2, 3)))
        stem = net.maxpool(net.act1(net.bn1(net.conv1(x))))
        torch.testing.assert_close(tap_layer(resnet, "layer2.1").features(x), net.layer2(net.layer1(stem)).mean((2, 3)))
        torch.testing.assert_close(resnet.features(x), net(x))  # the tap left the backbone's own forward alone
    assert not net.layer3._forward_hooks  # hooks are removed after each call
    with pytest.raises(BackendError, match="needs a token sequence"):
        tap_layer(resnet, "layer3", pooling="cls")


def test_vit_block_tap_tokens() -> None:
    vit = load_backbone("timm:vit_tiny_patch16_224", **TINY_VIT)
    net: Any = vit.module
    x = torch.randn(2, 3, 32, 32)
    with torch.inference_mode():
        t = net.norm_pre(net.patch_drop(net._pos_embed(net.patch_embed(x))))
        t = net.blocks[1](net.blocks[0](t))  # (2, 17, 192)
        cls = load_backbone("timm:vit_tiny_patch16_224", layer="blocks.1", **TINY_VIT)  # default: class token
        avg = tap_layer(vit, "blocks.1", pooling="avg")
        torch.testing.assert_close(cls.features(x), t[:, 0])
        torch.testing.assert_close(avg.features(x), t[:, 1:].mean(1))
    assert cls.identity["pooling"].startswith("cls of layer blocks.1 tokens")
    assert artifact_key(cls.identity) != artifact_key(avg.identity)


def test_clip_encoder_layer_tap_and_transformers4_alias(tiny_clip_dir: Path) -> None:
    from transformers import CLIPVisionModel

    name = f"hf_clip:{tiny_clip_dir}"
    bb = load_backbone(name, layer="vision_model.encoder.layers.1", pooling="avg")
    assert bb.identity["layer"] == "encoder.layers.1" and bb.feature_dim == 32
    ref = CLIPVisionModel.from_pretrained(str(tiny_clip_dir), local_files_only=True).eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.inference_mode():
        hidden = ref(pixel_values=x, output_hidden_states=True).hidden_states  # embeddings, then each layer
        torch.testing.assert_close(bb.features(x), hidden[2][:, 1:].mean(1))
        torch.testing.assert_close(load_backbone(name, layer="encoder.layers.1").features(x), hidden[2][:, 0])


def test_lite0_block_tap_and_unreachable_layer() -> None:
    from llmvem.vision.trainable import split_backbone

    lite0 = load_backbone("efficientnet_lite0")
    bb = tap_layer(lite0, "_blocks.9")
    assert bb.feature_dim == 112 and bb.input_size == (3, 224, 224)
    split = split_backbone("efficientnet_lite0", trainable_blocks=6)  # the bottom ends with _blocks.9
    x = torch.randn(1, 3, 224, 224)
    with torch.inference_mode():
        torch.testing.assert_close(bb.features(x), split.bottom(x).mean(dim=(2, 3)), rtol=1e-4, atol=1e-5)
    with pytest.raises(BackendError, match="not reached"):
        tap_layer(lite0, "_fc")  # the classifier comes after the pooled features


def test_unknown_layer_lists_close_and_valid_names(resnet: Any) -> None:
    with pytest.raises(BackendError, match=r"no layer 'layer5'; did you mean layer4.*valid names include: conv1"):
        tap_layer(resnet, "layer5")
    with pytest.raises(BackendError, match="did you mean layer3"):
        load_backbone("timm:resnet18", layer="layr3")
    names = layer_names(resnet, max_depth=1)
    assert names[:5] == ["conv1", "bn1", "act1", "maxpool", "layer1"] and "layer1.0" not in names
    with pytest.raises(BackendError, match="pooling must be one of"):
        tap_layer(resnet, "layer3", pooling="mean")


def test_extract_features_caches_per_layer(images: list[Path], tmp_path: Path, resnet: Any) -> None:
    store = ArtifactStore(tmp_path / "store")
    stim = StimulusSet.from_paths(images)
    l2 = extract_features(stim, backbone="timm:resnet18", layer="layer2", store=store, progress=False)
    l3 = extract_features(stim, backbone="timm:resnet18", layer="layer3", store=store, progress=False)
    last = extract_features(stim, backbone="timm:resnet18", store=store, progress=False)
    assert l2.values.shape == (3, 128) and l3.values.shape == (3, 256) and last.values.shape == (3, 512)
    assert len({l2.key, l3.key, last.key}) == 3 and len(store.entries(FEATURES_KIND)) == 3
    assert l3.source == "timm:resnet18@layer3"
    again = extract_features(stim, backbone=resnet, layer="layer3", store=store, progress=False)  # a built backbone
    assert again.key == l3.key
    np.testing.assert_array_equal(again.values, l3.values)
    with pytest.raises(ConfigError, match="pooling"):
        extract_features(stim, backbone=resnet, pooling="max", store=store, progress=False)


def test_cli_features_layer(images: list[Path], tmp_path: Path) -> None:
    from llmvem.cli.app import app

    runner = CliRunner()
    out = tmp_path / "l3.npy"
    args = ["features", str(images[0].parent), "--backbone", "timm:resnet18", "--no-progress", "-o", str(out)]
    res = runner.invoke(app, [*args, "--layer", "layer3", "--pooling", "max"])
    assert res.exit_code == 0, res.output
    assert np.load(out).shape == (3, 256)
    bad = runner.invoke(app, [*args, "--layer", "layer9"])
    assert bad.exit_code == 2 and "no layer 'layer9'" in bad.output and "layer4" in bad.output
