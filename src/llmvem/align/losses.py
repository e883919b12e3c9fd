"""Alignment losses between image embeddings and text embeddings (registry ``ALIGN_LOSSES``).

Every loss takes ``image`` (B, D) and ``text`` (B, D) torch tensors (row i of each belongs to the same stimulus)
and returns a scalar. InfoNCE variants use the other rows of the batch as negatives.

Mixed batches (mixup / CutMix): ``partner`` (B,) long gives the row of each image's partner and ``lam`` the weight of
its own stimulus, so image i depicts ``lam`` of stimulus i and ``1 - lam`` of stimulus ``partner[i]``. The target
is mixed alike: regression losses (cosine, BYOL) aim at the normalised mix of the two (normalised) text embeddings,
visual words at the mix of the two word distributions, and InfoNCE uses soft contrastive targets
(:func:`mixed_targets`: ``lam`` at the image's own text, ``1 - lam`` at its partner's). ``partner=None`` or
``lam=1`` is the unmixed loss.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from llmvem.registry import Registry

ALIGN_LOSSES: Registry[Callable[..., Any]] = Registry("alignment loss")


def _normalise(x: Any) -> Any:
    import torch.nn.functional as F

    return F.normalize(x, dim=-1)


def mixed_targets(partner: Any, lam: float, n: int | None = None) -> Any:
    """Soft contrastive targets (B, B) of a mixed batch: ``lam · I + (1 - lam) · P`` with ``P[i, partner[i]] = 1``.

    Row i is image i's target distribution over the batch's texts (rows sum to 1; a sample that is its own partner
    gets 1 on the diagonal); the text→image direction uses the transpose.

    Args:
        partner: (B,) long tensor, row of each sample's partner.
        lam: weight of each sample's own stimulus.
        n: B (default ``len(partner)``).
    """
    import torch

    n = len(partner) if n is None else n
    rows = torch.arange(n, device=partner.device)
    target = torch.eye(n, device=partner.device) * lam
    return target.index_put((rows, partner.long()), torch.full((n,), 1.0 - lam, device=partner.device), accumulate=True)


def _mixed_text(text: Any, partner: Any, lam: float) -> Any:
    """Regression target of a mixed batch: ``lam · t̂_i + (1 - lam) · t̂_partner(i)`` of the unit text rows (B, D)."""
    if partner is None or lam >= 1.0:
        return text
    unit = _normalise(text.float())
    return lam * unit + (1.0 - lam) * unit[partner]


@ALIGN_LOSSES.register("infonce")
def infonce(image: Any, text: Any, temperature: float = 0.1, partner: Any = None, lam: float = 1.0) -> Any:
    """Symmetric CLIP InfoNCE: mean of image→text and text→image cross-entropy over cosine logits (B, B) / τ.

    With ``partner`` / ``lam`` (a mixed batch) the targets are soft, :func:`mixed_targets` T: image→text row i has
    target T[i], text→image row j target T.T[j].
    """
    import torch
    import torch.nn.functional as F

    logits = _normalise(image) @ _normalise(text).T / temperature
    if partner is None or lam >= 1.0:
        target = torch.arange(logits.shape[0], device=logits.device)
        return 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target))
    soft = mixed_targets(partner.to(logits.device), lam, logits.shape[0]).to(logits.dtype)
    return 0.5 * (F.cross_entropy(logits, soft) + F.cross_entropy(logits.T, soft.T))


@ALIGN_LOSSES.register("infonce_one_way")
def infonce_one_way(image: Any, text: Any, temperature: float = 0.1, partner: Any = None, lam: float = 1.0) -> Any:
    """One-way InfoNCE: each image must pick its own text among the batch's texts (mixed: soft targets, as
    :func:`infonce`)."""
    import torch
    import torch.nn.functional as F

    logits = _normalise(image) @ _normalise(text).T / temperature
    if partner is None or lam >= 1.0:
        return F.cross_entropy(logits, torch.arange(logits.shape[0], device=logits.device))
    return F.cross_entropy(logits, mixed_targets(partner.to(logits.device), lam, logits.shape[0]).to(logits.dtype))


@ALIGN_LOSSES.register("cosine")
def cosine_distance(image: Any, text: Any, temperature: float = 0.1, partner: Any = None, lam: float = 1.0) -> Any:
    """Mean cosine distance 1 − cos(image, text) (Doerig et al.'s image→LLM-embedding objective)."""
    return (1.0 - (_normalise(image) * _normalise(_mixed_text(text, partner, lam))).sum(-1)).mean()


@ALIGN_LOSSES.register("byol")
def byol(image: Any, text: Any, temperature: float = 0.1, partner: Any = None, lam: float = 1.0) -> Any:
    """BYOL regression loss 2 − 2·cos(image, text)."""
    return (2.0 - 2.0 * (_normalise(image) * _normalise(_mixed_text(text, partner, lam))).sum(-1)).mean()


@ALIGN_LOSSES.register("visual_words")
def visual_words(image: Any, text: Any, temperature: float = 0.1, partner: Any = None, lam: float = 1.0) -> Any:
    """VW-LMM's visual-word loss: KL(text ‖ softmax(image)), mean over the batch.

    Here ``image`` (B, V) are a vocabulary head's logits and ``text`` (B, V) each image's target distribution over
    the same vocabulary (rows sum to 1: the description's bag of words, see :mod:`llmvem.visualwords.targets`);
    a mixed batch's target is ``lam · text[i] + (1 - lam) · text[partner[i]]``.
    ``temperature`` is ignored (a learnable linear head makes it redundant).
    """
    import torch.nn.functional as F

    from llmvem.errors import DataError

    if image.shape != text.shape:
        raise DataError(
            f"vocabulary mismatch: the vocabulary head gives {tuple(image.shape)} logits but the visual-word targets "
            f"have shape {tuple(text.shape)}; head and targets must use the same tokenizer"
        )
    target = text.float()
    if partner is not None and lam < 1.0:
        target = lam * target + (1.0 - lam) * target[partner]
    return F.kl_div(F.log_softmax(image.float(), dim=-1), target, reduction="batchmean")
