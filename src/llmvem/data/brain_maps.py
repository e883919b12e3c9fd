"""Per-voxel results back into brain space: NIfTI volumes in the subject's grid and ``.mgh`` surfaces on fsaverage.

Where each voxel goes comes from the :class:`~llmvem.data.brain.BrainData` itself (contract: ``brain.space`` and the
voxel table):

- volume (``space.kind == "volume"``): ``voxels["index"]`` is the flat index into ``space.shape`` in Fortran order
  (as NSD's NIfTI files are flattened); the image takes ``space.affine``. Written as ``<name>.nii.gz``, float32.
- fsaverage: ``voxels["hemi"]`` (``lh``/``rh``) and ``voxels["fsaverage_vertex"]`` (the vertex within its
  hemisphere, as both the NSD and the Algonauts loaders write it); without ``fsaverage_vertex``, ``voxels["index"]``
  over lh then rh (NSD's order: vertex ``index - n_vertices`` of rh). Written as ``lh.<name>.mgh`` and
  ``rh.<name>.mgh``, (n_vertices, 1, 1) float32, the shape of NSD's and FreeSurfer's surface overlays.

Everything outside the voxels is NaN by default (``fill=``: 0 for viewers that treat 0 as "no data"), so a value of
0 stays distinguishable from "not measured".

>>> import numpy as np, pandas as pd
>>> from llmvem.data.brain import BrainData, BrainSpace
>>> brain = BrainData(np.zeros((3, 2)), ["a", "b", "c"], pd.DataFrame({"roi": ["x", "x"], "index": [0, 5]}),
...                   space=BrainSpace("volume", "toy", (2, 2, 2), np.eye(4)))
>>> vol = volume_array(np.array([0.5, -0.25]), brain)
>>> vol.shape, float(vol[0, 0, 0]), float(vol[1, 0, 1]), int(np.isnan(vol).sum())
((2, 2, 2), 0.5, -0.25, 6)
"""

from __future__ import annotations

import gzip
import re
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from llmvem.errors import DataError
from llmvem.store import atomic_write_bytes

if TYPE_CHECKING:
    from llmvem.data.brain import BrainData, BrainSpace

HEMISPHERES = ("lh", "rh")


def _space(brain: BrainData, kind: str | None = None) -> BrainSpace:
    """``brain.space``, checked to exist (and to be of ``kind``)."""
    space = brain.space
    if space is None:
        raise DataError(
            f"brain {brain.name!r} has no space (volume grid or fsaverage), so its voxels cannot be placed in a map; "
            "load it with its loader (load_nsd, load_algonauts2023) or save_brain a BrainData that has one"
        )
    if kind is not None and space.kind != kind:
        raise DataError(f"brain {brain.name!r} is in a {space.kind} space ({space.name}), not a {kind} one")
    return space


def _values(values: np.ndarray, brain: BrainData) -> np.ndarray:
    """``values`` as float32 (n_voxels,) or (n_voxels, k), checked against ``brain.n_voxels``."""
    v = np.asarray(values, dtype=np.float32)
    if v.ndim not in (1, 2) or v.shape[0] != brain.n_voxels:
        raise DataError(
            f"brain map of {brain.name!r}: values of shape {v.shape}, expected ({brain.n_voxels},) or "
            f"({brain.n_voxels}, k): one value (or k) per voxel"
        )
    return v


def volume_array(values: np.ndarray, brain: BrainData, fill: float = np.nan) -> np.ndarray:
    """Per-voxel ``values`` placed in the subject's volume.

    Args:
        values: (n_voxels,) or (n_voxels, k) in the order of ``brain.voxels``.
        brain: a BrainData with a volume ``space`` and an ``index`` voxel column (flat, Fortran order).
        fill: value outside the voxels.
    Returns:
        float32 (X, Y, Z) or (X, Y, Z, k).
    """
    space = _space(brain, "volume")
    v = _values(values, brain)
    assert space.shape is not None
    index = _column(brain, "index")
    n = int(np.prod(space.shape))
    _check_index(index, n, brain, f"volume {space.name} {space.shape}")
    flat = np.full((n, *v.shape[1:]), fill, dtype=np.float32)
    flat[index] = v
    return flat.reshape((*space.shape, *v.shape[1:]), order="F")


def fsaverage_arrays(values: np.ndarray, brain: BrainData, fill: float = np.nan) -> dict[str, np.ndarray]:
    """Per-vertex ``values`` placed on each fsaverage hemisphere.

    Args:
        values: (n_voxels,) or (n_voxels, k) in the order of ``brain.voxels``.
        brain: a BrainData on fsaverage with ``hemi`` + ``fsaverage_vertex`` (or NSD's lh-then-rh ``index``).
        fill: value at vertices without data.
    Returns:
        ``{"lh": (n_vertices,) or (n_vertices, k), "rh": ...}`` float32 (both hemispheres, even when the data
        covers one).
    """
    space = _space(brain, "fsaverage")
    v = _values(values, brain)
    hemi, vertex = fsaverage_vertices(brain)
    n = int(space.n_vertices or 163_842)
    out = {}
    for h in HEMISPHERES:
        sel = hemi == h
        _check_index(vertex[sel], n, brain, f"fsaverage {h} ({n} vertices)")
        arr = np.full((n, *v.shape[1:]), fill, dtype=np.float32)
        arr[vertex[sel]] = v[sel]
        out[h] = arr
    return out


def fsaverage_vertices(brain: BrainData) -> tuple[np.ndarray, np.ndarray]:
    """``(hemi, vertex)`` of every voxel of ``brain`` on fsaverage: (n_voxels,) str and int64 arrays.

    From ``hemi`` and ``fsaverage_vertex`` (NSD and Algonauts), else from NSD's ``index`` over lh then rh.
    """
    space = _space(brain, "fsaverage")
    n = int(space.n_vertices or 163_842)
    cols = brain.voxels.columns
    if "fsaverage_vertex" in cols and "hemi" in cols:
        vertex = _column(brain, "fsaverage_vertex")
        hemi = brain.voxels["hemi"].astype(str).to_numpy()
        if (vertex < 0).any():
            raise DataError(
                f"brain {brain.name!r}: {int((vertex < 0).sum())} voxel(s) have no fsaverage vertex (-1; an Algonauts "
                "folder without roi_masks/{lh,rh}.all-vertices_fsaverage_space.npy?), so no surface map can be made"
            )
    elif "index" in cols:
        index = _column(brain, "index")
        hemi = np.where(index < n, "lh", "rh")
        vertex = np.where(index < n, index, index - n)
    else:
        raise DataError(
            f"brain {brain.name!r}: its voxel table has neither 'hemi' + 'fsaverage_vertex' nor 'index', so its "
            f"vertices on fsaverage are unknown (columns: {list(cols)})"
        )
    bad = sorted(set(hemi.tolist()) - set(HEMISPHERES))
    if bad:
        raise DataError(f"brain {brain.name!r}: hemisphere(s) {bad} in its voxel table; fsaverage has lh and rh")
    return hemi, vertex


def _column(brain: BrainData, name: str) -> np.ndarray:
    if name not in brain.voxels.columns:
        raise DataError(
            f"brain {brain.name!r}: its voxel table has no {name!r} column (columns: {list(brain.voxels.columns)}), "
            "so its voxels cannot be placed in a map"
        )
    col = brain.voxels[name].to_numpy()
    if col.dtype.kind not in "iu":
        raise DataError(f"brain {brain.name!r}: voxel column {name!r} must hold integers, got {col.dtype}")
    return col.astype(np.int64)


def _check_index(index: np.ndarray, n: int, brain: BrainData, where: str) -> None:
    if index.size and (index.min() < 0 or index.max() >= n):
        raise DataError(
            f"brain {brain.name!r}: voxel positions {int(index.min())}…{int(index.max())} fall outside the {where}"
        )
    if np.unique(index).size != index.size:
        raise DataError(
            f"brain {brain.name!r}: {index.size - np.unique(index).size} voxel(s) share a position in {where}"
        )


def save_volume(values: np.ndarray, brain: BrainData, path: str | Path, fill: float = np.nan) -> Path:
    """Write per-voxel ``values`` as a NIfTI image in the subject's volume (shape and affine of ``brain.space``).

    Args:
        values: (n_voxels,) or (n_voxels, k) (k volumes: a 4-D image).
        brain: the data the values belong to (:func:`volume_array`).
        path: ``.nii.gz`` (gzip-compressed) or ``.nii``.
        fill: value outside the voxels (NaN by default).
    Returns:
        The path written (atomically).
    """
    import nibabel as nib

    space = _space(brain, "volume")
    img = nib.Nifti1Image(volume_array(values, brain, fill), space.affine)
    img.header.set_data_dtype(np.float32)
    path = Path(path)
    data = img.to_bytes()
    atomic_write_bytes(path, gzip.compress(data, compresslevel=6, mtime=0) if path.suffix == ".gz" else data)
    return path


def save_fsaverage(values: np.ndarray, brain: BrainData, path: str | Path, fill: float = np.nan) -> list[Path]:
    """Write per-vertex ``values`` as FreeSurfer ``.mgh`` overlays on fsaverage, one per hemisphere.

    Args:
        values: (n_voxels,) or (n_voxels, k) (k frames).
        brain: the data the values belong to (:func:`fsaverage_arrays`).
        path: ``DIR/NAME.mgh`` (or ``DIR/NAME``): writes ``DIR/lh.NAME.mgh`` and ``DIR/rh.NAME.mgh``.
        fill: value at vertices without data (NaN by default).
    Returns:
        ``[lh path, rh path]``; each (n_vertices, 1, 1[, k]) float32.
    """
    import nibabel as nib

    path = Path(path)
    name = path.name[: -len(".mgh")] if path.name.endswith(".mgh") else path.name
    out = []
    for hemi, arr in fsaverage_arrays(values, brain, fill).items():
        data = arr.reshape((arr.shape[0], 1, 1, *arr.shape[1:]))
        target = path.with_name(f"{hemi}.{name}.mgh")
        atomic_write_bytes(target, nib.MGHImage(data, np.eye(4)).to_bytes())
        out.append(target)
    return out


def save_brain_map(
    values: np.ndarray, brain: BrainData, folder: str | Path, name: str, fill: float = np.nan
) -> list[Path]:
    """Per-voxel ``values`` in ``brain``'s own space: ``folder/NAME.nii.gz`` (volume) or ``folder/{lh,rh}.NAME.mgh``
    (fsaverage). Returns the files written."""
    kind = _space(brain).kind
    folder = Path(folder)
    if kind == "volume":
        return [save_volume(values, brain, folder / f"{name}.nii.gz", fill)]
    return save_fsaverage(values, brain, folder / f"{name}.mgh", fill)


def save_result_maps(
    maps: Mapping[str, np.ndarray], brain: BrainData, folder: str | Path, fill: float = np.nan
) -> dict[str, list[Path]]:
    """Several per-voxel results (``{"r": r, "alpha": a}``) of ``brain`` written by :func:`save_brain_map`.

    Returns:
        name → files written. Raises :class:`~llmvem.errors.DataError` when ``brain`` has no space.
    """
    _space(brain)
    return {name: save_brain_map(v, brain, folder, name, fill) for name, v in maps.items()}


def safe_name(text: str) -> str:
    """``text`` as a file or folder name (characters other than letters, digits, ``.``, ``_``, ``-`` → ``_``)."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("._") or "map"
