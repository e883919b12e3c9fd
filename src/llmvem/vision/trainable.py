"""Backbones split for fine-tuning: a frozen bottom whose activations can be cached, and a trainable top.

Fine-tuning only the last blocks of a pretrained network lets the frozen bottom run once per image (its
activations are cached in the artifact store), so an epoch costs only the top's forward and backward pass — what
makes fine-tuning on a CPU practical. ``trainable_blocks=None`` trains the whole network (activations are then
the preprocessed images).

What a "block" is, per family (the last ``trainable_blocks`` of them train, with the head after them):

=====================  ====================================================  ==========================================
backbone               blocks (in order)                                     head (always trainable)
=====================  ====================================================  ==========================================
``efficientnet_lite0`` the 16 MBConv blocks ``_blocks.*``                    head convolution + BN + swish, pooling
timm ResNet            the residual blocks of ``layer1`` … ``layer4``        global pooling
timm ViT / DeiT        the transformer blocks ``blocks.*``                   final norm, pooling, ``fc_norm``
timm ConvNeXt          the blocks of ``stages.*`` (a stage's downsampling    ``norm_pre`` + the pooling / norm head
                       belongs to its first block)
``hf_clip:…``          the encoder layers ``encoder.layers.*``               pooling (``post_layernorm`` for ``cls``)
=====================  ====================================================  ==========================================

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

    Args:
        name: ``"efficientnet_lite0"``, ``"timm:<arch>"`` of the ResNet, ViT/DeiT or ConvNeXt families, or
            ``"hf_clip:<id|path>"``.
        trainable_blocks: blocks at the top that train; ``None`` trains everything.
        device: torch device of both halves.
        pooling: the backbone's pooling (``avg``, ``max``, ``cls``; ``None``: its default), as in
            :func:`~llmvem.vision.backbones.load_backbone`.
        backbone_kwargs: passed to ``load_backbone`` (``checkpoint_path``, ``seed``, ``model_kwargs`` for timm).

    Raises:
        ConfigError: an unsupported architecture, ``trainable_blocks`` out of range, or ``model_kwargs`` for a
            backbone that is not a timm one.
    """
    import torch

    from llmvem.vision.backbones import HF_CLIP_PREFIX, TIMM_PREFIX, load_backbone

    supported = "efficientnet_lite0, timm:<resnet*|vit_*|deit_*|convnext_*>, hf_clip:<id|path>"
    if not (name == "efficientnet_lite0" or name.startswith((TIMM_PREFIX, HF_CLIP_PREFIX)) or name == "hf_clip"):
        raise ConfigError(f"fine-tuning supports the backbones {supported}, not {name!r}")
    if backbone_kwargs.get("model_kwargs") and not name.startswith(TIMM_PREFIX):
        raise ConfigError(
            f"model_kwargs are timm.create_model keywords: backbone {name!r} takes none "
            "(use a timm:<arch> backbone, or remove model_kwargs)"
        )
    bb = load_backbone(name, device=device, pooling=pooling, **backbone_kwargs)
    net: Any = bb.module.to(memory_format=torch.contiguous_format)
    if name == "efficientnet_lite0":
        n_blocks = len(net._blocks)
        cut = _cut(n_blocks, trainable_blocks)
        bottom, top = _split_lite0(net, cut, max_pool="maximum" in bb.pooling)
    else:
        stem, units, head = _timm_parts(net, name) if name.startswith(TIMM_PREFIX) else _clip_parts(net, bb)
        n_blocks = len(units)
        cut = _cut(n_blocks, trainable_blocks)
        bottom, top = _assemble(stem, units, head, cut)
    bottom, top = bottom.eval().to(device), top.to(device)
    for p in bottom.parameters():
        p.requires_grad_(False)
    identity = {"backbone": bb.identity, "trainable_blocks": n_blocks - cut}
    return SplitNet(bottom, top, bb.feature_dim, identity, backbone=bb, n_blocks=n_blocks)


def _cut(n_blocks: int, trainable_blocks: int | None) -> int:
    k = n_blocks if trainable_blocks is None else int(trainable_blocks)
    if not 0 <= k <= n_blocks:
        raise ConfigError(f"trainable_blocks must be between 0 and {n_blocks} (or null: all), got {trainable_blocks}")
    return n_blocks - k


def _assemble(stem: Any, units: list[Any], head: Any, cut: int) -> tuple[Any, Any]:
    """Bottom = stem + units[:cut]; top = units[cut:] + head (the stem moves to the top when ``cut == 0``)."""
    from torch import nn

    if cut == 0:
        return nn.Identity(), nn.Sequential(stem, *units, head)
    return nn.Sequential(stem, *units[:cut]), nn.Sequential(*units[cut:], head)


# --------------------------------------------------------------------------- EfficientNet-Lite0
def _split_lite0(net: Any, cut: int, max_pool: bool) -> tuple[Any, Any]:
    import torch
    from torch import nn

    n_blocks = len(net._blocks)
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
            x = self.head(x)
            return x.amax(dim=(2, 3)) if max_pool else x.mean(dim=(2, 3))

    return Bottom(), Top()


# --------------------------------------------------------------------------- timm
def _timm_parts(model: Any, name: str) -> tuple[Any, list[Any], Any]:
    """(stem, blocks, head) of a headless timm ResNet, ViT/DeiT or ConvNeXt; the modules are the model's own."""
    from timm.models.convnext import ConvNeXt
    from timm.models.resnet import ResNet
    from timm.models.vision_transformer import VisionTransformer
    from torch import nn

    from llmvem.vision._split_modules import TimmResNetHead, ViTEmbed, ViTHead

    net: Any = model  # (isinstance would narrow it to timm's classes, whose attributes mypy sees as Tensor | Module)
    if isinstance(model, ResNet):
        stem = nn.Sequential(net.conv1, net.bn1, net.act1, net.maxpool)
        units = [blk for layer in (net.layer1, net.layer2, net.layer3, net.layer4) for blk in layer]
        head: nn.Module = TimmResNetHead(net)
        return stem, units, head
    if isinstance(model, ConvNeXt):
        units = []
        for stage in net.stages:
            blocks = list(stage.blocks)
            units.append(nn.Sequential(stage.downsample, blocks[0]))
            units.extend(blocks[1:])
        return net.stem, units, nn.Sequential(net.norm_pre, net.head)
    if type(model) is VisionTransformer:  # ViT and DeiT (not the distilled DeiT, with its second token and head)
        return ViTEmbed(net), list(net.blocks), ViTHead(net)
    raise ConfigError(
        f"fine-tuning {name!r}: {type(net).__name__} is not supported; timm families that can be split are ResNet "
        "(resnet*), VisionTransformer (vit_*, deit_* without distillation) and ConvNeXt (convnext_*)"
    )


# --------------------------------------------------------------------------- Hugging Face CLIP
def _clip_parts(net: Any, bb: Any) -> tuple[Any, list[Any], Any]:
    """(stem, encoder layers, pooling head) of a transformers ``CLIPVisionModel``."""
    from torch import nn

    from llmvem.vision._split_modules import ClipHead, ClipLayer

    pooling = "cls" if bb.pooling.startswith("cls") else "avg" if bb.pooling.startswith("avg") else "max"
    stem = nn.Sequential(net.embeddings, net.pre_layrnorm)
    return stem, [ClipLayer(layer) for layer in net.encoder.layers], ClipHead(net.post_layernorm, pooling)


def split_from_config(ft: Any, device: str = "cpu") -> SplitNet:
    """:func:`split_backbone` from a :class:`~llmvem.config.FinetuneConfig` (backbone, pooling, checkpoint, blocks,
    timm ``model_kwargs``: part of the split identity only when given, so earlier cache keys stay valid)."""
    kwargs: dict[str, Any] = {}
    if ft.checkpoint_path is not None:
        kwargs["checkpoint_path"] = str(ft.checkpoint_path)
    if getattr(ft, "model_kwargs", None):
        kwargs["model_kwargs"] = dict(ft.model_kwargs)
    return split_backbone(ft.backbone, ft.trainable_blocks, device=device, pooling=ft.pooling, **kwargs)
