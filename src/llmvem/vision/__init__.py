"""Vision stage: backbone registry and batched, cached image-feature extraction.

>>> from llmvem.vision import extract_features  # doctest: +SKIP
>>> fm = extract_features(stimuli, backbone="efficientnet_lite0")  # fm.values: (n, 1280) float32  # doctest: +SKIP
"""

from llmvem.vision.backbones import BACKBONES, Backbone, load_backbone, timm_backbone
from llmvem.vision.features import FeatureMatrix, extract_features, feature_spec

__all__ = [
    "BACKBONES",
    "Backbone",
    "FeatureMatrix",
    "extract_features",
    "feature_spec",
    "load_backbone",
    "timm_backbone",
]
