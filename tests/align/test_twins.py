"""Alignment losses and twin training."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from llmvem.align import ALIGN_LOSSES, train_twin
from llmvem.config import TrainConfig
from llmvem.errors import DataError


def test_infonce_matches_hand_computation() -> None:
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(5, 8, generator=g), torch.randn(5, 8, generator=g)
    tau = 0.2
    an, bn = a / a.norm(dim=1, keepdim=True), b / b.norm(dim=1, keepdim=True)
    logits = (an @ bn.T / tau).numpy()

    def ce(lg: np.ndarray) -> float:
        lse = np.log(np.exp(lg).sum(1))
        return float(np.mean(lse - np.diag(lg)))

    expected = 0.5 * (ce(logits) + ce(logits.T))
    assert ALIGN_LOSSES.get("infonce")(a, b, temperature=tau).item() == pytest.approx(expected, rel=1e-5)
    assert ALIGN_LOSSES.get("infonce_one_way")(a, b, temperature=tau).item() == pytest.approx(ce(logits), rel=1e-5)


def test_cosine_losses_zero_when_aligned() -> None:
    a = torch.randn(4, 6)
    assert ALIGN_LOSSES.get("cosine")(a, 3 * a).item() == pytest.approx(0.0, abs=1e-6)
    assert ALIGN_LOSSES.get("byol")(a, a).item() == pytest.approx(0.0, abs=1e-6)
    assert ALIGN_LOSSES.get("byol")(a, -a).item() == pytest.approx(4.0, abs=1e-5)


def test_aligned_twin_learns_the_text_space_and_baseline_does_not() -> None:
    rng = np.random.default_rng(0)
    n, d, t = 128, 32, 16
    x = rng.normal(size=(n, d)).astype(np.float32)
    text = np.tanh(x @ rng.normal(size=(d, t))).astype(np.float32)
    y = (x[:, :4] @ rng.normal(size=(4, 10))).astype(np.float32)
    cfg = TrainConfig(epochs=60, batch_size=32, embed_dim=32, hidden_dim=64, lr=3e-3, dropout=0.0)
    aligned = train_twin(x, y, text, cfg, lambda_align=1.0, seed=1)
    baseline = train_twin(x, y, None, cfg, lambda_align=0.0, seed=1)
    assert aligned.history[-1]["align"] < aligned.history[0]["align"] * 0.7
    assert baseline.history[-1]["align"] == 0.0
    assert baseline.history[-1]["task"] < baseline.history[0]["task"]
    z = aligned.embed(x)
    assert z.shape == (n, 32) and z.dtype == np.float32
    np.testing.assert_allclose(z, aligned.embed(x))  # eval mode: deterministic
    again = train_twin(x, y, text, cfg, lambda_align=1.0, seed=1)
    np.testing.assert_allclose(again.embed(x), z, rtol=1e-5, atol=1e-6)  # seeded


def test_bad_inputs() -> None:
    cfg = TrainConfig(epochs=1)
    x = np.zeros((10, 3), dtype=np.float32)
    with pytest.raises(DataError, match="needs text embeddings"):
        train_twin(x, np.zeros((10, 2)), None, cfg, lambda_align=1.0)
    with pytest.raises(DataError, match="9 task rows for 10"):
        train_twin(x, np.zeros((9, 2)), None, cfg, lambda_align=0.0)
    bad = x.copy()
    bad[0, 0] = np.nan
    with pytest.raises(DataError, match="NaN"):
        train_twin(bad, np.zeros((10, 2)), None, cfg, lambda_align=0.0)
