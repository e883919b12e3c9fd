"""The user's own files as parts of a study (``llmvem evaluate encoding|rsa|decode``): stimuli known by their ids,
feature matrices, brain sources and RDM files; and the evaluations that need brain sources with voxels of their
own (a variance partition between feature spaces, a volumetric searchlight).

Files pair their rows by stimulus id (:meth:`~llmvem.runner.state.Representation.rows`): a feature matrix and each
brain source keep their own ids and order, and every evaluation pairs them before it fits anything.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from pydantic import Field

from llmvem.errors import ConfigError
from llmvem.runner.kinds.evaluations import ScoreParams, _paired_rows, _subject_major, _views
from llmvem.runner.parts import EVALUATIONS, MODELS, STIMULI, TARGETS, Params, part
from llmvem.runner.state import BrainTarget, Representation, RunState, Stimuli

if TYPE_CHECKING:
    import pandas as pd


class FilesParams(Params):
    pass


@part(STIMULI, "files", FilesParams)
def files(p: FilesParams, state: RunState, name: str) -> Stimuli:
    """Stimuli known only by the ids in the files that name them (no images): the feature files and brain sources
    of this source each carry their own ids."""
    from llmvem.data.stimuli import StimulusSet

    return Stimuli(StimulusSet([], [], name=name))


class MatrixParams(Params):
    stimuli: str
    path: str = Field(description="a feature matrix: .npy with .ids.txt beside it, or .npz with values and ids "
                      "(llmvem.data.files.load_matrix); 'name=path' is accepted, the part's name is used")  # fmt: skip


@part(MODELS, "feature_file", MatrixParams)
def feature_file(p: MatrixParams, state: RunState, name: str) -> Representation:
    """A feature matrix (n, d) read from a file, rows paired with brain data by its ids."""
    from llmvem.data.files import load_matrix

    m = load_matrix(p.path)
    state.note("models", name, {"path": str(m.path), "n_stimuli": len(m.ids), "n_dims": int(m.values.shape[1])})
    return Representation(p.stimuli, m.values, ids=list(m.ids))


class BrainFilesParams(Params):
    stimuli: str
    brain: list[Any] = Field(default_factory=list, description="brain sources (llmvem.data.brain_sources): .npz, "
                             "Algonauts / NSD folders, KIND:PATH?key=value or mappings; an NSD subject list gives "
                             "one source per subject")  # fmt: skip
    subject: int | None = Field(None, description="the subject of sources that hold several")
    rois: list[str] = Field(default_factory=list, description="keep only the voxels of these ROIs (empty: all)")
    rdms: list[str] = Field(default_factory=list, description="RDM sets: DATASET:TARGET (objects92:cichy_it) or "
                            "files, optionally name=… (llmvem.data.files.load_rdms)")  # fmt: skip
    roi_rdms: bool = Field(False, description="also one RDM set per ROI present in every brain source (the sources "
                           "are its subjects; settings.evaluate.rsa.metric)")  # fmt: skip
    hold_out: bool = Field(False, description="train / test splits per source: its own, else a seeded "
                           "settings.evaluate.encoding.test_fraction hold-out")  # fmt: skip


@part(TARGETS, "brain_files", BrainFilesParams)
def brain_files(p: BrainFilesParams, state: RunState, name: str) -> BrainTarget:
    """Brain sources (each a subject, with its own stimulus ids) and RDM sets read from files or datasets; the
    splits each source is scored on go to ``info.targets.<name>.subjects``."""
    from llmvem.data.brain_select import load_brain_sources, with_splits
    from llmvem.data.files import load_rdms

    cfg = state.cfg
    rdms = dict(load_rdms(s, cfg.data_dir) for s in p.rdms)
    brains = load_brain_sources(p.brain, subject=p.subject, rois=p.rois) if p.brain else []
    if p.hold_out:
        split = [with_splits(b, cfg.evaluate.encoding.test_fraction, cfg.seed) for b in brains]
        brains = [b for b, _ in split]
        subjects = {b.name: {"n_train": len(b.splits["train"]), "n_test": len(b.splits["test"]),
                             "splits": "own" if own else "random"} for b, own in split}  # fmt: skip
        state.note("targets", name, {"subjects": subjects})
    if p.roi_rdms and brains:
        from llmvem.brain.roi_rdms import roi_rdm_sets

        rdms.update(roi_rdm_sets(brains, cfg.evaluate.rsa.metric))
    return BrainTarget(p.stimuli, rdms=rdms, sources=brains)


# ------------------------------------------------------------------------------------------ variance partition
def _write_partition(frame: pd.DataFrame, state: RunState, name: str, p: ScoreParams) -> None:
    """``<name>.csv`` (one row per brain source × ROI: parts, joint, ceiling …) and ``<name>.png``."""
    from llmvem.brain.partition import PARTITION_CEILING_BOUND
    from llmvem.report import plot_partition
    from llmvem.results import wide_table

    table = wide_table(frame, name, target_name="roi", subjects=True).drop(columns="model")
    table = _subject_major(table[["subject", *(c for c in table if c != "subject")]])
    table = table.astype({c: int for c in table if c == "n_voxels" or c.startswith("n_negative:")})
    if "ceiling" in table:
        table["ceiling_bound"] = PARTITION_CEILING_BOUND
    table.to_csv(state.run.file(f"{name}.csv"), index=False)
    plot_partition(table, state.run.file(f"{name}.png"))


@part(EVALUATIONS, "partition", ScoreParams, write=_write_partition)
def partition(p: ScoreParams, state: RunState, name: str) -> None:
    """Variance partition of held-out R² between the 2–3 representations on each brain's ``train`` → ``test``
    split (:func:`llmvem.brain.partition.variance_partition`): rows per brain × ROI (model ``a + b``), per-voxel
    arrays under ``<name>/<brain>/`` and maps of the unique parts, ``shared`` and ``joint`` (listed in
    ``info.evaluations.<name>``). Its inputs are checked before the run directory is made."""
    from llmvem.brain.partition import check_partition_spaces

    target, where = state.brain_target(p.against), f"evaluations.{name}"
    if not 2 <= len(p.representations) <= 3:
        raise ConfigError(f"{where}.representations: a partition needs 2–3 feature spaces")
    inputs = []
    for view in _views(state, target, where):
        spaces = {rep: x for rep, _, x in _paired_rows(state, p, target, view[0], where)}
        check_partition_spaces(spaces, f"evaluate encoding --partition on brain {view[0].name!r}",
                               n_rows=view[0].n_stimuli)  # fmt: skip
        inputs.append((view, spaces))
    arrays, maps = {}, {}
    for view, spaces in inputs:
        arrays[view[0].name], files = _partition_brain(state, name, view, spaces, " + ".join(p.representations))
        if files:
            maps[view[0].name] = files
    state.note("evaluations", name, {"arrays": arrays, "maps": maps})


def _partition_brain(state: RunState, name: str, view: Any, spaces: dict[str, np.ndarray], model: str) -> Any:
    """The partition of one brain: its rows in the result table (subject = the brain), the per-voxel arrays
    (``<name>/<brain>/<array>.npy``) and maps; returns (array files, map files)."""
    from llmvem.brain.encoding import roi_voxel_masks
    from llmvem.brain.partition import variance_partition
    from llmvem.data.brain_maps import safe_name
    from llmvem.report.map_files import save_maps

    brain, tr, te, _ = view
    enc = state.cfg.evaluate.encoding
    res = variance_partition({k: v[tr] for k, v in spaces.items()}, brain.responses[tr],
                             {k: v[te] for k, v in spaces.items()}, brain.responses[te], alphas=tuple(enc.alphas),
                             dtype=enc.ridge_dtype, backend=enc.ridge_backend)  # fmt: skip
    table = res.table(roi_voxel_masks(brain), brain.noise_ceiling)
    for row in table.to_dict("records"):
        values = {k: v for k, v in row.items() if k not in ("roi", "ceiling_bound")}
        state.results.add(name, model, str(row["roi"]), values, subject=brain.name)
    folder = Path(name) / safe_name(brain.name)
    (state.run.path / folder).mkdir(parents=True, exist_ok=True)
    arrays: dict[str, str] = {}
    for key, array in res.arrays().items():
        stem, k = safe_name(key), 1
        while f"{folder / stem}.npy" in arrays.values():  # names that differ only in '+', '&' or ':'
            stem, k = f"{safe_name(key)}-{k}", k + 1
        np.save(state.run.path / folder / f"{stem}.npy", array.astype(np.float32))
        arrays[key] = f"{folder / stem}.npy"
    shown = {safe_name(k): v for k, v in res.parts.items() if k.startswith("unique:")}
    maps = save_maps(state.run.path, brain, {**shown, "shared": res.shared, "joint": res.joint}, folder,
                     enc.draw_maps, what="evaluate encoding")  # fmt: skip
    row = table.iloc[0]
    parts = ", ".join(f"{k} {row[k]:.3f}" for k in table.columns if k.startswith("unique:"))
    state.log(f"  partition on {brain.name} ({row['roi']}, held-out R²): {parts}, shared {row['shared']:.3f}, "
              f"joint {row['joint']:.3f}")  # fmt: skip
    return arrays, maps


# ------------------------------------------------------------------------------------------------ searchlight
@part(EVALUATIONS, "searchlight", ScoreParams)
def searchlight(p: ScoreParams, state: RunState, name: str) -> None:
    """Per volume brain source and representation, the RSA of every searchlight sphere's RDM with the
    representation's RDM (radius settings.evaluate.rsa.searchlight_radius voxels; method and metric of
    settings.evaluate.rsa), as a map in the subject's volume (``searchlight/<brain>/<model>/``); rows: the number
    of spheres and the map's maximum per subject. A brain on a surface is skipped with a warning."""
    import warnings

    target, where = state.brain_target(p.against), f"evaluations.{name}"
    out: dict[str, Any] = {}
    for brain in target.sources:
        if brain.space is None or brain.space.kind != "volume":
            warnings.warn(f"evaluate rsa: no searchlight on {brain.name!r}: it is not in a volume", RuntimeWarning,
                          stacklevel=2)  # fmt: skip
            continue
        for rep, _, x in _paired_rows(state, p, target, brain, where):
            out.setdefault(brain.name, {})[rep] = _searchlight_map(state, name, brain, rep, x)
    state.note("evaluations", name, {"maps": out})


def _searchlight_map(state: RunState, name: str, brain: Any, rep: str, x: np.ndarray) -> list[str]:
    """One searchlight map (:func:`llmvem.brain.searchlight_rsa`), written and drawn; returns its files."""
    from llmvem.brain import compute_rdm, searchlight_rsa
    from llmvem.data.brain_maps import safe_name, volume_array
    from llmvem.report.map_files import save_maps

    rc = state.cfg.evaluate.rsa
    data = np.moveaxis(volume_array(brain.responses.T, brain), -1, 0)  # (n, X, Y, Z), NaN outside the voxels
    mask = np.isfinite(data).all(axis=0)
    index = np.asarray(brain.voxels["index"], dtype=np.int64)
    maps, centres = searchlight_rsa(np.nan_to_num(data), mask, compute_rdm(x, rc.metric),
                                    radius=rc.searchlight_radius, method=rc.method)  # fmt: skip
    per_voxel = maps[0].reshape(-1, order="F")[index]  # back to the voxel table's order (Fortran index)
    folder = Path(name) / safe_name(brain.name) / safe_name(rep)
    files = save_maps(state.run.path, brain, {"searchlight": per_voxel}, folder, state.cfg.evaluate.encoding.draw_maps,
                      what="evaluate rsa")  # fmt: skip
    state.results.add(name, rep, "searchlight", {"n_spheres": centres.size, "max": float(np.nanmax(maps))},
                      subject=brain.name)  # fmt: skip
    state.log(f"  searchlight {rep} on {brain.name}: {centres.size} spheres (radius {rc.searchlight_radius:g} "
              f"voxels), max {np.nanmax(maps):.3f}")  # fmt: skip
    return files.get("searchlight", [])
