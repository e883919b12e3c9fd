"""The Algonauts 2023 challenge layout (NSD on fsaverage, "challenge space" vertices per hemisphere).

One subject folder (``.../subj01/``) holds::

    training_split/training_fmri/{lh,rh}_training_fmri.npy      (n_train, v_hemi) float32
    training_split/training_images/train-0001_nsd-00013.png     (n_train images, sorted = the fMRI row order)
    test_split/test_images/test-0001_nsd-00845.png              (no fMRI: the challenge held it out)
    roi_masks/{lh,rh}.<class>_challenge_space.npy               (v_hemi,) int labels, 0 = not in the class
    roi_masks/mapping_<class>.npy                               pickled dict label → ROI name
    roi_masks/{lh,rh}.all-vertices_fsaverage_space.npy          (163842,) bool: which fsaverage vertices are used

ROI classes: ``prf-visualrois``, ``floc-bodies``, ``floc-faces``, ``floc-places``, ``floc-words``, ``streams``.
Stimulus ids are the ``nsd-NNNNN`` part of the image names, the number as written there.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from llmvem.data.brain import BrainData
from llmvem.data.stimuli import StimulusSet
from llmvem.errors import DataError, DatasetNotFoundError

ROI_CLASSES: tuple[str, ...] = (
    "prf-visualrois",
    "floc-bodies",
    "floc-faces",
    "floc-places",
    "floc-words",
    "streams",
)
HEMISPHERES: tuple[str, ...] = ("lh", "rh")
_IMAGE_RE = re.compile(r"^(train|test)-(\d+)_(nsd-\d+)\.(png|jpg|jpeg)$", re.IGNORECASE)


@dataclass
class AlgonautsSubject:
    """One Algonauts 2023 subject.

    Attributes:
        brain: training responses (n_train, v_lh + v_rh), voxel table with ``hemi``, ``index`` (within the
            hemisphere's challenge space), ``fsaverage_vertex`` (−1 if the mask file is absent), ``roi`` (the
            first ROI class, in ``roi_classes`` order, that labels the vertex; ``"other"`` if none) and one column per
            ROI class (ROI name or ``""``).
        train_images: the training images, in fMRI row order.
        test_images: the test images (responses withheld by the challenge).
        roi_classes: ROI classes that were read.
    """

    brain: BrainData
    train_images: StimulusSet
    test_images: StimulusSet
    roi_classes: list[str]


def _images(folder: Path, kind: str) -> tuple[list[str], list[Path]]:
    if not folder.is_dir():
        return [], []
    ids, paths = [], []
    for p in sorted(folder.iterdir()):
        m = _IMAGE_RE.match(p.name)
        if m is None or m.group(1).lower() != kind:
            continue
        ids.append(m.group(3))
        paths.append(p)
    return ids, paths


def _mapping(path: Path) -> dict[int, str]:
    try:
        obj = np.load(path, allow_pickle=True)
    except (OSError, ValueError) as exc:
        raise DataError(f"Algonauts: cannot read ROI mapping {path}: {exc}") from exc
    mapping = obj.item() if obj.dtype == object and obj.shape == () else None
    if not isinstance(mapping, dict):
        raise DataError(f"Algonauts: {path} must hold a dict label → ROI name, got {type(obj)}")
    return {int(k): str(v) for k, v in mapping.items()}


def load_algonauts2023(
    subject_dir: str | Path,
    roi_classes: tuple[str, ...] | list[str] = ROI_CLASSES,
    hemispheres: tuple[str, ...] | list[str] = HEMISPHERES,
) -> AlgonautsSubject:
    """Read one subject of the Algonauts 2023 layout.

    Args:
        subject_dir: the subject folder (``.../subj01``).
        roi_classes: ROI classes to read (missing files are an error; pass ``()`` for none).
        hemispheres: ``("lh", "rh")`` or one of them.
    Returns:
        :class:`AlgonautsSubject`.
    """
    root = Path(subject_dir)
    if not root.is_dir():
        raise DatasetNotFoundError(f"Algonauts: subject folder {root} not found")
    bad = [h for h in hemispheres if h not in HEMISPHERES]
    if bad or not hemispheres:
        raise DataError(f"Algonauts: hemispheres must be a non-empty subset of {list(HEMISPHERES)}, got {hemispheres}")
    unknown = [c for c in roi_classes if c not in ROI_CLASSES]
    if unknown:
        raise DataError(f"Algonauts: unknown ROI classes {unknown}; choose from {list(ROI_CLASSES)}")
    train_ids, train_paths = _images(root / "training_split" / "training_images", "train")
    test_ids, test_paths = _images(root / "test_split" / "test_images", "test")

    blocks: list[np.ndarray] = []
    tables: list[pd.DataFrame] = []
    for hemi in hemispheres:
        fmri_path = root / "training_split" / "training_fmri" / f"{hemi}_training_fmri.npy"
        if not fmri_path.is_file():
            raise DatasetNotFoundError(f"Algonauts: {fmri_path} not found")
        fmri = np.load(fmri_path, mmap_mode="r")
        if fmri.ndim != 2:
            raise DataError(f"Algonauts: {fmri_path} must be 2-D (images, vertices), got shape {fmri.shape}")
        if fmri.shape[0] != len(train_ids):
            raise DataError(
                f"Algonauts: {fmri_path} has {fmri.shape[0]} rows but training_images holds {len(train_ids)} "
                "images; they must match one to one"
            )
        v = fmri.shape[1]
        table = pd.DataFrame({"hemi": hemi, "index": np.arange(v)})
        vert_path = root / "roi_masks" / f"{hemi}.all-vertices_fsaverage_space.npy"
        if vert_path.is_file():
            verts = np.flatnonzero(np.load(vert_path))
            if verts.size != v:
                raise DataError(f"Algonauts: {vert_path} selects {verts.size} vertices but {fmri_path} has {v}")
            table["fsaverage_vertex"] = verts
        else:
            table["fsaverage_vertex"] = -1
        roi = np.full(v, "other", dtype=object)
        for cls in roi_classes:
            mask_path = root / "roi_masks" / f"{hemi}.{cls}_challenge_space.npy"
            map_path = root / "roi_masks" / f"mapping_{cls}.npy"
            for p in (mask_path, map_path):
                if not p.is_file():
                    raise DatasetNotFoundError(f"Algonauts: ROI file {p} not found (or pass roi_classes=())")
            labels = np.asarray(np.load(mask_path)).astype(np.int64)
            if labels.shape != (v,):
                raise DataError(f"Algonauts: {mask_path} has shape {labels.shape}, expected ({v},)")
            mapping = _mapping(map_path)
            missing = sorted(set(np.unique(labels[labels > 0]).tolist()) - set(mapping))
            if missing:
                raise DataError(f"Algonauts: labels {missing} of {mask_path} have no name in {map_path}")
            names = np.array([mapping.get(int(k), "") if k > 0 else "" for k in labels], dtype=object)
            table[cls] = names
            unset = (roi == "other") & (labels > 0)
            roi[unset] = names[unset]
        table["roi"] = roi
        blocks.append(np.asarray(fmri, dtype=np.float32))
        tables.append(table)
    voxels = pd.concat(tables, ignore_index=True)
    brain = BrainData(
        responses=np.concatenate(blocks, axis=1),
        stimulus_ids=train_ids,
        voxels=voxels,
        splits={"train": list(train_ids)},
        name=f"algonauts2023-{root.name}",
    )
    return AlgonautsSubject(
        brain=brain,
        train_images=StimulusSet(ids=train_ids, paths=train_paths, name=f"algonauts2023-{root.name}-train"),
        test_images=StimulusSet(ids=test_ids, paths=test_paths, name=f"algonauts2023-{root.name}-test"),
        roi_classes=list(roi_classes),
    )
