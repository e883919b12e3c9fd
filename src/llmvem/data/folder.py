"""A user's folder of images: the image files (ids = file stems), their labels (class subfolders or a label table)
and the brain data of those images, with the input checks that stop a run before anything trains.

Example
-------
>>> import tempfile
>>> from pathlib import Path
>>> root = Path(tempfile.mkdtemp())
>>> for cls in ("cat", "dog"):
...     (root / cls).mkdir()
...     _ = (root / cls / f"{cls}_1.jpg").write_bytes(b"")
>>> paths, classes = list_images(root)
>>> [p.name for p in paths], classes
(['cat_1.jpg', 'dog_1.jpg'], ['cat', 'dog'])
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from llmvem.errors import ConfigError, DataError, IdMismatchError

if TYPE_CHECKING:
    from llmvem.data.brain import BrainData


def list_images(folder: Path, where: str = "images") -> tuple[list[Path], list[str | None]]:
    """Image files under ``folder`` (sorted; hidden files and folders left out) and each one's class folder (its
    first-level subfolder, ``None`` for files at the top).

    Raises:
        DataError: no folder, no image in it, two images with one file stem (an image's id).
    """
    from llmvem.data.stimuli import IMAGE_SUFFIXES

    if not folder.is_dir():
        raise DataError(f"{where}: image folder not found: {folder}")
    paths = sorted(
        p
        for p in folder.rglob("*")
        if p.is_file()
        and p.suffix.lower() in IMAGE_SUFFIXES
        and not any(part.startswith(".") for part in p.relative_to(folder).parts)
    )
    if not paths:
        raise DataError(f"no images ({', '.join(IMAGE_SUFFIXES)}) found in {folder} or its subfolders")
    classes = [p.relative_to(folder).parts[0] if len(p.relative_to(folder).parts) > 1 else None for p in paths]
    seen: dict[str, Path] = {}
    dup = []
    for p in paths:
        if p.stem in seen:
            dup.append(f"{seen[p.stem].relative_to(folder)} and {p.relative_to(folder)}")
        seen[p.stem] = p
    if dup:
        raise DataError(
            f"{len(dup)} image file name(s) occur twice in {folder} (an image's id is its file stem, which matches it "
            f"to its description and brain response): {dup[:5]}; rename them so every stem is unique"
        )
    return paths, classes


def folder_labels(
    paths: list[Path], classes: list[str | None], folder: Path, table: Mapping[str, str] | None, source: str = ""
) -> list[list[str]] | None:
    """Each image's labels: from ``table`` (id → label, several joined by ``|``; read from ``source``) when given,
    else its class folder; ``None`` for a flat folder without a table.

    Raises:
        DataError: images the table lacks, or (class folders) images outside any class folder.
    """
    ids = [p.stem for p in paths]
    if table is not None:
        missing = [i for i in ids if i not in table]
        if missing:
            raise DataError(f"{len(missing)} of {len(ids)} image(s) have no label in {source}: {missing[:10]}")
        return [[s.strip() for s in table[i].split("|") if s.strip()] for i in ids]
    if all(c is None for c in classes):
        return None
    loose = [p.name for p, c in zip(paths, classes, strict=True) if c is None]
    if loose:
        raise DataError(
            f"{len(loose)} image(s) lie directly in {folder}, outside any class subfolder ({loose[:5]}): move "
            "them into their class's subfolder, or give a labels file"
        )
    return [[str(c)] for c in classes]


def check_classes(ids: list[str], label_sets: list[list[str]] | None, folder: Path, where: str) -> list[str]:
    """One class per image for a stratified split and a classifier: the class names (n,).

    Raises:
        ConfigError: no labels. DataError: an image with other than one label, fewer than 2 classes, a class with
            fewer than 2 images (one to train on, one held out).
    """
    import pandas as pd

    if label_sets is None:
        raise ConfigError(
            f"{where}: classes are needed: put the images in one subfolder per class ({folder}/<class>/<image>.jpg) "
            "or give a labels file (CSV of image,label)"
        )
    many = [i for i, s in zip(ids, label_sets, strict=True) if len(s) != 1]
    if many:
        raise DataError(f"task 'classifier' needs exactly one label per image; {len(many)} have not: {many[:5]}")
    names = [s[0] for s in label_sets]
    sizes = pd.Series(names).value_counts()
    if len(sizes) < 2:
        raise DataError(f"task 'classifier' needs ≥ 2 classes; {folder} has {list(sizes.index)}")
    small = {str(k): int(v) for k, v in sizes.items() if v < 2}
    if small:
        raise DataError(
            f"class(es) with fewer than 2 images: {small}; every class needs ≥ 2 (one to train on, one held "
            "out): add images or remove the class"
        )
    return names


def brain_for_images(brain: BrainData, ids: list[str], source: str) -> tuple[BrainData, int]:
    """``brain`` reordered to the images ``ids`` (its splits keep only those images), and the number of its
    stimuli that are not among the images (ignored).

    Raises:
        IdMismatchError: images without a response (the message shows ids of both sides, or says that the NSD ids
            match only after a shift of one). DataError: ``nsd-00000`` on either side (0-based NSD ids).
    """
    from llmvem.data.nsd_ids import check_ids, explain_mismatch

    check_ids(ids, f"images of brain data {source}")
    check_ids(brain.stimulus_ids, f"brain data {source}")
    have = set(brain.stimulus_ids)
    missing = [i for i in ids if i not in have]
    if missing:
        shifted = explain_mismatch(missing, brain.stimulus_ids)
        hint = shifted or (
            f"its stimulus ids look like {brain.stimulus_ids[:5]}: they must be the images' ids (file stems; NSD "
            "and Algonauts file names count as their nsd-NNNNN)"
        )
        raise IdMismatchError(
            f"brain data {source}: {len(missing)} of {len(ids)} image(s) have no response, e.g. {missing[:5]}; {hint}"
        )
    return brain.reorder(ids), len(have - set(ids))


def class_targets(label_sets: list[list[str]], multilabel: bool = False) -> tuple[np.ndarray, list[str]]:
    """Task targets of labels and the sorted class names: (n,) int64 class indices (one label per image), or
    (n, L) float32 multi-hot rows (``multilabel``)."""
    if multilabel:
        classes = sorted({c for s in label_sets for c in s})
        values = np.zeros((len(label_sets), len(classes)), dtype=np.float32)
        for k, s in enumerate(label_sets):
            values[k, [classes.index(c) for c in s]] = 1.0
        return values, classes
    names = [s[0] for s in label_sets]
    classes = sorted(set(names))
    return np.asarray([classes.index(c) for c in names], dtype=np.int64), classes
