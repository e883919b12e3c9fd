"""The backbone registry beyond EfficientNet: Hugging Face CLIP vision towers, timm ViT/ConvNeXt, pooling options."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from llmvem.errors import BackendError, RegistryError
from llmvem.hashing import artifact_key
from llmvem.vision import POOLINGS, load_backbone

#: a 3-block ViT on 32 × 32 images (patches of 8: 16 patch tokens + the class token)
TINY_VIT: dict[str, Any] = {"model_kwargs": {"img_size": 32, "patch_size": 8, "depth": 3}}


def _image(seed: int = 0, size: tuple[int, int] = (60, 45)) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))


# --------------------------------------------------------------------------- Hugging Face CLIP
def test_hf_clip_vision_tower_matches_transformers(tiny_clip_dir: Path) -> None:
    from transformers import CLIPVisionModel

    bb = load_backbone(f"hf_clip:{tiny_clip_dir}")
    assert bb.feature_dim == 32 and bb.input_size == (3, 32, 32) and bb.num_prefix_tokens == 1
    ident = bb.identity
    assert ident["name"] == f"hf_clip:{tiny_clip_dir}" and ident["model"] == str(tiny_clip_dir.resolve())
    assert "model.safetensors" in ident["weights"]["files"] and ident["pooling"].startswith("cls")
    artifact_key(ident)
    ref = CLIPVisionModel.from_pretrained(str(tiny_clip_dir), local_files_only=True).eval()
    x = torch.stack([bb.preprocess(_image(s)) for s in range(3)])
    assert x.shape == (3, 3, 32, 32)
    with torch.inference_mode():
        out = ref(pixel_values=x)
        torch.testing.assert_close(bb.features(x), out.pooler_output)
        avg = load_backbone(f"hf_clip:{tiny_clip_dir}", pooling="avg")
        mx = load_backbone(f"hf_clip:{tiny_clip_dir}", pooling="max")
        torch.testing.assert_close(avg.features(x), out.last_hidden_state[:, 1:].mean(1))
        torch.testing.assert_close(mx.features(x), out.last_hidden_state[:, 1:].amax(1))
    keys = {artifact_key(b.identity) for b in (bb, avg, mx)}
    assert len(keys) == 3  # pooling is part of the identity


def test_hf_clip_full_checkpoint_and_preprocessor_config(tiny_clip_full_dir: Path) -> None:
    from transformers import CLIPModel

    bb = load_backbone(f"hf_clip:{tiny_clip_full_dir}")
    prep = bb.identity["preprocessing"]
    assert prep["resize_shorter_side"] == 40 and prep["crop"] == [32, 32] and prep["mean"] == [0.5] * 3
    white = bb.preprocess(Image.new("L", (80, 50), color=255))  # shorter side 50 → 40, centre crop 32
    assert white.shape == (3, 32, 32) and torch.allclose(white, torch.full((3, 32, 32), 2.0))
    full = CLIPModel.from_pretrained(str(tiny_clip_full_dir), local_files_only=True).eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.inference_mode():
        torch.testing.assert_close(bb.features(x), full.vision_model(pixel_values=x).pooler_output)


def test_hf_clip_offline_errors(tmp_path: Path, tiny_clip_dir: Path) -> None:
    with pytest.raises(BackendError, match="not in the local Hugging Face cache"):
        load_backbone("hf_clip:nobody/no-such-clip-model")
    with pytest.raises(BackendError, match="no model folder"):
        load_backbone(f"hf_clip:{tmp_path / 'missing'}")
    other = tmp_path / "bert"
    other.mkdir()
    (other / "config.json").write_text(json.dumps({"model_type": "bert"}))
    with pytest.raises(BackendError, match="expected a CLIP model"):
        load_backbone(f"hf_clip:{other}")
    no_weights = tmp_path / "no-weights"
    shutil.copytree(tiny_clip_dir, no_weights)
    (no_weights / "model.safetensors").unlink()
    with pytest.raises(BackendError, match="no weights"):
        load_backbone(f"hf_clip:{no_weights}")
    with pytest.raises(BackendError, match="pooling must be one of"):
        load_backbone(f"hf_clip:{tiny_clip_dir}", pooling="mean")


def test_unknown_backbone_lists_names_and_prefixes() -> None:
    with pytest.raises(RegistryError, match=r"efficientnet_lite0, timm:<architecture>, hf_clip:"):
        load_backbone("resnet18")
    with pytest.raises(BackendError, match="hub id or a folder"):
        load_backbone("hf_clip:")


# --------------------------------------------------------------------------- timm families and pooling
@pytest.mark.parametrize(
    ("arch", "kwargs", "dim"),
    [("resnet18", {}, 512), ("vit_tiny_patch16_224", TINY_VIT, 192), ("convnext_atto", {}, 320)],
)
def test_timm_families_random_weights(arch: str, kwargs: dict[str, Any], dim: int) -> None:
    bb = load_backbone(f"timm:{arch}", seed=3, **kwargs)
    assert bb.feature_dim == dim and bb.identity["weights"]["seed"] == 3
    x = bb.preprocess(_image())[None]
    assert x.shape[1:] == bb.input_size
    with torch.inference_mode():
        f = bb.features(x)
    assert f.shape == (1, dim) and torch.isfinite(f).all()


def test_timm_model_kwargs_set_input_size_and_identity() -> None:
    bb = load_backbone("timm:vit_tiny_patch16_224", **TINY_VIT)
    assert bb.input_size == (3, 32, 32) and bb.num_prefix_tokens == 1
    assert bb.identity["model_kwargs"] == {"depth": 3, "img_size": 32, "patch_size": 8}
    assert bb.preprocess(_image(size=(100, 80))).shape == (3, 32, 32)
    deeper = load_backbone("timm:vit_tiny_patch16_224", model_kwargs={**TINY_VIT["model_kwargs"], "depth": 2})
    assert artifact_key(bb.identity) != artifact_key(deeper.identity)


def test_timm_pooling_options() -> None:
    x = torch.randn(2, 3, 64, 64)
    cnn = load_backbone("timm:resnet18")
    cnn_max = load_backbone("timm:resnet18", pooling="max")
    net: Any = cnn_max.module
    with torch.inference_mode():
        fmap = net.forward_features(x)
        torch.testing.assert_close(cnn_max.features(x), fmap.amax(dim=(2, 3)))
        torch.testing.assert_close(cnn.features(x), fmap.mean(dim=(2, 3)))
    assert artifact_key(cnn.identity) != artifact_key(cnn_max.identity)
    with pytest.raises(BackendError, match="no class token"):
        load_backbone("timm:resnet18", pooling="cls")

    xv = torch.randn(2, 3, 32, 32)
    vit_cls = load_backbone("timm:vit_tiny_patch16_224", pooling="cls", **TINY_VIT)
    vit_avg = load_backbone("timm:vit_tiny_patch16_224", pooling="avg", **TINY_VIT)
    vnet: Any = vit_cls.module
    with torch.inference_mode():
        tokens = vnet.forward_features(xv)  # (2, 17, 192), final norm applied
        torch.testing.assert_close(vit_cls.features(xv), tokens[:, 0])
        torch.testing.assert_close(vit_avg.features(xv), tokens[:, 1:].mean(1))


def test_lite0_pooling() -> None:
    avg, mx = load_backbone("efficientnet_lite0"), load_backbone("efficientnet_lite0", pooling="max")
    assert avg.identity["pooling"] == "global average of extract_features (1280 x 7 x 7)"  # unchanged: caches valid
    assert artifact_key(avg.identity) != artifact_key(mx.identity)
    x = torch.randn(1, 3, 224, 224)
    net: Any = mx.module
    with torch.inference_mode():
        torch.testing.assert_close(mx.features(x), net.extract_features(x).amax(dim=(2, 3)))
    with pytest.raises(BackendError, match="no class token"):
        load_backbone("efficientnet_lite0", pooling="cls")
    assert set(POOLINGS) == {"avg", "cls", "max"}
