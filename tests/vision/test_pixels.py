"""Whole-network inputs as 8-bit pixels: the affine map read off each backbone, exact round trips, training on a
PixelArray equal to training on the float array it stands for, and the store path (memory-mapped, uint8)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from llmvem.align.finetune import FinetuneData, finetune
from llmvem.config import FinetuneConfig
from llmvem.errors import DataError
from llmvem.hashing import hash_array
from llmvem.vision.pixels import PixelArray, pixel_affine


@pytest.mark.parametrize("name", ["efficientnet_lite0", "timm:test_resnet"])
def test_each_backbone_normalises_pixels_affinely(name: str) -> None:
    from llmvem.vision import load_backbone

    bb = load_backbone(name)
    affine = pixel_affine(bb.preprocess)
    assert affine is not None
    rng = np.random.default_rng(0)
    img = Image.fromarray(rng.integers(0, 256, size=(240, 260, 3), dtype=np.uint8))
    x = bb.preprocess(img).numpy()[None]
    px = PixelArray.quantize(x, *affine)
    assert px is not None and px.dtype == np.uint8
    np.testing.assert_allclose(PixelArray(px, *affine)[:], x, rtol=0, atol=1e-5)
    if name == "efficientnet_lite0":  # TF-Lite: (p - 127) / 128
        np.testing.assert_allclose(affine[0], 1 / 128)
        np.testing.assert_allclose(affine[1], -127 / 128)


def test_quantize_refuses_what_is_not_a_pixel() -> None:
    scale, offset = np.full(3, 1 / 128, np.float32), np.full(3, -127 / 128, np.float32)
    x = (np.arange(2 * 3 * 2 * 2, dtype=np.float32).reshape(2, 3, 2, 2) - 127) / 128
    assert PixelArray.quantize(x, scale, offset) is not None
    assert PixelArray.quantize(x + 0.3 / 128, scale, offset) is None  # between pixels
    assert PixelArray.quantize(np.full((1, 3, 1, 1), 2.0, np.float32), scale, offset) is None  # beyond 255
    assert pixel_affine(lambda im: torch.rand(3, 8, 8)) is None  # not a fixed map of the pixels
    with pytest.raises(DataError, match="uint8"):
        PixelArray(np.zeros((2, 3, 4, 4), np.float32), scale, offset)


def test_training_on_pixels_equals_training_on_floats(tmp_path: Path) -> None:
    from llmvem.vision.trainable import split_backbone

    whole = split_backbone("timm:test_resnet", trainable_blocks=None)
    rng = np.random.default_rng(0)
    scale = np.asarray([1 / 58.4, 1 / 57.1, 1 / 57.4], np.float32)
    offset = np.asarray([-2.12, -2.04, -1.80], np.float32)
    px = PixelArray(rng.integers(0, 256, size=(20, 3, 32, 32), dtype=np.uint8), scale, offset)
    text, labels = rng.normal(size=(20, 8)).astype(np.float32), (rng.random((20, 4)) < 0.4) * 1.0
    cfg = FinetuneConfig(epochs=2, batch_size=8, warmup_epochs=1, lr=1e-3, trainable_blocks=None, tensorboard=False,
                         augment="crop_flip", mixup_alpha=0.4)  # fmt: skip
    tr, va = np.arange(16), np.arange(16, 20)
    a = finetune(whole, FinetuneData(px, text, labels), tr, va, cfg, 1.0, "multilabel", seed=1, ckpt_dir=tmp_path / "a")
    b = finetune(whole, FinetuneData(px[:], text, labels), tr, va, cfg, 1.0, "multilabel", seed=1,
                 ckpt_dir=tmp_path / "b")  # fmt: skip
    for k, v in a.state.items():
        torch.testing.assert_close(v, b.state[k], rtol=1e-4, atol=1e-5)
    assert a.history[-1]["val_total"] == pytest.approx(b.history[-1]["val_total"], rel=1e-4)
    assert hash_array(px) != hash_array(px[:]) and hash_array(px) == px.digest()


def test_whole_network_activations_are_stored_as_pixels(tmp_path: Path) -> None:
    from llmvem.data.stimuli import StimulusSet
    from llmvem.pipeline.common import cached_activations
    from llmvem.store import ArtifactStore
    from llmvem.vision.trainable import split_backbone

    rng = np.random.default_rng(1)
    for k in range(5):
        Image.fromarray(rng.integers(0, 256, size=(40, 50, 3), dtype=np.uint8)).save(tmp_path / f"im{k}.png")
    stim = StimulusSet.from_folder(tmp_path)
    store = ArtifactStore(tmp_path / "store")
    whole = split_backbone("timm:test_resnet", trainable_blocks=None)
    acts: Any = cached_activations(store, whole, stim, "cpu", False)
    assert isinstance(acts, PixelArray) and isinstance(acts.pixels, np.memmap) and acts.pixels.dtype == np.uint8
    expected = torch.stack([whole.backbone.preprocess(stim.load(k)) for k in range(5)]).numpy()
    np.testing.assert_allclose(acts[:], expected, rtol=0, atol=1e-5)
    again = cached_activations(store, whole, stim, "cpu", False)  # from the store
    assert isinstance(again, PixelArray) and again.digest() == acts.digest()
    # a frozen bottom still stores float32 activations
    top3 = cached_activations(store, split_backbone("timm:test_resnet", trainable_blocks=1), stim, "cpu", False)
    assert isinstance(top3, np.ndarray) and top3.dtype == np.float32


def test_images_that_are_not_affine_pixels_keep_float32(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from llmvem.data.stimuli import StimulusSet
    from llmvem.pipeline.common import cached_activations
    from llmvem.store import ArtifactStore
    from llmvem.vision.trainable import split_backbone

    for k in range(3):
        Image.new("RGB", (40, 40), (10 * k, 20, 30)).save(tmp_path / f"im{k}.png")
    stim, store = StimulusSet.from_folder(tmp_path), ArtifactStore(tmp_path / "store")
    calls = []

    def refuse(x: Any, scale: Any, offset: Any) -> None:
        calls.append(len(x))

    monkeypatch.setattr(PixelArray, "quantize", staticmethod(refuse))
    whole = split_backbone("timm:test_resnet", trainable_blocks=None)
    acts = cached_activations(store, whole, stim, "cpu", False)
    assert isinstance(acts, np.ndarray) and acts.dtype == np.float32 and acts.shape[0] == 3
    again = cached_activations(store, whole, stim, "cpu", False)
    assert calls == [3] and np.array_equal(again, acts)  # the refusal is remembered: no second quantizing pass
