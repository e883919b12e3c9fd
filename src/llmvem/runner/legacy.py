"""Old experiment configs (``dataset.name`` choosing the study) translated into studies.

``dataset.name: demo``, ``objects92`` and ``nsd_objects92`` become the built-in studies ``demo``, ``objects92`` and
``nsd-objects92`` with the old keys moved to where a study keeps them (:data:`MOVED`); every other key stays a
setting. :func:`translate_config` returns the study and the YAML to write instead, which :func:`study_from_config`
shows in a :class:`LegacyConfigWarning`. ``folder`` and the visual-words variant of ``nsd_objects92`` have no study
yet (their hand-written runs go on); ``nsd_shared1000`` is a dataset, not a study: it fails with the list of
studies.
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
}
#: old dataset name → the file name of its study, where they differ
STUDY_FILE = {"nsd_objects92": "nsd-objects92"}
#: settings sections an old config gives whole, its defaults included: the hand-written study read every key of
#: them, so a key the old config left at its default must not take the study file's value
WHOLE_SECTIONS = {"nsd_objects92": ("finetune", "embed", "evaluate.rsa")}
#: old dataset names whose studies still run by hand (pipeline/); not translated yet
NOT_PORTED = ("folder",)


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
        ConfigError: ``dataset.name`` names no study (``nsd_shared1000``), or one still run by hand.
    """
    from llmvem.runner.study import apply_overrides, list_studies, read_yaml, study_path

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
        raise ConfigError(
            "finetune.loss=visual_words: the visual-words variant of nsd_objects92 has no study "
            "file yet; it runs as before, with `llmvem train CONFIG` and `llmvem evaluate CONFIG`"
        )
    changed = cfg.model_dump(mode="json", exclude_defaults=True)
    changed.pop("dataset", None)
    full = cfg.model_dump(mode="json")
    for section in WHOLE_SECTIONS.get(old, ()):
        *parents, last = section.split(".")
        src, dst = full, changed
        for key in parents:
            src, dst = src[key], dst.setdefault(key, {})
        dst[last] = copy.deepcopy(src[last])
    moves: dict[str, Any] = {}
    dataset = cfg.dataset.model_dump(mode="json")
    for key, new in MOVED[old].items():
        if key.startswith("dataset."):
            moves[new] = dataset[key.split(".", 1)[1]]
        else:
            found, value = _pop(changed, key)
            if found:
                moves[new] = value
    name = cfg.name if cfg.name != "demo" or old == "demo" else old
    settings = _prune(changed)
    settings.pop("name", None)
    override = {**moves, **{f"settings.{k}": v for k, v in settings.items()}, "name": name}
    tree = apply_overrides(copy.deepcopy(read_yaml(study_path(STUDY_FILE.get(old, old)))), override)
    if old == "demo" and cfg.train.task == "none":
        for model in ("baseline", "aligned"):
            tree["models"][model].pop("task", None)
    return tree, yaml.safe_dump(tree, sort_keys=False, allow_unicode=True, width=120)


def study_from_config(cfg: ExperimentConfig, warn: bool = True) -> Study:
    """The :class:`~llmvem.runner.study.Study` of an old config (:func:`translate_config`), with a
    :class:`LegacyConfigWarning` that says how to run it as a study."""
    from llmvem.runner.study import parse_study

    tree, advice = translate_config(cfg)
    study = STUDY_FILE.get(cfg.dataset.name, cfg.dataset.name)
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
