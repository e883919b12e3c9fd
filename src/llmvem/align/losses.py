"""Alignment losses between image embeddings and text embeddings (registry ``ALIGN_LOSSES``).

Every loss takes ``image`` (B, D) and ``text`` (B, D) torch tensors (row i of each belongs to the same stimulus)
and returns a scalar. InfoNCE variants use the other rows of the batch as negatives.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from llmvem.registry import Registry

ALIGN_LOSSES: Registry[Callable[..., Any]] = Registry("alignment loss")


def _normalise(x: Any) -> Any:
    import torch.nn.functional as F

    return F.normalize(x, dim=-1)


@ALIGN_LOSSES.register("infonce")
def infonce(image: Any, text: Any, temperature: float = 0.1) -> Any:
    """Symmetric CLIP InfoNCE: mean of image→text and text→image cross-entropy over cosine logits / τ."""
    import torch
    import torch.nn.functional as F

    logits = _normalise(image) @ _normalise(text).T / temperature
    target = torch.arange(logits.shape[0], device=logits.device)
    return 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target))


@ALIGN_LOSSES.register("infonce_one_way")
def infonce_one_way(image: Any, text: Any, temperature: float = 0.1) -> Any:
    """One-way InfoNCE: each image must pick its own text among the batch's texts."""
    import torch
    import torch.nn.functional as F

    logits = _normalise(image) @ _normalise(text).T / temperature
    return F.cross_entropy(logits, torch.arange(logits.shape[0], device=logits.device))


@ALIGN_LOSSES.register("cosine")
def cosine_distance(image: Any, text: Any, temperature: float = 0.1) -> Any:
    """Mean cosine distance 1 − cos(image, text) (Doerig et al.'s image→LLM-embedding objective)."""
    return (1.0 - (_normalise(image) * _normalise(text)).sum(-1)).mean()


@ALIGN_LOSSES.register("byol")
def byol(image: Any, text: Any, temperature: float = 0.1) -> Any:
    """BYOL regression loss 2 − 2·cos(image, text)."""
    return (2.0 - 2.0 * (_normalise(image) * _normalise(text)).sum(-1)).mean()


@ALIGN_LOSSES.register("visual_words")
def visual_words(image: Any, text: Any, temperature: float = 0.1) -> Any:
    """VW-LMM's visual-word loss: KL(text ‖ softmax(image)), mean over the batch.

    Here ``image`` (B, V) are a vocabulary head's logits and ``text`` (B, V) each image's target distribution over
    the same vocabulary (rows sum to 1: the description's bag of words, see :mod:`llmvem.visualwords.targets`).
    ``temperature`` is ignored (a learnable linear head makes it redundant).
    """
    import torch.nn.functional as F

    from llmvem.errors import DataError

    if image.shape != text.shape:
        raise DataError(
            f"vocabulary mismatch: the vocabulary head gives {tuple(image.shape)} logits but the visual-word targets "
            f"have shape {tuple(text.shape)}; head and targets must use the same tokenizer"
        )
    return F.kl_div(F.log_softmax(image.float(), dim=-1), text.float(), reduction="batchmean")
