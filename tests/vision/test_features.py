"""Cached feature extraction over real objects92 images."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from llmvem.data.stimuli import StimulusSet
from llmvem.errors import DataError
from llmvem.store import ArtifactStore
from llmvem.vision import Backbone, FeatureMatrix, extract_features, load_backbone
from llmvem.vision.features import FEATURES_KIND

NAMES = ["image_63.jpg", "image_32.jpg", "image_70.jpg"]


@pytest.fixture(scope="module")
def lite0() -> Backbone:
    return load_backbone("efficientnet_lite0")


@pytest.fixture
def images(data_dir: Path, tmp_path: Path) -> list[Path]:
    """Private copies of three objects92 images (so tests may change their bytes)."""
    out = []
    for name in NAMES:
        dst = tmp_path / "images" / name
        dst.parent.mkdir(exist_ok=True)
        shutil.copyfile(data_dir / "objects92" / "images" / name, dst)
        out.append(dst)
    return out


@pytest.fixture
def store(tmp_path: Path) -> ArtifactStore:
    return ArtifactStore(tmp_path / "store")


class _Counter:
    """Wraps Backbone.features to count the images that reach the model."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.images = 0
        original = Backbone.features

        def counting(bb: Backbone, batch: torch.Tensor) -> torch.Tensor:
            self.images += batch.shape[0]
            return original(bb, batch)

        monkeypatch.setattr(Backbone, "features", counting)


def test_features_shape_values_and_cache_hit(
    images: list[Path], store: ArtifactStore, lite0: Backbone, monkeypatch: pytest.MonkeyPatch
) -> None:
    stim = StimulusSet.from_paths(images)
    counter = _Counter(monkeypatch)
    fm = extract_features(stim, backbone=lite0, batch_size=2, store=store, progress=False)
    assert isinstance(fm, FeatureMatrix)
    assert fm.values.shape == (3, 1280) and fm.values.dtype == np.float32
    assert fm.ids == ["image_63", "image_32", "image_70"] and fm.source == "efficientnet_lite0"
    assert counter.images == 3 and store.has(FEATURES_KIND, fm.key or "")
    with torch.inference_mode():
        direct = lite0.features(torch.stack([lite0.preprocess(Image.open(p)) for p in images])).numpy()
    np.testing.assert_allclose(fm.values, direct, rtol=1e-4, atol=1e-5)

    counter.images = 0
    again = extract_features(stim, backbone=lite0, batch_size=3, store=store, progress=True)
    assert counter.images == 0  # served from the store
    np.testing.assert_array_equal(again.values, fm.values)
    assert again.key == fm.key


def test_default_backbone_by_name_hits_the_same_entry(
    images: list[Path], store: ArtifactStore, lite0: Backbone, monkeypatch: pytest.MonkeyPatch
) -> None:
    stim = StimulusSet.from_paths(images[:1])
    first = extract_features(stim, backbone=lite0, store=store, progress=False)
    counter = _Counter(monkeypatch)
    by_name = extract_features(stim, store=store, progress=False)  # "efficientnet_lite0", loaded anew
    assert counter.images == 0 and by_name.key == first.key


def test_ids_are_not_part_of_the_key(
    images: list[Path], store: ArtifactStore, lite0: Backbone, monkeypatch: pytest.MonkeyPatch
) -> None:
    fm = extract_features(StimulusSet.from_paths(images), backbone=lite0, store=store, progress=False)
    counter = _Counter(monkeypatch)
    renamed = extract_features(
        StimulusSet.from_paths(images, ids=["a", "b", "c"]), backbone=lite0, store=store, progress=False
    )
    assert counter.images == 0
    assert renamed.ids == ["a", "b", "c"] and renamed.key == fm.key
    np.testing.assert_array_equal(renamed.values, fm.values)
    assert store.get_extra(FEATURES_KIND, fm.key or "")["ids"] == fm.ids  # first ids kept alongside


def test_order_and_content_change_the_key(
    images: list[Path], store: ArtifactStore, lite0: Backbone, monkeypatch: pytest.MonkeyPatch
) -> None:
    fm = extract_features(StimulusSet.from_paths(images[:2]), backbone=lite0, store=store, progress=False)
    counter = _Counter(monkeypatch)
    rev = extract_features(StimulusSet.from_paths(images[:2][::-1]), backbone=lite0, store=store, progress=False)
    assert rev.key != fm.key and counter.images == 2
    np.testing.assert_allclose(rev.values, fm.values[::-1], rtol=1e-4, atol=1e-5)

    with open(images[0], "ab") as fh:  # one more byte (after the JPEG end marker: decodes the same)
        fh.write(b"\0")
    changed = extract_features(StimulusSet.from_paths(images[:2]), backbone=lite0, store=store, progress=False)
    assert changed.key not in (fm.key, rev.key) and counter.images == 4
    np.testing.assert_allclose(changed.values, fm.values, rtol=1e-4, atol=1e-5)


def test_unreadable_image_raises_data_error_naming_it(
    images: list[Path], tmp_path: Path, store: ArtifactStore, lite0: Backbone
) -> None:
    bad = tmp_path / "images" / "broken.jpg"
    bad.write_bytes(b"this is not a jpeg")
    stim = StimulusSet.from_paths([images[0], bad], verify=False)
    with pytest.raises(DataError, match=r"broken\.jpg"):
        extract_features(stim, backbone=lite0, store=store, progress=False)
    assert store.entries(FEATURES_KIND) == []  # nothing half-written

    gone = StimulusSet.from_paths([images[0], tmp_path / "images" / "gone.jpg"], verify=False)
    with pytest.raises(DataError, match=r"gone\.jpg"):
        extract_features(gone, backbone=lite0, store=store, progress=False)


def test_timm_random_backbone_by_name(images: list[Path], store: ArtifactStore) -> None:
    fm = extract_features(StimulusSet.from_paths(images[:2]), backbone="timm:resnet18", store=store, progress=False)
    assert fm.values.shape == (2, 512) and fm.source == "timm:resnet18"
    assert np.isfinite(fm.values).all()
