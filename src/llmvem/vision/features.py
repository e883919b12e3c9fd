"""Batched, cached image-feature extraction: a :class:`~llmvem.data.stimuli.StimulusSet` → a (n, D) feature matrix.

The cache key (artifact kind ``"image_features"``) is made of the backbone identity (weights hash or seed),
preprocessing, pooling, tapped layer (``layer=``) and the ordered content hashes of the images. Stimulus ids are not
part of it: the same images under other ids reuse the entry, and the result carries the ids that were asked for.
Content hashes are the set's own (:attr:`~llmvem.data.stimuli.StimulusSet.content_hashes`): an image file's bytes, or
the decoded pixels of a row of ``nsd_stimuli.hdf5`` (:mod:`llmvem.data.nsd_stimuli`); an image held both ways has
two entries with the same values.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from llmvem.data.images import RGB_CONVERSION
from llmvem.errors import BackendError, ConfigError, DataError
from llmvem.progress import progress_bar
from llmvem.store import ArtifactStore
from llmvem.vision.backbones import Backbone, load_backbone

if TYPE_CHECKING:
    from llmvem.data.stimuli import StimulusSet

FEATURES_KIND = "image_features"
_SPEC_VERSION = 1  # bump when the extraction code changes what it computes


@dataclass
class FeatureMatrix:
    """Image features, one row per stimulus.

    Attributes:
        ids: stimulus ids (length n), in row order.
        values: (n, D) float32 features.
        source: the backbone name that produced them.
        key: artifact-store key of the cached entry (``None`` if not stored).
    """

    ids: list[str]
    values: np.ndarray
    source: str
    key: str | None = None

    def __post_init__(self) -> None:
        self.ids = [str(i) for i in self.ids]
        if self.values.ndim != 2 or self.values.shape[0] != len(self.ids):
            raise DataError(f"FeatureMatrix: values of shape {self.values.shape} for {len(self.ids)} ids")

    @property
    def shape(self) -> tuple[int, int]:
        n, d = self.values.shape
        return int(n), int(d)

    def __len__(self) -> int:
        return len(self.ids)


def feature_spec(stimuli: StimulusSet, backbone: Backbone) -> dict[str, Any]:
    """The artifact spec of ``backbone``'s features of ``stimuli`` (ids excluded)."""
    return {
        "version": _SPEC_VERSION,
        "backbone": backbone.identity,
        "preprocessing": backbone.preprocessing,
        "pooling": backbone.pooling,
        "images": _content_hashes(stimuli),
        "decoding": RGB_CONVERSION,  # how files become RGB pixels (llmvem.data.images)
    }


def extract_features(
    stimuli: StimulusSet,
    backbone: str | Backbone = "efficientnet_lite0",
    batch_size: int = 32,
    device: str = "cpu",
    store: ArtifactStore | None = None,
    progress: bool = True,
    layer: str | None = None,
    pooling: str | None = None,
) -> FeatureMatrix:
    """Pooled features (n, D) float32 of every stimulus, computed once and then read from the artifact store.

    Args:
        stimuli: the images, in row order.
        backbone: a registry name (``"efficientnet_lite0"``, ``"timm:resnet18"``, ``"hf_clip:<id|path>"``) or a
            built :class:`Backbone`.
        batch_size: images per forward pass.
        device: torch device for a backbone given by name.
        store: artifact store; default ``ArtifactStore()``.
        progress: show a progress bar (stderr) while computing.
        layer: tap this named module instead of the last layer (``"layer3"``, ``"blocks.9"``); cached apart.
        pooling: ``"avg"``, ``"max"`` or ``"cls"`` (see :func:`~llmvem.vision.backbones.load_backbone`); for a
            built backbone only together with ``layer``.

    Raises:
        DataError: an image is missing or cannot be decoded (the message names its path).
        BackendError: unknown layer (close names listed) or a pooling that does not apply.
    """
    if batch_size < 1:
        raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
    if len(stimuli) == 0:
        raise DataError(f"stimulus set {stimuli.name!r} is empty; nothing to extract")
    if isinstance(backbone, str):
        bb = load_backbone(backbone, device=device, layer=layer, pooling=pooling)
    elif layer is not None:
        from llmvem.vision.taps import tap_layer

        bb = tap_layer(backbone, layer, pooling=pooling)
    elif pooling is not None:
        raise ConfigError("a built Backbone has its pooling already: pass pooling to load_backbone, or a layer")
    else:
        bb = backbone
    store = store if store is not None else ArtifactStore()
    spec = feature_spec(stimuli, bb)
    key = store.key(FEATURES_KIND, spec)
    if not store.has(FEATURES_KIND, key):
        values = _compute(stimuli, bb, batch_size, progress)
        extra = {"ids": list(stimuli.ids), "stimulus_set": stimuli.name, "backbone": bb.name, "shape": values.shape}
        store.put_arrays(FEATURES_KIND, spec, {"features": values}, extra=extra)
    cached = store.get_arrays(FEATURES_KIND, key)["features"]
    if cached.shape != (len(stimuli), bb.feature_dim):
        raise DataError(
            f"cached features {FEATURES_KIND}/{key[:12]} have shape {cached.shape}, expected "
            f"{(len(stimuli), bb.feature_dim)}; remove the entry with `llmvem cache clean --key {key[:12]}`"
        )
    return FeatureMatrix(ids=list(stimuli.ids), values=cached.astype(np.float32, copy=False), source=bb.name, key=key)


def _content_hashes(stimuli: StimulusSet) -> list[str]:
    try:
        return list(stimuli.content_hashes)
    except OSError as exc:
        raise DataError(f"{exc.filename or stimuli.name}: cannot read image file ({exc.strerror or exc})") from exc


def _compute(stimuli: StimulusSet, bb: Backbone, batch_size: int, progress: bool) -> np.ndarray:
    """Decode, preprocess and forward every image in order: (n, D) float32."""
    import torch

    n = len(stimuli)
    out = np.empty((n, bb.feature_dim), dtype=np.float32)
    module = bb.module  # build before the progress bar starts
    del module
    with progress_bar(f"features ({bb.name})", total=n, enabled=progress) as advance, torch.inference_mode():
        for start in range(0, n, batch_size):
            stop = min(start + batch_size, n)
            batch = torch.stack([bb.preprocess(stimuli.load(k)) for k in range(start, stop)])
            feats = bb.features(batch)
            if feats.shape != (stop - start, bb.feature_dim):
                raise BackendError(
                    f"backbone {bb.name} returned features of shape {tuple(feats.shape)}, "
                    f"expected {(stop - start, bb.feature_dim)}"
                )
            out[start:stop] = feats.cpu().numpy()
            advance(stop - start)
    if not np.isfinite(out).all():
        bad = np.where(~np.isfinite(out).all(axis=1))[0]
        raise BackendError(f"backbone {bb.name} produced non-finite features for {[stimuli.ids[k] for k in bad[:10]]}")
    return out
