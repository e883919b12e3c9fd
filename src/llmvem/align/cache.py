"""Training inputs and trained twins kept in the artifact store: frozen-bottom activations (or 8-bit pixels) of
a stimulus set for a split network, and twins by their :class:`~llmvem.align.spec.TrainSpec`."""

from __future__ import annotations

from typing import Any

import numpy as np

from llmvem.config import TrainConfig
from llmvem.store import ArtifactStore


def cached_twin(
    store: ArtifactStore,
    features: np.ndarray,
    task_targets: np.ndarray | None,
    text_embeddings: np.ndarray | None,
    cfg: TrainConfig,
    lambda_align: float,
    seed: int,
    device: str,
    progress: bool,
    label: str,
) -> Any:
    """Train a twin, or load it from the store when the same inputs and settings were trained before (its
    checkpoint directory in the store, named by :func:`llmvem.align.twins.twin_spec`)."""
    from llmvem.align.twins import train_twin, twin_spec

    spec = twin_spec(features, task_targets, text_embeddings, cfg, lambda_align, seed)
    return train_twin(features, task_targets, text_embeddings, cfg, lambda_align, seed, device, progress, label,
                      ckpt_dir=spec.checkpoint_dir(store.root))  # fmt: skip


def cached_activations(store: ArtifactStore, split: Any, stimuli: Any, device: str, progress: bool) -> Any:
    """Frozen-bottom activations (n, C, h, w) float32 of ``stimuli``, cached by image content and split identity.

    When the whole network trains, the "activations" are the preprocessed images; they are stored as their 8-bit
    pixels and returned as a memory-mapped :class:`~llmvem.vision.pixels.PixelArray` (indexing gives the same
    float32 values; a quarter of the size, read as batches need it), unless the backbone's preprocessing is not a
    per-channel affine map of the pixels, in which case float32 is kept.
    """
    from llmvem.data.images import RGB_CONVERSION
    from llmvem.vision.pixels import PixelArray, pixel_affine

    bb_cache: dict[str, Any] = {}

    def backbone() -> Any:
        from llmvem.vision import load_backbone

        # the split's own backbone carries its preprocessing (input size, normalisation of timm / CLIP models)
        if "bb" not in bb_cache:
            bb_cache["bb"] = (
                split.backbone if split.backbone is not None else load_backbone(split.identity["backbone"]["name"])
            )
        return bb_cache["bb"]

    def batches() -> Any:
        import torch

        from llmvem.progress import progress_bar

        bb = backbone()
        with progress_bar("activations", total=len(stimuli), enabled=progress) as advance, torch.inference_mode():
            for i in range(0, len(stimuli), 32):
                batch = torch.stack([bb.preprocess(stimuli.load(k)) for k in range(i, min(i + 32, len(stimuli)))])
                yield split.bottom(batch.to(device)).cpu().numpy()
                advance(len(batch))

    def compute() -> dict[str, np.ndarray]:
        return {"activations": np.concatenate(list(batches())).astype(np.float32)}

    if getattr(split, "trains_whole_network", False):
        affine = pixel_affine(backbone().preprocess)
        if affine is not None:
            spec = {
                "split": split.identity,
                "images": stimuli.content_hashes,
                "version": 2,
                "format": "uint8",
                "decoding": RGB_CONVERSION,
            }
            key = store.key("activations", spec)

            def compute_pixels() -> dict[str, np.ndarray]:
                out: np.ndarray | None = None  # filled batch by batch: peak memory is the uint8 array itself
                i = 0
                for x in batches():
                    px = PixelArray.quantize(x, *affine)
                    if px is None:
                        return {}  # not affine on these images after all: keep float32 (below)
                    if out is None:
                        out = np.empty((len(stimuli), *px.shape[1:]), dtype=np.uint8)
                    out[i : i + len(px)] = px
                    i += len(px)
                assert out is not None
                return {"pixels": out, "scale": affine[0], "offset": affine[1]}

            if not store.has("activations", key):  # not affine: remember it, so the next call goes to float32 at once
                store.put_arrays("activations", spec, compute_pixels() or {"not_affine": np.zeros(0, np.uint8)})
            got = store.get_arrays("activations", key, mmap=True)
            if "pixels" in got:
                return PixelArray(got["pixels"], np.array(got["scale"]), np.array(got["offset"]))
    spec = {"split": split.identity, "images": stimuli.content_hashes, "version": 1, "decoding": RGB_CONVERSION}
    return store.cached("activations", spec, compute)["activations"]
