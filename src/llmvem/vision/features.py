"""Batched, cached image-feature extraction: a :class:`~llmvem.data.stimuli.StimulusSet` → a (n, D) feature matrix.

The cache key (artifact kind ``"image_features"``) is made of the backbone identity (weights hash or seed),
preprocessing, pooling, tapped layer (``layer=``) and the ordered content hashes of the images. Stimulus ids are not
part of it: the same images under other ids reuse the entry, and the result carries the ids that were asked for.
Content hashes are the set's own (:attr:`~llmvem.data.stimuli.StimulusSet.content_hashes`): an image file's bytes, or
the decoded pixels of a row of ``nsd_stimuli.hdf5`` (:mod:`llmvem.data.nsd_stimuli`); an image held both ways has
two entries with the same values.
"""

from __future__ import annotations

import contextlib
import functools
import json
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, overload

import numpy as np

from llmvem.data.images import RGB_CONVERSION
from llmvem.errors import BackendError, ConfigError, DataError
from llmvem.store import ArtifactStore
from llmvem.vision.backbones import Backbone, load_backbone
from llmvem.vision.reduce import Reduction

if TYPE_CHECKING:
    from llmvem.data.stimuli import StimulusSet
    from llmvem.vision.taps import LayerTap

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


@overload
def extract_features(
    stimuli: StimulusSet,
    backbone: str | Backbone = ...,
    batch_size: int = ...,
    device: str = ...,
    store: ArtifactStore | None = ...,
    progress: bool = ...,
    layer: str | None = ...,
    pooling: str | None = ...,
    *,
    layers: None = ...,
    reduce: str = ...,
    reduce_seed: int = ...,
    reduce_fit_n: int = ...,
    precision: str = ...,
    workers: int | None = ...,
) -> FeatureMatrix: ...


@overload
def extract_features(
    stimuli: StimulusSet,
    backbone: str | Backbone = ...,
    batch_size: int = ...,
    device: str = ...,
    store: ArtifactStore | None = ...,
    progress: bool = ...,
    layer: str | None = ...,
    pooling: str | None = ...,
    *,
    layers: str | Sequence[str],
    reduce: str = ...,
    reduce_seed: int = ...,
    reduce_fit_n: int = ...,
    precision: str = ...,
    workers: int | None = ...,
) -> dict[str, FeatureMatrix]: ...


def extract_features(
    stimuli: StimulusSet,
    backbone: str | Backbone = "efficientnet_lite0",
    batch_size: int = 32,
    device: str = "cpu",
    store: ArtifactStore | None = None,
    progress: bool = True,
    layer: str | None = None,
    pooling: str | None = None,
    *,
    layers: str | Sequence[str] | None = None,
    reduce: str = "none",
    reduce_seed: int = 0,
    reduce_fit_n: int = 1000,
    precision: str = "float32",
    workers: int | None = None,
) -> FeatureMatrix | dict[str, FeatureMatrix]:
    """Features (n, D) float32 of every stimulus, computed once and then read from the artifact store.

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
            built backbone only together with ``layer`` / ``layers``.
        layers: several modules tapped in one forward pass (``["layer2", "layer3"]``, ``"layer2,layer3"`` or
            ``"all"``: :func:`~llmvem.vision.taps.block_layers`); each layer is its own cache entry, the one a
            single-layer request of it uses. Returns ``{layer: FeatureMatrix}`` (in the order asked).
        reduce: ``"none"`` (pooled), ``"srp:<k>"`` or ``"pca:<k>"``: the whole map of a tapped layer, flattened and
            reduced to k values (:mod:`llmvem.vision.reduce`); needs ``layer`` or ``layers``.
        reduce_seed: seed of the projection (srp) or of the PCA's fit subset.
        reduce_fit_n: images the PCA is fitted on (a seeded subset; all of them if there are fewer).
        precision: ``"float32"`` (default), ``"bfloat16"`` or ``"float16"`` autocast of the forward pass (part of
            the key unless float32).
        workers: decode/preprocess threads (``None``: :func:`~llmvem.vision.extract_pipeline.default_workers`;
            ``0``: in this thread, no overlap). Not part of the key: the numbers do not depend on it.

    Raises:
        DataError: an image is missing or cannot be decoded (the message names its path).
        BackendError: unknown layer (close names listed) or a pooling that does not apply.
        ConfigError: bad batch size, reduction or precision; ``layer`` and ``layers`` together.
        ResourceError: a layer's maps are too large for memory at the requested reduction.
    """
    reduction = _check_args(stimuli, batch_size, layer, layers, reduce, reduce_seed, reduce_fit_n, precision)
    base, taps = _taps(backbone, device, layer, layers, pooling)
    store = store if store is not None else ArtifactStore()
    requests = _requests(stimuli, base, taps, reduction, precision)
    todo = [r for r in requests if not store.has(FEATURES_KIND, r.key)]
    if todo:
        from llmvem.vision.extract_pipeline import default_workers

        n_workers = default_workers() if workers is None else int(workers)
        _compute(stimuli, base, todo, store, reduction, batch_size, n_workers, precision, progress)
    out = {r.label: _read(store, r, stimuli) for r in requests}
    return out if layers is not None else next(iter(out.values()))


def _check_args(
    stimuli: StimulusSet,
    batch_size: int,
    layer: str | None,
    layers: str | Sequence[str] | None,
    reduce: str,
    seed: int,
    fit_n: int,
    precision: str,
) -> Reduction:
    from llmvem.vision.extract_pipeline import check_precision

    if batch_size < 1:
        raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
    if len(stimuli) == 0:
        raise DataError(f"stimulus set {stimuli.name!r} is empty; nothing to extract")
    if layer is not None and layers is not None:
        raise ConfigError("give layer or layers, not both (layers=[...] may hold one name)")
    check_precision(precision)
    reduction = Reduction.parse(reduce, seed=seed, fit_n=fit_n)
    if reduction.active and layer is None and layers is None:
        raise ConfigError(f"reduce {reduce} applies to the full maps of tapped layers: pass a layer or layers")
    return reduction


def _taps(
    backbone: str | Backbone, device: str, layer: str | None, layers: str | Sequence[str] | None, pooling: str | None
) -> tuple[Backbone, list[LayerTap] | None]:
    """The backbone to run and its taps (``None``: its own features)."""
    from llmvem.vision.taps import tap_layers

    names = [layer] if layer is not None else layers
    if isinstance(backbone, str):
        if names is None:
            return load_backbone(backbone, device=device, pooling=pooling), None
        base = load_backbone(backbone, device=device)
    elif names is None and pooling is not None:
        raise ConfigError("a built Backbone has its pooling already: pass pooling to load_backbone, or a layer")
    else:
        base = backbone
    return base, (tap_layers(base, names, pooling=pooling) if names is not None else None)


@dataclass(frozen=True)
class _Request:
    """One cache entry to read or compute: a layer's (or the backbone's own) features."""

    label: str  # the layer name ("" for the backbone's own features)
    name: str  # FeatureMatrix.source
    dim: int
    spec: dict[str, Any]
    key: str
    tap: LayerTap | None


def _requests(
    stimuli: StimulusSet, base: Backbone, taps: list[LayerTap] | None, reduction: Reduction, precision: str
) -> list[_Request]:
    out = []
    for tap in taps if taps is not None else [None]:
        bb = tap.backbone if tap is not None else base
        spec = feature_spec(stimuli, bb)
        dim = bb.feature_dim
        if tap is not None and reduction.active:
            size = math.prod(tap.shape)
            spec["pooling"] = f"none: layer {tap.name} output (B, {', '.join(map(str, tap.shape))}) flattened"
            spec["reduce"] = reduction.spec(len(stimuli), size)
            dim = reduction.dim
            if dim > size and reduction.method == "pca":
                raise ConfigError(f"reduce {reduction}: layer {tap.name!r} has only {size} values per image")
        if precision != "float32":
            spec["precision"] = f"{precision} autocast of the forward pass"
        key = ArtifactStore.key(FEATURES_KIND, spec)
        out.append(_Request(tap.name if tap else "", bb.name, dim, spec, key, tap))
    return out


def _read(store: ArtifactStore, r: _Request, stimuli: StimulusSet) -> FeatureMatrix:
    cached = store.get_arrays(FEATURES_KIND, r.key)["features"]
    if cached.shape != (len(stimuli), r.dim):
        raise DataError(
            f"cached features {FEATURES_KIND}/{r.key[:12]} have shape {cached.shape}, expected "
            f"{(len(stimuli), r.dim)}; remove the entry with `llmvem cache clean --key {r.key[:12]}`"
        )
    return FeatureMatrix(ids=list(stimuli.ids), values=cached.astype(np.float32, copy=False), source=r.name, key=r.key)


def _content_hashes(stimuli: StimulusSet) -> list[str]:
    try:
        return list(stimuli.content_hashes)
    except OSError as exc:
        raise DataError(f"{exc.filename or stimuli.name}: cannot read image file ({exc.strerror or exc})") from exc


def _compute(
    stimuli: StimulusSet,
    base: Backbone,
    todo: list[_Request],
    store: ArtifactStore,
    reduction: Reduction,
    batch_size: int,
    workers: int,
    precision: str,
    progress: bool,
) -> None:
    """Compute every entry of ``todo`` in one pass over the images (two with a PCA: its fit, then the transform),
    streaming each into its store entry batch by batch; nothing is published unless all of them succeed."""
    from llmvem.vision.extract_pipeline import run_pass

    taps = [r.tap for r in todo if r.tap is not None]
    calls = {t.name: t.calls for t in taps} if taps else None
    what = f"features ({base.name}{', ' + str(len(taps)) + ' layers' if len(taps) > 1 else ''})"

    def run(heads: Any, consume: Any, positions: list[int], label: str) -> None:
        run_pass(stimuli, base, heads, consume, positions, batch_size=batch_size, workers=workers,
                 precision=precision, calls=calls, progress=progress, label=label)  # fmt: skip

    heads, extras = _heads(
        taps, reduction, base, batch_size, lambda h, c, p: run(h, c, p, f"PCA fit, {what}"), len(stimuli)
    )
    with contextlib.ExitStack() as stack:
        sinks = {r.label: stack.enter_context(_entry(store, r, stimuli, extras.get(r.label, {}))) for r in todo}

        def consume(chunk: list[int], out: dict[str, Any]) -> None:
            for r in todo:
                values = _batch_values(r, out, chunk, stimuli)
                sinks[r.label][chunk[0] : chunk[-1] + 1] = values

        run(heads, consume, list(range(len(stimuli))), what)


def _heads(
    taps: list[LayerTap],
    reduction: Reduction,
    base: Backbone,
    batch_size: int,
    fit_pass: Any,
    n: int,
) -> tuple[dict[str, Any] | None, dict[str, dict[str, np.ndarray]]]:
    """What each tap's hook computes (pooling, projection, PCA transform) and extra arrays of each entry; a PCA is
    fitted here (one pass over its fit images)."""
    if not taps:
        return None, {}
    if not reduction.active:
        return {t.name: t.pool for t in taps}, {}
    from llmvem.brain.memory import available_memory
    from llmvem.vision.reduce import SparseRandomProjection, check_reduce_memory

    check_reduce_memory([(t.name, t.shape) for t in taps], reduction, batch_size, available_memory())
    if reduction.method == "srp":
        return {t.name: SparseRandomProjection(math.prod(t.shape), reduction.dim, reduction.seed, base.device)
                for t in taps}, {}  # fmt: skip
    return _fit_pca(taps, reduction, base, fit_pass, n)


def _fit_pca(
    taps: list[LayerTap], reduction: Reduction, base: Backbone, fit_pass: Any, n: int
) -> tuple[dict[str, Any], dict[str, dict[str, np.ndarray]]]:
    import torch

    from llmvem.vision.reduce import StreamingPCA

    positions = reduction.fit_positions(n)
    fits = {t.name: StreamingPCA(reduction.dim, len(positions)) for t in taps}

    def flat(x: torch.Tensor) -> torch.Tensor:
        return x.float().reshape(x.shape[0], -1)

    def project(x: torch.Tensor, mean: torch.Tensor, comps: torch.Tensor) -> torch.Tensor:
        with torch.autocast(device_type=x.device.type, enabled=False):  # the reduction stays float32
            return (flat(x) - mean) @ comps.T

    def consume(chunk: list[int], out: dict[str, torch.Tensor]) -> None:
        for name, fit in fits.items():
            fit.add(out[name].numpy())

    fit_pass({t.name: flat for t in taps}, consume, positions)
    heads: dict[str, Any] = {}
    extras: dict[str, dict[str, np.ndarray]] = {}
    for name, fit in fits.items():
        mean, comps = (torch.from_numpy(a).to(base.device) for a in fit.finish())
        heads[name] = functools.partial(project, mean=mean, comps=comps)
        extras[name] = {"explained_variance_ratio": fit.explained_variance_ratio}
    return heads, extras


def _batch_values(r: _Request, out: dict[str, Any], chunk: list[int], stimuli: StimulusSet) -> np.ndarray:
    """The (B, D) float32 rows of ``r`` in a pass's outputs, checked."""
    values = out.get(r.label)
    if values is None:
        raise BackendError(f"layer {r.label!r} of {r.name!r} was not reached by the forward pass")
    if tuple(values.shape) != (len(chunk), r.dim):
        raise BackendError(
            f"backbone {r.name} returned features of shape {tuple(values.shape)}, expected {(len(chunk), r.dim)}"
        )
    arr: np.ndarray = values.numpy()
    finite = np.isfinite(arr).all(axis=1)
    if not finite.all():
        bad = [stimuli.ids[chunk[k]] for k in np.where(~finite)[0][:10]]
        raise BackendError(f"backbone {r.name} produced non-finite features for {bad}")
    return arr


@contextlib.contextmanager
def _entry(
    store: ArtifactStore, r: _Request, stimuli: StimulusSet, arrays: dict[str, np.ndarray]
) -> Iterator[np.ndarray]:
    """A (n, D) float32 array memory-mapped in the store entry of ``r`` being written; published on clean exit."""
    with store.writing(FEATURES_KIND, r.key, r.spec) as d:
        mm = np.lib.format.open_memmap(d / "features.npy", mode="w+", dtype=np.float32, shape=(len(stimuli), r.dim))
        yield mm
        mm.flush()
        del mm
        for name, arr in arrays.items():
            np.save(d / f"{name}.npy", arr, allow_pickle=False)
        extra = {"ids": list(stimuli.ids), "stimulus_set": stimuli.name, "backbone": r.name,
                 "shape": [len(stimuli), r.dim]}  # fmt: skip
        (d / "extra.json").write_text(json.dumps(extra, indent=1, sort_keys=True), encoding="utf-8")
