"""Backbones split for fine-tuning: a frozen bottom whose activations can be cached, and a trainable top.

Fine-tuning only the last blocks of a pretrained network lets the frozen bottom run once per image (its
activations are cached in the artifact store), so an epoch costs only the top's forward and backward pass — what
makes fine-tuning on a CPU practical. ``trainable_blocks=None`` trains the whole network (activations are then
the preprocessed images).

What a "block" is belongs to the backbone's family (:mod:`llmvem.vision.families`, which lists them): the MBConv
blocks of EfficientNet-Lite, the residual blocks of a ResNet, the transformer blocks of a ViT/DeiT, the encoder
layers of a Hugging Face CLIP/SigLIP/DINOv2/ViT model, the residual attention blocks of an open_clip tower. The
last ``trainable_blocks`` of them train, with the head after them.

Before the first block comes the stem (convolution stem, or patch + position embeddings); it is frozen unless
every block trains. ``bottom(x)`` then ``top(·)`` equals the backbone's own pooled features.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from llmvem.errors import ConfigError


@dataclass
class SplitNet:
    """A backbone cut in two.

    Attributes:
        bottom: frozen module, images (B, 3, H, W) → activations ((B, C, h, w) maps or (B, N, C) tokens); identity
            when nothing is frozen.
        top: trainable module, activations → pooled features (B, feature_dim).
        feature_dim: D.
        identity: JSON-able description (backbone identity + split point), for artifact keys.
        backbone: the :class:`~llmvem.vision.backbones.Backbone` whose modules ``bottom`` and ``top`` share (its
            ``preprocess`` makes the images; loading weights into ``top`` changes it too, so named-layer taps of a
            fine-tuned network work through it).
        n_blocks: number of blocks of the backbone (``trainable_blocks == n_blocks``: the whole network trains).
    """

    bottom: Any
    top: Any
    feature_dim: int
    identity: dict[str, Any]
    backbone: Any = None
    n_blocks: int = 0

    @property
    def trains_whole_network(self) -> bool:
        """True when nothing is frozen: the "activations" are the preprocessed images."""
        return int(self.identity.get("trainable_blocks", -1)) >= self.n_blocks


def split_backbone(
    name: str = "efficientnet_lite0",
    trainable_blocks: int | None = 3,
    device: str = "cpu",
    pooling: str | None = None,
    **backbone_kwargs: Any,
) -> SplitNet:
    """Load ``name`` with its weights and split it so the last ``trainable_blocks`` blocks (and the head) train.

    The backbone's family says what its blocks are (:meth:`~llmvem.vision.families.BackboneFamily.blocks`).

    Args:
        name: a backbone of a family that splits (see the table above).
        trainable_blocks: blocks at the top that train; ``None`` trains everything.
        device: torch device of both halves.
        pooling: the backbone's pooling (``avg``, ``max``, ``cls``; ``None``: its default), as in
            :func:`~llmvem.vision.backbones.load_backbone`.
        backbone_kwargs: passed to ``load_backbone`` (``checkpoint_path``, ``seed``, ``model_kwargs`` for timm).

    Raises:
        ConfigError: an unknown backbone, an architecture its family cannot split, ``trainable_blocks`` out of
            range (the message names the number of blocks), or a keyword the backbone's family does not take.
    """
    from llmvem.errors import RegistryError
    from llmvem.vision.backbones import load_backbone
    from llmvem.vision.families import FAMILIES

    try:
        FAMILIES.resolve(name)
    except RegistryError:
        raise ConfigError(f"fine-tuning supports the backbones {FAMILIES.syntaxes()}, not {name!r}") from None
    problem = FAMILIES.keyword_error(name, [k for k, v in backbone_kwargs.items() if v is not None])
    if problem is not None:
        raise ConfigError(problem)
    bb = load_backbone(name, device=device, pooling=pooling, **backbone_kwargs)
    return split_loaded(bb, trainable_blocks, device=device)


def split_loaded(backbone: Any, trainable_blocks: int | None = 3, device: str = "cpu") -> SplitNet:
    """Split an already loaded :class:`~llmvem.vision.backbones.Backbone` (its module is shared, not copied) as
    :func:`split_backbone` does.

    Raises:
        ConfigError: a tapped backbone, an architecture its family cannot split, ``trainable_blocks`` out of range.
    """
    import torch

    from llmvem.vision.families import FAMILIES

    if "layer" in backbone.identity:
        raise ConfigError(f"{backbone.name!r} is a tapped layer; split the backbone itself")
    family, _ = FAMILIES.resolve(backbone.name)
    backbone.module.to(memory_format=torch.contiguous_format)
    blocks = family.blocks(backbone)
    n_blocks = blocks.count
    k = n_blocks if trainable_blocks is None else int(trainable_blocks)
    if not 0 <= k <= n_blocks:
        raise ConfigError(
            f"trainable_blocks must be between 0 and {n_blocks} (or null: all), got {trainable_blocks}: "
            f"{backbone.name!r} has {n_blocks} blocks ({blocks.what})"
        )
    bottom, top = blocks.split_at(n_blocks - k, backbone.name)
    bottom, top = bottom.eval().to(device), top.to(device)
    for p in bottom.parameters():
        p.requires_grad_(False)
    identity = {"backbone": backbone.identity, "trainable_blocks": k}
    return SplitNet(bottom, top, backbone.feature_dim, identity, backbone=backbone, n_blocks=n_blocks)


def split_from_config(ft: Any, device: str = "cpu") -> SplitNet:
    """:func:`split_backbone` from a :class:`~llmvem.config.FinetuneConfig` (backbone, pooling, checkpoint, blocks,
    timm ``model_kwargs``: part of the split identity only when given, so earlier cache keys stay valid)."""
    kwargs: dict[str, Any] = {}
    if ft.checkpoint_path is not None:
        kwargs["checkpoint_path"] = str(ft.checkpoint_path)
    if getattr(ft, "model_kwargs", None):
        kwargs["model_kwargs"] = dict(ft.model_kwargs)
    return split_backbone(ft.backbone, ft.trainable_blocks, device=device, pooling=ft.pooling, **kwargs)
