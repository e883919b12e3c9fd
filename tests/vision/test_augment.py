"""Per-sample crop / flip augmentation of preprocessed batches."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from llmvem.errors import ConfigError
from llmvem.vision.augment import apply_augment, sample_augment_params


def test_params_are_seeded_and_inside_the_image() -> None:
    a = sample_augment_params(np.random.default_rng([3, 1]), 500, 40, 30, "crop_flip", min_scale=0.3)
    b = sample_augment_params(np.random.default_rng([3, 1]), 500, 40, 30, "crop_flip", min_scale=0.3)
    c = sample_augment_params(np.random.default_rng([3, 2]), 500, 40, 30, "crop_flip", min_scale=0.3)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    top, left, h, w, flip = a.T
    assert (top >= 0).all() and (left >= 0).all() and (top + h <= 40).all() and (left + w <= 30).all()
    assert (h >= 1).all() and (w >= 1).all() and ((h < 40) | (w < 30)).mean() > 0.9
    area = h * w / (40 * 30)
    assert area.min() > 0.2 and area.max() <= 1.0
    assert 0.4 < flip.mean() < 0.6
    flips = sample_augment_params(np.random.default_rng(0), 50, 40, 30, "flip")
    assert (flips[:, :4] == [0, 0, 40, 30]).all() and 0 < flips[:, 4].sum() < 50
    assert (sample_augment_params(np.random.default_rng(0), 5, 40, 30, "none") == [0, 0, 40, 30, 0]).all()
    with pytest.raises(ConfigError, match="augment must be one of"):
        sample_augment_params(np.random.default_rng(0), 5, 40, 30, "mixup")


def test_each_sample_keeps_its_place() -> None:
    # sample i is constant i (+ a horizontal ramp): whatever its crop, row i of the output holds values near i
    ramp = torch.linspace(0, 0.5, 24)
    x = torch.stack([torch.full((3, 20, 24), float(i)) + ramp for i in range(6)])
    params = sample_augment_params(np.random.default_rng(0), 6, 20, 24, "crop_flip", min_scale=0.2)
    out = apply_augment(x, params)
    assert out.shape == x.shape and out.dtype == x.dtype
    for i in range(6):
        assert float(out[i].min()) >= i - 1e-4 and float(out[i].max()) <= i + 0.5 + 1e-4
    flipped = params[:, 4] == 1
    identity = np.tile([0, 0, 20, 24, 0], (6, 1))
    identity[:, 4] = params[:, 4]
    out_flip = apply_augment(x, identity)
    for i in range(6):  # flip only: exact mirror image (ramp reversed), or the image itself
        torch.testing.assert_close(out_flip[i], x[i].flip(-1) if flipped[i] else x[i])
    with pytest.raises(ConfigError):
        apply_augment(x, params[:3])
