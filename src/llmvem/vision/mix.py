"""Mixup and CutMix of preprocessed batches, with each sample's partner the batch flipped (as timm's ``Mixup``).

Used by the fine-tuning trainer when the whole network trains (``trainable_blocks: null``). A mixed image depicts two
samples, sample i and its partner ``n - 1 - i``, with weight ``lam`` on sample i's own image (for CutMix: the share
of its area that is still its own); the trainer mixes the targets (labels, text embeddings) with the same weight.

One :class:`MixParams` serves a whole (global) batch: which operation, ``lam`` and the CutMix box. The parameters
come from a NumPy generator the caller seeds (the trainer: ``(seed, epoch, 0x313)``), so a run is reproducible, an
interrupted run resumes exactly and every DDP rank mixes alike.

Example
-------
>>> rng = np.random.default_rng([0, 3, 0x313])  # doctest: +SKIP
>>> p = sample_mix_params(rng, 224, 224, mixup_alpha=0.8, cutmix_alpha=1.0)  # doctest: +SKIP
>>> x_mixed = apply_mix(x, x.flip(0), p)  # (B, 3, 224, 224): row i mixes x[i] with x[B - 1 - i]  # doctest: +SKIP
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from llmvem.errors import ConfigError

if TYPE_CHECKING:
    import torch

MIX_MODES = ("none", "mixup", "cutmix")


@dataclass(frozen=True)
class MixParams:
    """How one batch is mixed.

    Attributes:
        mode: ``"none"`` (unmixed), ``"mixup"`` (convex combination of whole images) or ``"cutmix"`` (a box of the
            partner's image pasted over the sample's own).
        lam: weight of each sample's own image in [0, 1] (1: unmixed); for CutMix the share of the area outside
            the box.
        box: CutMix box ``(top, bottom, left, right)`` in pixels (rows ``top:bottom``, columns ``left:right``).
    """

    mode: str = "none"
    lam: float = 1.0
    box: tuple[int, int, int, int] = (0, 0, 0, 0)

    @property
    def active(self) -> bool:
        """True when the batch is actually mixed (``lam < 1``)."""
        return self.mode != "none" and self.lam < 1.0


def partner_positions(n: int) -> np.ndarray:
    """(n,) int64: position of each sample's partner in a batch of ``n`` (the batch flipped: ``n - 1 - i``)."""
    return np.arange(n - 1, -1, -1, dtype=np.int64)


def sample_mix_params(
    rng: np.random.Generator,
    height: int,
    width: int,
    mixup_alpha: float = 0.0,
    cutmix_alpha: float = 0.0,
    mix_prob: float = 1.0,
    switch_prob: float = 0.5,
) -> MixParams:
    """Draw one batch's mixing, as timm's ``Mixup(mode="batch", correct_lam=True)``.

    With probability ``mix_prob`` the batch is mixed: by CutMix with probability ``switch_prob`` when both alphas
    are positive (else by the one that is), ``lam ~ Beta(α, α)``. A CutMix box has sides ``√(1 - lam)`` × the image's,
    centred on a uniform pixel and clipped to the image; ``lam`` is then corrected to the area share left outside it.

    Args:
        rng: the generator (consumed; the same seed gives the same parameters).
        height, width: image size H, W in pixels.
        mixup_alpha, cutmix_alpha: Beta parameters (0: that operation is off).
        mix_prob: probability that a batch is mixed at all.
        switch_prob: probability of CutMix rather than mixup when both are on.
    """
    if mixup_alpha < 0 or cutmix_alpha < 0:
        raise ConfigError(f"mixup_alpha and cutmix_alpha must be ≥ 0, got {mixup_alpha} and {cutmix_alpha}")
    if not 0 <= mix_prob <= 1 or not 0 <= switch_prob <= 1:
        raise ConfigError(f"mix_prob and switch_prob must be in [0, 1], got {mix_prob} and {switch_prob}")
    if (mixup_alpha == 0 and cutmix_alpha == 0) or rng.random() >= mix_prob:
        return MixParams()
    both = mixup_alpha > 0 and cutmix_alpha > 0
    use_cutmix = bool(rng.random() < switch_prob) if both else cutmix_alpha > 0
    alpha = cutmix_alpha if use_cutmix else mixup_alpha
    lam = float(rng.beta(alpha, alpha))
    if not use_cutmix:
        return MixParams("mixup", lam)
    ratio = math.sqrt(1.0 - lam)
    cut_h, cut_w = int(height * ratio), int(width * ratio)
    cy, cx = int(rng.integers(0, height)), int(rng.integers(0, width))
    top, bottom = min(max(cy - cut_h // 2, 0), height), min(max(cy + cut_h // 2, 0), height)
    left, right = min(max(cx - cut_w // 2, 0), width), min(max(cx + cut_w // 2, 0), width)
    lam = 1.0 - (bottom - top) * (right - left) / float(height * width)
    return MixParams("cutmix", lam, (top, bottom, left, right))


def apply_mix(x: torch.Tensor, partner: torch.Tensor, params: MixParams) -> torch.Tensor:
    """Mix each sample of ``x`` (B, C, H, W) with the same row of ``partner`` (B, C, H, W), its partner's image.

    Mixup gives ``lam · x + (1 - lam) · partner``; CutMix gives ``x`` with the box replaced by ``partner``'s pixels.
    Inputs are left untouched; the output has the shape, dtype and device of ``x``.
    """
    if x.shape != partner.shape or x.ndim != 4:
        raise ConfigError(
            f"mixing needs images (B, C, H, W) and partners of the same shape; got {tuple(x.shape)}, "
            f"{tuple(partner.shape)}"
        )
    if params.mode not in MIX_MODES:
        raise ConfigError(f"mix mode must be one of {', '.join(MIX_MODES)}, got {params.mode!r}")
    if not params.active:
        return x
    if params.mode == "mixup":
        return x * params.lam + partner * (1.0 - params.lam)
    top, bottom, left, right = params.box
    out = x.clone()
    out[..., top:bottom, left:right] = partner[..., top:bottom, left:right]
    return out
