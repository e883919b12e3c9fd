"""Mixup and CutMix of preprocessed batches: seeded parameters, pasted boxes, convex combinations."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from llmvem.errors import ConfigError
from llmvem.vision.mix import MixParams, apply_mix, partner_positions, sample_mix_params


def _draws(seed: int, n: int, **kw: float) -> list[MixParams]:
    rng = np.random.default_rng([seed, 0, 0x313])
    return [sample_mix_params(rng, 20, 30, **kw) for _ in range(n)]


def test_params_are_seeded_and_follow_timm() -> None:
    both = _draws(0, 400, mixup_alpha=0.8, cutmix_alpha=1.0)
    assert both == _draws(0, 400, mixup_alpha=0.8, cutmix_alpha=1.0)
    assert both != _draws(1, 400, mixup_alpha=0.8, cutmix_alpha=1.0)
    share = np.mean([p.mode == "cutmix" for p in both])
    assert 0.4 < share < 0.6  # one of the two per batch, with probability 1/2
    for p in both:
        assert 0 <= p.lam <= 1
        if p.mode == "cutmix":  # lam is the area share outside the box
            top, bottom, left, right = p.box
            assert 0 <= top <= bottom <= 20 and 0 <= left <= right <= 30
            assert p.lam == pytest.approx(1 - (bottom - top) * (right - left) / 600)
    assert {p.mode for p in _draws(0, 50, mixup_alpha=0.2)} == {"mixup"}
    assert {p.mode for p in _draws(0, 50, cutmix_alpha=0.2)} == {"cutmix"}
    assert _draws(0, 20, mixup_alpha=0.2, mix_prob=0.0) == [MixParams()] * 20
    assert _draws(0, 5) == [MixParams()] * 5  # both off
    some = _draws(0, 200, mixup_alpha=0.2, mix_prob=0.3)
    assert 0.15 < np.mean([p.active for p in some]) < 0.45
    with pytest.raises(ConfigError, match="mix_prob"):
        sample_mix_params(np.random.default_rng(0), 8, 8, mixup_alpha=1.0, mix_prob=2.0)


def test_cutmix_pastes_the_partners_box_and_mixup_is_convex() -> None:
    x = torch.arange(4, dtype=torch.float32).view(4, 1, 1, 1).expand(4, 3, 6, 8).clone()  # sample i is constant i
    partner = x[torch.from_numpy(partner_positions(4))]
    np.testing.assert_array_equal(partner_positions(4), [3, 2, 1, 0])
    cut = apply_mix(x, partner, MixParams("cutmix", 1 - 6 / 48, (1, 3, 2, 5)))
    inside = torch.zeros(6, 8, dtype=torch.bool)
    inside[1:3, 2:5] = True
    for i in range(4):
        assert (cut[i][:, inside] == 3 - i).all() and (cut[i][:, ~inside] == i).all()
    mixed = apply_mix(x, partner, MixParams("mixup", 0.3))
    torch.testing.assert_close(mixed, 0.3 * x + 0.7 * partner)
    torch.testing.assert_close(mixed[:, 0, 0, 0], torch.tensor([2.1, 1.7, 1.3, 0.9]))
    assert apply_mix(x, partner, MixParams()) is x  # unmixed batch: untouched
    assert (x == torch.arange(4.0).view(4, 1, 1, 1)).all()  # inputs never modified in place
    with pytest.raises(ConfigError, match="same shape"):
        apply_mix(x, partner[:2], MixParams("mixup", 0.5))
