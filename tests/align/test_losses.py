"""Alignment losses on mixed batches (mixup / CutMix): soft InfoNCE targets and mixed regression targets."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from llmvem.align.heads import task_loss
from llmvem.align.losses import ALIGN_LOSSES, infonce, infonce_one_way, mixed_targets

FLIP4 = torch.tensor([3, 2, 1, 0])


def _batch() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return torch.randn(4, 5, generator=g, dtype=torch.float64), torch.randn(4, 5, generator=g, dtype=torch.float64)


def _log_softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(1, keepdims=True)
    return z - np.log(np.exp(z).sum(1, keepdims=True))


def test_mixed_targets_rows_are_distributions() -> None:
    t = mixed_targets(torch.tensor([2, 1, 0]), 0.7)  # the middle sample is its own partner
    expected = [[0.7, 0, 0.3], [0, 1.0, 0], [0.3, 0, 0.7]]
    torch.testing.assert_close(t, torch.tensor(expected), rtol=0, atol=1e-6)
    torch.testing.assert_close(mixed_targets(FLIP4, 0.25).sum(1), torch.ones(4))


@pytest.mark.parametrize("name", sorted(ALIGN_LOSSES.names()))
def test_lam_one_is_the_unmixed_loss(name: str) -> None:
    image, text = _batch()
    if name == "visual_words":
        text = torch.softmax(text, -1)
    fn = ALIGN_LOSSES.get(name)
    torch.testing.assert_close(fn(image, text, 0.2, partner=FLIP4, lam=1.0), fn(image, text, 0.2))


def test_soft_infonce_equals_the_hand_computed_value() -> None:
    image, text = _batch()
    tau, lam = 0.2, 0.5
    i = image.numpy() / np.linalg.norm(image.numpy(), axis=1, keepdims=True)
    t = text.numpy() / np.linalg.norm(text.numpy(), axis=1, keepdims=True)
    logits = i @ t.T / tau
    target = lam * np.eye(4) + (1 - lam) * np.eye(4)[::-1]  # own text and partner's (the batch flipped), 1/2 each
    i2t = -(target * _log_softmax(logits)).sum(1).mean()
    t2i = -(target.T * _log_softmax(logits.T)).sum(1).mean()
    got = infonce(image, text, tau, partner=FLIP4, lam=lam)
    np.testing.assert_allclose(float(got), 0.5 * (i2t + t2i), rtol=1e-10)
    np.testing.assert_allclose(float(infonce_one_way(image, text, tau, partner=FLIP4, lam=lam)), i2t, rtol=1e-10)
    # the mixed loss is not the plain one, and its gradient flows
    image.requires_grad_(True)
    infonce(image, text, tau, partner=FLIP4, lam=0.3).backward()
    assert image.grad is not None and torch.isfinite(image.grad).all()
    assert abs(float(got) - float(infonce(image.detach(), text, tau))) > 1e-3


def test_regression_and_word_targets_are_mixed() -> None:
    image, text = _batch()
    unit = text / text.norm(dim=1, keepdim=True)
    mix = 0.3 * unit + 0.7 * unit[FLIP4]
    cos = torch.nn.functional.cosine_similarity(image, mix, dim=1)
    torch.testing.assert_close(ALIGN_LOSSES.get("cosine")(image, text, partner=FLIP4, lam=0.3), (1 - cos).mean())
    torch.testing.assert_close(ALIGN_LOSSES.get("byol")(image, text, partner=FLIP4, lam=0.3), (2 - 2 * cos).mean())
    words = torch.softmax(text, -1).float()
    mixed_words = 0.3 * words + 0.7 * words[FLIP4]
    torch.testing.assert_close(
        ALIGN_LOSSES.get("visual_words")(image, words, partner=FLIP4, lam=0.3),
        ALIGN_LOSSES.get("visual_words")(image, mixed_words),
    )


def test_mixed_task_losses() -> None:
    g = torch.Generator().manual_seed(1)
    out = torch.randn(4, 3, generator=g)
    y = torch.tensor([0, 2, 1, 2])
    ce = torch.nn.functional.cross_entropy
    want = 0.4 * ce(out, y, label_smoothing=0.1) + 0.6 * ce(out, y[FLIP4], label_smoothing=0.1)
    torch.testing.assert_close(task_loss("classifier", out, y, 0.1, partner_target=y[FLIP4], lam=0.4), want)
    labels = (torch.rand(4, 3, generator=g) < 0.5).float()
    soft = 0.4 * labels + 0.6 * labels[FLIP4]
    bce = torch.nn.functional.binary_cross_entropy_with_logits(out, soft)
    torch.testing.assert_close(task_loss("multilabel", out, labels, partner_target=labels[FLIP4], lam=0.4), bce)
    mse = torch.nn.functional.mse_loss(out, soft)
    torch.testing.assert_close(task_loss("voxels", out, labels, partner_target=labels[FLIP4], lam=0.4), mse)
    unmixed = task_loss("voxels", out, labels, partner_target=labels[FLIP4])  # lam = 1
    torch.testing.assert_close(unmixed, task_loss("voxels", out, labels))
