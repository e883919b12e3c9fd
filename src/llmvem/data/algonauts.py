"""The Algonauts 2023 challenge layout (NSD on fsaverage, "challenge space" vertices per hemisphere).

One subject folder (``.../subj01/``), as ``challenge_data_preparation.py`` of gifale95/algonauts_2023 writes it::

    training_split/training_fmri/{lh,rh}_training_fmri.npy      (n_train, v_hemi) float32, rows = training images
    training_split/training_images/train-0001_nsd-00013.png     n_train images; train-XXXX is the 1-based row
    test_split/test_images/test-0001_nsd-00845.png              n_test images, test-XXXX the 1-based row
    test_split/test_fmri/{lh,rh}_test_fmri.npy                  (n_test, v_hemi) (later releases; optional)
    test_split/noise_ceiling/{lh,rh}_noise_ceiling.npy          (v_hemi,) r² fraction (later releases; optional)
    roi_masks/{lh,rh}.all-vertices_fsaverage_space.npy          (163842,) int: nsdgeneral + RSC, so 0, 1 or 2;
                                                                the non-zero vertices, in order, are the columns
    roi_masks/{lh,rh}.<class>_challenge_space.npy               (v_hemi,) int labels, 0 = not in the class
    roi_masks/{lh,rh}.<class>_fsaverage_space.npy               (163842,) the same labels on fsaverage (not read)
    roi_masks/mapping_<class>.npy                               np.save of a dict label → ROI name, from the ctab
                                                                (0 → "Unknown" included)

ROI classes: ``prf-visualrois``, ``floc-bodies``, ``floc-faces``, ``floc-places``, ``floc-words``, ``streams``.

**Stimulus ids.** The ``NNNNN`` of ``nsd-NNNNN`` in a file name is the **0-based** index into NSD's 73k stimulus
brick (the script subtracts 1 from ``subjectim``), so ``train-0001_nsd-00013.png`` is the image NSD calls
``nsd-00014``. The loader returns canonical ids (:mod:`llmvem.data.nsd_ids`) for the responses and both image sets.

**Noise ceiling.** The shipped file is ``ncsnr² / (ncsnr² + A)`` with A from the test images' repeats: a fraction
of variance, the unit of :attr:`BrainData.noise_ceiling` (the devkit scores ``100 · r² / NC``), so it is kept as is.
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from llmvem.data.brain import ROI_PREFIX, BrainData, BrainSpace
from llmvem.data.files import npy_problem
from llmvem.data.nsd_ids import from_index
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
N_FSAVERAGE_VERTICES = 163_842
_IMAGE_RE = re.compile(r"^(train|test)-(\d+)_nsd-(\d+)$", re.IGNORECASE)
_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


@dataclass
class AlgonautsSubject:
    """One Algonauts 2023 subject.

    Attributes:
        brain: responses (n_train [+ n_test], v_lh + v_rh) with canonical ids; ``splits`` ``train`` (and ``test``
            when ``test_fmri`` is shipped); ``noise_ceiling`` when shipped; ``space`` fsaverage. Voxel table:
            ``hemi``, ``index`` (within the hemisphere's challenge space), ``fsaverage_vertex`` (within the
            hemisphere; −1 if the all-vertices mask is absent), ``roi:<class>`` per ROI class read (ROI name or
            ``""``) and ``roi`` (the first class, in ``roi_classes`` order, that labels the vertex; ``"other"`` if
            none). Select ROIs with :meth:`BrainData.roi_mask`, which searches every class.
        train_images: the training images, in fMRI row order, with canonical ids.
        test_images: the test images, in test-fMRI row order, with canonical ids.
        roi_classes: ROI classes that were read.
    """

    brain: BrainData
    train_images: StimulusSet
    test_images: StimulusSet
    roi_classes: list[str]


def _images(folder: Path, kind: str, name: str) -> StimulusSet:
    """The ``<kind>-XXXX_nsd-NNNNN`` images of ``folder`` in XXXX order (the fMRI rows), with canonical ids."""
    found: dict[int, tuple[str, Path]] = {}
    odd: list[str] = []
    for p in folder.iterdir() if folder.is_dir() else ():
        if p.name.startswith("."):
            continue
        m = _IMAGE_RE.match(p.stem)
        if m is None or m.group(1).lower() != kind or p.suffix.lower() not in _IMAGE_SUFFIXES:
            odd.append(p.name)
            continue
        row = int(m.group(2))
        if row in found:
            raise DataError(f"Algonauts: {folder} holds two images numbered {kind}-{row:04d}")
        found[row] = (from_index(int(m.group(3))), p)
    if odd:
        warnings.warn(
            f"Algonauts: {len(odd)} file(s) in {folder} are not {kind}-XXXX_nsd-NNNNN images and are left out "
            f"(e.g. {sorted(odd)[:3]})",
            stacklevel=3,
        )
    rows = sorted(found)
    if rows and rows != list(range(1, len(rows) + 1)):
        gaps = sorted(set(range(1, rows[-1] + 1)) - set(rows))[:5]
        raise DataError(
            f"Algonauts: the images of {folder} must be numbered {kind}-0001 … {kind}-{len(rows):04d} (1-based, one "
            f"per fMRI row); got {kind}-{rows[0]:04d} … {kind}-{rows[-1]:04d}"
            + (f", missing {[f'{kind}-{k:04d}' for k in gaps]}" if gaps else "")
        )
    return StimulusSet(ids=[found[k][0] for k in rows], paths=[found[k][1] for k in rows], name=name)


def _npy(path: Path, **kw: Any) -> Any:
    """``np.load(path, **kw)``, an unreadable file named with what is wrong (every array file of a subject folder)."""
    import pickle

    try:
        return np.load(path, **kw)
    except (OSError, ValueError, EOFError, pickle.UnpicklingError) as exc:
        raise DataError(f"Algonauts: cannot read {path}: {npy_problem(exc)}") from exc


def _fmri(path: Path, n_rows: int, images: Path) -> np.ndarray:
    """Memory-mapped (n_rows, v) responses of ``path``; its rows must be the images of ``images``."""
    fmri = _npy(path, mmap_mode="r")
    if fmri.ndim != 2:
        raise DataError(f"Algonauts: {path} must be 2-D (images, vertices), got shape {fmri.shape}")
    if fmri.shape[0] != n_rows:
        raise DataError(
            f"Algonauts: {path} has {fmri.shape[0]} rows but {images} holds {n_rows} images; they must match one to "
            "one (an image missing or added?)"
        )
    return fmri


def _read_into(path: Path, out: np.ndarray, block_bytes: int = 1 << 24) -> None:
    """Fill ``out`` (n, v), a view of the response matrix, from the ``.npy`` at ``path`` in blocks of rows, so the
    file is never mapped or held whole (peak memory: the matrix plus one block)."""
    with open(path, "rb") as f:
        try:
            version = np.lib.format.read_magic(f)
            read_header = (
                np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
            )
            shape, fortran, dtype = read_header(f)
        except ValueError as exc:
            raise DataError(f"Algonauts: cannot read {path}: {npy_problem(exc)}") from exc
        if fortran or dtype.hasobject or tuple(shape) != out.shape:
            out[...] = _npy(path, mmap_mode="r")
            return
        n, v = out.shape
        step = max(1, block_bytes // max(1, v * dtype.itemsize))
        block = np.empty((min(step, n), v), dtype=dtype)
        for start in range(0, n, step):
            rows = min(step, n - start)
            if f.readinto(block[:rows].data.cast("B")) != rows * v * dtype.itemsize:
                raise DataError(f"Algonauts: {path} is shorter than its header says {shape}")
            out[start : start + rows] = block[:rows]


def _mapping(path: Path) -> dict[int, str]:
    """Label → ROI name of a ``mapping_<class>.npy`` (``np.save`` of a dict)."""
    obj = _npy(path, allow_pickle=True)  # the challenge ships these as pickled dicts
    mapping = obj.item() if obj.dtype == object and obj.shape == () else None
    if not isinstance(mapping, dict):
        raise DataError(
            f"Algonauts: {path} must hold a dict label → ROI name (np.save of the ctab's dict), got an array of "
            f"dtype {obj.dtype} and shape {obj.shape}"
        )
    return {int(k): str(v) for k, v in mapping.items()}


def _fsaverage_vertices(root: Path, hemi: str, v: int, fmri_path: Path) -> tuple[np.ndarray, int | None]:
    """(v,) fsaverage vertex of each challenge-space column (−1 without the mask file) and the mask's length."""
    path = root / "roi_masks" / f"{hemi}.all-vertices_fsaverage_space.npy"
    if not path.is_file():
        return np.full(v, -1, dtype=np.int64), None
    mask = np.asarray(_npy(path))
    if mask.ndim != 1:
        raise DataError(f"Algonauts: {path} must be 1-D (fsaverage vertices), got shape {mask.shape}")
    verts = np.flatnonzero(mask)  # as the script's np.where(mask): nsdgeneral + RSC is 1 or 2 inside
    if verts.size != v:
        raise DataError(
            f"Algonauts: {path} marks {verts.size} vertices (non-zero) but {fmri_path} has {v} columns; they must match"
        )
    return verts, int(mask.shape[0])


def _roi_names(root: Path, hemi: str, cls: str, v: int) -> np.ndarray:
    """(v,) object array: the ROI name of each challenge-space vertex in ``cls`` (``""`` for label ≤ 0)."""
    mask_path = root / "roi_masks" / f"{hemi}.{cls}_challenge_space.npy"
    map_path = root / "roi_masks" / f"mapping_{cls}.npy"  # both checked by _check_args
    labels = np.asarray(_npy(mask_path))
    if labels.shape != (v,):
        raise DataError(f"Algonauts: {mask_path} has shape {labels.shape}, expected ({v},) like the fMRI columns")
    labels = labels.astype(np.int64)
    mapping = _mapping(map_path)
    missing = sorted(set(np.unique(labels[labels > 0]).tolist()) - set(mapping))
    if missing:
        raise DataError(f"Algonauts: labels {missing} of {mask_path} have no name in {map_path}")
    lookup = {k: name for k, name in mapping.items() if k > 0}
    return np.array([lookup.get(int(k), "") for k in labels], dtype=object)


def _hemi_table(
    root: Path, hemi: str, v: int, roi_classes: list[str], fmri_path: Path
) -> tuple[pd.DataFrame, int | None]:
    """Voxel table of one hemisphere (see :class:`AlgonautsSubject`) and its fsaverage mask length."""
    verts, n_vertices = _fsaverage_vertices(root, hemi, v, fmri_path)
    table = pd.DataFrame({"hemi": hemi, "index": np.arange(v), "fsaverage_vertex": verts})
    first = np.full(v, "other", dtype=object)
    for cls in roi_classes:
        names = _roi_names(root, hemi, cls, v)
        table[ROI_PREFIX + cls] = names
        unset = (first == "other") & (names != "")
        first[unset] = names[unset]
    table["roi"] = first
    return table, n_vertices


def _noise_ceiling(root: Path, hemispheres: list[str], widths: list[int]) -> np.ndarray | None:
    """(v_total,) shipped noise ceiling (r² fraction) when every hemisphere's file is present, else None."""
    paths = [root / "test_split" / "noise_ceiling" / f"{h}_noise_ceiling.npy" for h in hemispheres]
    present = [p.is_file() for p in paths]
    if not any(present):
        return None
    if not all(present):
        raise DatasetNotFoundError(f"Algonauts: {paths[present.index(False)]} not found but the other hemisphere's is")
    parts = []
    for p, v in zip(paths, widths, strict=True):
        nc = np.asarray(_npy(p), dtype=np.float64)
        if nc.shape != (v,):
            raise DataError(f"Algonauts: {p} has shape {nc.shape}, expected ({v},) like the fMRI columns")
        finite = nc[np.isfinite(nc)]
        if finite.size and (finite.min() < -1e-6 or finite.max() > 1 + 1e-6):
            raise DataError(
                f"Algonauts: {p} holds values {finite.min():.3g} … {finite.max():.3g}; a noise ceiling is a fraction "
                "of variance in [0, 1] as challenge_data_preparation.py writes it (divide a percentage by 100)"
            )
        parts.append(nc)
    return np.concatenate(parts)


def _check_args(root: Path, roi_classes: list[str], hemispheres: list[str]) -> None:
    if not root.is_dir():
        raise DatasetNotFoundError(f"Algonauts: subject folder {root} not found")
    bad = [h for h in hemispheres if h not in HEMISPHERES]
    if bad or not hemispheres or len(set(hemispheres)) < len(hemispheres):
        raise DataError(f"Algonauts: hemispheres must be a non-empty subset of {list(HEMISPHERES)}, got {hemispheres}")
    unknown = [c for c in roi_classes if c not in ROI_CLASSES]
    if unknown:
        raise DataError(f"Algonauts: unknown ROI classes {unknown}; choose from {list(ROI_CLASSES)}")
    train_dir = root / "training_split" / "training_images"
    if not train_dir.is_dir():
        raise DatasetNotFoundError(f"Algonauts: {train_dir} not found (is {root} an Algonauts 2023 subject folder?)")
    roi_dir = root / "roi_masks"
    files = [roi_dir / f"mapping_{c}.npy" for c in roi_classes]
    files += [roi_dir / f"{h}.{c}_challenge_space.npy" for c in roi_classes for h in hemispheres]
    absent = [p.name for p in files if not p.is_file()]
    if absent:
        have = sorted(p.stem[len("mapping_") :] for p in roi_dir.glob("mapping_*.npy"))
        raise DatasetNotFoundError(
            f"Algonauts: {len(absent)} ROI file(s) missing from {roi_dir} (e.g. {absent[:3]}); the ROI classes there "
            f"are {have}: pass roi_classes= some of them, or () for none"
        )


def load_algonauts2023(
    subject_dir: str | Path,
    roi_classes: tuple[str, ...] | list[str] = ROI_CLASSES,
    hemispheres: tuple[str, ...] | list[str] = HEMISPHERES,
) -> AlgonautsSubject:
    """Read one subject of the Algonauts 2023 layout (see the module docstring).

    Args:
        subject_dir: the subject folder (``.../subj01``).
        roi_classes: ROI classes to read (missing files are an error; pass ``()`` for none).
        hemispheres: ``("lh", "rh")`` or one of them.
    Returns:
        :class:`AlgonautsSubject`: training responses, and the test responses as split ``test`` when
        ``test_split/test_fmri`` is there (else only ``train``, as the challenge held them out).
    """
    root = Path(subject_dir)
    classes, hemis = list(roi_classes), list(hemispheres)
    _check_args(root, classes, hemis)
    train_dir = root / "training_split" / "training_images"
    test_dir = root / "test_split" / "test_images"
    train = _images(train_dir, "train", f"algonauts2023-{root.name}-train")
    test = _images(test_dir, "test", f"algonauts2023-{root.name}-test")
    test_paths = [root / "test_split" / "test_fmri" / f"{h}_test_fmri.npy" for h in hemis]
    with_test = any(p.is_file() for p in test_paths)
    if with_test and not all(p.is_file() for p in test_paths):
        raise DatasetNotFoundError(f"Algonauts: {next(p for p in test_paths if not p.is_file())} not found")
    common = sorted(set(train.ids) & set(test.ids))
    if with_test and common:
        raise DataError(f"Algonauts: {len(common)} image(s) are both training and test images (e.g. {common[:3]})")

    blocks: list[tuple[Path, int, Path | None]] = []  # (training fMRI, columns, test fMRI) per hemisphere
    tables: list[pd.DataFrame] = []
    n_vertices: set[int | None] = set()
    for hemi, test_path in zip(hemis, test_paths, strict=True):
        fmri_path = root / "training_split" / "training_fmri" / f"{hemi}_training_fmri.npy"
        if not fmri_path.is_file():
            raise DatasetNotFoundError(f"Algonauts: {fmri_path} not found")
        tr = _fmri(fmri_path, len(train.ids), train_dir)
        te = _fmri(test_path, len(test.ids), test_dir) if with_test else None
        if te is not None and te.shape[1] != tr.shape[1]:
            raise DataError(f"Algonauts: {test_path} has {te.shape[1]} columns but {fmri_path} has {tr.shape[1]}")
        table, nv = _hemi_table(root, hemi, tr.shape[1], classes, fmri_path)
        blocks.append((fmri_path, tr.shape[1], test_path if with_test else None))
        tables.append(table)
        n_vertices.add(nv)
    widths = [v for _, v, _ in blocks]
    ids = train.ids + (test.ids if with_test else [])
    responses = np.empty((len(ids), sum(widths)), dtype=np.float32)
    col, n_train = 0, len(train.ids)
    for tr_path, v, te_path in blocks:
        _read_into(tr_path, responses[:n_train, col : col + v])
        if te_path is not None:
            _read_into(te_path, responses[n_train:, col : col + v])
        col += v
    lengths = sorted(n for n in n_vertices if n is not None)
    if len(lengths) > 1:
        raise DataError(f"Algonauts: the hemispheres' all-vertices masks have different lengths {lengths}")
    brain = BrainData(
        responses=responses,
        stimulus_ids=ids,
        voxels=pd.concat(tables, ignore_index=True),
        noise_ceiling=_noise_ceiling(root, hemis, widths),
        splits={"train": list(train.ids), **({"test": list(test.ids)} if with_test else {})},
        name=f"algonauts2023-{root.name}",
        space=BrainSpace(
            kind="fsaverage", name="fsaverage", n_vertices=lengths[0] if lengths else N_FSAVERAGE_VERTICES
        ),
    )
    return AlgonautsSubject(brain=brain, train_images=train, test_images=test, roi_classes=classes)
