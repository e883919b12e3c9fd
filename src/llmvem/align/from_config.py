"""Image features from an experiment config (``llmvem features``): a pretrained backbone's, or those of a model
fine-tuned in a run directory (``features.model``: pooled features, a head's output, or visual-words PIF).

>>> SavedFeatures({Path("f.a.npy"): (92, 64), Path("f.b.npy"): (92, 32)}, Path("f.ids.txt"), None, True).lines()
['92 × 64 features → f.a.npy', '92 × 32 features → f.b.npy', 'ids → f.ids.txt']
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np

    from llmvem.config import ExperimentConfig


def features_from_config(cfg: ExperimentConfig, images: Path) -> tuple[np.ndarray, list[str]]:
    """Features (n, D) float32 of the images of ``images`` (a folder, or NSD's nsd_stimuli.hdf5 with
    ``features.subset``) and their ids, as the ``features`` section says.

    Raises:
        ConfigError: ``features.pif`` without ``features.model``.
        DataError: ids that cannot be written one per line (checked before any work), unreadable images.
    """
    from llmvem.data.files import check_writable_ids
    from llmvem.data.nsd_stimuli import stimuli_from_path
    from llmvem.errors import ConfigError
    from llmvem.vision import extract_features

    f = cfg.features
    if f.layers is not None:
        raise ConfigError("features.layers: use layer_features_from_config (llmvem features --layers)")
    if f.pif and f.model is None:
        raise ConfigError("--pif needs --model RUN_DIR of a visual_words run (finetune.loss=visual_words)")
    stim = stimuli_from_path(images, f.subset, design=f.design)
    check_writable_ids(stim.ids, f"images of {images}")  # before the work: the .ids.txt must round-trip
    if f.model is not None and f.pif:
        from llmvem.align.words import pif_from_run

        pif = pif_from_run(stim, f.model, f.weights, batch_size=f.batch_size, device=cfg.device, progress=cfg.progress)
        return pif, list(stim.ids)
    if f.model is not None:
        from llmvem.align.finetune import features_from_run

        values = features_from_run(stim, f.model, f.weights, f.batch_size, cfg.device, cfg.progress, f.layer,
                                   f.pooling, head=f.head)  # fmt: skip
        return values, list(stim.ids)
    fm = extract_features(stim, **_extraction_kwargs(cfg), layer=f.layer)
    return fm.values, list(fm.ids)


def _extraction_kwargs(cfg: ExperimentConfig) -> dict[str, Any]:
    """Keyword arguments of :func:`~llmvem.vision.extract_features` from the ``features`` section (no layer)."""
    from llmvem.store import ArtifactStore

    f = cfg.features
    return dict(backbone=f.backbone, batch_size=f.batch_size, device=cfg.device, store=ArtifactStore(cfg.cache_dir),
                progress=cfg.progress, pooling=f.pooling, reduce=f.reduce, reduce_seed=f.reduce_seed,
                reduce_fit_n=f.reduce_fit_n, precision=f.precision, workers=f.workers)  # fmt: skip


def layer_features_from_config(cfg: ExperimentConfig, images: Path) -> tuple[dict[str, np.ndarray], list[str]]:
    """Features of every layer of ``features.layers`` (one forward pass): ``{layer: (n, D) float32}`` and the ids.

    Raises:
        ConfigError: ``features.layers`` together with ``features.layer`` or ``features.model``.
    """
    from llmvem.data.files import check_writable_ids
    from llmvem.data.nsd_stimuli import stimuli_from_path
    from llmvem.errors import ConfigError
    from llmvem.vision import extract_features

    f = cfg.features
    if f.layers is None:
        raise ConfigError("features.layers is not set (a,b,c or all)")
    if f.model is not None or f.layer is not None:
        raise ConfigError("--layers works on a pretrained --backbone, without --model or --layer")
    stim = stimuli_from_path(images, f.subset, design=f.design)
    check_writable_ids(stim.ids, f"images of {images}")
    out = extract_features(stim, **_extraction_kwargs(cfg), layers=f.layers)
    return {name: fm.values for name, fm in out.items()}, list(stim.ids)


def layer_file(out: Path, layer: str) -> Path:
    """Where ``llmvem features --layers ... -o f.npy`` writes a layer: ``f.<layer>.npy`` (ids: one ``f.ids.txt``)."""
    return out.with_name(f"{out.stem}.{layer}.npy")


def save_layer_features(out: Path, values: dict[str, np.ndarray], ids: list[str]) -> list[Path]:
    """Write each layer's (n, D) matrix to :func:`layer_file` and the shared ids to ``f.ids.txt``, atomically.
    Returns the layer files, in order."""
    import io

    import numpy as np

    from llmvem.data.files import write_ids
    from llmvem.store import atomic_write_bytes

    write_ids(out.with_suffix(".ids.txt"), ids, f"features {out}")
    paths = []
    for layer, arr in values.items():
        buf = io.BytesIO()
        np.save(buf, arr)
        atomic_write_bytes(layer_file(out, layer), buf.getvalue())
        paths.append(layer_file(out, layer))
    return paths


@dataclass(frozen=True)
class SavedFeatures:
    """The files ``llmvem features`` wrote."""

    shapes: dict[Path, tuple[int, int]]  #: each .npy written → the (n, D) of its matrix
    ids: Path  #: the ids of their rows, one per line
    weights: str | None  #: the fine-tuned weights they are features of (``features.model``), else ``None``
    per_layer: bool  #: one file per layer of ``features.layers`` (and one ids file for all)

    def lines(self) -> list[str]:
        """One line per file written (and, per layer, one for the shared ids), as ``llmvem features`` says them."""
        of = f" of {self.weights}" if self.weights is not None else ""
        lines = [f"{n} × {dim} features{of} → {path}" for path, (n, dim) in self.shapes.items()]
        return [*lines, f"ids → {self.ids}"] if self.per_layer else lines


def save_features(cfg: ExperimentConfig, images: Path, out: Path) -> SavedFeatures:
    """``llmvem features``: the features of ``images`` as ``cfg.features`` says, written to ``out`` (.npy) and
    ``<out>.ids.txt``; with ``features.layers``, one :func:`layer_file` per layer (:func:`save_layer_features`)."""
    from llmvem.data.files import save_matrix

    if cfg.features.layers is not None:
        layers, ids = layer_features_from_config(cfg, images)
        paths = save_layer_features(out, layers, ids)
        shapes = {path: (arr.shape[0], arr.shape[1]) for path, arr in zip(paths, layers.values(), strict=True)}
        return SavedFeatures(shapes, out.with_suffix(".ids.txt"), None, per_layer=True)
    values, ids = features_from_config(cfg, images)
    _, ids_path = save_matrix(out, values, ids, f"features {out}")
    weights = cfg.features.weights if cfg.features.model is not None else None
    return SavedFeatures({out: (values.shape[0], values.shape[1])}, ids_path, weights, per_layer=False)
