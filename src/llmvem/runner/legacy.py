"""Old experiment configs (``dataset.name`` choosing the study) translated into studies.

``dataset.name: demo``, ``objects92``, ``nsd_objects92`` and ``folder`` become the built-in studies ``demo``,
``objects92``, ``nsd-objects92`` and ``folder-classifier`` / ``folder-voxels`` (by the task, :func:`folder_task`)
with the old keys moved to where a study keeps them (:data:`MOVED`); every other key stays a setting. Its
visual-words variant (``finetune.loss: visual_words``) becomes ``nsd-objects92-words``.
:func:`translate_config` returns the study and the YAML to write instead, which :func:`study_from_config` shows in
a :class:`LegacyConfigWarning`. ``nsd_shared1000`` is a dataset, not a study: it fails with the list of studies.
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import yaml

from llmvem.errors import ConfigError

if TYPE_CHECKING:
    from llmvem.config import ExperimentConfig
    from llmvem.runner.study import Study

#: old dotted key → new dotted key of the study, per old ``dataset.name``
MOVED: dict[str, dict[str, str]] = {
    "demo": {
        "dataset.n_images": "stimuli.demo.n_images",
        "dataset.n_voxels_per_roi": "stimuli.demo.n_voxels_per_roi",
        "dataset.n_repeats": "stimuli.demo.n_repeats",
    },
    "objects92": {
        "evaluate.rsa.targets": "targets.brain.sets",
        "evaluate.rsa.align_images": "stimuli.nsd.n_images",
        "evaluate.rsa.align_model": "stimuli.nsd.describers",
        "evaluate.rsa.align_prompt": "stimuli.nsd.prompts",
    },
    "nsd_objects92": {
        "finetune.seeds": "seeds",
        "finetune.n_images": "stimuli.nsd.n_images",
        "finetune.val_fraction": "stimuli.nsd.heldout",
        "finetune.aligned_task": "models.aligned.task",
        "evaluate.rsa.align_model": "stimuli.nsd.describers",
        "evaluate.rsa.align_prompt": "stimuli.nsd.prompts",
    },
    "folder": {
        "finetune.seeds": "seeds",
        "finetune.val_fraction": "stimuli.images.heldout",
        "dataset.images": "stimuli.images.images",
        "dataset.descriptions": "stimuli.images.descriptions",
        "dataset.labels": "stimuli.images.labels",
        "dataset.missing_descriptions": "stimuli.images.missing_descriptions",
        "embed.select_model": "stimuli.images.describers",
        "embed.select_prompt": "stimuli.images.prompts",
        "evaluate.inputs.subject": "stimuli.images.subject",
    },
}
#: old keys the folder's voxel study moves too (the other tasks do not read the brain data)
FOLDER_VOXEL_MOVED = {"dataset.brain": "stimuli.images.brain", "dataset.heldout": "stimuli.images.split_from"}
#: the folder's tasks whose targets are labels, and those whose targets are voxel responses
LABEL_TASKS, VOXEL_TASKS = ("classifier", "multilabel"), ("voxels", "voxels_pca")
#: old dataset name → the file name of its study, where they differ
STUDY_FILE = {"nsd_objects92": "nsd-objects92"}
#: the study of ``nsd_objects92`` with ``finetune.loss: visual_words`` (a vocabulary head; its moved keys are
#: ``MOVED["nsd_objects92"]``: the model and source names are the same)
WORDS_STUDY = "nsd-objects92-words"
#: settings sections an old config gives whole, its defaults included: the hand-written study read every key of
#: them, so a key the old config left at its default must not take the study file's value
WHOLE_SECTIONS = {"nsd_objects92": ("finetune", "embed", "evaluate.rsa"), "folder": ("finetune", "embed")}
#: old dataset names whose studies still run by hand (pipeline/); not translated yet
NOT_PORTED: tuple[str, ...] = ()


class LegacyConfigWarning(FutureWarning):
    """An old experiment config was translated into a study; the message holds the study YAML to use instead."""


def _pop(tree: dict[str, Any], dotted: str) -> tuple[bool, Any]:
    parts = dotted.split(".")
    node = tree
    for p in parts[:-1]:
        if not isinstance(node.get(p), dict):
            return False, None
        node = node[p]
    if parts[-1] not in node:
        return False, None
    return True, node.pop(parts[-1])


def _prune(tree: dict[str, Any]) -> dict[str, Any]:
    """``tree`` without empty sections."""
    out = {}
    for k, v in tree.items():
        v = _prune(v) if isinstance(v, dict) else v
        if v != {}:
            out[k] = v
    return out


def translate_config(cfg: ExperimentConfig) -> tuple[dict[str, Any], str]:
    """The study tree of an old config and its YAML (a study file to write instead: the built-in study with the
    keys that differ from the defaults in their new places).

    Raises:
        ConfigError: ``dataset.name`` names no study (``nsd_shared1000``), or one still run by hand; a ``folder``
            config whose task lacks its inputs (:func:`folder_task`).
    """
    from llmvem.runner.study import apply_overrides, read_yaml, study_path

    old = cfg.dataset.name
    study = study_file(cfg)
    changed = cfg.model_dump(mode="json", exclude_defaults=True)
    changed.pop("dataset", None)
    full = cfg.model_dump(mode="json")
    for section in WHOLE_SECTIONS.get(old, ()):
        *parents, last = section.split(".")
        src, dst = full, changed
        for key in parents:
            src, dst = src[key], dst.setdefault(key, {})
        dst[last] = copy.deepcopy(src[last])
    moved = {**MOVED[old], **(FOLDER_VOXEL_MOVED if study == "folder-voxels" else {})}
    moves: dict[str, Any] = {}
    dataset = cfg.dataset.model_dump(mode="json")
    for key, new in moved.items():
        if key.startswith("dataset."):
            moves[new] = dataset[key.split(".", 1)[1]]
        else:
            found, value = _pop(changed, key)
            if found:
                moves[new] = value
    if old == "folder":
        _pop(changed, "finetune.task")  # the study's models say their task
    name = cfg.name if cfg.name != "demo" or old == "demo" else old
    settings = _prune(changed)
    settings.pop("name", None)
    override = {**moves, **{f"settings.{k}": v for k, v in settings.items()}, "name": name}
    tree = apply_overrides(copy.deepcopy(read_yaml(study_path(study))), override)
    if old == "demo" and cfg.train.task == "none":
        for model in ("baseline", "aligned"):
            tree["models"][model].pop("task", None)
    if old == "folder":
        _edit_folder(tree, cfg, folder_task(cfg))
    return tree, yaml.safe_dump(tree, sort_keys=False, allow_unicode=True, width=120)


def study_file(cfg: ExperimentConfig) -> str:
    """The built-in study an old config runs as (``folder``: by its task).

    Raises:
        ConfigError: no study for ``dataset.name`` (see :func:`translate_config`).
    """
    from llmvem.runner.study import list_studies

    old = cfg.dataset.name
    if old in NOT_PORTED:
        raise ConfigError(
            f"dataset.name={old!r}: this study has no study file yet; it runs as before, with "
            "`llmvem train CONFIG` and `llmvem evaluate CONFIG`"
        )
    if old not in MOVED:
        raise ConfigError(f"dataset.name={old!r} is a dataset, not a study; studies: {', '.join(list_studies())} "
                          "(llmvem demo NAME runs one; a study YAML says which stimuli it uses)")  # fmt: skip
    if old == "nsd_objects92" and cfg.finetune.loss == "visual_words":
        return WORDS_STUDY
    if old == "folder":
        return "folder-voxels" if folder_task(cfg) in VOXEL_TASKS else "folder-classifier"
    return STUDY_FILE.get(old, old)


def folder_task(cfg: ExperimentConfig) -> str:
    """The task a ``dataset.name: folder`` config trains: ``finetune.task``, or for ``auto`` voxels (brain data),
    classifier (class subfolders or ``dataset.labels``), else none (alignment only).

    Raises:
        ConfigError: no image folder, a task without its labels / brain data / descriptions, a brain split named
            for a task that reads no brain data, nothing to train, an option the study does not offer.
    """
    from pathlib import Path

    from llmvem.data.folder import list_images

    ds, ft = cfg.dataset, cfg.finetune
    if ds.images is None:
        raise ConfigError("dataset.name=folder needs dataset.images: the folder of your images")
    if ft.loss == "visual_words":
        raise ConfigError("finetune.loss=visual_words is not available for dataset.name=folder; use infonce, cosine …")
    if cfg.embed.aggregate != "mean":
        raise ConfigError("dataset.name=folder trains on one text embedding per image: set embed.aggregate: mean")
    folder = Path(ds.images).expanduser()
    task = ft.task
    # labels: a labels file or class subfolders (an explicit label task on a folder not there yet: the run checks)
    has_labels = ds.labels is not None or (task != "auto" and not folder.is_dir())
    if not has_labels and (task in LABEL_TASKS or (task == "auto" and ds.brain is None)):
        has_labels = any(c is not None for c in list_images(folder, "dataset.images")[1])
    if task == "auto":
        task = "voxels" if ds.brain is not None else "classifier" if has_labels else "none"
    if task in LABEL_TASKS and not has_labels:
        raise ConfigError(
            f"finetune.task={task!r} needs class labels: put the images in one subfolder per class "
            f"({ds.images}/<class>/<image>.jpg) or give dataset.labels (CSV of image,label)"
        )
    if task in VOXEL_TASKS and ds.brain is None:
        raise ConfigError(f"finetune.task={task!r} needs brain responses: set dataset.brain (see llmvem.data.files)")
    if ds.heldout not in ("auto", "seeded") and task not in VOXEL_TASKS:
        raise ConfigError(
            f"dataset.heldout={ds.heldout!r} names a split of the brain data, which only the voxel tasks "
            f"read (this run's task: {task!r}); use auto or seeded"
        )
    if task == "none" and ft.lambda_align == 0:
        raise ConfigError("finetune.task=none with finetune.lambda_align=0: nothing to train")
    if ds.descriptions is None and ft.lambda_align > 0:
        raise ConfigError(
            "dataset.descriptions is needed: the aligned model is trained towards the text embedding of each image's "
            "description (a JSONL/CSV of image,text; `llmvem describe` writes one), or set finetune.lambda_align: 0"
        )
    return task


def _edit_folder(tree: dict[str, Any], cfg: ExperimentConfig, task: str) -> None:
    """The folder study of ``tree`` set to ``task``: the models' task, multi-hot labels and their paired metric
    (multilabel), no twin and no task scores (none), no text target without descriptions."""
    models, evaluations, targets = tree["models"], tree["evaluations"], tree["targets"]
    for model in models.values():
        model["task"] = task
    if task == "multilabel":
        targets["classes"]["multilabel"] = True
        tree["stimuli"]["images"]["stratify"] = False
        for metric in ("top1", "top5"):
            evaluations.pop(f"paired_{metric}")
        evaluations["paired_label_accuracy"] = {"kind": "paired", "of": "classification",
                                                "pairs": [["aligned", "twin"]], "metric": "label_accuracy"}  # fmt: skip
    if task == "none":
        tree["stimuli"]["images"]["stratify"] = False
        models.pop("twin")
        models["aligned"].pop("targets")
        targets.pop("classes")
        for name in [n for n, e in evaluations.items() if e["kind"] != "retrieval"]:
            evaluations.pop(name)
    if cfg.dataset.descriptions is None:  # λ = 0: two twins, no text
        tree["stimuli"]["images"].pop("descriptions", None)
        targets.pop("descriptions")
        evaluations.pop("retrieval")
        models["aligned"].pop("text")


def study_from_config(cfg: ExperimentConfig, warn: bool = True) -> Study:
    """The :class:`~llmvem.runner.study.Study` of an old config (:func:`translate_config`), with a
    :class:`LegacyConfigWarning` that says how to run it as a study."""
    from llmvem.runner.study import parse_study

    tree, advice = translate_config(cfg)
    study = study_file(cfg)
    if warn:
        warnings.warn(LegacyConfigWarning(
            f"dataset.name={cfg.dataset.name!r} configs are translated into the study {study!r} "
            f"(llmvem/studies/{study}.yaml); save this as a study file and run it with `llmvem demo "
            f"FILE.yaml` (or run_study(FILE)):\n{advice}"), stacklevel=2)  # fmt: skip
    return parse_study(tree, f"study translated from dataset.name={cfg.dataset.name!r}")


def study_overrides(
    study: str, overrides: Mapping[str, Any], literal: Mapping[str, Any]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Old config keys among dotted overrides moved to where ``study`` keeps them (:data:`MOVED`:
    ``dataset.n_images`` → ``stimuli.demo.n_images`` for the demo); other keys are left as they are.

    Raises:
        ConfigError: a ``dataset.*`` key the study has no place for.
    """
    moved = MOVED.get(study, {})

    def move(values: Mapping[str, Any]) -> dict[str, Any]:
        out = {}
        for key, value in values.items():
            if key in moved:
                out[moved[key]] = value
            elif key.startswith("dataset."):
                raise ConfigError(f"{key} does not apply to the study {study!r}; set its stimuli instead "
                                  f"(e.g. --set stimuli.NAME.KEY=VALUE; see llmvem/studies/{study}.yaml)")  # fmt: skip
            else:
                out[key] = value
        return out

    return move(overrides), move(literal)
