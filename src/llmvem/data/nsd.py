"""Natural Scenes Dataset (NSD) single-trial betas → repeat-averaged :class:`~llmvem.data.brain.BrainData`.

Files read, relative to the NSD root (the layout of the public bucket, NSD data manual "Functional data (NSD)",
"ROIs")::

    nsddata/experiments/nsd/nsd_expdesign.mat        masterordering (30000,), subjectim (8, 10000), sharedix (1000,)
    nsddata_betas/ppdata/subjNN/<space>/<betas>/     <betas>: betas_assumehrf, betas_fithrf,
                                                     betas_fithrf_GLMdenoise_RR (default)
        betas_sessionSS.hdf5        volume: dataset "betas", (750, Z, Y, X) in h5py (the manual's X × Y × Z × 750,
                                    chunk [1 1 1 750]: one chunk per voxel), int16 = percent signal change × 300
        betas_sessionSS.nii.gz      volume: (X, Y, Z, 750) int16
        {lh,rh}.betas_sessionSS.mgh fsaverage: (163842, 1, 1, 750) float32 percent signal change
        ncsnr.nii.gz / {lh,rh}.ncsnr.mgh   NSD's own noise-ceiling SNR (``ncsnr="shipped"``)
    ROIs, volume:    nsddata/ppdata/subjNN/<space>/roi/[lh.|rh.]<name>.nii.gz (X, Y, Z), −1 non-cortical, 0 none,
                     1..N labels
    ROIs, fsaverage: nsddata/freesurfer/fsaverage/label/{lh,rh}.<name>.mgz (163842, 1, 1) for the atlases
                     (streams, nsdgeneral, Kastner2015, HCP_MMP1, corticalsulc, ...) and
                     {lh,rh}.probmap_<ROI>.mgz: the fraction (0–1) of the 8 subjects whose hand-drawn ROI
                     (prf-visualrois, prf-eccrois, floc-faces/-words/-places/-bodies) covers the vertex
    names:           <name>.mgz.ctab ("index name" per line) in the roi folder, nsddata/freesurfer/subjNN/label or
                     nsddata/freesurfer/fsaverage/label (the unprefixed name: lh.streams → streams.mgz.ctab); the
                     volume-only ROIs (MTL, thalamus) as nsddata/templates/<name>.ctab

The processing is Doerig et al.'s (2025) and Allen et al.'s (2022): every session's trials are z-scored per voxel
within the session; the 73k image id of trial t is ``subjectim[subject, masterordering[t]]`` (both 1-based in the
file); images with fewer than ``min_repeats`` presentations in the loaded sessions are dropped and the repeats of the
others averaged; ncsnr is estimated from the first 3 repeats by NSD's formula (σ_signal² = 1 − σ_noise² on
z-scored betas, :func:`_snr`). Test splits: ``shared1000`` (the images every subject
was scheduled to see) and ``shared515`` (those that all eight subjects actually saw three times, given the sessions
each completed, :data:`SESSIONS_COMPLETED`); ``train`` is every loaded image not in ``test_split``.

Memory and time: only the ROI's voxels of each session are read (HDF5: the voxel's own chunk, read directly; NIfTI
and MGH: blocks of trials over the ROI's bounding box), and the z-scored trials are summed per image as each session
is read, so memory is about n_images × n_voxels float32 (the returned array) plus one session of ROI voxels.

Stimulus ids are ``nsd-NNNNN`` with the 1-based 73k id (:mod:`llmvem.data.nsd_ids`).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from llmvem.data.brain import BrainData, BrainSpace
from llmvem.data.nsd_ids import nsd_id
from llmvem.errors import DataError, DatasetNotFoundError

TRIALS_PER_SESSION = 750
SESSIONS_COMPLETED: tuple[int, ...] = (40, 40, 32, 30, 40, 32, 40, 30)  # subjects 1–8 (Allen et al. 2022)
HEMISPHERES = ("lh", "rh")
BETA_VERSIONS = ("betas_assumehrf", "betas_fithrf", "betas_fithrf_GLMdenoise_RR")
SPACES = ("func1pt8mm", "func1mm", "fsaverage")
Space = Literal["func1pt8mm", "func1mm", "fsaverage"]
_INT16_SCALE = 300.0  # int16 betas are percent signal change × 300
_BLOCK = 4096  # voxels z-scored and summed at a time (bounds the float64 temporaries)
_TRIAL_BLOCK = 50  # trials read at a time from NIfTI / MGH files


def stimulus_id(nsd73k: int) -> str:
    """``nsd-NNNNN`` id of a 1-based 73k image id."""
    return nsd_id(nsd73k)


@dataclass(frozen=True)
class NSDDesign:
    """The experimental design (``nsd_expdesign.mat``), all ids 1-based as in the file.

    Attributes:
        masterordering: (30000,) trial → 10k index.
        subjectim: (8, 10000) subject, 10k index → 73k id.
        sharedix: (1000,) 73k ids of the shared images.
    """

    masterordering: np.ndarray
    subjectim: np.ndarray
    sharedix: np.ndarray

    @classmethod
    def load(cls, path: str | Path) -> NSDDesign:
        from scipy.io import loadmat

        path = Path(path)
        if not path.is_file():
            raise DatasetNotFoundError(f"NSD: design file {path} not found")
        try:
            mat = loadmat(path)
        except (OSError, ValueError, NotImplementedError) as exc:
            raise DataError(f"NSD: cannot read {path}: {exc}") from exc
        missing = [k for k in ("masterordering", "subjectim", "sharedix") if k not in mat]
        if missing:
            raise DataError(f"NSD: {path} lacks {missing}")
        subjectim = np.atleast_2d(np.asarray(mat["subjectim"], dtype=np.int64))
        return cls(
            masterordering=np.asarray(mat["masterordering"], dtype=np.int64).ravel(),
            subjectim=subjectim,
            sharedix=np.asarray(mat["sharedix"], dtype=np.int64).ravel(),
        )

    @property
    def n_sessions(self) -> int:
        """Sessions the design lays out (``len(masterordering) / 750``)."""
        return int(self.masterordering.size // TRIALS_PER_SESSION)

    def trial_images(self, subject: int) -> np.ndarray:
        """(n_trials,) 73k id of every trial of ``subject`` (1-based)."""
        if not 1 <= subject <= self.subjectim.shape[0]:
            raise DataError(f"NSD: subject {subject} not in the design (1–{self.subjectim.shape[0]})")
        return self.subjectim[subject - 1, self.masterordering - 1]

    def session_images(self, subject: int, session: int) -> np.ndarray:
        """(750,) 73k ids of the trials of 1-based ``session``."""
        return self.trial_images(subject)[(session - 1) * TRIALS_PER_SESSION : session * TRIALS_PER_SESSION]

    def shared515(self, sessions_completed: Sequence[int] = SESSIONS_COMPLETED) -> np.ndarray:
        """73k ids of the shared images that every subject saw ``3`` times within the sessions they completed."""
        keep = np.ones(self.sharedix.size, dtype=bool)
        session_of_trial = np.arange(self.masterordering.size) // TRIALS_PER_SESSION + 1
        for subj in range(1, min(self.subjectim.shape[0], len(sessions_completed)) + 1):
            done = session_of_trial <= sessions_completed[subj - 1]
            ims = self.trial_images(subj)[done]
            counts = pd.Series(ims).value_counts()
            keep &= counts.reindex(self.sharedix).fillna(0).to_numpy() >= 3
        return self.sharedix[keep]


# --------------------------------------------------------------------------- ROI files
def _ctab(names_for: str, folders: Sequence[Path]) -> dict[int, str]:
    """Label index → name from the first ``<names_for>.mgz.ctab`` (or ``<names_for>.ctab``, as NSD names the volume
    ROIs' tables in ``nsddata/templates``) found in ``folders`` (empty if none)."""
    for folder in folders:
        mgz, plain = folder / f"{names_for}.mgz.ctab", folder / f"{names_for}.ctab"
        path = mgz if mgz.is_file() else plain
        if path.is_file():
            out = {}
            for line in path.read_text(encoding="utf-8", errors="replace").splitlines():  # names: ASCII by spec
                parts = line.split()
                if len(parts) >= 2 and parts[0].lstrip("-").isdigit():
                    out[int(parts[0])] = parts[1]
            return out
    return {}


def _hemi_prefix(name: str) -> tuple[str | None, str]:
    """``"lh.streams"`` → ``("lh", "streams")``; ``"streams"`` → ``(None, "streams")``."""
    for hemi in HEMISPHERES:
        if name.startswith(f"{hemi}."):
            return hemi, name[3:]
    return None, name


def _load_image(path: Path) -> Any:
    import nibabel as nib

    try:
        return nib.load(str(path), keep_file_open=True)
    except Exception as exc:  # nibabel raises many types for a corrupt file
        raise DataError(f"NSD: cannot read {path}: {exc}") from exc


def _read_array(path: Path) -> np.ndarray:
    try:
        return np.asarray(_load_image(path).dataobj)
    except DataError:
        raise
    except Exception as exc:
        raise DataError(f"NSD: cannot read {path}: {exc}") from exc


def _labels(values: np.ndarray, path: Path, name: str, roi_threshold: float | None) -> np.ndarray:
    """Integer labels of an ROI file: its integer values, or 1 where a probability map reaches ``roi_threshold``."""
    _, base = _hemi_prefix(name)
    fractional = base.startswith("probmap_") or (
        np.issubdtype(values.dtype, np.floating) and not np.array_equal(values, np.round(values))
    )
    if not fractional:
        return values.astype(np.int64)
    if roi_threshold is None:
        raise DataError(
            f"NSD: {path} is a probability map (fractions 0–1 of the 8 subjects, not integer labels); "
            "pass roi_threshold= (e.g. 0.5: the vertices at least half of the subjects share) to select vertices"
        )
    if not 0 < roi_threshold <= 1:
        raise DataError(f"NSD: roi_threshold must be in (0, 1], got {roi_threshold}")
    finite = values[np.isfinite(values)]
    if finite.size and (finite.min() < 0 or finite.max() > 1):
        raise DataError(f"NSD: {path} holds values {finite.min()}–{finite.max()}, not fractions 0–1")
    return (np.nan_to_num(values, nan=0.0) >= roi_threshold).astype(np.int64)


@dataclass
class _RoiFile:
    """One ROI file or hemisphere pair over the space: ``labels`` (n,) int (> 0 labelled), ``names`` index → name."""

    name: str
    labels: np.ndarray
    names: dict[int, str]
    shape: tuple[int, ...] | None = None
    affine: np.ndarray | None = None

    def label_names(self, mask: np.ndarray) -> np.ndarray:
        """(n_mask,) object array: the ROI name labelling each voxel of ``mask``, ``""`` if none."""
        _, base = _hemi_prefix(self.name)
        sel = self.labels[mask]
        if base.startswith("probmap_"):
            return np.where(sel > 0, base[len("probmap_") :], "").astype(object)
        out = np.full(sel.size, "", dtype=object)
        for k in np.unique(sel[sel > 0]):
            out[sel == k] = self.names.get(int(k), f"{base}_{int(k)}")
        return out


@dataclass
class _Layout:
    root: Path
    subject: int
    space: str
    betas: str = "betas_fithrf_GLMdenoise_RR"

    @property
    def subj(self) -> str:
        return f"subj{self.subject:02d}"

    @property
    def betas_dir(self) -> Path:
        return self.root / "nsddata_betas" / "ppdata" / self.subj / self.space / self.betas

    @property
    def roi_dir(self) -> Path:
        return self.root / "nsddata" / "ppdata" / self.subj / self.space / "roi"

    @property
    def fs_label(self) -> Path:
        return self.root / "nsddata" / "freesurfer" / "fsaverage" / "label"

    @property
    def subj_label(self) -> Path:
        return self.root / "nsddata" / "freesurfer" / self.subj / "label"

    @property
    def templates(self) -> Path:
        """``nsddata/templates``: the label tables of the volume-only ROIs (``MTL.ctab``, ``thalamus.ctab``)."""
        return self.root / "nsddata" / "templates"

    def check_betas_dir(self) -> None:
        """Raise naming the first missing level (subject, space, beta version) and what exists there."""
        level = self.root / "nsddata_betas" / "ppdata"
        for part, what in ((self.subj, "subject"), (self.space, "space"), (self.betas, "beta version")):
            nxt = level / part
            if not nxt.is_dir():
                found = sorted(p.name for p in level.iterdir() if p.is_dir()) if level.is_dir() else []
                raise DatasetNotFoundError(
                    f"NSD: no {what} folder {nxt} (found {found or 'nothing'} in {level}); "
                    "download the betas of this subject/space/version or pass the ones you have"
                )
            level = nxt

    def roi(self, name: str, roi_threshold: float | None) -> _RoiFile:
        """Read ROI ``name`` in this layout's space (see the module docstring for where each lives)."""
        hemi, base = _hemi_prefix(name)
        names_for = base
        if self.space == "fsaverage":
            hemis = [hemi] if hemi else list(HEMISPHERES)
            paths = [self.fs_label / f"{h}.{base}.mgz" for h in HEMISPHERES]
            missing = [p for p in paths if not p.is_file()]
            if missing:
                raise DatasetNotFoundError(self._roi_not_found(name, missing[0]))
            parts = []
            for h, p in zip(HEMISPHERES, paths, strict=True):
                lab = _labels(_read_array(p).reshape(-1), p, name, roi_threshold)
                parts.append(lab if h in hemis else np.zeros_like(lab))
            return _RoiFile(name, np.concatenate(parts), _ctab(names_for, [self.fs_label, self.subj_label]))
        p = self.roi_dir / f"{name}.nii.gz"
        if not p.is_file():
            raise DatasetNotFoundError(self._roi_not_found(name, p))
        img = _load_image(p)
        values = np.asarray(img.dataobj)
        if values.ndim != 3:
            raise DataError(f"NSD: ROI volume {p} has shape {values.shape}, expected (X, Y, Z)")
        labels = _labels(values, p, name, roi_threshold).reshape(-1, order="F")
        ctab = _ctab(names_for, [self.roi_dir, self.subj_label, self.fs_label, self.templates])
        return _RoiFile(name, labels, ctab, tuple(values.shape), np.asarray(img.affine, dtype=np.float64))

    def _roi_not_found(self, name: str, path: Path) -> str:
        """Message for a missing ROI file: where else the ROI exists, and what exists here."""
        _, base = _hemi_prefix(name)
        msg = f"NSD: ROI file {path} not found"
        if not (self.root / "nsddata" / "ppdata" / self.subj).is_dir() and self.space != "fsaverage":
            found = sorted(p.name for p in (self.root / "nsddata" / "ppdata").glob("subj*"))
            return f"{msg}: no folder for {self.subj} in {self.root / 'nsddata' / 'ppdata'} (found {found})"
        if self.space == "fsaverage":
            if (self.roi_dir.parent.parent / "func1pt8mm" / "roi" / f"{name}.nii.gz").is_file() or (
                self.subj_label / f"lh.{base}.mgz"
            ).is_file():
                msg += f"; {base!r} is a subject ROI (volume / {self.subj}'s own surface), not an fsaverage label"
            ctab = _ctab(base, [self.subj_label, self.fs_label])
            probmaps = [f"probmap_{n}" for n in ctab.values() if (self.fs_label / f"lh.probmap_{n}.mgz").is_file()]
            if probmaps:
                msg += f"; on fsaverage NSD ships it as probability maps: rois={probmaps} with roi_threshold="
            have = sorted({p.name.split(".", 1)[1][:-4] for p in self.fs_label.glob("lh.*.mgz")})
            return f"{msg}; fsaverage labels here: {[h for h in have if not h.startswith('probmap_')]}"
        if (self.fs_label / f"lh.{base}.mgz").is_file():
            msg += f"; {base!r} exists on fsaverage ({self.fs_label}), not in {self.space}: pass space='fsaverage'"
        have = sorted(p.name[: -len(".nii.gz")] for p in self.roi_dir.glob("*.nii.gz")) if self.roi_dir.is_dir() else []
        return f"{msg}; ROI volumes in {self.roi_dir}: {have or 'none'}"

    def volume_hemi(self, names: Sequence[str], mask: np.ndarray) -> np.ndarray:
        """(n_mask,) ``"lh"``/``"rh"``/``""`` from the hemisphere ROI volumes NSD ships beside each ROI
        (``roi/lh.<name>.nii.gz``, ``roi/rh.<name>.nii.gz``): a voxel is lh if an lh volume labels it (> 0)."""
        hemi = np.full(int(mask.sum()), "", dtype=object)
        for name in names:
            prefix, base = _hemi_prefix(name)
            if prefix is not None:
                lab = self.roi(name, 0.5).labels[mask]
                hemi[(hemi == "") & (lab > 0)] = prefix
                continue
            for h in HEMISPHERES:
                p = self.roi_dir / f"{h}.{base}.nii.gz"
                if p.is_file():
                    lab = _read_array(p).reshape(-1, order="F")[mask]
                    hemi[(hemi == "") & (lab > 0)] = h
        return hemi

    def session_paths(self, s: int, fmt: str) -> list[Path]:
        """The file(s) that hold session ``s`` (one volume file, or lh and rh on fsaverage)."""
        d = self.betas_dir
        if self.space == "fsaverage":
            return [d / f"{h}.betas_session{s:02d}.mgh" for h in HEMISPHERES]
        h5, nii = d / f"betas_session{s:02d}.hdf5", d / f"betas_session{s:02d}.nii.gz"
        if fmt == "hdf5":
            return [h5]
        if fmt == "nifti":
            return [nii]
        return [h5 if h5.is_file() or not nii.is_file() else nii]

    def ncsnr(self, mask: np.ndarray) -> np.ndarray:
        """NSD's shipped ncsnr at the mask's voxels (``ncsnr.nii.gz`` or ``{lh,rh}.ncsnr.mgh`` in the betas folder)."""
        if self.space == "fsaverage":
            paths = [self.betas_dir / f"{h}.ncsnr.mgh" for h in HEMISPHERES]
        else:
            paths = [self.betas_dir / "ncsnr.nii.gz"]
        for p in paths:
            if not p.is_file():
                raise DatasetNotFoundError(f"NSD: ncsnr file {p} not found (ncsnr='shipped'); use ncsnr='estimate'")
        flat = np.concatenate([_read_array(p).reshape(-1, order="F") for p in paths])
        if flat.size != mask.size:
            raise DataError(f"NSD: ncsnr files {paths} cover {flat.size} voxels, the ROIs {mask.size}")
        return flat[mask].astype(np.float64)


# --------------------------------------------------------------------------- reading one session
def _check_dtype(dtype: np.dtype, path: Path) -> None:
    if dtype != np.int16 and not np.issubdtype(dtype, np.floating):
        raise DataError(
            f"NSD: betas in {path} are {dtype}; NSD ships int16 (percent signal change × 300) or float "
            "percent signal change"
        )


def _to_float(a: np.ndarray) -> np.ndarray:
    """C-ordered float32 percent signal change: int16 betas are percent signal change × 300 (float32 division)."""
    out = np.empty(a.shape, dtype=np.float32)
    if np.issubdtype(a.dtype, np.integer):
        np.divide(a, np.float32(_INT16_SCALE), out=out, dtype=np.float32)
    else:
        out[...] = a
    return out


def _read_hdf5(path: Path, idx: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """(750, n) float32 betas at the flat Fortran-order voxel indices ``idx`` of the (X, Y, Z) grid ``shape``.

    NSD's files hold one chunk per voxel ((750, 1, 1, 1) in h5py's (trials, Z, Y, X) order, uncompressed): each
    ROI voxel's chunk is read directly (about 1 s per session for 15.7k voxels from a cold disk; the bounding box
    of the same ROI takes 7 s, per-run hyperslabs 1.5 s). Other chunkings fall back to one hyperslab per run.
    """
    import h5py

    x, y, z = np.unravel_index(idx, shape, order="F")
    try:
        with h5py.File(path, "r") as f:
            if "betas" not in f:
                raise DataError(f"NSD: {path} has no dataset 'betas'")
            d = f["betas"]
            _check_dtype(d.dtype, path)
            if d.ndim != 4 or tuple(d.shape[1:]) != tuple(shape[::-1]):
                raise DataError(
                    f"NSD: {path} holds betas of shape {d.shape}, expected (trials, {shape[2]}, {shape[1]}, "
                    f"{shape[0]}) for the ROI grid {shape}: betas and ROI files of different spaces?"
                )
            n_t = d.shape[0]
            if d.chunks == (n_t, 1, 1, 1) and d.id.get_create_plist().get_nfilters() == 0:
                read = d.id.read_direct_chunk
                try:
                    raw = b"".join(read((0, int(c), int(b), int(a)))[1] for a, b, c in zip(x, y, z, strict=True))
                except (OSError, ValueError, KeyError):  # a chunk never written: read through HDF5 (fill value)
                    raw = b""
                if len(raw) == idx.size * n_t * d.dtype.itemsize:
                    return _to_float(np.frombuffer(raw, dtype=d.dtype).reshape(idx.size, n_t).T)
            out = np.empty((n_t, idx.size), dtype=d.dtype)
            brk = np.flatnonzero((np.diff(idx) != 1) | (np.diff(z * shape[1] + y) != 0)) + 1
            for s, e in zip(np.r_[0, brk], np.r_[brk, idx.size], strict=True):
                out[:, s:e] = d[:, z[s], y[s], x[s] : x[e - 1] + 1]
            return _to_float(out)
    except OSError as exc:
        raise DataError(f"NSD: cannot read {path}: {exc}") from exc


def _read_blocks(path: Path, idx: np.ndarray, grid: tuple[int, ...]) -> np.ndarray:
    """(trials, n) float32 from a NIfTI / MGH image (..., trials) at flat Fortran indices ``idx`` of its grid,
    reading blocks of trials over the bounding box of ``idx`` (never the whole 4-D array)."""
    img = _load_image(path)
    _check_dtype(img.get_data_dtype(), path)
    shape = tuple(img.shape)
    if len(shape) != len(grid) + 1 or shape[: len(grid)] != tuple(grid):
        raise DataError(f"NSD: {path} has shape {shape}, expected {(*grid, 'trials')}: betas of another space?")
    coords = np.unravel_index(idx, grid, order="F")
    lo = [int(c.min()) for c in coords]
    box = tuple(int(c.max()) - a + 1 for c, a in zip(coords, lo, strict=True))
    local = np.ravel_multi_index(tuple(c - a for c, a in zip(coords, lo, strict=True)), box, order="F")
    n_t = shape[-1]
    out = np.empty((n_t, idx.size), dtype=np.float32)
    sl = tuple(slice(a, a + n) for a, n in zip(lo, box, strict=True))
    try:
        for t0 in range(0, n_t, _TRIAL_BLOCK):
            t1 = min(t0 + _TRIAL_BLOCK, n_t)
            blk = np.asarray(img.dataobj[(*sl, slice(t0, t1))])
            out[t0:t1] = _to_float(blk.reshape(-1, t1 - t0, order="F")[local].T)
    except DataError:
        raise
    except Exception as exc:
        raise DataError(f"NSD: cannot read {path}: {exc}") from exc
    return out


def _read_session(lay: _Layout, s: int, fmt: str, idx: np.ndarray, grid: tuple[int, ...]) -> np.ndarray:
    """(750, n) float32 percent signal change of session ``s`` at flat indices ``idx`` (lh then rh on fsaverage)."""
    paths = lay.session_paths(s, fmt)
    if lay.space == "fsaverage":
        n_lh = grid[0] // 2
        parts = []
        for h, p in enumerate(paths):
            sel = idx[(idx >= n_lh) == bool(h)] - h * n_lh
            if sel.size:
                parts.append(_read_blocks(p, sel, (n_lh, 1, 1)))
        b = np.concatenate(parts, axis=1)
    elif paths[0].suffix == ".hdf5":
        b = _read_hdf5(paths[0], idx, grid)
    else:
        b = _read_blocks(paths[0], idx, grid)
    if b.shape[0] != TRIALS_PER_SESSION:
        raise DataError(f"NSD: session {s} has {b.shape[0]} trials, expected {TRIALS_PER_SESSION}")
    return b


# --------------------------------------------------------------------------- repeat averaging
def _zscore_block(b: np.ndarray) -> np.ndarray:
    """z-score columns (float64 statistics and arithmetic, float32 result); constant columns become NaN."""
    d = b - b.mean(axis=0, dtype=np.float64)  # float64 (n, k)
    std = np.sqrt(np.einsum("ij,ij->j", d, d) / b.shape[0])
    with np.errstate(invalid="ignore", divide="ignore"):
        d /= np.where(std > 0, std, np.nan)
    return d.astype(np.float32)


def _empty_voxel_sessions(b: np.ndarray) -> np.ndarray:
    """(n,) True where a session has no usable data for a voxel: all zero (no data, as the NSD manual warns for
    voxels at the edge of the imaged volume), constant, or holding NaN/inf."""
    finite = np.isfinite(b).all(axis=0)
    return ~finite | (b == b[:1]).all(axis=0)


@dataclass
class _RepeatAverager:
    """Per-image sums of the z-scored trials, filled session by session.

    Memory: ``sums`` (n_rows, n_voxels) float32 becomes the returned responses; the ncsnr needs only (n_voxels,)
    accumulators (sum of squares of each image's first 3 repeats), as σ_noise² = mean_i var(first 3 of i) =
    (Σ t² − Σ_i S_i² / 3) / (2 m) with S_i the sum of image i's first 3 repeats. Voxels that miss a session are
    recomputed exactly at the end (:meth:`ncsnr_of`) from their own trials.
    """

    session_images: list[np.ndarray]
    min_repeats: int
    n_vox: int
    zscore: bool = True
    sums: np.ndarray = field(init=False)
    nvalid: np.ndarray | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        im = np.concatenate(self.session_images)
        self.images, inverse, self.counts = np.unique(im, return_inverse=True, return_counts=True)
        self.rows = np.flatnonzero(self.counts >= min(self.min_repeats, 3))  # images accumulated
        row_of = np.full(self.images.size, -1)
        row_of[self.rows] = np.arange(self.rows.size)
        order = np.argsort(inverse, kind="stable")
        starts = np.concatenate([[0], np.cumsum(self.counts)[:-1]])
        rank = np.empty(im.size, dtype=np.int64)
        rank[order] = np.arange(im.size) - starts[inverse[order]]
        self.trial_row = row_of[inverse]  # (n_trials,) row of each trial, −1 if its image is not accumulated
        self.first3 = (rank < 3) & (self.counts[inverse] >= 3)
        self.three_order = order  # trials grouped by image, chronological within an image
        self.three_starts = starts
        over = np.flatnonzero(self.counts > 3)
        self.over_row = np.full(self.images.size, -1)
        self.over_row[over] = np.arange(over.size)
        self.first3_sums = np.zeros((over.size, self.n_vox), dtype=np.float32)  # empty in NSD (≤ 3 repeats)
        self.sumsq = np.zeros(self.n_vox, dtype=np.float64)
        self.sums = np.zeros((self.rows.size, self.n_vox), dtype=np.float32)
        self.missing = np.zeros((len(self.session_images), self.n_vox), dtype=bool)
        self.inverse = inverse
        self.offsets = np.concatenate([[0], np.cumsum([s.size for s in self.session_images])])

    def add(self, k: int, b: np.ndarray) -> None:
        """Add session ``k`` (index into ``session_images``): ``b`` (750, n_voxels) float32 betas."""
        t = slice(int(self.offsets[k]), int(self.offsets[k + 1]))
        rows, first3 = self.trial_row[t], self.first3[t]
        over = self.over_row[self.inverse[t]]
        use = np.flatnonzero(rows >= 0)
        order = use[np.argsort(rows[use], kind="stable")]
        _, starts, n_per = np.unique(rows[order], return_index=True, return_counts=True)
        rank = np.arange(order.size) - np.repeat(starts, n_per)
        groups = [order[rank == r] for r in range(int(n_per.max()) if order.size else 0)]  # each: distinct rows
        f3 = np.flatnonzero(first3)
        f3_over = np.flatnonzero(first3 & (over >= 0))
        empty = _empty_voxel_sessions(b)
        self.missing[k] = empty
        for c0 in range(0, self.n_vox, _BLOCK):
            c1 = min(c0 + _BLOCK, self.n_vox)
            z = _zscore_block(b[:, c0:c1]) if self.zscore else b[:, c0:c1].copy()
            z[:, empty[c0:c1]] = 0.0  # the only NaN/inf: empty voxel-sessions (non-finite or constant betas)
            for g in groups:
                self.sums[rows[g], c0:c1] += z[g]
            self.sumsq[c0:c1] += np.einsum("ij,ij->j", z[f3], z[f3], dtype=np.float64)
            if f3_over.size:
                np.add.at(self.first3_sums[:, c0:c1], over[f3_over], z[f3_over])
        if empty.any():
            if self.nvalid is None:
                self.nvalid = np.repeat(self.counts[self.rows][:, None], self.n_vox, axis=1).astype(np.uint16)
            cols = np.flatnonzero(empty)
            np.subtract.at(self.nvalid, (rows[use][:, None], cols[None, :]), 1)

    def ncsnr(self) -> np.ndarray | None:
        """(n_voxels,) ncsnr from the first 3 repeats of every image shown ≥ 3 times (None if < 2 such images), by
        NSD's formula (:func:`_snr`); call before :meth:`responses`. Voxels with a missing session are left for
        :meth:`ncsnr_of`."""
        three = np.flatnonzero(self.counts >= 3)
        m = three.size
        if m < 2:
            return None
        s_sum = np.zeros(self.n_vox)
        s_sq = np.zeros(self.n_vox)
        row_of = np.full(self.images.size, -1)
        row_of[self.rows] = np.arange(self.rows.size)
        for i0 in range(0, m, 1024):
            ims = three[i0 : i0 + 1024]
            s = np.empty((ims.size, self.n_vox), dtype=np.float64)
            plain = self.over_row[ims] < 0
            s[plain] = self.sums[row_of[ims[plain]]]
            s[~plain] = self.first3_sums[self.over_row[ims[~plain]]]
            s_sum += s.sum(axis=0)
            s_sq += np.einsum("ij,ij->j", s, s)
        noise_var = (self.sumsq - s_sq / 3.0) / (2.0 * m)
        n_t = 3.0 * m  # trials in the estimate
        total_var = 1.0 if self.zscore else (self.sumsq - s_sum**2 / n_t) / (n_t - 1.0)
        return _snr(np.maximum(noise_var, 0.0), total_var)

    def ncsnr_of(self, trials: np.ndarray) -> np.ndarray:
        """ncsnr of a few voxels from all their trials (n_trials, n) with NaN for missing sessions: per voxel, over
        the images whose first 3 repeats all have data (NSD's ``nanmean`` over images)."""
        three = np.flatnonzero(self.counts >= 3)
        idx = np.stack([self.three_order[self.three_starts[k] : self.three_starts[k] + 3] for k in three])
        t = trials[idx].astype(np.float64)  # (m, 3, n)
        ok = np.asarray(np.isfinite(t).all(axis=1))  # (m, n)
        m = ok.sum(axis=0)
        t = np.where(ok[:, None, :], t, 0.0)
        with np.errstate(invalid="ignore", divide="ignore"):
            noise_var = (t.var(axis=1, ddof=1) * ok).sum(axis=0) / m
            if self.zscore:
                total_var = np.ones(t.shape[2])
            else:
                mu = t.sum(axis=(0, 1)) / (3 * m)
                total_var = (((t - mu) ** 2) * ok[:, None, :]).sum(axis=(0, 1)) / (3 * m - 1)
        out = _snr(noise_var, total_var)
        out[m < 2] = 0.0
        return out

    def responses(self) -> tuple[np.ndarray, np.ndarray]:
        """(n_kept, n_voxels) float32 repeat means (NaN where a voxel has no data for an image) and the kept images'
        73k ids; divides ``sums`` in place."""
        n = self.counts[self.rows].astype(np.float32)
        for i0 in range(0, self.rows.size, 1024):
            i1 = min(i0 + 1024, self.rows.size)
            denom = self.nvalid[i0:i1] if self.nvalid is not None else n[i0:i1, None]
            with np.errstate(invalid="ignore", divide="ignore"):
                np.divide(self.sums[i0:i1], denom, out=self.sums[i0:i1], casting="unsafe")
        keep = self.counts[self.rows] >= self.min_repeats
        out = self.sums if keep.all() else self.sums[keep]
        return out, self.images[self.rows[keep]]


def _snr(noise_var: np.ndarray, total_var: np.ndarray | float) -> np.ndarray:
    """NSD's ncsnr: σ_signal / σ_noise with σ_noise² the mean over images of the variance (ddof 1) of their 3 trials
    and σ_signal² = max(total variance − σ_noise², 0); NaN/inf → 0.

    On session-z-scored betas the total variance is 1 (``translatevmetric.m`` and ``export_noiseceiling.m`` of
    cvnlab/nsddatapaper, which made the shipped ``ncsnr`` files); otherwise it is the variance of the trials used
    (GLMsingle's ``example9_noiseceiling``, the same formula without z-scoring).
    """
    signal_var = np.maximum(total_var - noise_var, 0.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.sqrt(signal_var) / np.sqrt(noise_var)
    return np.nan_to_num(out, nan=0.0, posinf=0.0)


# --------------------------------------------------------------------------- load_nsd
def _check_args(
    space: str, fmt: str, test_split: str, betas: str, ncsnr: str, missing_sessions: str, min_repeats: int, rois: Any
) -> None:
    allowed = {
        "space": (space, SPACES),
        "fmt": (fmt, ("auto", "hdf5", "nifti")),
        "test_split": (test_split, ("shared515", "shared1000")),
        "betas": (betas, BETA_VERSIONS),
        "ncsnr": (ncsnr, ("estimate", "shipped")),
        "missing_sessions": (missing_sessions, ("warn", "error")),
    }
    for key, (value, choices) in allowed.items():
        if value not in choices:
            raise DataError(f"NSD: {key} must be one of {list(choices)}, got {value!r}")
    if isinstance(rois, str) or not rois:
        raise DataError(f"NSD: give the ROI label files as a list (rois=['streams', ...]), got {rois!r}")
    if min_repeats < 1:
        raise DataError(f"NSD: min_repeats must be ≥ 1, got {min_repeats}")


def _read_rois(lay: _Layout, rois: Sequence[str], roi_threshold: float | None) -> tuple[list[_RoiFile], np.ndarray]:
    """The ROI files and the (n_space,) mask of voxels any of them labels (> 0; −1 non-cortical and 0 excluded)."""
    files = [lay.roi(name, roi_threshold) for name in rois]
    for f in files[1:]:
        if f.labels.shape != files[0].labels.shape:
            raise DataError(
                f"NSD: ROI {f.name!r} covers {f.labels.size} voxels but {files[0].name!r} covers "
                f"{files[0].labels.size}: files of different spaces?"
            )
    mask = np.zeros(files[0].labels.shape, dtype=bool)
    for f in files:
        mask |= f.labels > 0
    if not mask.any():
        raise DataError(f"NSD: the ROI files {list(rois)} label no voxel of {lay.subj} in {lay.space}")
    return files, mask


def _sessions(
    lay: _Layout, design: NSDDesign, sessions: Sequence[int] | None, fmt: str, min_repeats: int, policy: str
) -> list[int]:
    """The sessions to read; a missing file is a counted warning (or an error with ``policy="error"``)."""
    n_design = design.n_sessions
    if sessions is None:
        n_done = SESSIONS_COMPLETED[lay.subject - 1] if lay.subject <= len(SESSIONS_COMPLETED) else n_design
        wanted = list(range(1, min(n_done, n_design) + 1))
    else:
        wanted = [int(s) for s in sessions]
    missing = {s: [p for p in lay.session_paths(s, fmt) if not p.is_file()] for s in wanted}
    missing = {s: ps for s, ps in missing.items() if ps}
    present = [s for s in wanted if s not in missing]
    names = [p.name for ps in missing.values() for p in ps]
    if not present:
        raise DatasetNotFoundError(
            f"NSD: no betas for sessions {sorted(missing)} of {lay.subj}: {names[:4]} not found in {lay.betas_dir}"
        )
    bad = [s for s in wanted if not 1 <= s <= n_design]
    if bad:
        raise DataError(f"NSD: sessions {bad} are outside the design's 1–{n_design}")
    if not missing:
        return present
    trial_ims = design.trial_images(lay.subject)
    ims = {s: trial_ims[(s - 1) * TRIALS_PER_SESSION : s * TRIALS_PER_SESSION] for s in wanted}
    lost = np.unique(np.concatenate([ims[s] for s in missing]))
    have = pd.Series(np.concatenate([ims[s] for s in present])).value_counts()
    dropped = int((have.reindex(lost).fillna(0).to_numpy() < min_repeats).sum())
    msg = (
        f"NSD: {len(missing)} of {len(wanted)} session(s) of {lay.subj} missing in {lay.betas_dir} "
        f"({', '.join(names[:3])}{', ...' if len(names) > 3 else ''}): {lost.size} image(s) lost a repeat, "
        f"{dropped} of them now have fewer than min_repeats={min_repeats} and are dropped"
    )
    if policy == "error":
        raise DatasetNotFoundError(msg)
    warnings.warn(msg + "; pass missing_sessions='error' to stop instead", stacklevel=3)
    return present


def _average(
    lay: _Layout,
    design: NSDDesign,
    sessions: list[int],
    fmt: str,
    idx: np.ndarray,
    grid: tuple[int, ...],
    zscore: bool,
    min_repeats: int,
    estimate_ncsnr: bool,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None]:
    """Read, z-score and repeat-average every session at voxels ``idx``.

    Returns:
        responses (n_images, n) float32, their 73k ids (n_images,), repeats per image (n_images,), ncsnr (n,) or None.
    """
    session_ims = [design.session_images(lay.subject, s) for s in sessions]
    acc = _RepeatAverager(session_ims, min_repeats, idx.size, zscore)
    if not acc.rows.size or not (acc.counts[acc.rows] >= min_repeats).any():
        raise DataError(f"NSD: no image was shown {min_repeats}× in sessions {sessions}")
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=1) as pool:  # the next session is read while this one is summed
        nxt = pool.submit(_read_session, lay, sessions[0], fmt, idx, grid)
        for k in range(len(sessions)):
            b = nxt.result()
            if k + 1 < len(sessions):
                nxt = pool.submit(_read_session, lay, sessions[k + 1], fmt, idx, grid)
            acc.add(k, b)
            del b
    ncsnr = acc.ncsnr() if estimate_ncsnr else None
    partial = np.flatnonzero(acc.missing.any(axis=0))
    if ncsnr is not None and partial.size:
        for c0 in range(0, partial.size, 256):  # re-read only the voxels that miss a session, exactly
            cols = partial[c0 : c0 + 256]
            trials = np.concatenate([_zscore_or_nan(_read_session(lay, s, fmt, idx[cols], grid), zscore)
                                     for s in sessions])  # fmt: skip
            ncsnr[cols] = acc.ncsnr_of(trials)
    _warn_missing_voxels(acc.missing, sessions, lay)
    responses, kept = acc.responses()
    return responses, kept, acc.counts[np.searchsorted(acc.images, kept)], ncsnr


def _zscore_or_nan(b: np.ndarray, zscore: bool) -> np.ndarray:
    empty = _empty_voxel_sessions(b)
    z = _zscore_block(b) if zscore else b.copy()
    z[:, empty] = np.nan
    return z


def _warn_missing_voxels(missing: np.ndarray, sessions: list[int], lay: _Layout) -> None:
    """Counted warnings for voxels without data in some or all of the loaded sessions."""
    per_voxel = missing.sum(axis=0)
    none = int((per_voxel == len(sessions)).sum())
    some = int(((per_voxel > 0) & (per_voxel < len(sessions))).sum())
    if some:
        worst = sessions[int(np.argmax(missing.sum(axis=1)))]
        warnings.warn(
            f"NSD: {some} voxel(s) of {lay.subj} have no data (all-zero or constant betas) in some of the "
            f"{len(sessions)} sessions ({int(missing.sum())} voxel-sessions, most in session {worst}); their repeats "
            "are averaged over the sessions that have data",
            stacklevel=3,
        )
    if none:
        warnings.warn(
            f"NSD: {none} voxel(s) of {lay.subj} have no data in any loaded session (all-zero or constant betas): "
            "their responses are all NaN",
            stacklevel=3,
        )


def _voxel_table(lay: _Layout, files: list[_RoiFile], mask: np.ndarray) -> pd.DataFrame:
    """Voxel columns: ``index``, ``roi`` (first label), ``roi:<file>`` per ROI file, ``hemi``, and on fsaverage
    ``fsaverage_vertex`` (the vertex within its hemisphere)."""
    index = np.flatnonzero(mask)
    voxels: dict[str, Any] = {"index": index}
    roi = np.full(index.size, "", dtype=object)
    for f in files:
        col = f.label_names(mask)
        voxels[f"roi:{f.name}"] = col
        roi[roi == ""] = col[roi == ""]
    voxels["roi"] = roi
    if lay.space == "fsaverage":
        n_lh = mask.size // 2
        voxels["hemi"] = np.where(index < n_lh, "lh", "rh").astype(object)
        voxels["fsaverage_vertex"] = np.where(index < n_lh, index, index - n_lh)
    else:
        voxels["hemi"] = lay.volume_hemi([f.name for f in files], mask)
    return pd.DataFrame(voxels)


def load_nsd(
    root: str | Path,
    subject: int = 1,
    *,
    space: Space | str = "func1pt8mm",
    sessions: Sequence[int] | None = None,
    rois: Sequence[str] = ("streams",),
    fmt: Literal["auto", "hdf5", "nifti"] | str = "auto",
    zscore: bool = True,
    min_repeats: int = 3,
    test_split: Literal["shared515", "shared1000"] | str = "shared515",
    betas: str = "betas_fithrf_GLMdenoise_RR",
    ncsnr: Literal["estimate", "shipped"] | str = "estimate",
    roi_threshold: float | None = None,
    missing_sessions: Literal["warn", "error"] | str = "warn",
) -> BrainData:
    """NSD betas of one subject, z-scored per session, repeat-averaged, restricted to ROI voxels.

    Args:
        root: NSD root (holding ``nsddata`` and ``nsddata_betas``).
        subject: 1–8.
        space: ``"func1pt8mm"``, ``"func1mm"`` (volume) or ``"fsaverage"`` (surface, lh then rh).
        sessions: 1-based sessions to read (default: every session the subject completed, up to the design's).
        rois: ROI files; a voxel is kept if any labels it (> 0; −1 marks non-cortical voxels). Volume:
            ``streams``, ``nsdgeneral``, ``prf-visualrois``, ``floc-faces``, ... and hemisphere files ``lh.streams``
            (named from ``streams.mgz.ctab``). fsaverage: the atlases in ``freesurfer/fsaverage/label`` and
            subject ROIs as ``probmap_<ROI>`` (e.g. ``probmap_FFA-1``) with ``roi_threshold``.
        fmt: volume betas format (``"auto"``: HDF5 if present, else NIfTI).
        zscore: z-score every voxel over the trials of each session (NSD convention).
        min_repeats: keep images shown at least this many times in the loaded sessions (3 = NSD's complete images).
        test_split: which shared set becomes ``splits["test"]``.
        betas: beta version folder: ``betas_fithrf_GLMdenoise_RR`` (default), ``betas_fithrf``, ``betas_assumehrf``.
        ncsnr: ``"estimate"`` from the first 3 repeats of the loaded sessions by NSD's formula (:func:`_snr`; the
            shipped files' formula, over the loaded sessions only), or ``"shipped"``: NSD's
            ``ncsnr.nii.gz`` / ``{lh,rh}.ncsnr.mgh`` of the beta version (computed over all sessions).
        roi_threshold: for probability maps (``probmap_*``): keep vertices with fraction ≥ this (0 < t ≤ 1).
        missing_sessions: a missing session file is a warning counting the images that lost a repeat (``"warn"``)
            or an error (``"error"``).
    Returns:
        BrainData with ``responses`` (n_images, n_voxels) float32 (NaN-aware repeat means: a voxel-session that is
        all zero or constant counts as missing), ``splits`` ``train``, ``test``, ``shared1000``, ``shared515``;
        ``n_repeats``; ``ncsnr``; ``space``; voxels with ``index`` (flat index in the space, Fortran order for
        volumes; lh then rh for fsaverage), ``roi``, ``roi:<name>`` per ROI file, ``hemi`` (volumes: from the
        ``lh.``/``rh.`` ROI volumes NSD ships beside each ROI; ``""`` where none labels the voxel) and, on
        fsaverage, ``fsaverage_vertex``.
    """
    root = Path(root)
    _check_args(str(space), str(fmt), str(test_split), betas, str(ncsnr), str(missing_sessions), min_repeats, rois)
    design = NSDDesign.load(root / "nsddata" / "experiments" / "nsd" / "nsd_expdesign.mat")
    design.trial_images(subject)  # checks the subject
    lay = _Layout(root, subject, str(space), betas)
    files, mask = _read_rois(lay, rois, roi_threshold)
    lay.check_betas_dir()
    if lay.space == "fsaverage":
        grid: tuple[int, ...] = (mask.size,)
        brain_space = BrainSpace("fsaverage", "fsaverage", n_vertices=mask.size // 2)
    else:
        assert files[0].shape is not None
        grid = files[0].shape
        brain_space = BrainSpace("volume", lay.space, files[0].shape, files[0].affine)  # type: ignore[arg-type]
    loaded = _sessions(lay, design, sessions, str(fmt), min_repeats, str(missing_sessions))
    idx = np.flatnonzero(mask)
    responses, kept, n_rep, est = _average(
        lay, design, loaded, str(fmt), idx, grid, zscore, min_repeats, ncsnr == "estimate"
    )
    ids = [stimulus_id(k) for k in kept]
    id_set = set(ids)
    shared1000 = [stimulus_id(k) for k in design.sharedix if stimulus_id(k) in id_set]
    shared515 = [stimulus_id(k) for k in design.shared515() if stimulus_id(k) in id_set]
    test = shared515 if test_split == "shared515" else shared1000
    test_set = set(test)
    return BrainData(
        responses=responses,
        stimulus_ids=ids,
        voxels=_voxel_table(lay, files, mask),
        ncsnr=lay.ncsnr(mask) if ncsnr == "shipped" else est,
        n_repeats=n_rep.astype(np.int64),
        splits={"train": [i for i in ids if i not in test_set], "test": test, "shared1000": shared1000,
                "shared515": shared515},
        name=f"nsd-{lay.subj}-{space}",
        space=brain_space,
    )  # fmt: skip
