"""Natural Scenes Dataset (NSD) single-trial betas → repeat-averaged :class:`~llmvem.data.brain.BrainData`.

Files read, relative to the NSD root (the layout of the public bucket)::

    nsddata/experiments/nsd/nsd_expdesign.mat        masterordering (30000,), subjectim (8, 10000), sharedix (1000,)
    nsddata_betas/ppdata/subjNN/<space>/betas_fithrf_GLMdenoise_RR/
        betas_sessionSS.hdf5        volume: dataset "betas", (750, Z, Y, X) (the NIfTI array transposed, as h5py
                                    reads NSD's files), int16 = percent signal change × 300
        betas_sessionSS.nii.gz      volume: (X, Y, Z, 750)
        {lh,rh}.betas_sessionSS.mgh fsaverage: (163842, 1, 1, 750) per hemisphere
    ROI labels: volume  nsddata/ppdata/subjNN/<space>/roi/<name>.nii.gz (X, Y, Z) int;
                fsaverage nsddata/freesurfer/fsaverage/label/{lh,rh}.<name>.mgz (163842, 1, 1) int;
                names from <name>.mgz.ctab ("label name" per line) in that folder or in nsddata/freesurfer/subjNN/label.

The processing is Doerig et al.'s (2025) and Allen et al.'s (2022): every session's trials are z-scored per voxel
within the session; the 73k image id of trial t is ``subjectim[subject, masterordering[t]]`` (both 1-based in the
file); images with fewer than ``min_repeats`` presentations in the loaded sessions are dropped and the repeats of the
others averaged; ncsnr is estimated from the repeats. Test splits: ``shared1000`` (the images every subject was
scheduled to see) and ``shared515`` (those that all eight subjects actually saw three times, given the sessions each
completed, :data:`SESSIONS_COMPLETED`); ``train`` is every loaded image not in ``test_split``.

Stimulus ids are ``nsd-NNNNN`` with the 1-based 73k id (zero-padded to 5 digits).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from llmvem.data.brain import BrainData, ncsnr_from_repeats
from llmvem.errors import DataError, DatasetNotFoundError

TRIALS_PER_SESSION = 750
SESSIONS_COMPLETED: tuple[int, ...] = (40, 40, 32, 30, 40, 32, 40, 30)  # subjects 1–8 (Allen et al. 2022)
HEMISPHERES = ("lh", "rh")
Space = Literal["func1pt8mm", "func1mm", "fsaverage"]


def stimulus_id(nsd73k: int) -> str:
    """``nsd-NNNNN`` id of a 1-based 73k image id."""
    return f"nsd-{int(nsd73k):05d}"


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

    def trial_images(self, subject: int) -> np.ndarray:
        """(n_trials,) 73k id of every trial of ``subject`` (1-based)."""
        if not 1 <= subject <= self.subjectim.shape[0]:
            raise DataError(f"NSD: subject {subject} not in the design (1–{self.subjectim.shape[0]})")
        return self.subjectim[subject - 1, self.masterordering - 1]

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


def _ctab(names_for: str, folders: Sequence[Path]) -> dict[int, str]:
    for folder in folders:
        path = folder / f"{names_for}.mgz.ctab"
        if path.is_file():
            out = {}
            for line in path.read_text().splitlines():
                parts = line.split()
                if len(parts) >= 2 and parts[0].lstrip("-").isdigit():
                    out[int(parts[0])] = parts[1]
            return out
    return {}


def _load_image(path: Path) -> np.ndarray:
    import nibabel as nib

    try:
        return np.asarray(nib.load(str(path)).dataobj)  # type: ignore[attr-defined]
    except Exception as exc:  # nibabel raises many types for a corrupt file
        raise DataError(f"NSD: cannot read {path}: {exc}") from exc


@dataclass
class _Layout:
    root: Path
    subject: int
    space: str

    @property
    def subj(self) -> str:
        return f"subj{self.subject:02d}"

    @property
    def betas_dir(self) -> Path:
        return self.root / "nsddata_betas" / "ppdata" / self.subj / self.space / "betas_fithrf_GLMdenoise_RR"

    def roi_labels(self, name: str) -> tuple[np.ndarray, dict[int, str]]:
        """Integer labels over the space's voxels/vertices (flattened; lh then rh on fsaverage) and their names."""
        fs_label = self.root / "nsddata" / "freesurfer" / "fsaverage" / "label"
        subj_label = self.root / "nsddata" / "freesurfer" / self.subj / "label"
        if self.space == "fsaverage":
            parts = []
            for hemi in HEMISPHERES:
                p = fs_label / f"{hemi}.{name}.mgz"
                if not p.is_file():
                    raise DatasetNotFoundError(f"NSD: ROI file {p} not found")
                parts.append(_load_image(p).reshape(-1))
            return np.concatenate(parts).astype(np.int64), _ctab(name, [fs_label])
        p = self.root / "nsddata" / "ppdata" / self.subj / self.space / "roi" / f"{name}.nii.gz"
        if not p.is_file():
            raise DatasetNotFoundError(f"NSD: ROI file {p} not found")
        return _load_image(p).astype(np.int64).reshape(-1, order="F"), _ctab(name, [p.parent, subj_label, fs_label])

    def session(self, s: int, mask: np.ndarray, fmt: str) -> np.ndarray:
        """(750, n_mask) float32 betas of session ``s`` at the voxels of ``mask`` (flat, Fortran order)."""
        d = self.betas_dir
        if self.space == "fsaverage":
            parts = []
            for hemi in HEMISPHERES:
                p = d / f"{hemi}.betas_session{s:02d}.mgh"
                if not p.is_file():
                    raise DatasetNotFoundError(f"NSD: betas file {p} not found")
                img = _load_image(p)
                parts.append(img.reshape(img.shape[0], -1))
            data = np.concatenate(parts, axis=0)  # (V, trials)
            return _to_float(data[mask].T)
        h5, nii = d / f"betas_session{s:02d}.hdf5", d / f"betas_session{s:02d}.nii.gz"
        use = fmt if fmt != "auto" else ("hdf5" if h5.is_file() else "nifti")
        if use == "hdf5":
            import h5py

            if not h5.is_file():
                raise DatasetNotFoundError(f"NSD: betas file {h5} not found")
            with h5py.File(h5, "r") as f:
                if "betas" not in f:
                    raise DataError(f"NSD: {h5} has no dataset 'betas'")
                betas = f["betas"][()]  # (trials, Z, Y, X)
            # flat Fortran index over (X, Y, Z) == flat C index over (Z, Y, X)
            return _to_float(betas.reshape(betas.shape[0], -1)[:, mask])
        if not nii.is_file():
            raise DatasetNotFoundError(f"NSD: betas file {nii} (or .hdf5) not found")
        img = _load_image(nii)
        return _to_float(img.reshape(-1, img.shape[-1], order="F")[mask].T)


def _to_float(a: np.ndarray) -> np.ndarray:
    """int16 betas are percent signal change × 300."""
    if np.issubdtype(a.dtype, np.integer):
        return (a.astype(np.float32) / 300.0).astype(np.float32)
    return a.astype(np.float32)


def _zscore_session(b: np.ndarray) -> np.ndarray:
    mean = b.mean(axis=0, dtype=np.float64)
    std = b.std(axis=0, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        z = (b - mean) / np.where(std > 0, std, np.nan)
    return z.astype(np.float32)


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
) -> BrainData:
    """NSD betas of one subject, z-scored per session, repeat-averaged, restricted to ROI voxels.

    Args:
        root: NSD root (holding ``nsddata`` and ``nsddata_betas``).
        subject: 1–8.
        space: ``"func1pt8mm"``, ``"func1mm"`` (volume) or ``"fsaverage"`` (surface, lh then rh).
        sessions: 1-based sessions to read (default: all completed by the subject that exist on disk).
        rois: ROI label files; a voxel is kept if any of them labels it (> 0). Its ``roi`` is the name from the first
            file that labels it; every file also gets a column of its own.
        fmt: volume betas format (``"auto"``: HDF5 if present, else NIfTI).
        zscore: z-score every voxel over the trials of each session (NSD convention).
        min_repeats: keep images shown at least this many times in the loaded sessions (3 = NSD's complete images).
        test_split: which shared set becomes ``splits["test"]``.
    Returns:
        BrainData with ``splits`` ``train``, ``test``, ``shared1000``, ``shared515``; ``n_repeats``; ``ncsnr``
        (from images with ≥ 3 repeats, using their first 3); voxels with ``roi``, one column per ROI file and
        ``index`` (flat index in the space, Fortran order for volumes).
    """
    root = Path(root)
    if test_split not in ("shared515", "shared1000"):
        raise DataError(f"NSD: test_split must be 'shared515' or 'shared1000', got {test_split!r}")
    if fmt not in ("auto", "hdf5", "nifti"):
        raise DataError(f"NSD: fmt must be 'auto', 'hdf5' or 'nifti', got {fmt!r}")
    if space not in ("func1pt8mm", "func1mm", "fsaverage"):
        raise DataError(f"NSD: space must be func1pt8mm, func1mm or fsaverage, got {space!r}")
    if not rois:
        raise DataError("NSD: give at least one ROI label file (rois=...) to select voxels")
    if min_repeats < 1:
        raise DataError(f"NSD: min_repeats must be ≥ 1, got {min_repeats}")
    design = NSDDesign.load(root / "nsddata" / "experiments" / "nsd" / "nsd_expdesign.mat")
    trial_ims = design.trial_images(subject)
    lay = _Layout(root, subject, str(space))

    labels: list[np.ndarray] = []
    names: list[dict[int, str]] = []
    for name in rois:
        lab, ctab = lay.roi_labels(name)
        if labels and lab.shape != labels[0].shape:
            raise DataError(f"NSD: ROI {name!r} covers {lab.size} voxels but {rois[0]!r} covers {labels[0].size}")
        labels.append(lab)
        names.append(ctab)
    mask = np.zeros(labels[0].shape, dtype=bool)
    for lab in labels:
        mask |= lab > 0
    if not mask.any():
        raise DataError(f"NSD: the ROI files {list(rois)} label no voxel")

    if sessions is None:
        n_done = SESSIONS_COMPLETED[subject - 1] if subject <= len(SESSIONS_COMPLETED) else 40
        sessions = [s for s in range(1, n_done + 1) if any(lay.betas_dir.glob(f"*betas_session{s:02d}.*"))]
        if not sessions:
            raise DatasetNotFoundError(f"NSD: no betas_sessionNN files in {lay.betas_dir}")
    trials: list[np.ndarray] = []
    ims: list[np.ndarray] = []
    for s in sessions:
        b = lay.session(int(s), mask, fmt)
        if b.shape[0] != TRIALS_PER_SESSION:
            raise DataError(f"NSD: session {s} has {b.shape[0]} trials, expected {TRIALS_PER_SESSION}")
        trials.append(_zscore_session(b) if zscore else b)
        ims.append(trial_ims[(s - 1) * TRIALS_PER_SESSION : s * TRIALS_PER_SESSION])
    betas = np.concatenate(trials)
    im = np.concatenate(ims)

    uniq, inverse, counts = np.unique(im, return_inverse=True, return_counts=True)
    keep = counts >= min_repeats
    if not keep.any():
        raise DataError(f"NSD: no image was shown {min_repeats}× in sessions {list(sessions)}")
    sums = np.zeros((uniq.size, betas.shape[1]), dtype=np.float64)
    np.add.at(sums, inverse, betas)
    responses = (sums / counts[:, None])[keep].astype(np.float32)
    kept = uniq[keep]
    ids = [stimulus_id(k) for k in kept]

    three = np.flatnonzero(counts >= 3)
    ncsnr = None
    if three.size >= 2:
        order = np.argsort(inverse, kind="stable")
        starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
        rep_idx = np.stack([order[starts[k] : starts[k] + 3] for k in three])  # (m, 3) trials
        ncsnr = ncsnr_from_repeats(betas[rep_idx])

    voxels: dict[str, Any] = {"index": np.flatnonzero(mask)}
    roi = np.full(int(mask.sum()), "", dtype=object)
    for name, lab, ctab in zip(rois, labels, names, strict=True):
        sel = lab[mask]
        col = np.array([ctab.get(int(k), f"{name}_{int(k)}") if k > 0 else "" for k in sel], dtype=object)
        voxels[name] = col
        roi[(roi == "") & (sel > 0)] = col[(roi == "") & (sel > 0)]
    voxels["roi"] = roi
    if space == "fsaverage":
        n_lh = labels[0].size // 2
        voxels["hemi"] = np.where(voxels["index"] < n_lh, "lh", "rh")

    id_set = set(ids)
    shared1000 = [stimulus_id(k) for k in design.sharedix if stimulus_id(k) in id_set]
    shared515 = [stimulus_id(k) for k in design.shared515() if stimulus_id(k) in id_set]
    test = shared515 if test_split == "shared515" else shared1000
    test_set = set(test)
    return BrainData(
        responses=responses,
        stimulus_ids=ids,
        voxels=pd.DataFrame(voxels),
        ncsnr=ncsnr,
        n_repeats=counts[keep].astype(np.int64),
        splits={"train": [i for i in ids if i not in test_set], "test": test, "shared1000": shared1000,
                "shared515": shared515},
        name=f"nsd-{lay.subj}-{space}",
    )  # fmt: skip
