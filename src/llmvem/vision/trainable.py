"""Backbones split for fine-tuning: a frozen bottom whose activations can be cached, and a trainable top.

Fine-tuning only the last blocks of a pretrained network lets the frozen bottom run once per image (its
activations are cached in the artifact store), so an epoch costs only the top's forward and backward pass — what
makes fine-tuning on a CPU practical. ``trainable_blocks=None`` trains the whole network (activations are then
the preprocessed images).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from llmvem.errors import ConfigError


@dataclass
class SplitNet:
    """A backbone cut in two.

    Attributes:
        bottom: frozen module, images (B, 3, H, W) → activations (B, C, h, w); identity when nothing is frozen.
        top: trainable module, activations → pooled features (B, feature_dim).
        feature_dim: D.
        identity: JSON-able description (backbone identity + split point), for artifact keys.
    """

    bottom: Any
    top: Any
    feature_dim: int
    identity: dict[str, Any]


def split_backbone(name: str = "efficientnet_lite0", trainable_blocks: int | None = 3, device: str = "cpu") -> SplitNet:
    """Load ``name`` with its pretrained weights and split it so the last ``trainable_blocks`` blocks train.

    Supported: ``efficientnet_lite0`` (16 MBConv blocks + head convolution; the head convolution is always
    trainable).
    """
    import torch
    from torch import nn

    from llmvem.vision.backbones import load_backbone

    if name != "efficientnet_lite0":
        raise ConfigError(f"fine-tuning supports backbone 'efficientnet_lite0' for now, not {name!r}")
    bb = load_backbone(name, device="cpu")
    net: Any = bb.module.to(memory_format=torch.contiguous_format)
    n_blocks = len(net._blocks)
    k = n_blocks if trainable_blocks is None else int(trainable_blocks)
    if not 0 <= k <= n_blocks:
        raise ConfigError(f"trainable_blocks must be between 0 and {n_blocks}, got {trainable_blocks}")
    cut = n_blocks - k
    rate = net._global_params.drop_connect_rate or 0.0

    class Bottom(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.stem: nn.Module | None = nn.Sequential(net._conv_stem, net._bn0, net._swish) if cut > 0 else None
            self.blocks = nn.ModuleList(net._blocks[:cut])

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            if self.stem is None:
                return x  # nothing frozen: the "activations" are the images
            x = self.stem(x)
            for i, blk in enumerate(self.blocks):
                x = blk(x, drop_connect_rate=rate * i / n_blocks if self.training else None)
            return x

    class Top(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.stem: nn.Module | None = nn.Sequential(net._conv_stem, net._bn0, net._swish) if cut == 0 else None
            self.blocks = nn.ModuleList(net._blocks[cut:])
            self.head = nn.Sequential(net._conv_head, net._bn1, net._swish)

        def forward(self, a: torch.Tensor) -> torch.Tensor:
            x = self.stem(a) if self.stem is not None else a
            for j, blk in enumerate(self.blocks):
                i = cut + j
                x = blk(x, drop_connect_rate=rate * i / n_blocks if self.training else None)
            return self.head(x).mean(dim=(2, 3))

    bottom, top = Bottom().eval().to(device), Top().to(device)
    for p in bottom.parameters():
        p.requires_grad_(False)
    return SplitNet(bottom, top, bb.feature_dim, {"backbone": bb.identity, "trainable_blocks": k})
