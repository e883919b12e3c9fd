"""A study: one YAML file with ``stimuli``, ``targets``, ``models`` and ``evaluations``.

::

    name: objects92
    description: RSA of image features, descriptions and an image→text map against human IT / EVC
    seeds: [0]                  # seeded models are built once per seed (default: [settings.seed])
    settings:                   # shared stage settings: the keys of llmvem.config.ExperimentConfig but `dataset`
      embed: {encoder: minilm}
    stimuli:                    # name → {kind: <llmvem.runner.STIMULI>, ...its parameters}
      objects92: {kind: objects92}
    targets:                    # name → {kind: <TARGETS>, ...}: text embeddings, controls, labels, voxels, RDMs
      descriptions: {kind: text_embedding, stimuli: objects92}
      brain: {kind: rdms, stimuli: objects92}
    models:                     # name → {kind: <MODELS>, ...}: built in this order, later ones may use earlier ones
      features: {kind: features, stimuli: objects92}
    evaluations:                # name → {kind: <EVALUATIONS>, ...}: run in this order, rows into the result table
      rsa: {kind: rsa, against: brain, representations: [features, descriptions]}

The built-in studies are ``llmvem/studies/*.yaml`` (:func:`list_studies`); :func:`load_study` takes such a name or
a path, and dotted overrides (``stimuli.demo.n_images=96``; a key outside the study's sections is a settings key:
``train.epochs=15`` is ``settings.train.epochs``).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from llmvem.errors import ConfigError

STUDIES_DIR = Path(__file__).resolve().parents[1] / "studies"
SECTIONS = ("stimuli", "targets", "models", "evaluations")
TOP_KEYS = ("name", "description", "seeds", "settings", *SECTIONS)


class PartSpec(BaseModel):
    """One entry of a section: its ``kind`` and that kind's parameters (checked by the kind)."""

    model_config = ConfigDict(extra="allow")
    kind: str

    def params(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


class Study(BaseModel):
    """A parsed study file (module docstring)."""

    model_config = ConfigDict(extra="forbid")
    name: str
    description: str = ""
    seeds: list[int] | None = Field(None, min_length=1)
    settings: dict[str, Any] = Field(default_factory=dict)
    stimuli: dict[str, PartSpec] = Field(min_length=1)
    targets: dict[str, PartSpec] = Field(default_factory=dict)
    models: dict[str, PartSpec] = Field(default_factory=dict)
    evaluations: dict[str, PartSpec] = Field(min_length=1)


def list_studies() -> list[str]:
    """Names of the studies shipped with llmvem (``llmvem demo NAME`` runs each)."""
    return sorted(p.stem for p in STUDIES_DIR.glob("*.yaml"))


def study_path(name_or_path: str | Path) -> Path:
    """The file of a built-in study name, or ``name_or_path`` itself when it is a file."""
    p = Path(name_or_path)
    if p.suffix in (".yaml", ".yml") or p.is_file():
        if not p.is_file():
            raise ConfigError(f"study file not found: {p}")
        return p
    builtin = STUDIES_DIR / f"{name_or_path}.yaml"
    if not builtin.is_file():
        raise ConfigError(f"unknown study {str(name_or_path)!r}; built-in studies: {', '.join(list_studies())} "
                          "(or give the path of a study YAML file)")  # fmt: skip
    return builtin


def read_yaml(path: Path) -> dict[str, Any]:
    """A YAML mapping from ``path`` (a clear error for unreadable or non-mapping files)."""
    try:
        tree = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path} is not valid UTF-8 YAML: {exc}") from None
    if not isinstance(tree, dict):
        raise ConfigError(f"{path} must hold a mapping of keys, got {type(tree).__name__}")
    return tree


def apply_overrides(
    tree: dict[str, Any], overrides: Mapping[str, Any] | None, literal: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """``tree`` with dotted ``overrides`` set (string values read as YAML, as ``--set``) and then ``literal`` ones
    (taken as they are, as named CLI flags); keys that do not start with a study key are settings keys
    (``train.epochs`` → ``settings.train.epochs``)."""
    from llmvem.config import _parse_value, _set_dotted

    for values, parse in ((overrides, True), (literal, False)):
        for key, value in (values or {}).items():
            dotted = key if key.split(".")[0] in TOP_KEYS else f"settings.{key}"
            _set_dotted(tree, dotted, _parse_value(value) if parse else value)
    return tree


def parse_study(tree: Mapping[str, Any], where: str = "study") -> Study:
    """Validate a study tree; the message names each bad key path."""
    from llmvem.config import format_validation_error

    if "dataset" in tree.get("settings", {}):
        raise ConfigError(f"{where}: settings.dataset is not a study setting; the stimuli section says which images "
                          "(and brain data) a study uses")  # fmt: skip
    try:
        return Study.model_validate(dict(tree))
    except ValidationError as exc:
        raise ConfigError(f"{where}: " + format_validation_error(exc, Study)) from None


def load_study(
    name_or_path: str | Path, overrides: Mapping[str, Any] | None = None, literal: Mapping[str, Any] | None = None
) -> Study:
    """A built-in study by name, or a study file, with dotted overrides applied (:func:`apply_overrides`).

    Raises:
        ConfigError: no such study, unreadable YAML, unknown keys (with their paths).
    """
    path = study_path(name_or_path)
    return parse_study(apply_overrides(read_yaml(path), overrides, literal), str(path))
