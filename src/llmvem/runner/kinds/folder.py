"""A user's image folder as a stimulus source (images, labels, descriptions, brain data, a held-out split) and the
task targets of a fine-tune on it: class labels and voxels z-scored on the training images.

Every input check (:mod:`llmvem.data.folder`, :func:`llmvem.text.multi.descriptions_of_images`,
:func:`llmvem.data.splits.images_split`) runs in the stimuli and targets phases, before anything trains and before
the run directory exists.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import Field

from llmvem.errors import ConfigError, DataError
from llmvem.runner.parts import STIMULI, TARGETS, Params, part
from llmvem.runner.state import Representation, RunState, Stimuli


class FolderParams(Params):
    images: str = Field(description="the folder of images: one subfolder per class (ImageNet layout) or flat; an "
                        "image's id is its file stem (NSD and Algonauts names: nsd-NNNNN, the 1-based "
                        "73k id)")  # fmt: skip
    descriptions: str | None = Field(None, description="JSONL/CSV/TSV/JSON of image + text (file name or stem); "
                                     "several texts of an image are embedded and averaged")  # fmt: skip
    describers: str | list[str] | None = Field(None, description="keep the texts of these describer models only")
    prompts: str | list[str] | None = Field(None, description="keep the texts of these prompts only")
    missing_descriptions: Literal["fail", "drop"] = Field("fail", description="images without a text stop the run "
                                                          "(fail) or are left out (drop, counted)")  # fmt: skip
    labels: str | None = Field(None, description="CSV/TSV/JSONL of image, label (several joined by |): overrides "
                               "the subfolders")  # fmt: skip
    brain: str | None = Field(None, description="brain data of the images (llmvem.data.files.load_brain: a .npz, "
                              "an NSD root, an Algonauts subject folder; stimulus ids = the image ids)")  # fmt: skip
    subject: int | None = Field(None, description="the subject of a multi-subject brain source (NSD: 1-8)")
    heldout: float = Field(0.2, gt=0, lt=0.9, description="share of the images held out as the test split")
    heldout_seed: int | None = Field(None, description="the seed of the held-out split (default settings.seed)")
    stratify: bool = Field(False, description="hold out a share of every class (one label per image, ≥ 2 classes "
                           "of ≥ 2 images)")  # fmt: skip
    split_from: str = Field("seeded", description="seeded (a seeded share), auto (the brain data's 'test' split "
                            "when it names ≥ 3 images, else seeded) or a split name of the brain data")  # fmt: skip
    min_heldout: int = Field(2, ge=1, description="the fewest images a seeded split holds out")


def _labels(p: FolderParams, paths: list[Path], classes: list[str | None], folder: Path) -> tuple[Any, int]:
    """Each image's labels (:func:`~llmvem.data.folder.folder_labels`) and the label rows of other images."""
    from llmvem.data.folder import folder_labels

    table = None
    if p.labels is not None:
        from llmvem.describe.run import read_labels

        table = read_labels(p.labels)
    ignored = len(set(table) - {q.stem for q in paths}) if table is not None else 0
    return folder_labels(paths, classes, folder, table, str(p.labels)), ignored


def _brain(p: FolderParams, ids: list[str], name: str, counts: dict[str, int]) -> Any:
    """The brain data reordered to the images (or None); a named brain split needs brain data."""
    from llmvem.data.files import load_brain
    from llmvem.data.folder import brain_for_images

    if p.brain is None:
        if p.split_from not in ("auto", "seeded"):
            raise ConfigError(f"stimuli.{name}.split_from={p.split_from!r} names a split of the brain data; give "
                              "brain (or use auto or seeded)")  # fmt: skip
        return None
    brain, counts["ignored_brain_stimuli"] = brain_for_images(load_brain(p.brain, subject=p.subject), ids, p.brain)
    return brain


@part(STIMULI, "image_folder", FolderParams)
def image_folder(p: FolderParams, state: RunState, name: str) -> Stimuli:
    """The images of a folder (ids = file stems; NSD and Algonauts 2023 file names become the canonical
    ``nsd-NNNNN`` of :mod:`llmvem.data.nsd_ids`, so they pair with NSD and Algonauts brain data) with their labels,
    description rows and brain data, checked (module docstring), and one held-out split (``train`` / ``test``)
    shared by every model and seed."""
    from llmvem.data.folder import check_classes, list_images
    from llmvem.data.nsd_ids import canonical_ids
    from llmvem.data.splits import images_split
    from llmvem.data.stimuli import StimulusSet

    folder = Path(p.images).expanduser()
    paths, folder_classes = list_images(folder, f"stimuli.{name}.images")
    label_sets, ignored_labels = _labels(p, paths, folder_classes, folder)
    ids = canonical_ids([q.stem for q in paths], f"stimuli.{name}.images ({folder})")  # NSD names → nsd-NNNNN
    counts: dict[str, int] = {"ignored_labels": ignored_labels} if p.labels is not None else {}
    table = None
    if p.descriptions is not None:
        from llmvem.text.multi import descriptions_of_images

        table, kept, found = descriptions_of_images(p.descriptions, ids, p.describers, p.prompts,
                                                    p.missing_descriptions, state.log)  # fmt: skip
        counts.update(found)
        keep = [k for k, i in enumerate(ids) if i in set(kept)]
        paths, ids = [paths[k] for k in keep], [ids[k] for k in keep]
        label_sets = [label_sets[k] for k in keep] if label_sets is not None else None
    if len(ids) < 6:
        raise DataError(f"{len(ids)} usable image(s) in {folder}: too few to train and hold out (need ≥ 6)")
    classes = check_classes(ids, label_sets, folder, f"stimuli.{name}.stratify") if p.stratify else None
    brain = _brain(p, ids, name, counts)
    seed = state.cfg.seed if p.heldout_seed is None else p.heldout_seed
    train, test, heldout_from = images_split(len(ids), p.heldout, seed, classes, p.min_heldout, brain, p.split_from)
    single = [s[0] if len(s) == 1 else "|".join(s) for s in label_sets] if label_sets is not None else None
    stimuli = StimulusSet.from_paths(paths, ids=ids, name=folder.name, labels=single)  # raises on unreadable files
    state.note("stimuli", name, {"n_images": len(ids), "n_train": len(train), "n_test": len(test),
                                 "heldout_from": heldout_from, **counts})  # fmt: skip
    state.log(f"stimuli {name}: {len(ids)} images of {folder} ({len(train)} train / {len(test)} held out, "
              f"{heldout_from})" + (f", brain data {p.brain}" if brain is not None else ""))  # fmt: skip
    return Stimuli(stimuli, labels=label_sets or [], brain=brain, text_table=table,
                   splits={"train": [ids[k] for k in train], "test": [ids[k] for k in test]},
                   extra={"folder": str(folder), "brain": p.brain})  # fmt: skip


@dataclass
class ClassLabels(Representation):
    """Task targets of class labels (``values``: (n,) int64 class indices, or (n, L) float32 multi-hot rows) and
    the class names they index (sorted)."""

    classes: list[str] = field(default_factory=list)


class ClassParams(Params):
    stimuli: str
    multilabel: bool = Field(False, description="multi-hot rows of every label (else one class per image)")


@part(TARGETS, "class_labels", ClassParams)
def class_labels(p: ClassParams, state: RunState, name: str) -> ClassLabels:
    """The images' labels as a classifier's targets (class indices; one label per image, ≥ 2 classes of ≥ 2
    images) or a multilabel head's (multi-hot), classes sorted by name (:func:`llmvem.data.folder.class_targets`)."""
    from llmvem.data.folder import check_classes, class_targets

    src = state.source(p.stimuli)
    folder = Path(src.extra.get("folder", p.stimuli))
    if not p.multilabel:
        check_classes(src.ids, src.labels or None, folder, f"targets.{name}")
    elif not src.labels:
        check_classes(src.ids, None, folder, f"targets.{name}")  # the error that says how to give labels
    values, classes = class_targets(src.labels, p.multilabel)
    state.note("targets", name, {"classes": classes, "n_classes": len(classes)})
    state.log(f"target {name}: {len(classes)} {'labels' if p.multilabel else 'classes'} of {len(values)} images")
    return ClassLabels(p.stimuli, values, classes=classes)


@dataclass
class VoxelValues(Representation):
    """Voxel responses as task targets: ``values`` (n, v_valid) z-scored on the training images, the brain data
    of the images (every voxel: ROIs and noise ceilings) and ``valid`` (v,), the voxels in ``values``."""

    brain: Any = None
    valid: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=bool))


class VoxelParams(Params):
    stimuli: str
    split: str = Field("train", description="the split whose images give the mean and sd")


@part(TARGETS, "zscored_voxels", VoxelParams)
def zscored_voxels(p: VoxelParams, state: RunState, name: str) -> VoxelValues:
    """The source's voxel responses without the NaN/inf or constant voxels (a counted warning), z-scored with the
    mean and sd of the ``split`` images (:func:`llmvem.align.targets.voxel_targets`)."""
    from llmvem.align.targets import voxel_targets

    src = state.source(p.stimuli)
    if src.brain is None:
        raise ConfigError(f"targets.{name}: stimuli {p.stimuli!r} come with no brain responses (give their brain)")
    brain = src.brain.reorder(src.ids)
    vox = voxel_targets(brain, src.split_indices(p.split), str(src.extra.get("brain", p.stimuli)), state.log)
    n_masked = int((~vox.valid).sum())
    state.note("targets", name, {"n_voxels": brain.n_voxels, "n_masked": n_masked})
    state.log(f"target {name}: {int(vox.valid.sum())} voxels ({n_masked} masked), z-scored on the {p.split} images")
    return VoxelValues(p.stimuli, vox.targets, brain=brain, valid=vox.valid)
