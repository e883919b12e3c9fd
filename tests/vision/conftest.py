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
