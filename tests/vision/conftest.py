"""Tiny randomly initialised models for the vision tests (built offline, saved like real checkpoints)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch


def _tiny_clip_config() -> Any:
    from transformers import CLIPVisionConfig

    return CLIPVisionConfig(
        hidden_size=32, intermediate_size=64, num_hidden_layers=3, num_attention_heads=2, image_size=32, patch_size=8
    )


@pytest.fixture(scope="session")
def tiny_clip_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A ``CLIPVisionModel`` (3 layers, hidden 32, 32 × 32 images) saved with ``save_pretrained``."""
    from transformers import CLIPVisionModel

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = CLIPVisionModel(_tiny_clip_config()).eval()
    out = tmp_path_factory.mktemp("tiny-clip-vision")
    model.save_pretrained(out)
    return out


@pytest.fixture(scope="session")
def tiny_clip_full_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A whole ``CLIPModel`` (vision + text towers) with the tiny vision tower, plus a preprocessor config."""
    import json

    from transformers import CLIPConfig, CLIPModel

    text = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2}
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(1)
        model = CLIPModel(
            CLIPConfig(
                vision_config=_tiny_clip_config().to_dict(), text_config={**text, "vocab_size": 99}, projection_dim=16
            )
        ).eval()
    out = tmp_path_factory.mktemp("tiny-clip-full")
    model.save_pretrained(out)
    (out / "preprocessor_config.json").write_text(
        json.dumps(
            {
                "size": {"shortest_edge": 40},
                "crop_size": {"height": 32, "width": 32},
                "image_mean": [0.5, 0.5, 0.5],
                "image_std": [0.25, 0.25, 0.25],
            }
        )
    )
    return out


#: the shape every tiny transformer below shares: 2 layers, hidden 32, 32 × 32 images in patches of 8
_TINY_VIT = {
    "hidden_size": 32,
    "intermediate_size": 64,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "image_size": 32,
    "patch_size": 8,
}


def _save_hf(tmp_path_factory: pytest.TempPathFactory, config_class: str, model_class: str, seed: int) -> Path:
    import transformers

    config = getattr(transformers, config_class)(**_TINY_VIT)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = getattr(transformers, model_class)(config).eval()
    out = tmp_path_factory.mktemp(f"tiny-{config.model_type}")
    model.save_pretrained(out)
    return out


@pytest.fixture(scope="session")
def tiny_hf_dirs(tmp_path_factory: pytest.TempPathFactory, tiny_clip_dir: Path) -> dict[str, Path]:
    """Tiny random Hugging Face vision models saved with ``save_pretrained``: model type → folder."""
    return {
        "clip": tiny_clip_dir,
        "siglip": _save_hf(tmp_path_factory, "SiglipVisionConfig", "SiglipVisionModel", 2),
        "dinov2": _save_hf(tmp_path_factory, "Dinov2Config", "Dinov2Model", 3),
        "vit": _save_hf(tmp_path_factory, "ViTConfig", "ViTModel", 4),
    }


@pytest.fixture(scope="session")
def tiny_open_clip_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An open_clip model folder (``open_clip_config.json`` + weights, as ``local-dir:`` reads it): a 2-block ViT
    tower (width 32, 32 × 32 images, patches of 8) and a 1-layer text tower, random weights."""
    import json

    import open_clip
    from safetensors.torch import save_file

    model_cfg = {
        "embed_dim": 16,
        "vision_cfg": {"image_size": 32, "layers": 2, "width": 32, "head_width": 16, "patch_size": 8, "mlp_ratio": 2.0},
        "text_cfg": {"context_length": 8, "vocab_size": 64, "width": 32, "heads": 2, "layers": 1},
    }
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(5)
        model = open_clip.CLIP(**model_cfg)
    out = tmp_path_factory.mktemp("tiny-open-clip")
    (out / "open_clip_config.json").write_text(json.dumps({"model_cfg": model_cfg, "preprocess_cfg": {}}))
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(out / "open_clip_model.safetensors"))
    return out
