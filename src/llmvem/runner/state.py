"""What the phases of a study hand to each other: stimuli, representations, brain targets, the run's state."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from llmvem.errors import ConfigError

if TYPE_CHECKING:
    import pandas as pd

    from llmvem.config import ExperimentConfig
    from llmvem.data.brain import BrainData, RDMSet
    from llmvem.data.stimuli import StimulusSet
    from llmvem.results import ResultTable
    from llmvem.runs import RunDir
    from llmvem.store import ArtifactStore


@dataclass
class Stimuli:
    """A stimulus source: the images and what comes with them.

    Attributes:
        stimuli: the images (ordered ids).
        texts: description sources, each a mapping id → text (one per describer × prompt; may be empty).
        labels: category names of each image, in stimulus order (empty when the set has none).
        brain: brain responses to the images (with splits and noise ceilings), if any.
        rdms: brain RDM sets over the images, by name.
        splits: held-out partitions, name → stimulus ids (``train`` / ``test``).
        text_table: description rows (``image``, ``text``, ``model``, ``prompt`` …), possibly several per image,
            for sources whose texts come as one table (an image folder's descriptions file); else ``None``.
        extra: source-specific handles (the demo set's folder ...).
    """

    stimuli: StimulusSet
    texts: list[dict[str, str]] = field(default_factory=list)
    labels: list[list[str]] = field(default_factory=list)
    brain: BrainData | None = None
    rdms: dict[str, RDMSet] = field(default_factory=dict)
    splits: dict[str, list[str]] = field(default_factory=dict)
    text_table: pd.DataFrame | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def ids(self) -> list[str]:
        return list(self.stimuli.ids)

    def split_indices(self, split: str) -> np.ndarray:
        """Row indices (in stimulus order) of the images of ``split``."""
        from llmvem.data.stimuli import align_ids

        if split not in self.splits:
            raise ConfigError(f"the stimuli have no split {split!r}; splits: {sorted(self.splits) or 'none'}")
        return np.asarray(align_ids(self.splits[split], self.ids, f"split {split!r}", "stimuli"))


@dataclass
class Representation:
    """Values of one representation of a stimulus source: (n, d) float rows in the source's stimulus order, or in
    the order of ``ids`` when it has its own (a feature file: rows are paired with brain data by id)."""

    stimuli: str
    values: np.ndarray
    texts: list[str] = field(default_factory=list)
    ids: list[str] | None = None

    def rows(self, ids: list[str], source_ids: list[str], what: str, label: str) -> np.ndarray:
        """Row indices of the stimuli ``ids`` (:func:`~llmvem.data.stimuli.align_ids`: an id it lacks is an error
        naming ``what`` and ``label``); without own ids the rows are in ``source_ids``' order."""
        from llmvem.data.stimuli import align_ids

        return np.asarray(align_ids(ids, self.ids if self.ids is not None else source_ids, what, label))


@dataclass
class BrainTarget:
    """Brain data a representation is scored against: voxel responses and/or RDM sets of a stimulus source, or
    several brain sources scored one by one as subjects (``sources``, each with its own stimulus ids and
    ``train`` / ``test`` splits; the aggregate is their mean)."""

    stimuli: str
    brain: BrainData | None = None
    rdms: dict[str, RDMSet] = field(default_factory=dict)
    sources: list[BrainData] = field(default_factory=list)


@dataclass
class RunState:
    """Everything a running study holds; each phase fills its mapping in turn.

    Attributes:
        cfg: the shared stage settings (``settings`` of the study as an :class:`~llmvem.config.ExperimentConfig`).
        seeds: the study's seeds (seeded models are built once per seed).
        models: name → {seed (None when unseeded) → representation}.
        info: counts and fit details (``metrics.json["info"]``).
        cache: handles the parts of one run share, built once (the fine-tunes' split network, activations).
    """

    cfg: ExperimentConfig
    store: ArtifactStore
    run: RunDir
    log: Any
    seeds: list[int]
    results: ResultTable
    stimuli: dict[str, Stimuli] = field(default_factory=dict)
    targets: dict[str, Representation | BrainTarget] = field(default_factory=dict)
    models: dict[str, dict[int | None, Representation]] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)
    cache: dict[str, Any] = field(default_factory=dict)

    def source(self, name: str) -> Stimuli:
        if name not in self.stimuli:
            raise ConfigError(f"no stimulus source {name!r} in this study; it has {sorted(self.stimuli)}")
        return self.stimuli[name]

    def representation(self, name: str) -> dict[int | None, Representation]:
        """A model's representations per seed, or a target representation as ``{None: it}``."""
        if name in self.models:
            return self.models[name]
        target = self.targets.get(name)
        if isinstance(target, Representation):
            return {None: target}
        known = sorted(self.models) + sorted(k for k, v in self.targets.items() if isinstance(v, Representation))
        raise ConfigError(f"no representation {name!r} (a model or a target built before it); known: {known}")

    def brain_target(self, name: str) -> BrainTarget:
        target = self.targets.get(name)
        if not isinstance(target, BrainTarget):
            known = sorted(k for k, v in self.targets.items() if isinstance(v, BrainTarget))
            raise ConfigError(f"no brain target {name!r} (voxels or rdms) in this study; known: {known}")
        return target

    def note(self, section: str, name: str, values: dict[str, Any], seed: int | None = None) -> None:
        """Record ``values`` under ``info[section][name]`` (per seed under ``["seeds"][seed]``)."""
        node = self.info.setdefault(section, {}).setdefault(name, {})
        if seed is None:
            node.update(values)
        else:
            node.setdefault("seeds", {}).setdefault(str(seed), {}).update(values)
