"""Pieces shared by the experiments: console output, stores, cached twin training."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from llmvem.config import ExperimentConfig, TrainConfig
from llmvem.store import ArtifactStore

Log = Callable[[str], None]


def make_store(cfg: ExperimentConfig) -> ArtifactStore:
    return ArtifactStore(cfg.cache_dir)


def console_log(enabled: bool = True) -> Log:
    """A ``log(message)`` that prints rich markup to stderr (or nothing)."""
    if not enabled:
        return lambda msg: None
    from rich.console import Console

    console = Console(stderr=True, soft_wrap=True)  # never hard-wrapped: paths in messages stay whole
    return lambda msg: console.print(msg)


def embed_kwargs(cfg: ExperimentConfig, store: ArtifactStore) -> dict[str, Any]:
    """Keyword arguments of :func:`llmvem.text.embed_texts` from the config's ``embed`` section."""
    e = cfg.embed
    return dict(encoder=e.encoder, normalize=e.normalize, policy=e.policy, batch_size=e.batch_size,
                device=cfg.device, store=store, progress=cfg.progress)  # fmt: skip


def feature_kwargs(cfg: ExperimentConfig, store: ArtifactStore) -> dict[str, Any]:
    """Keyword arguments of :func:`llmvem.vision.extract_features` from the config's ``features`` section."""
    f = cfg.features
    return dict(backbone=f.backbone, batch_size=f.batch_size, device=cfg.device, store=store, progress=cfg.progress)


def ridge_from_config(cfg: ExperimentConfig) -> Any:
    """An unfitted :class:`llmvem.brain.RidgeEncoder` with the config's ``evaluate.encoding`` settings."""
    from llmvem.brain import RidgeEncoder

    enc = cfg.evaluate.encoding
    return RidgeEncoder(
        alphas=tuple(enc.alphas), cv=enc.cv, backend=enc.ridge_backend, dtype=enc.ridge_dtype,
        fractions=tuple(enc.fractions),
    )  # fmt: skip


def ci95(x: np.ndarray) -> tuple[float, float, float]:
    """Mean and two-sided 95 % t confidence interval of ``x`` (n,) (e.g. paired differences over seeds).

    Returns:
        ``(mean, low, high)``; the bounds are NaN when ``n < 2``.
    """
    from scipy import stats

    x = np.asarray(x, dtype=np.float64)
    m = float(x.mean())
    if len(x) < 2:
        return m, float("nan"), float("nan")
    h = float(stats.t.ppf(0.975, len(x) - 1) * x.std(ddof=1) / np.sqrt(len(x)))
    return m, m - h, m + h


def print_table(table: Any) -> None:
    """Print a rich table to stdout, at least 120 columns wide when stdout is not a terminal (logs, CI)."""
    from rich.console import Console

    console = Console()
    if not console.is_terminal:
        console = Console(width=max(console.width, 120))
    console.print(table)


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


def description_targets(
    nsd: Any, models: str | list[str], prompts: str | list[str], emb_kw: dict[str, Any], ids: list[str] | None = None
) -> tuple[list[str], np.ndarray, list[str], str]:
    """Text-embedding targets of NSD images, averaged over describers and prompts.

    Each source's embeddings are unit length; with several sources the target is their mean, re-normalised (with
    one source: that source's embeddings).

    Args:
        nsd: the :class:`llmvem.data.nsd_shared1000.NSDShared1000` set.
        models, prompts: as in :meth:`~llmvem.data.nsd_shared1000.NSDShared1000.description_sets`.
        emb_kw: :func:`embed_kwargs` of the experiment.
        ids: keep only these images (in this order); default every image described by all sources.
    Returns:
        ``(ids, targets (n, d) float32, texts, what)``: ``texts`` the sources' texts joined per image (for
        bag-of-words targets), ``what`` a short label for logs such as ``"qwen2.5vl_7b/general_description"``.
    """
    from llmvem.text import embed_texts

    sources, sets = nsd.description_sets(models, prompts)
    keep = [i for i in (ids if ids is not None else list(sets)) if i in sets]
    embs = [embed_texts([sets[i][k] for i in keep], **emb_kw) for k in range(len(sources))]
    target = np.mean(embs, axis=0) if len(embs) > 1 else embs[0]
    if len(embs) > 1:
        target = target / np.maximum(np.linalg.norm(target, axis=1, keepdims=True), 1e-12)
    texts = ["\n\n".join(sets[i]) for i in keep]
    what = "/".join(sources[0]) if len(sources) == 1 else f"mean of {len(sources)} describer × prompt sources"
    return keep, np.asarray(target, dtype=np.float32), texts, what


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
