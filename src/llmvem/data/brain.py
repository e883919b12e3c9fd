"""Brain responses (n_stimuli × n_voxels) and RDM sets (subjects × n × n), each keyed by stimulus ids."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from llmvem.data.stimuli import _duplicates, align_ids
from llmvem.errors import DataError

ROI_PREFIX = "roi:"
"""Voxel-table columns ``roi:<class>`` name the ROI that labels each voxel in one ROI class (``""`` if none)."""


@dataclass(frozen=True)
class BrainSpace:
    """Where the voxels of a :class:`BrainData` live, so per-voxel results can be written back as images.

    Attributes:
        kind: ``"volume"`` or ``"fsaverage"``.
        name: e.g. ``"func1pt8mm"``, ``"func1mm"``, ``"fsaverage"``.
        shape: (X, Y, Z) of the volume, else None (the voxel table's ``index`` is the flat Fortran-order index).
        affine: (4, 4) float64 voxel → world affine of the volume (from the ROI NIfTI read), else None.
        n_vertices: vertices per hemisphere on fsaverage (163842), else None.
    """

    kind: str
    name: str
    shape: tuple[int, int, int] | None = None
    affine: np.ndarray | None = field(default=None, compare=False)
    n_vertices: int | None = None

    def __post_init__(self) -> None:
        if self.kind not in ("volume", "fsaverage"):
            raise DataError(f"BrainSpace: kind must be 'volume' or 'fsaverage', got {self.kind!r}")
        if self.shape is not None:
            object.__setattr__(self, "shape", tuple(int(n) for n in self.shape))
            if len(self.shape) != 3:
                raise DataError(f"BrainSpace {self.name!r}: shape must be (X, Y, Z), got {self.shape}")
        if self.affine is not None:
            affine = np.asarray(self.affine, dtype=np.float64)
            if affine.shape != (4, 4):
                raise DataError(f"BrainSpace {self.name!r}: affine must be (4, 4), got {affine.shape}")
            object.__setattr__(self, "affine", affine)
        if self.n_vertices is not None:
            object.__setattr__(self, "n_vertices", int(self.n_vertices))


@dataclass
class BrainData:
    """Voxel (or vertex / unit) responses to a set of stimuli.

    Attributes:
        responses: float32 (n_stimuli, n_voxels), repeats already averaged.
        stimulus_ids: length n_stimuli, unique, the row order of ``responses``.
        voxels: DataFrame with n_voxels rows; column ``roi`` (str) names each voxel's first region; ``roi:<class>``
            columns (str, ``""`` if none) name its ROI in each ROI class read, so overlapping ROIs are all kept (see
            :meth:`roi_mask`); more columns allowed (``hemi``, ``fsaverage_vertex``, ``index`` ...).
        ncsnr: optional (n_voxels,) noise-ceiling SNR (NSD / Algonauts convention).
        n_repeats: optional (n_stimuli,) int, how many presentations were averaged into each row.
        noise_ceiling: optional (n_voxels,) noise ceiling in units of r² (fraction of explainable variance) for
            the averaged responses; derived from ``ncsnr`` and ``n_repeats`` if not given.
        splits: optional mapping split name → stimulus ids (``{"train": [...], "test": [...]}``).
        name: a short name (``"demo-subj01"``).
        space: optional :class:`BrainSpace` (volume shape and affine, or fsaverage) the voxels belong to.
    """

    responses: np.ndarray
    stimulus_ids: list[str]
    voxels: pd.DataFrame
    ncsnr: np.ndarray | None = None
    n_repeats: np.ndarray | None = None
    noise_ceiling: np.ndarray | None = None
    splits: dict[str, list[str]] = field(default_factory=dict)
    name: str = "brain"
    space: BrainSpace | None = None

    def __post_init__(self) -> None:
        r = np.asarray(self.responses)
        if r.ndim != 2:
            raise DataError(
                f"BrainData {self.name!r}: responses must be 2-D (n_stimuli, n_voxels), got shape {r.shape}"
            )
        self.responses = r.astype(np.float32, copy=False)
        self.stimulus_ids = [str(s) for s in self.stimulus_ids]
        n, v = self.responses.shape
        if len(self.stimulus_ids) != n:
            raise DataError(f"BrainData {self.name!r}: {len(self.stimulus_ids)} stimulus ids for {n} response rows")
        dup = _duplicates(self.stimulus_ids)
        if dup:
            raise DataError(f"BrainData {self.name!r}: duplicate stimulus ids {dup[:10]}")
        if len(self.voxels) != v:
            raise DataError(f"BrainData {self.name!r}: voxel table has {len(self.voxels)} rows for {v} voxels")
        if "roi" not in self.voxels.columns:
            raise DataError(f"BrainData {self.name!r}: voxel table needs a 'roi' column")
        for attr, length in (("ncsnr", v), ("noise_ceiling", v), ("n_repeats", n)):
            val = getattr(self, attr)
            if val is not None:
                val = np.asarray(val)
                if val.shape != (length,):
                    raise DataError(f"BrainData {self.name!r}: {attr} has shape {val.shape}, expected ({length},)")
                setattr(self, attr, val)
        if self.noise_ceiling is None and self.ncsnr is not None and self.n_repeats is not None:
            self.noise_ceiling = ncsnr_to_noise_ceiling(self.ncsnr, self.n_repeats)
        known = set(self.stimulus_ids)
        for split, ids in self.splits.items():
            missing = [i for i in ids if i not in known]
            if missing:
                raise DataError(f"BrainData {self.name!r}: split {split!r} names unknown stimulus ids {missing[:10]}")
        _check_disjoint_splits(self.splits, self.name)

    @property
    def n_stimuli(self) -> int:
        return int(self.responses.shape[0])

    @property
    def n_voxels(self) -> int:
        return int(self.responses.shape[1])

    @property
    def roi_classes(self) -> list[str]:
        """ROI classes that have a ``roi:<class>`` column in ``voxels`` (``["prf-visualrois", "streams"]``)."""
        return [str(c)[len(ROI_PREFIX) :] for c in self.voxels.columns if str(c).startswith(ROI_PREFIX)]

    def rois_by_class(self) -> dict[str, list[str]]:
        """ROI names of each class (first appearance, ``""`` left out); ``{"roi": [...]}`` without class columns.

        A voxel labelled in several classes (``FFA-1`` in ``floc-faces`` and ``ventral`` in ``streams``) is in a
        ROI of each.
        """
        classes = self.roi_classes
        if not classes:
            return {"roi": [str(n) for n in pd.unique(self.voxels["roi"].astype(str).to_numpy())]}
        out = {}
        for cls in classes:
            names = pd.unique(self.voxels[ROI_PREFIX + cls].astype(str).to_numpy())  # in order of appearance
            out[cls] = [str(n) for n in names if n]
        return out

    @property
    def rois(self) -> list[str]:
        """Every ROI name, each once: over the ``roi:<class>`` columns (class order, then first appearance), or over
        ``roi`` when there are none (as saved ``.npz`` files and simulated data have)."""
        return list(dict.fromkeys(n for names in self.rois_by_class().values() for n in names))

    def has_roi(self, roi: str) -> bool:
        """Whether :meth:`roi_mask` finds ``roi`` (a name or ``class:name``)."""
        mask = self._roi_match(roi)
        return mask is not None and bool(mask.any())

    def roi_mask(self, roi: str) -> np.ndarray:
        """Boolean (n_voxels,) mask of the voxels in ``roi``.

        Args:
            roi: a ROI name, matched in every ``roi:<class>`` column (``"FFA-1"``: every voxel any class labels
                FFA-1), or ``"<class>:<name>"`` within one class (``"floc-faces:FFA-1"``, ``"streams:ventral"``). A
                name found in no class column is looked up in ``roi`` (``"other"``: voxels no class labels).
        Raises:
            DataError: no voxel is in ``roi``; the message lists the ROIs of each class.
        """
        mask = self._roi_match(roi)
        if mask is None or not mask.any():
            listing = "; ".join(f"{c}: {', '.join(n) or '(none)'}" for c, n in self.rois_by_class().items())
            raise DataError(
                f"BrainData {self.name!r} has no ROI {roi!r}; its ROIs by class are {listing} (select one class "
                "with 'class:name')"
            )
        return mask

    def _roi_match(self, roi: str) -> np.ndarray | None:
        """(n_voxels,) bool mask of ``roi`` (possibly all False), or None for a class that has no column."""
        classes = self.roi_classes
        cls, sep, name = roi.partition(":")
        if sep and name and ROI_PREFIX + cls in self.voxels.columns:
            return (self.voxels[ROI_PREFIX + cls].astype(str) == name).to_numpy()
        if sep and classes and roi not in set(self.voxels["roi"].astype(str)):
            return None
        mask = np.zeros(self.n_voxels, dtype=bool)
        for c in classes if roi else ():
            mask |= (self.voxels[ROI_PREFIX + c].astype(str) == roi).to_numpy()
        if not mask.any():
            mask = (self.voxels["roi"].astype(str) == roi).to_numpy()
        return mask

    def split_indices(self, split: str) -> np.ndarray:
        """Row indices of the stimuli in ``split``."""
        if split not in self.splits:
            raise DataError(f"BrainData {self.name!r} has no split {split!r}; splits: {sorted(self.splits)}")
        return np.asarray(align_ids(self.splits[split], self.stimulus_ids, f"split {split!r}", "responses"))

    def reorder(self, stimulus_ids: Sequence[str]) -> BrainData:
        """Rows in the order of ``stimulus_ids`` (which must all be present)."""
        order = align_ids(stimulus_ids, self.stimulus_ids, "requested", f"responses of {self.name!r}")
        keep = set(stimulus_ids)
        return BrainData(
            responses=self.responses[order],
            stimulus_ids=list(stimulus_ids),
            voxels=self.voxels,
            ncsnr=self.ncsnr,
            n_repeats=self.n_repeats[order] if self.n_repeats is not None else None,
            noise_ceiling=self.noise_ceiling,
            splits={k: [i for i in v if i in keep] for k, v in self.splits.items()},
            name=self.name,
            space=self.space,
        )

    def check_finite(self) -> np.ndarray:
        """Boolean (n_voxels,) mask of voxels whose responses are all finite and not constant."""
        r = self.responses
        finite = np.isfinite(r).all(axis=0)
        std = np.where(finite, np.nanstd(np.where(np.isfinite(r), r, 0.0), axis=0), 0.0)
        return finite & (std > 0)


def _check_disjoint_splits(splits: dict[str, list[str]], name: str) -> None:
    """Raise if ``train`` and ``test`` share stimuli, or a split lists one stimulus twice: a model scored on the
    images it was fitted to reports inflated accuracy without a word."""
    for split, ids in splits.items():
        dup = _duplicates([str(i) for i in ids])
        if dup:
            raise DataError(f"BrainData {name!r}: split {split!r} lists {len(dup)} stimulus id(s) twice: {dup[:10]}")
    if "train" in splits and "test" in splits:
        test = {str(i) for i in splits["test"]}
        both = [str(i) for i in splits["train"] if str(i) in test]
        if both:
            raise DataError(
                f"BrainData {name!r}: {len(both)} stimulus id(s) are in both the 'train' and the 'test' split, e.g. "
                f"{both[:10]}; the splits must be disjoint (fix the file's splits, or drop them to let llmvem draw a "
                "seeded hold-out)"
            )


def ncsnr_to_noise_ceiling(ncsnr: np.ndarray, n_repeats: np.ndarray | int) -> np.ndarray:
    """Noise ceiling (fraction of variance, r² units) of repeat-averaged responses (Algonauts 2023 / NSD).

    NC = ncsnr² / (ncsnr² + A), A = mean over test images of 1/n_repeats (the n3/3 + n2/2 + n1/1 term).

    Args:
        ncsnr: (n_voxels,) noise-ceiling SNR.
        n_repeats: (n_stimuli,) repeats per stimulus (or one int for all).
    Returns:
        (n_voxels,) float64 in [0, 1].
    """
    ncsnr = np.asarray(ncsnr, dtype=np.float64)
    reps = np.atleast_1d(np.asarray(n_repeats, dtype=np.float64))
    if (reps < 1).any():
        raise DataError("n_repeats must be ≥ 1 for every stimulus")
    a = float(np.mean(1.0 / reps))
    s2 = ncsnr**2
    return s2 / (s2 + a)


def ncsnr_from_repeats(trials: np.ndarray) -> np.ndarray:
    """Noise-ceiling SNR per voxel from single-trial responses.

    Args:
        trials: (n_stimuli, n_repeats, n_voxels); every stimulus shown ``n_repeats`` ≥ 2 times.
    Returns:
        (n_voxels,) ncsnr = σ_signal / σ_noise, with σ_noise² the mean within-stimulus variance and
        σ_signal² = max(var_stimuli(mean over repeats) − σ_noise² / n_repeats, 0).
    """
    t = np.asarray(trials, dtype=np.float64)
    if t.ndim != 3 or t.shape[1] < 2:
        raise DataError(f"trials must be (n_stimuli, n_repeats ≥ 2, n_voxels), got shape {t.shape}")
    noise_var = t.var(axis=1, ddof=1).mean(axis=0)
    mean_var = t.mean(axis=1).var(axis=0, ddof=1)
    signal_var = np.maximum(mean_var - noise_var / t.shape[1], 0.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.sqrt(signal_var) / np.sqrt(noise_var)
    return np.nan_to_num(out, nan=0.0, posinf=0.0)


@dataclass
class RDMSet:
    """Representational dissimilarity matrices of several subjects (or sessions / models) over the same stimuli.

    Attributes:
        rdms: float64 (n_subjects, n, n), symmetric with zero diagonal.
        stimulus_ids: length n, the row/column order.
        subjects: length n_subjects names.
        name: e.g. ``"cichy2014-IT"``.
        measure: how dissimilarity was computed (``"1 - pearson"``).
    """

    rdms: np.ndarray
    stimulus_ids: list[str]
    subjects: list[str]
    name: str = "rdms"
    measure: str = "unknown"

    def __post_init__(self) -> None:
        r = np.asarray(self.rdms, dtype=np.float64)
        if r.ndim == 2:
            r = r[None]
        if r.ndim != 3 or r.shape[1] != r.shape[2]:
            raise DataError(f"RDMSet {self.name!r}: rdms must be (n_subjects, n, n), got shape {r.shape}")
        self.rdms = r
        self.stimulus_ids = [str(s) for s in self.stimulus_ids]
        if len(self.stimulus_ids) != r.shape[1]:
            raise DataError(f"RDMSet {self.name!r}: {len(self.stimulus_ids)} ids for {r.shape[1]}×{r.shape[2]} RDMs")
        dup = _duplicates(self.stimulus_ids)
        if dup:
            raise DataError(f"RDMSet {self.name!r}: duplicate stimulus ids {dup[:10]}")
        if len(self.subjects) != r.shape[0]:
            raise DataError(f"RDMSet {self.name!r}: {len(self.subjects)} subject names for {r.shape[0]} RDMs")
        if not np.isfinite(r).all():
            raise DataError(f"RDMSet {self.name!r}: RDMs contain NaN or inf")
        if not np.allclose(r, r.transpose(0, 2, 1), atol=1e-6):
            raise DataError(f"RDMSet {self.name!r}: RDMs are not symmetric")

    @property
    def n_subjects(self) -> int:
        return int(self.rdms.shape[0])

    @property
    def n_stimuli(self) -> int:
        return int(self.rdms.shape[1])

    def mean(self) -> np.ndarray:
        """(n, n) group-average RDM."""
        return self.rdms.mean(axis=0)

    def reorder(self, stimulus_ids: Sequence[str]) -> RDMSet:
        order = np.asarray(align_ids(stimulus_ids, self.stimulus_ids, "requested", f"RDMs of {self.name!r}"))
        return RDMSet(self.rdms[:, order][:, :, order], list(stimulus_ids), self.subjects, self.name, self.measure)
