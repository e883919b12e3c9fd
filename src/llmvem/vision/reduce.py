"""Deterministic reduction of full layer maps (C × H × W values, or N × C tokens, flattened to D per image).

``reduce="srp:<k>"``: a seeded *very sparse random projection* (Achlioptas 2003; Li, Hastie & Church 2006): a fixed
D × k matrix with entries ``sqrt(s / k) * {+1, 0, -1}`` drawn with probabilities ``1/(2s), 1 - 1/s, 1/(2s)``,
``s = sqrt(D)``, so that squared distances are kept in expectation. It is drawn column by column from
``numpy.random.default_rng(seed)`` (the rows of column j: ``Binomial(D, 1/s)`` of them, without replacement; then
the signs), so the same (D, k, seed) give the same matrix on every machine; it is applied batch by batch as a torch
sparse CSR product on the model's device (nothing of size n × D is ever held).

``reduce="pca:<k>"``: an incremental PCA (scikit-learn ``IncrementalPCA``) fitted on a declared subset — ``fit_n``
images drawn by ``default_rng(seed).choice(n, fit_n, replace=False)``, sorted (all images when ``fit_n >= n``) — in
chunks of ``max(k, 64)`` rows (a short last chunk joins the one before it), so the fit does not depend on the batch
size; then every image is projected on the k components. Two passes over the fit images' maps and one over all.

The reduction, its seed and its parameters are part of the features' cache key (:meth:`Reduction.spec`);
``"none"`` (pooled features) adds nothing, so keys of pooled features are unchanged. :func:`check_reduce_memory`
refuses, before any work, a layer whose maps are too large for memory at the requested reduction.
"""

from __future__ import annotations

import itertools
import math
import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from llmvem.errors import ConfigError, ResourceError

if TYPE_CHECKING:
    import torch

METHODS = ("none", "srp", "pca")
_PCA_MIN_CHUNK = 64
_SRP_ALGORITHM = (
    "very sparse random projection (Li, Hastie & Church 2006): s = sqrt(D), entries sqrt(s/k) * {+1, 0, -1} with "
    "p = 1/(2s), 1 - 1/s, 1/(2s); numpy default_rng(seed), column by column: Binomial(D, 1/s) rows without "
    "replacement, sorted, then signs"
)


@dataclass(frozen=True)
class Reduction:
    """How full layer maps become D values per image.

    Attributes:
        method: ``"none"`` (pooled features), ``"srp"`` or ``"pca"``.
        dim: output dimension k (0 for ``"none"``).
        seed: seed of the projection (srp) or of the fit subset (pca).
        fit_n: images the PCA is fitted on (pca only).
    """

    method: str = "none"
    dim: int = 0
    seed: int = 0
    fit_n: int = 1000

    @classmethod
    def parse(cls, text: str, seed: int = 0, fit_n: int = 1000) -> Reduction:
        """``"none"``, ``"srp:<dim>"`` or ``"pca:<dim>"``.

        Raises:
            ConfigError: another method, a dimension that is not a positive integer, ``fit_n`` < 1.
        """
        method, _, dim_text = str(text).strip().partition(":")
        method = method.strip().lower()
        if method == "none" and not dim_text:
            return cls()
        if method not in ("srp", "pca") or not dim_text.strip().isdigit() or int(dim_text) < 1:
            raise ConfigError(f"reduce must be none, srp:<dim> or pca:<dim> (e.g. srp:4096), got {text!r}")
        if fit_n < 1:
            raise ConfigError(f"reduce_fit_n must be >= 1, got {fit_n}")
        return cls(method=method, dim=int(dim_text), seed=int(seed), fit_n=int(fit_n))

    @property
    def active(self) -> bool:
        return self.method != "none"

    def __str__(self) -> str:
        return "none" if not self.active else f"{self.method}:{self.dim}"

    def fit_positions(self, n: int) -> list[int]:
        """Positions (sorted) of the images a PCA is fitted on, of ``n``."""
        if self.fit_n >= n:
            return list(range(n))
        return sorted(int(k) for k in np.random.default_rng(self.seed).choice(n, self.fit_n, replace=False))

    def spec(self, n_images: int, n_features: int) -> dict[str, object] | None:
        """The part of a cache key that says how maps of ``n_features`` values were reduced (``None`` for none)."""
        if not self.active:
            return None
        base: dict[str, object] = {"method": self.method, "dim": self.dim, "input_dim": n_features}
        base["input"] = "the layer's output of each image flattened in C-order (C x H x W or N x C), float32"
        if self.method == "srp":
            return {**base, "seed": self.seed, "algorithm": _SRP_ALGORITHM}
        import sklearn

        m = min(self.fit_n, n_images)
        select = "all images" if m == n_images else "numpy default_rng(seed).choice(n, fit_n, replace=False), sorted"
        return {
            **base,
            "fit": {"n": m, "seed": self.seed if m < n_images else None, "select": select},
            "chunk": pca_chunk(self.dim),
            "algorithm": "sklearn IncrementalPCA (no whitening) partial_fit over fixed chunks; transform",
            "sklearn": ".".join(sklearn.__version__.split(".")[:2]),
        }


def pca_chunk(dim: int) -> int:
    """Rows per ``partial_fit`` of a ``pca:<dim>`` fit."""
    return max(int(dim), _PCA_MIN_CHUNK)


def reduce_memory_bytes(reduction: Reduction, n_features: int, batch_size: int) -> int:
    """Peak bytes of reducing one layer's maps of ``n_features`` values (batch of ``batch_size``), beyond the model.

    srp: the flattened batch (float32, twice) + the CSR matrix (≈ k·sqrt(D) int64 indices + float32 values);
    pca: the chunk buffer (float32) and scikit-learn's float64 copy, stacked matrix and SVD factors, the components.
    """
    d, b = int(n_features), int(batch_size)
    batch = 2 * b * d * 4
    if reduction.method == "srp":
        return batch + int(reduction.dim * math.sqrt(d) * 12) + (reduction.dim + 1) * 8
    if reduction.method == "pca":
        c, k = pca_chunk(reduction.dim), reduction.dim
        stacked = (k + c + 1) * d * 8
        return batch + (c + b) * d * 4 + c * d * 8 + 3 * stacked + (k + 3) * d * 8
    return batch


def check_reduce_memory(
    layers: list[tuple[str, tuple[int, ...]]], reduction: Reduction, batch_size: int, available: int | None
) -> None:
    """Refuse a reduction whose peak memory (summed over ``layers``: name and map shape) exceeds 80 % of
    ``available`` bytes (``None``: unknown, no check).

    Raises:
        ResourceError: saying how large the largest layer's maps are, the estimate, and what to pass instead.
    """
    if available is None or not layers:
        return
    sizes = {name: math.prod(shape) for name, shape in layers}
    need = sum(reduce_memory_bytes(reduction, d, batch_size) for d in sizes.values())
    if need <= 0.8 * available:
        return
    big = max(sizes, key=lambda n: sizes[n])
    shape = " x ".join(str(s) for s in dict(layers)[big])
    srp = sum(reduce_memory_bytes(Reduction("srp", reduction.dim or 1024), d, batch_size) for d in sizes.values())
    alt = (
        f"--reduce srp:{reduction.dim} (about {srp / 1e9:.2g} GB)"
        if reduction.method == "pca"
        else "a smaller --batch-size or fewer --layers"
    )
    raise ResourceError(
        f"layer {big!r} gives maps of {shape} = {sizes[big]:,} values per image; reduce {reduction} over "
        f"{len(layers)} layer(s) at batch {batch_size} needs about {need / 1e9:.3g} GB, and {available / 1e9:.3g} GB "
        f"are available. Pass {alt}, a smaller dimension, a later layer, or --reduce none (pooled features)"
    )


class SparseRandomProjection:
    """The seeded very sparse random projection (B, D) → (B, k) of the module docstring.

    Args:
        n_features: D. dim: k. seed: the generator's seed. device: torch device the matrix lives on.
    """

    def __init__(self, n_features: int, dim: int, seed: int, device: str = "cpu") -> None:
        import torch

        d, k = int(n_features), int(dim)
        s = math.sqrt(d)
        rng = np.random.default_rng(seed)
        counts = rng.binomial(d, 1.0 / s, size=k)
        cols = [np.sort(rng.choice(d, int(c), replace=False)) for c in counts]
        signs = rng.integers(0, 2, size=int(counts.sum())) * 2 - 1
        crow = np.concatenate([[0], np.cumsum(counts)])
        values = (signs * math.sqrt(s / k)).astype(np.float32)
        index = np.concatenate(cols) if cols else np.zeros(0, dtype=np.int64)
        self.n_features, self.dim = d, k
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # "sparse CSR support is in beta"
            self.matrix = torch.sparse_csr_tensor(
                torch.from_numpy(crow.astype(np.int64)),
                torch.from_numpy(index.astype(np.int64)),
                torch.from_numpy(values),
                size=(k, d),
                check_invariants=False,
            ).to(device)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """(B, D) float → (B, k) float32."""
        import torch

        flat = x.reshape(x.shape[0], -1).float()
        if flat.shape[1] != self.n_features:
            raise ConfigError(f"projection of {self.n_features} features given maps of {flat.shape[1]}")
        with torch.autocast(device_type=flat.device.type, enabled=False):  # sparse kernels are float32 only
            return torch.sparse.mm(self.matrix, flat.T.contiguous()).T.contiguous()


class StreamingPCA:
    """An incremental PCA fitted on rows given batch by batch, in fixed chunks (see the module docstring).

    Args:
        dim: k. n_fit: how many rows will be given in all (fixes the chunk boundaries).

    Raises:
        ConfigError: fewer fit rows than components.
    """

    def __init__(self, dim: int, n_fit: int) -> None:
        if n_fit < dim:
            raise ConfigError(
                f"reduce pca:{dim} needs at least {dim} images to fit on, got {n_fit}; pass a smaller dimension or "
                "a larger --reduce-fit-n (or srp, which needs no fit)"
            )
        from sklearn.decomposition import IncrementalPCA

        c = pca_chunk(dim)
        bounds = [*list(range(0, n_fit, c)), n_fit]
        if len(bounds) > 2 and bounds[-1] - bounds[-2] < dim:
            del bounds[-2]  # the short last chunk joins the one before
        self.sizes = [b - a for a, b in itertools.pairwise(bounds)]
        self.ipca = IncrementalPCA(n_components=dim)
        self._buffer: list[np.ndarray] = []
        self._held = 0
        self._given = 0
        self.n_fit = n_fit

    def add(self, rows: np.ndarray) -> None:
        """Fit on (B, D) rows, in order; a chunk is fitted as soon as it is complete."""
        self._buffer.append(np.asarray(rows, dtype=np.float32))
        self._held += rows.shape[0]
        self._given += rows.shape[0]
        while self.sizes and self._held >= self.sizes[0]:
            block = np.concatenate(self._buffer, axis=0)
            size = self.sizes.pop(0)
            self.ipca.partial_fit(block[:size])
            rest = block[size:]
            self._buffer = [rest] if rest.shape[0] else []
            self._held = rest.shape[0]

    def finish(self) -> tuple[np.ndarray, np.ndarray]:
        """(mean (D,), components (k, D)) as float32, once all rows were given."""
        if self.sizes or self._given != self.n_fit:
            raise ConfigError(f"PCA fit got {self._given} of {self.n_fit} rows")
        return self.ipca.mean_.astype(np.float32), self.ipca.components_.astype(np.float32)

    @property
    def explained_variance_ratio(self) -> np.ndarray:
        return np.asarray(self.ipca.explained_variance_ratio_, dtype=np.float32)
