"""Volumetric RSA searchlight: spheres of voxels around every centre, one RDM per sphere, compared with models.

Sphere: the voxels whose centre lies at Euclidean distance < ``radius`` (in voxels) from the centre voxel, clipped at
the volume's edges (rsatoolbox's definition). A centre is used when at least ``min_in_mask`` of its sphere lies in the
mask (Doerig et al.: radius 6, 50 %); its pattern is made of the sphere's in-mask voxels only (rsatoolbox's
``truncate_at_boundary=True``). RDMs of a chunk of centres are computed together as one batched matrix product on
zero-padded patterns; chunks run in a thread pool (numpy releases the GIL).
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from llmvem.brain.rsa import COMPARE_METHODS, CompareMethod, _as_vectors, _compare_vectors
from llmvem.errors import ConfigError, DataError


@dataclass(frozen=True)
class Searchlight:
    """Sphere neighbourhoods of the usable centres of a mask.

    Attributes:
        centres: (c,) flat (C-order) indices of the centre voxels in the volume.
        neighbours: (c, m_max) flat volume indices of each sphere's in-mask voxels, padded with −1.
        counts: (c,) in-mask voxels per sphere.
        shape: the volume shape (X, Y, Z).
    """

    centres: np.ndarray
    neighbours: np.ndarray
    counts: np.ndarray
    shape: tuple[int, int, int]


def searchlight_spheres(mask: np.ndarray, radius: float = 6.0, min_in_mask: float = 0.5) -> Searchlight:
    """Spheres around every mask voxel with at least ``min_in_mask`` of the (edge-clipped) sphere inside the mask.

    Args:
        mask: (X, Y, Z) bool (or 0/1) brain / ROI mask.
        radius: sphere radius in voxels (> 0; distance < radius is inside).
        min_in_mask: minimum fraction of the sphere's in-volume voxels that are in the mask, in [0, 1].
    Returns:
        :class:`Searchlight`.
    """
    m = np.asarray(mask)
    if m.ndim != 3:
        raise DataError(f"searchlight_spheres: mask must be 3-D (X, Y, Z), got shape {m.shape}")
    m = m.astype(bool)
    if not m.any():
        raise DataError("searchlight_spheres: the mask is empty")
    if not radius > 0:
        raise ConfigError(f"searchlight_spheres: radius must be > 0, got {radius}")
    if not 0 <= min_in_mask <= 1:
        raise ConfigError(f"searchlight_spheres: min_in_mask must be in [0, 1], got {min_in_mask}")
    r = int(np.ceil(radius))
    grid = np.mgrid[-r : r + 1, -r : r + 1, -r : r + 1].reshape(3, -1).T
    offsets = grid[np.sqrt((grid**2).sum(axis=1)) < radius]  # (o, 3)
    shape = m.shape
    centres = np.argwhere(m)  # (c, 3), C order
    coords = centres[:, None, :] + offsets[None, :, :]  # (c, o, 3)
    inside = ((coords >= 0) & (coords < np.asarray(shape))).all(axis=2)  # (c, o)
    clipped = np.where(inside[..., None], coords, 0)
    flat = np.ravel_multi_index(tuple(clipped.transpose(2, 0, 1)), shape)  # (c, o)
    in_mask = inside & m.reshape(-1)[flat]
    frac = in_mask.sum(axis=1) / inside.sum(axis=1)
    good = frac >= min_in_mask - 1e-12
    in_mask, flat = in_mask[good], flat[good]
    counts = in_mask.sum(axis=1)
    order = np.argsort(~in_mask, axis=1, kind="stable")  # in-mask voxels first, in offset order
    nb = np.take_along_axis(np.where(in_mask, flat, -1), order, axis=1)[:, : int(counts.max(initial=1))]
    return Searchlight(
        centres=np.ravel_multi_index(tuple(centres[good].T), shape),
        neighbours=nb,
        counts=counts,
        shape=(int(shape[0]), int(shape[1]), int(shape[2])),
    )


def _chunks(c: int, size: int) -> Iterator[slice]:
    for start in range(0, c, size):
        yield slice(start, min(c, start + size))


def _rdms_chunk(data: np.ndarray, sl: Searchlight, part: slice, min_voxels: int) -> np.ndarray:
    """Correlation-distance RDMs (condensed, (c_chunk, k)) of the spheres in ``part``; data is (n, V + 1) with a zero
    last column that the −1 padding indexes."""
    nb = sl.neighbours[part]
    cnt = sl.counts[part].astype(np.float64)
    pat = data[:, nb].transpose(1, 0, 2)  # (c, n, m)
    valid = (nb >= 0)[:, None, :]
    mean = pat.sum(axis=2, keepdims=True) / cnt[:, None, None]
    pat = np.where(valid, pat - mean, 0.0)
    norm = np.sqrt((pat**2).sum(axis=2, keepdims=True))
    flat = norm[..., 0] == 0
    pat = pat / np.where(norm > 0, norm, 1.0)
    sim = np.matmul(pat, pat.transpose(0, 2, 1))  # (c, n, n)
    n = data.shape[0]
    iu, ju = np.triu_indices(n, k=1)
    out = 1.0 - np.clip(sim[:, iu, ju], -1.0, 1.0)
    undefined = flat[:, iu] | flat[:, ju] | (cnt < min_voxels)[:, None]
    out[undefined] = np.nan
    return out


def searchlight_rdms(
    data: np.ndarray,
    sl: Searchlight,
    *,
    chunk: int = 64,
    n_jobs: int = 1,
    min_voxels: int = 2,
) -> np.ndarray:
    """Correlation-distance RDM of every searchlight sphere.

    Args:
        data: (n_stimuli, X, Y, Z) volumes, or (n_stimuli, X·Y·Z) flattened in C order.
        sl: the spheres (:func:`searchlight_spheres`).
        chunk: centres per batched product (memory ≈ chunk · n · m_max · 8 bytes, twice).
        n_jobs: threads.
        min_voxels: spheres with fewer in-mask voxels get NaN RDMs.
    Returns:
        (c, k) condensed RDMs, k = n(n−1)/2; rows of a sphere whose pattern of some stimulus is constant hold NaN
        where that stimulus is involved.
    """
    x = np.asarray(data, dtype=np.float64)
    n_vox = int(np.prod(sl.shape))
    if x.ndim == 4:
        if x.shape[1:] != sl.shape:
            raise DataError(
                f"searchlight_rdms: data volumes are {x.shape[1:]} but the spheres were built on {sl.shape}"
            )
        x = x.reshape(x.shape[0], -1)
    if x.ndim != 2 or x.shape[1] != n_vox:
        raise DataError(f"searchlight_rdms: data must be (n, X, Y, Z) or (n, {n_vox}), got shape {np.shape(data)}")
    if x.shape[0] < 3:
        raise DataError(f"searchlight_rdms: need at least 3 stimuli, got {x.shape[0]}")
    used = np.unique(sl.neighbours[sl.neighbours >= 0])
    if not np.isfinite(x[:, used]).all():
        raise DataError("searchlight_rdms: data contain NaN/inf inside the mask")
    if chunk < 1 or n_jobs < 1:
        raise ConfigError(f"searchlight_rdms: chunk and n_jobs must be ≥ 1, got {chunk}, {n_jobs}")
    padded = np.concatenate([x, np.zeros((x.shape[0], 1))], axis=1)  # index −1 → the zero column
    k = x.shape[0] * (x.shape[0] - 1) // 2
    out = np.empty((sl.centres.size, k))
    parts = list(_chunks(sl.centres.size, chunk))

    def work(part: slice) -> None:
        out[part] = _rdms_chunk(padded, sl, part, min_voxels)

    if n_jobs == 1:
        for part in parts:
            work(part)
    else:
        with ThreadPoolExecutor(n_jobs) as pool:
            list(pool.map(work, parts))
    return out


def searchlight_rsa(
    data: np.ndarray,
    mask: np.ndarray,
    model_rdms: np.ndarray,
    *,
    radius: float = 6.0,
    min_in_mask: float = 0.5,
    method: CompareMethod | str = "spearman",
    chunk: int = 64,
    n_jobs: int = 1,
) -> tuple[np.ndarray, np.ndarray]:
    """Compare every searchlight's RDM with model RDMs.

    Args:
        data: (n_stimuli, X, Y, Z) response volumes (one per stimulus, repeats averaged).
        mask: (X, Y, Z) brain mask.
        model_rdms: (n, n) / (k,) one model or (m, n, n) / (m, k) several.
        radius, min_in_mask: sphere definition (:func:`searchlight_spheres`).
        method: comparison, as in :func:`~llmvem.brain.rsa.compare_rdms`.
        chunk, n_jobs: as in :func:`searchlight_rdms`.
    Returns:
        maps (m, X, Y, Z) float64, NaN outside the used centres; and the centres' flat indices (c,).
    """
    if method not in COMPARE_METHODS:
        raise ConfigError(f"searchlight_rsa: unknown method {method!r}; choose one of {list(COMPARE_METHODS)}")
    vm, _ = _as_vectors(model_rdms, "searchlight_rsa (model_rdms)")
    x = np.asarray(data)
    if x.ndim != 4:
        raise DataError(f"searchlight_rsa: data must be (n_stimuli, X, Y, Z), got shape {x.shape}")
    k = x.shape[0] * (x.shape[0] - 1) // 2
    if vm.shape[1] != k:
        raise DataError(f"searchlight_rsa: model RDMs have {vm.shape[1]} pairs but data has {x.shape[0]} stimuli")
    sl = searchlight_spheres(mask, radius, min_in_mask)
    rdms = searchlight_rdms(x, sl, chunk=chunk, n_jobs=n_jobs)
    scores = np.full((sl.centres.size, vm.shape[0]), np.nan)
    ok = np.isfinite(rdms).all(axis=1) & (np.ptp(rdms, axis=1) > 0)
    if ok.any():
        scores[ok] = _compare_vectors(rdms[ok], vm, str(method), "searchlight_rsa")
    maps = np.full((vm.shape[0], int(np.prod(sl.shape))), np.nan)
    maps[:, sl.centres] = scores.T
    return maps.reshape((vm.shape[0], *sl.shape)), sl.centres
