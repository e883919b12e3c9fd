"""Backbone families: one module per family owns its loading, block structure, layer aliases and keywords.

Adding a family is one module and one line: write ``families/<module>.py`` with a
:class:`~llmvem.vision.families._base.BackboneFamily` subclass registered in :data:`FAMILIES`, and add the module's
name to :data:`FAMILY_MODULES` (the order is the order names are matched and listed in). Family modules import
torch and the model libraries only when a model is built.

=================  ================================================================  ==============================
family             names                                                             blocks (``split_backbone``)
=================  ================================================================  ==============================
efficientnet_lite  ``efficientnet_lite0`` (default), ``efficientnet_lite1``, ``…2``  MBConv blocks ``_blocks.*``
timm               ``timm:<architecture>``, ``timm:hf-hub:…``, ``timm:local-dir:…``  ResNet, ViT/DeiT, ConvNeXt
hf_clip            ``hf_clip:<hub id|folder>`` (earlier name of hf's CLIP models)    ``encoder.layers.*``
hf                 ``hf:<folder|org/repo|hf-hub:…|local-dir:…>`` (CLIP, SigLIP,      the encoder layers
                   DINOv2, ViT)
open_clip          ``open_clip:<architecture|folder|local-dir:…|hf-hub:…>``          ``transformer.resblocks.*``
torchvision        ``torchvision:<name>``                                            ResNet, ``features.*``
=================  ================================================================  ==============================
"""

from __future__ import annotations

import importlib

from llmvem.vision.families._base import (
    FAMILIES,
    BackboneFamily,
    Blocks,
    FamilyRegistry,
    module_names,
    sequential_blocks,
    structural_blocks,
)

#: the family modules, in matching order (a family is one module plus one line here)
FAMILY_MODULES = (
    "efficientnet_lite",
    "timm_models",
    "hf_vision",
    "open_clip_towers",
    "torchvision_models",
)
for _module in FAMILY_MODULES:
    importlib.import_module(f"{__name__}.{_module}")

__all__ = [
    "FAMILIES",
    "FAMILY_MODULES",
    "BackboneFamily",
    "Blocks",
    "FamilyRegistry",
    "module_names",
    "sequential_blocks",
    "structural_blocks",
]
