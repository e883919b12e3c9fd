"""Vision stage: backbone registry and batched, cached image-feature extraction.

>>> from llmvem.vision import extract_features  # doctest: +SKIP
>>> fm = extract_features(stimuli, backbone="efficientnet_lite0")  # fm.values: (n, 1280) float32  # doctest: +SKIP
>>> fm = extract_features(stimuli, backbone="timm:resnet50", layer="layer3")  # (n, 1024)  # doctest: +SKIP
"""

from llmvem.vision.backbones import BACKBONES, POOLINGS, Backbone, hf_clip_backbone, load_backbone, timm_backbone
from llmvem.vision.families import FAMILIES
from llmvem.vision.features import FeatureMatrix, extract_features, feature_spec
from llmvem.vision.taps import layer_names, tap_layer

__all__ = [
    "BACKBONES",
    "FAMILIES",
    "POOLINGS",
    "Backbone",
    "FeatureMatrix",
    "extract_features",
    "feature_spec",
    "hf_clip_backbone",
    "layer_names",
    "load_backbone",
    "tap_layer",
    "timm_backbone",
]
