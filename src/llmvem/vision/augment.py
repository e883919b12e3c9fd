"""Per-sample image augmentation on preprocessed batches: random resized crop and horizontal flip.

Used by the fine-tuning trainer when the whole network trains (``trainable_blocks: null``), where the "activations"
are the preprocessed images (B, 3, H, W). Augmenting a batch never reorders it: row i of the output is a view of
row i of the input, so every sample keeps its own text embedding and labels.

The parameters of every crop and flip come from a NumPy generator the caller seeds (the trainer seeds it by
``(seed, epoch)``), so a run is reproducible and an interrupted run resumes exactly.

Example
-------
>>> rng = np.random.default_rng([0, 3])  # doctest: +SKIP
>>> params = sample_augment_params(rng, 8, 224, 224, "crop_flip")  # (8, 5) int64  # doctest: +SKIP
>>> x_aug = apply_augment(x, params)  # (8, 3, 224, 224), same order  # doctest: +SKIP
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from llmvem.errors import ConfigError

if TYPE_CHECKING:
    import torch

AUGMENTS = ("none", "flip", "crop_flip")
#: aspect-ratio range of the random crops (as torchvision's RandomResizedCrop)
CROP_RATIO = (3 / 4, 4 / 3)


def sample_augment_params(
    rng: np.random.Generator, n: int, height: int, width: int, mode: str, min_scale: float = 0.25
) -> np.ndarray:
    """Crop box and flip of ``n`` samples: (n, 5) int64 rows ``(top, left, crop_height, crop_width, flip)``.

    Args:
        rng: the generator (consumed; the same seed gives the same parameters).
        n: samples in the batch.
        height, width: image size H, W.
        mode: ``"none"`` (full image, no flip), ``"flip"`` (horizontal flip with probability 1/2) or
            ``"crop_flip"`` (a random crop covering ``min_scale``..1 of the area, aspect ratio 3/4..4/3, then the
            flip).
        min_scale: smallest crop area as a fraction of the image.
    """
    if mode not in AUGMENTS:
        raise ConfigError(f"augment must be one of {', '.join(AUGMENTS)}, got {mode!r}")
    if not 0 < min_scale <= 1:
        raise ConfigError(f"augment min_scale must be in (0, 1], got {min_scale}")
    out = np.zeros((n, 5), dtype=np.int64)
    out[:, 2], out[:, 3] = height, width
    if mode == "none":
        return out
    if mode == "crop_flip":
        area = rng.uniform(min_scale, 1.0, size=n) * height * width
        log_ratio = rng.uniform(math.log(CROP_RATIO[0]), math.log(CROP_RATIO[1]), size=n)
        ratio = np.exp(log_ratio)  # width / height
        ch = np.clip(np.round(np.sqrt(area / ratio)), 1, height).astype(np.int64)
        cw = np.clip(np.round(np.sqrt(area * ratio)), 1, width).astype(np.int64)
        out[:, 0] = np.floor(rng.random(n) * (height - ch + 1)).astype(np.int64)
        out[:, 1] = np.floor(rng.random(n) * (width - cw + 1)).astype(np.int64)
        out[:, 2], out[:, 3] = ch, cw
    out[:, 4] = rng.random(n) < 0.5
    return out


def apply_augment(x: torch.Tensor, params: np.ndarray) -> torch.Tensor:
    """Crop, resize back to H × W (bilinear, antialiased) and flip each sample of ``x`` (B, 3, H, W).

    Args:
        x: preprocessed images (B, C, H, W), float.
        params: (B, 5) from :func:`sample_augment_params` (row i applies to sample i).
    Returns:
        (B, C, H, W), same dtype and device; sample order unchanged.
    """
    import torch
    import torch.nn.functional as F

    if x.ndim != 4 or len(params) != x.shape[0]:
        raise ConfigError(f"augmentation needs images (B, C, H, W) and B parameter rows; got {tuple(x.shape)}")
    h, w = x.shape[-2:]
    rows = []
    for i, (top, left, ch, cw, flip) in enumerate(params.tolist()):
        xi = x[i : i + 1]
        if (ch, cw) != (h, w):
            crop = xi[..., top : top + ch, left : left + cw]
            xi = F.interpolate(crop, size=(h, w), mode="bilinear", align_corners=False, antialias=True)
        rows.append(xi.flip(-1) if flip else xi)
    return torch.cat(rows)
