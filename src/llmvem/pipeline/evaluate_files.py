"""``llmvem evaluate encoding | rsa | decode``: score the user's own feature files against brain data.

Inputs come from ``cfg.evaluate.inputs`` (file formats in :mod:`llmvem.data.files`); every run writes a run
directory with tables (CSV), per-voxel arrays, plots, ``metrics.json`` and ``report.html``.

- encoding: per feature matrix × brain source, a per-voxel-α ridge (``evaluate.encoding``) fitted on the ``train``
  split and scored on ``test`` (or a seeded ``test_fraction`` hold-out when the data has no such splits); ROI
  summaries with noise ceilings, optional permutation p-values with FDR; plots: ROI bars with ceilings, r
  histograms; per-voxel r, score and α back in each brain's space (``maps/<brain>/<model>/``: NIfTI in the
  subject's volume, ``{lh,rh}.*.mgh`` on fsaverage; :mod:`llmvem.data.brain_maps`). Several brain sources (an NSD
  subject list expands to one per subject) give a row per subject (``encoding_subjects.csv``) and their mean.
  With ``evaluate.encoding.partition`` (``--partition``), a variance partition of held-out R² between the 2–3 feature
  matrices on the same split (:func:`llmvem.brain.partition.variance_partition`): ``partition.csv`` (brain × ROI),
  ``partition/<brain>/`` (per-voxel arrays, maps of the unique parts), ``partition.png``.
- rsa: per feature matrix × target RDM set (dataset RDMs, RDM files, or ROI RDMs of several brain sources used as
  subjects): mean ± sem over subjects, leave-one-subject-out ceilings, a subject bootstrap interval; plots: bars
  with ceiling bands, RDM images.
- ``--layer-sweep`` (encoding and rsa): the feature sets are the layers of one model; the best layer per ROI / RDM
  target is chosen on a seeded validation split of the training images, never the test images
  (:mod:`llmvem.pipeline.layer_sweep`): ``layer_sweep.csv``, ``layer_sweep_subjects.csv``, ``layer_sweep.png``.
- decode: brain → embedding ridge per brain source; identification accuracy among the test stimuli and, with a
  caption corpus, nearest-caption retrieval.
"""

from __future__ import annotations

import json
import time
import warnings
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from llmvem.config import ExperimentConfig
from llmvem.data.brain import BrainData, RDMSet
from llmvem.data.brain_sources import parse_brain_sources
from llmvem.data.files import load_captions, load_matrix, load_rdms, load_references
from llmvem.data.stimuli import align_ids
from llmvem.errors import ConfigError, DataError, cut, short_repr
from llmvem.pipeline.common import Log, console_log, embed_kwargs, make_store, print_table, ridge_from_config
from llmvem.runs import RunDir, records_outcome, seed_everything
from llmvem.store import atomic_write_text


def _need(values: list[Any], flag: str, what: str) -> None:
    if not values:
        raise ConfigError(f"evaluate: no {what} given; pass {flag} (config key evaluate.inputs.{flag.lstrip('-')})")


def _brains(cfg: ExperimentConfig) -> list[BrainData]:
    """Every brain source of ``evaluate.inputs.brain`` loaded (an NSD subject list gives one per subject,
    :mod:`llmvem.data.brain_sources`), ``--roi`` applied; names made unique (``nsd-subj02-func1pt8mm``)."""
    inp = cfg.evaluate.inputs
    out: list[BrainData] = []
    absent: dict[str, list[tuple[str, str]]] = {}
    for k, source in enumerate(parse_brain_sources(inp.brain, subject=inp.subject)):
        brain, src = source.load(), source.text
        if inp.rois:
            brain, missing = _select_rois(brain, inp.rois, str(src))
            for roi, why in missing.items():
                absent.setdefault(roi, []).append((str(src), why))
        names = [b.name for b in out]
        if brain.name in names:
            brain = replace(brain, name=f"{brain.name}-{k + 1}")
        out.append(brain)
    _check_absent_rois(absent, len(out))
    return out


def _select_rois(brain: BrainData, rois: list[str], source: str) -> tuple[BrainData, dict[str, str]]:
    """The voxels of ``brain`` in any of ``rois`` (names or ``class:name``, :meth:`BrainData.roi_mask`; a voxel in
    several is kept once), and the names ``brain`` lacks → the error that lists the ROIs it has.

    Raises:
        DataError: ``brain`` has none of ``rois``.
    """
    masks, missing = [], {}
    for roi in rois:
        try:
            masks.append(brain.roi_mask(roi))
        except DataError as exc:
            missing[roi] = str(exc)
    if not masks:
        raise DataError(
            f"brain {source}: none of the ROIs {short_repr(rois)}. {cut(next(iter(missing.values())), 400)}"
        )
    return _select_voxels(brain, np.logical_or.reduce(masks)), missing


def _check_absent_rois(absent: dict[str, list[tuple[str, str]]], n_sources: int) -> None:
    """A ROI no brain source has is an error (a typo, or another dataset's ROI); one some lack is a counted warning."""
    for roi, where in absent.items():
        if len(where) == n_sources:
            raise DataError(f"--roi {roi!r}: no brain source has it. {where[0][1]}")
    if absent:
        parts = [f"ROI {roi!r} is absent from {len(w)} of {n_sources} brain sources ({', '.join(s for s, _ in w)})"
                 for roi, w in absent.items()]  # fmt: skip
        warnings.warn(f"evaluate --roi: {'; '.join(parts)}; each source is scored on the ROIs it has", stacklevel=3)


def _select_voxels(brain: BrainData, keep: np.ndarray) -> BrainData:
    return replace(
        brain,
        responses=brain.responses[:, keep],
        voxels=brain.voxels.loc[keep].reset_index(drop=True),
        ncsnr=None if brain.ncsnr is None else brain.ncsnr[keep],
        noise_ceiling=None if brain.noise_ceiling is None else brain.noise_ceiling[keep],
    )


def with_splits(brain: BrainData, test_fraction: float, seed: int) -> tuple[BrainData, bool]:
    """``brain`` with ``train``/``test`` splits: its own when it has both, else a seeded random hold-out.

    Returns:
        ``(brain, own)``; ``own`` says whether the data's own splits were used.
    """
    if "train" in brain.splits and "test" in brain.splits:  # disjoint: checked by BrainData
        sizes = {s: len(brain.splits[s]) for s in ("train", "test")}
        if min(sizes.values()) < 3:
            raise DataError(
                f"brain {brain.name!r}: its own splits hold {sizes['train']} train and {sizes['test']} test "
                "stimuli; each needs ≥ 3 to fit and score a model (fix the splits, or remove them to let llmvem draw "
                "a seeded --test-fraction hold-out)"
            )
        return brain, True
    ids = list(brain.stimulus_ids)
    n_test = round(test_fraction * len(ids))
    if n_test < 3 or len(ids) - n_test < 3:
        raise DataError(
            f"brain {brain.name!r}: {len(ids)} stimuli are too few for a {test_fraction:g} hold-out (need ≥ 3 "
            "on each side)"
        )
    perm = np.random.default_rng(seed).permutation(len(ids))
    test = sorted(ids[k] for k in perm[:n_test])
    train = sorted(ids[k] for k in perm[n_test:])
    return replace(brain, splits={**brain.splits, "train": train, "test": test}), False


# --------------------------------------------------------------------------- encoding
@records_outcome
def run_evaluate_encoding(cfg: ExperimentConfig, run_dir: Path | None = None, log: Log | None = None) -> RunDir:
    """Voxelwise encoding of every feature matrix on every brain source (see the module docstring)."""
    from llmvem.brain import permutation_pvalues
    from llmvem.brain.encoding import encoding_rows
    from llmvem.brain.metrics import pearson_r

    log = log or console_log(cfg.progress)
    t_start = time.perf_counter()
    seed_everything(cfg.seed)
    inp, enc = cfg.evaluate.inputs, cfg.evaluate.encoding
    _need(inp.features, "--features", "feature matrices")
    _need(inp.brain, "--brain", "brain data")
    mats = [load_matrix(s) for s in inp.features]
    brains = [with_splits(b, enc.test_fraction, cfg.seed) for b in _brains(cfg)]
    if enc.layer_sweep:
        from llmvem.pipeline.layer_sweep import check_encoding_layer_sweep, run_encoding_layer_sweep

        check_encoding_layer_sweep(cfg, mats, [b for b, _ in brains])
    for brain, _ in brains:
        for m in mats:
            align_ids(brain.stimulus_ids, m.ids, f"brain {brain.name!r}", f"features {m.name!r} ({m.path})")
    if enc.partition:
        _check_partition_inputs(mats, [b for b, _ in brains])
    run = RunDir(cfg, run_dir)
    log(f"[bold]evaluate encoding[/bold]: {len(mats)} feature set(s) × {len(brains)} brain source(s) → {run.path}")

    rows: list[dict[str, Any]] = []
    r_by: dict[str, np.ndarray] = {}
    maps: dict[str, dict[str, list[str]]] = {}
    splits_info: dict[str, Any] = {}
    for brain, own in brains:
        tr, te = brain.split_indices("train"), brain.split_indices("test")
        splits_info[brain.name] = {"n_train": len(tr), "n_test": len(te), "splits": "own" if own else "random"}
        y_tr, y_te = brain.responses[tr], brain.responses[te]
        for m in mats:
            x = m.values
            x_tr = x[align_ids([brain.stimulus_ids[i] for i in tr], m.ids, f"{brain.name} train", m.name)]
            x_te = x[align_ids([brain.stimulus_ids[i] for i in te], m.ids, f"{brain.name} test", m.name)]
            model = ridge_from_config(cfg).fit(x_tr, y_tr)
            pred = model.predict(x_te)
            p_values = None
            if enc.permutations:
                r, p_values = permutation_pvalues(y_te, pred, enc.permutations, seed=cfg.seed)
            else:
                r = pearson_r(y_te, pred)
            r = np.asarray(r, dtype=np.float64)
            r[~model.valid_targets_] = np.nan
            _warn_test_only_nonfinite(y_te, model.valid_targets_, r, f"{m.name} on {brain.name}")
            r_by[f"{m.name} | {brain.name}"] = r
            maps[f"{m.name} | {brain.name}"] = _result_maps(run, brain, m.name, r, model, p_values,
                                                            draw=enc.draw_maps)  # fmt: skip
            for row in encoding_rows(m.name, r, brain, p_values):
                rows.append({"subject": brain.name, **row})
            log(f"  {m.name} on {brain.name}: {len(tr)} train / {len(te)} test, median r {np.nanmedian(r):.3f}")
    per_subject = pd.DataFrame(rows)
    per_subject.to_csv(run.file("encoding_subjects.csv"), index=False)
    voxel_r: dict[str, Any] = {k.replace(" | ", "__"): v for k, v in r_by.items()}
    np.savez_compressed(run.file("voxel_r.npz"), **voxel_r)
    table = _encoding_table(per_subject, len(brains))
    table.to_csv(run.file("encoding.csv"), index=False)
    partition = _run_partition(cfg, run, mats, [b for b, _ in brains], log) if enc.partition else {}
    sweep = run_encoding_layer_sweep(cfg, run, mats, [b for b, _ in brains], r_by, log) if enc.layer_sweep else {}

    from llmvem.report import build_report, format_encoding_table, plot_encoding, plot_r_histograms

    plot_encoding(table, run.file("encoding.png"))
    by_model: dict[str, list[np.ndarray]] = {}
    for key, r in r_by.items():
        by_model.setdefault(key.split(" | ")[0], []).append(r)
    plot_r_histograms({k: np.concatenate(v) for k, v in by_model.items()}, run.file("r_histograms.png"))
    metrics = {
        "encoding": _encoding_json(table),
        "subjects": splits_info,
        "maps": {k: v for k, v in maps.items() if v},
        **partition,
        **sweep,
        "total_s": round(time.perf_counter() - t_start, 1),
    }  # fmt: skip
    _log_maps(maps, brains, log)
    run.log_metrics(**metrics)
    build_report(run.path)
    print_table(format_encoding_table(table))
    log(f"[green]done[/green] in {metrics['total_s']} s: {run.file('encoding.csv')}, {run.file('report.html')}")
    return run


def _encoding_table(per_subject: pd.DataFrame, n_brains: int) -> pd.DataFrame:
    """``encoding.csv``: the per-subject rows averaged per model × ROI, with ``n_subjects``, the ceiling bound of
    ``r_over_ceiling`` and ``sem_r`` over subjects (NaN for one)."""
    from llmvem.brain.encoding import ENCODING_CEILING_BOUND

    value_cols = [c for c in ("n_voxels", "mean_r", "median_r", "noise_ceiling_r", "mean_score", "r_over_ceiling",
                              "frac_significant") if c in per_subject.columns]  # fmt: skip
    grouped = per_subject.groupby(["model", "roi"], sort=False)
    table = grouped[value_cols].mean().reset_index()
    table.insert(3 + value_cols.index("r_over_ceiling"), "ceiling_bound", ENCODING_CEILING_BOUND)  # what it divides by
    table["n_voxels"] = table["n_voxels"].round().astype(int)
    table.insert(2, "n_subjects", grouped.size().to_numpy())
    table["sem_r"] = grouped["mean_r"].sem().to_numpy() if n_brains > 1 else np.nan
    return table


def _encoding_json(table: pd.DataFrame) -> dict[str, dict[str, dict[str, Any]]]:
    """metrics.json's ``encoding``: model → ROI → mean_r, median_r, noise_ceiling_r, mean_score."""
    keys = ("mean_r", "median_r", "noise_ceiling_r", "mean_score")
    return {str(m): {str(r["roi"]): {k: r[k] for k in keys} for _, r in g.iterrows()}
            for m, g in table.groupby("model", sort=False)}  # fmt: skip


def _result_maps(
    run: RunDir,
    brain: BrainData,
    model_name: str,
    r: np.ndarray,
    model: Any,
    p_values: np.ndarray | None,
    draw: bool = True,
) -> dict[str, list[str]]:
    """Per-voxel r, score (with a noise ceiling), ridge α and p (with permutations) of one model on one brain, as
    images in the brain's space under ``maps/<brain>/<model>/`` (:mod:`llmvem.data.brain_maps`): name → files
    relative to the run directory; ``{}`` when the brain has no space."""
    if brain.space is None:
        return {}
    from llmvem.brain.metrics import algonauts_score
    from llmvem.data.brain_maps import safe_name

    values: dict[str, np.ndarray] = {"r": r}
    if brain.noise_ceiling is not None:
        values["score"] = algonauts_score(r, brain.noise_ceiling)
    if getattr(model, "best_alphas_", None) is not None:
        values["alpha"] = np.asarray(model.best_alphas_)
    if p_values is not None:
        values["p"] = np.asarray(p_values)
    return _save_maps(run, brain, values, Path("maps") / safe_name(brain.name) / safe_name(model_name), draw)


def _save_maps(
    run: RunDir, brain: BrainData, values: dict[str, np.ndarray], folder: Path, draw: bool = True
) -> dict[str, list[str]]:
    """Per-voxel ``values`` (name → (v,)) as images in ``brain``'s space under ``run/folder``: name → files relative
    to the run directory; ``{}`` (with a warning when it has a space) when they cannot be placed."""
    if brain.space is None:
        return {}
    from llmvem.data.brain_maps import save_result_maps

    try:
        files = save_result_maps(values, brain, run.path / folder)
    except DataError as exc:  # e.g. Algonauts without its all-vertices masks: scores stand, maps cannot be placed
        warnings.warn(f"evaluate encoding: no brain maps for {brain.name!r}: {exc}", RuntimeWarning, stacklevel=3)
        return {}
    if draw:
        _draw_maps(run, brain, values, folder)
    return {k: [str(f.relative_to(run.path)) for f in v] for k, v in files.items()}


def _draw_maps(run: RunDir, brain: BrainData, values: dict[str, np.ndarray], folder: Path) -> None:
    """Pictures of the maps people read (r, unique / shared / joint parts) as ``folder/<name>.png`` beside the map
    files (the report finds them there; metrics.json lists only the map files); a map that cannot be drawn (no
    finite value) is skipped with a warning."""
    from llmvem.report.brain_plots import DRAWN_MAPS, draw_brain_map

    for name, v in values.items():
        if not DRAWN_MAPS.match(name):
            continue
        png = run.path / folder / f"{name}.png"
        try:
            draw_brain_map(v, brain, png, title=f"{name}: {folder.as_posix()}")
        except DataError as exc:
            warnings.warn(f"evaluate encoding: map {name} of {brain.name!r} not drawn: {exc}", RuntimeWarning,
                          stacklevel=3)  # fmt: skip
            continue


def _log_maps(maps: dict[str, dict[str, list[str]]], brains: list[tuple[BrainData, bool]], log: Log) -> None:
    """Say where the brain maps went, and which brain sources had no space to write them in."""
    n_files = sum(len(f) for m in maps.values() for f in m.values())
    if n_files:
        log(f"  {n_files} brain map file(s) (r, score, α in each brain's space) under maps/")
    no_space = [b.name for b, _ in brains if b.space is None]
    if no_space:
        log(f"  no brain maps for {', '.join(no_space)}: no volume/fsaverage space (e.g. a .npz saved without one)")


# --------------------------------------------------------------------------- variance partitioning
def _space_rows(mats: list[Any], brain: BrainData, rows: np.ndarray, what: str) -> dict[str, np.ndarray]:
    """Every feature matrix's rows for ``brain``'s stimuli ``rows`` (paired by id): name → (len(rows), p_i)."""
    ids = [brain.stimulus_ids[i] for i in rows]
    return {m.name: m.values[align_ids(ids, m.ids, f"{brain.name} {what}", f"features {m.name!r}")] for m in mats}


def _check_partition_inputs(mats: list[Any], brains: list[BrainData]) -> None:
    """Before a run directory exists: the spaces of ``--partition`` have distinct names and, on each brain's
    stimuli, ≥ 2 finite columns (:func:`~llmvem.brain.partition.check_partition_spaces`; the count 2–3 is checked by
    the config). Raises DataError naming the space."""
    from llmvem.brain.partition import check_partition_spaces

    names = [m.name for m in mats]
    if len(set(names)) != len(names):
        raise DataError(
            f"evaluate encoding --partition: feature names {names} repeat; name each space: "
            "-f vision=v.npy -f language=d.npy"
        )
    for brain in brains:
        spaces = _space_rows(mats, brain, np.arange(brain.n_stimuli), "stimuli")
        check_partition_spaces(spaces, f"evaluate encoding --partition on brain {brain.name!r}", n_rows=brain.n_stimuli)


def _partition_brain(cfg: ExperimentConfig, run: RunDir, mats: list[Any], brain: BrainData) -> dict[str, Any]:
    """Variance partition of one brain (train → test split): its ROI table, the per-voxel arrays
    (``partition/<brain>/<array>.npy``) and brain maps of the unique parts, ``shared`` and ``joint``."""
    from llmvem.brain.encoding import roi_voxel_masks
    from llmvem.brain.partition import variance_partition
    from llmvem.data.brain_maps import safe_name

    enc = cfg.evaluate.encoding
    tr, te = brain.split_indices("train"), brain.split_indices("test")
    res = variance_partition(_space_rows(mats, brain, tr, "train"), brain.responses[tr],
                             _space_rows(mats, brain, te, "test"), brain.responses[te], alphas=tuple(enc.alphas),
                             dtype=enc.ridge_dtype, backend=enc.ridge_backend)  # fmt: skip
    table = res.table(roi_voxel_masks(brain), brain.noise_ceiling)
    table.insert(0, "subject", brain.name)
    folder = Path("partition") / safe_name(brain.name)
    (run.path / folder).mkdir(parents=True, exist_ok=True)
    arrays: dict[str, str] = {}
    for key, values in res.arrays().items():
        stem, k = safe_name(key), 1
        while f"{folder / stem}.npy" in arrays.values():  # names that differ only in '+', '&' or ':'
            stem, k = f"{safe_name(key)}-{k}", k + 1
        np.save(run.path / folder / f"{stem}.npy", values.astype(np.float32))
        arrays[key] = f"{folder / stem}.npy"
    shown = {safe_name(k): v for k, v in res.parts.items() if k.startswith("unique:")}
    maps = _save_maps(run, brain, {**shown, "shared": res.shared, "joint": res.joint}, folder,
                      cfg.evaluate.encoding.draw_maps)  # fmt: skip
    return {"table": table, "arrays": arrays, "maps": maps}


def _run_partition(
    cfg: ExperimentConfig, run: RunDir, mats: list[Any], brains: list[BrainData], log: Log
) -> dict[str, Any]:
    """``--partition``: :func:`_partition_brain` on every brain, ``partition.csv`` (one row per brain × ROI) and
    ``partition.png``; returns the metrics.json entries (``partition``: brain → ROI → parts, joint, ceiling;
    ``partition_arrays``, ``partition_maps``: the files)."""
    from llmvem.report import plot_partition

    tables, arrays, maps = [], {}, {}
    for brain in brains:
        out = _partition_brain(cfg, run, mats, brain)
        tables.append(out["table"])
        arrays[brain.name] = out["arrays"]
        if out["maps"]:
            maps[brain.name] = out["maps"]
        row = out["table"].iloc[0]
        parts = ", ".join(f"unique:{m.name} {row[f'unique:{m.name}']:.3f}" for m in mats)
        log(f"  partition on {brain.name} ({row['roi']}, held-out R²): {parts}, shared {row['shared']:.3f}, "
            f"joint {row['joint']:.3f}")  # fmt: skip
    table = pd.concat(tables, ignore_index=True)
    table.to_csv(run.file("partition.csv"), index=False)
    plot_partition(table, run.file("partition.png"))
    keys = [f"unique:{m.name}" for m in mats] + ["shared", "joint"]
    keys += [c for c in ("ceiling", "joint_over_ceiling") if c in table.columns]
    summary = {str(b): {str(r["roi"]): {k: r[k] for k in keys} for _, r in g.iterrows()}
               for b, g in table.groupby("subject", sort=False)}  # fmt: skip
    return {"partition": summary, "partition_arrays": arrays, "partition_maps": maps}


# --------------------------------------------------------------------------- RSA
def _roi_rdm_sets(brains: list[BrainData], metric: str) -> dict[str, RDMSet]:
    """One RDM set per ROI present in every brain source (the sources are the subjects), over their common stimuli."""
    from llmvem.brain import compute_rdm

    others = [set(b.stimulus_ids) for b in brains[1:]]
    common = [i for i in brains[0].stimulus_ids if all(i in o for o in others)]
    if len(common) < 4:
        raise DataError(f"RSA on brain ROIs: the brain sources share {len(common)} stimuli; need ≥ 4")
    rois = [r for r in brains[0].rois if all(r in b.rois for b in brains[1:])]
    if not rois:
        raise DataError("RSA on brain ROIs: no ROI is present in every brain source")
    out = {}
    dropped: list[str] = []
    for roi in rois:
        rdms = []
        for b in brains:
            in_roi = b.roi_mask(roi)
            mask = in_roi & b.check_finite()
            if (n_out := int((in_roi & ~mask).sum())) > 0:
                dropped.append(f"{b.name}/{roi}: {n_out} of {int(in_roi.sum())}")
            if mask.sum() < 2:
                raise DataError(f"brain {b.name!r} ROI {roi!r}: fewer than 2 finite, non-constant voxels")
            rows = np.asarray(align_ids(common, b.stimulus_ids, "common stimuli", f"brain {b.name!r}"))
            rdms.append(compute_rdm(b.responses[np.ix_(rows, np.flatnonzero(mask))], metric))
        out[roi] = RDMSet(np.stack(rdms), common, [b.name for b in brains], name=roi, measure=metric)
    if dropped:
        warnings.warn(
            f"RSA on brain ROIs: voxels with NaN/inf or constant responses left out of the RDMs ({'; '.join(dropped)})",
            RuntimeWarning,
            stacklevel=2,
        )
    return out


def _warn_test_only_nonfinite(y_te: np.ndarray, fitted: np.ndarray, r: np.ndarray, what: str) -> None:
    """Voxels fitted on finite training data but holding NaN/inf in the test rows: their r is NaN (set in ``r``),
    counted in a warning (the fit's own warning counts only the training rows)."""
    bad = fitted & ~np.isfinite(y_te).all(axis=0)
    if bad.any():
        r[bad] = np.nan
        warnings.warn(
            f"{what}: {int(bad.sum())} of {len(bad)} voxels hold NaN/inf in the test stimuli only and are left out of "
            "the scores",
            RuntimeWarning,
            stacklevel=2,
        )


@records_outcome
def run_evaluate_rsa(cfg: ExperimentConfig, run_dir: Path | None = None, log: Log | None = None) -> RunDir:
    """RSA of every feature matrix against every target RDM set (see the module docstring)."""
    from llmvem.brain import bootstrap_rsa, compute_rdm, rsa_scores
    from llmvem.brain.rsa import RSA_CEILING_BOUND

    log = log or console_log(cfg.progress)
    t_start = time.perf_counter()
    inp, rsa_cfg = cfg.evaluate.inputs, cfg.evaluate.rsa
    _need(inp.features, "--features", "feature matrices")
    if not inp.rdms and not inp.brain:
        raise ConfigError("evaluate rsa: no targets; pass --rdms (DATASET:TARGET or a file) and/or --brain sources")
    mats = [load_matrix(s) for s in inp.features]
    targets: dict[str, RDMSet] = dict(load_rdms(s, cfg.data_dir) for s in inp.rdms)
    brains = _brains(cfg) if inp.brain else []
    if brains:
        targets.update(_roi_rdm_sets(brains, rsa_cfg.metric))
    sweep_plan = {}
    if rsa_cfg.layer_sweep:
        from llmvem.pipeline.layer_sweep import plan_rsa_layer_sweep, run_rsa_layer_sweep

        sweep_plan = plan_rsa_layer_sweep(cfg, mats, targets, brains)
    orders = {(t, m.name): align_ids(rset.stimulus_ids, m.ids, f"target {t!r}", f"features {m.name!r}")
              for t, rset in targets.items() for m in mats}  # fmt: skip
    run = RunDir(cfg, run_dir)
    log(f"[bold]evaluate rsa[/bold]: {len(mats)} feature set(s) × {len(targets)} target(s) → {run.path}")
    rows: list[dict[str, Any]] = []
    subject_rows: list[dict[str, Any]] = []
    shown: dict[str, np.ndarray] = {}
    for tname, rset in targets.items():
        if tname not in shown and len(shown) < 3:
            shown[f"target: {tname}"] = rset.mean()
        for m in mats:
            model_rdm = compute_rdm(m.values[orders[(tname, m.name)]], rsa_cfg.metric)
            if len(shown) < 6 and m.name not in shown:
                shown[m.name] = model_rdm
            res = rsa_scores(model_rdm, rset.rdms, rsa_cfg.method)
            lo = hi = float("nan")
            if rset.n_subjects >= 3:
                ci = bootstrap_rsa(model_rdm, rset.rdms, rsa_cfg.method, over="subjects", seed=cfg.seed)
                lo, hi = ci.low, ci.high
            subject_rows += [{"model": m.name, "target": tname, "subject": subj, "score": float(sc)}
                             for subj, sc in zip(rset.subjects, res.scores, strict=True)]  # fmt: skip
            rows.append({"model": m.name, "target": tname, "n_subjects": rset.n_subjects, "mean": res.mean,
                         "sem": res.sem, "noise_lower": res.noise_lower, "noise_upper": res.noise_upper,
                         "method": rsa_cfg.method, "ci95_low": lo, "ci95_high": hi,
                         "n_stimuli": rset.n_stimuli, "mean_over_ceiling": res.mean_over_ceiling,
                         "ceiling_bound": RSA_CEILING_BOUND})  # fmt: skip
    table = pd.DataFrame(rows)
    table.to_csv(run.file("rsa.csv"), index=False)
    pd.DataFrame(subject_rows).to_csv(run.file("rsa_subjects.csv"), index=False)
    searchlight = _run_searchlight(cfg, run, mats, log) if rsa_cfg.searchlight and inp.brain else {}
    sweep = run_rsa_layer_sweep(cfg, run, mats, targets, sweep_plan, log) if rsa_cfg.layer_sweep else {}

    from llmvem.report import build_report, format_rsa_table, plot_rdms, plot_rsa

    plot_rsa(table, run.file("rsa.png"))
    if len({v.shape for v in shown.values()}) == 1:
        plot_rdms(shown, run.file("rdms.png"))
    rsa_json = {m: {str(r["target"]): {"mean": r["mean"], "se": r["sem"]} for _, r in g.iterrows()}
                for m, g in table.groupby("model", sort=False)}  # fmt: skip
    run.log_metrics(rsa=rsa_json, **({"searchlight_maps": searchlight} if searchlight else {}), **sweep,
                    total_s=round(time.perf_counter() - t_start, 1))  # fmt: skip
    build_report(run.path)
    print_table(format_rsa_table(table))
    log(f"[green]done[/green]: {run.file('rsa.csv')}, {run.file('report.html')}")
    return run


def _run_searchlight(cfg: ExperimentConfig, run: RunDir, mats: list[Any], log: Log) -> dict[str, Any]:
    """``evaluate.rsa.searchlight``: per volume brain source and feature set, the RSA of every searchlight sphere's
    RDM with the feature RDM, as a map in the subject's volume (``searchlight/<brain>/<model>/``, NIfTI and a
    picture). A brain on a surface has no volumetric spheres: skipped with a warning. Returns the map files."""
    from llmvem.brain import compute_rdm, searchlight_rsa
    from llmvem.data.brain_maps import safe_name, volume_array

    rsa_cfg = cfg.evaluate.rsa
    out: dict[str, Any] = {}
    for brain in _brains(cfg):
        if brain.space is None or brain.space.kind != "volume":
            warnings.warn(f"evaluate rsa: no searchlight on {brain.name!r}: it is not in a volume", RuntimeWarning,
                          stacklevel=2)  # fmt: skip
            continue
        data = np.moveaxis(volume_array(brain.responses.T, brain), -1, 0)  # (n, X, Y, Z), NaN outside the voxels
        mask = np.isfinite(data).all(axis=0)
        index = np.asarray(brain.voxels["index"], dtype=np.int64)
        for m in mats:
            order = align_ids(brain.stimulus_ids, m.ids, f"brain {brain.name!r}", f"features {m.name!r}")
            maps, centres = searchlight_rsa(np.nan_to_num(data), mask, compute_rdm(m.values[order], rsa_cfg.metric),
                                            radius=rsa_cfg.searchlight_radius, method=rsa_cfg.method)  # fmt: skip
            per_voxel = maps[0].reshape(-1, order="F")[index]  # back to the voxel table's order (Fortran index)
            folder = Path("searchlight") / safe_name(brain.name) / safe_name(m.name)
            files = _save_maps(run, brain, {"searchlight": per_voxel}, folder, cfg.evaluate.encoding.draw_maps)
            out.setdefault(brain.name, {})[m.name] = files.get("searchlight", [])
            log(f"  searchlight {m.name} on {brain.name}: {centres.size} spheres (radius "
                f"{rsa_cfg.searchlight_radius:g} voxels), max {np.nanmax(maps):.3f}")  # fmt: skip
    return out


# --------------------------------------------------------------------------- decoding
@records_outcome
def run_evaluate_decode(cfg: ExperimentConfig, run_dir: Path | None = None, log: Log | None = None) -> RunDir:
    """Brain → embedding decoding on every brain source (see the module docstring)."""
    from llmvem.brain import fit_decoder, retrieve_captions

    log = log or console_log(cfg.progress)
    t_start = time.perf_counter()
    seed_everything(cfg.seed)
    inp, dec, enc = cfg.evaluate.inputs, cfg.evaluate.decode, cfg.evaluate.encoding
    _need(inp.brain, "--brain", "brain data")
    if not inp.embeddings:
        raise ConfigError("evaluate decode: no --embeddings (the stimuli's text embeddings, .npy + .ids.txt)")
    emb = load_matrix(inp.embeddings)
    brains = [with_splits(b, enc.test_fraction, cfg.seed) for b in _brains(cfg)]
    corpus: tuple[list[str], list[str], np.ndarray] | None = None
    if inp.captions is not None:
        from llmvem.text import embed_texts

        cap_ids, cap_texts = load_captions(inp.captions)
        cap_emb = embed_texts(cap_texts, **embed_kwargs(cfg, make_store(cfg)))
        if cap_emb.shape[1] != emb.values.shape[1]:
            raise DataError(
                f"decode: caption corpus embedded by {cfg.embed.encoder!r} has {cap_emb.shape[1]} dims but "
                f"--embeddings has {emb.values.shape[1]}; embed both with the same encoder (--encoder)"
            )
        corpus = (cap_ids, cap_texts, cap_emb)
    for brain, _ in brains:
        align_ids(brain.stimulus_ids, emb.ids, f"brain {brain.name!r}", f"embeddings {emb.name!r}")
    references = _references(cfg, corpus)
    caption_rows: list[pd.DataFrame] = []
    run = RunDir(cfg, run_dir)
    log(f"[bold]evaluate decode[/bold]: {emb.name} ({emb.values.shape[1]}-d) from {len(brains)} brain source(s)")
    rows: list[dict[str, Any]] = []
    retrieved: list[dict[str, Any]] = []
    for brain, own in brains:
        tr, te = brain.split_indices("train"), brain.split_indices("test")
        keep = brain.check_finite()
        if not keep.all():
            log(f"  [yellow]{brain.name}: {int((~keep).sum())} voxel(s) with NaN/inf or constant responses left out")
        ids_tr = [brain.stimulus_ids[i] for i in tr]
        ids_te = [brain.stimulus_ids[i] for i in te]
        e_tr = emb.values[align_ids(ids_tr, emb.ids, f"{brain.name} train", f"embeddings {emb.name!r}")]
        e_te = emb.values[align_ids(ids_te, emb.ids, f"{brain.name} test", f"embeddings {emb.name!r}")]
        y = brain.responses[:, keep]
        res = fit_decoder(y[tr], e_tr, y[te], e_te, alphas=tuple(enc.alphas), cv=enc.cv, dtype=enc.ridge_dtype)
        ident = res.identification
        row: dict[str, Any] = {"subject": brain.name, "n_train": len(tr), "n_test": len(te),
                               "splits": "own" if own else "random", "identification_accuracy": ident.accuracy,
                               "top1": ident.top1, "top1_chance": 1.0 / len(te),
                               "mean_r": float(np.nanmean(res.r))}  # fmt: skip
        if corpus is not None:
            cap_ids, cap_texts, cap_emb = corpus
            ret = retrieve_captions(res.predicted, cap_emb, cap_texts, k=dec.top_k, metric=dec.metric)
            hits = [any(cap_ids[j] == sid for j in idx) for sid, idx in zip(ids_te, ret.indices, strict=True)]
            cap_set = set(cap_ids)
            has_own = [sid in cap_set for sid in ids_te]
            if any(has_own):
                row[f"retrieval_top{dec.top_k}"] = float(np.mean([h for h, o in zip(hits, has_own, strict=True) if o]))
            decoded = _decoded_captions(cfg, brain.name, ids_te, res.predicted, corpus, references, caption_rows)
            for sid, texts, scores in zip(ids_te, ret.texts, ret.scores, strict=True):
                retrieved.append({"subject": brain.name, "stimulus": sid, "captions": texts,
                                  "scores": [round(float(s), 4) for s in scores],
                                  **({"decoded": decoded[sid]} if decoded else {})})  # fmt: skip
        rows.append(row)
        log(f"  {brain.name}: identification {ident.accuracy:.3f} (chance 0.5), top-1 {ident.top1:.3f}")
    table = pd.DataFrame(rows)
    table.to_csv(run.file("decode.csv"), index=False)
    if retrieved:
        atomic_write_text(run.file("retrieved_captions.jsonl"), "".join(json.dumps(r) + "\n" for r in retrieved))
    captions_table = pd.concat(caption_rows, ignore_index=True) if caption_rows else None
    if captions_table is not None:
        captions_table.to_csv(run.file("caption_metrics.csv"), index=False)

    from llmvem.report import build_report, plot_decoding

    plot_decoding(table, run.file("decode.png"))
    numeric = table.drop(columns=["subject", "splits"]).select_dtypes("number")
    run.log_metrics(
        decode={r["subject"]: {k: v for k, v in r.items() if k != "subject"} for r in rows},
        decode_mean={str(k): float(v) for k, v in numeric.mean().items()},
        **({"caption_metrics": _caption_metrics_json(captions_table)} if captions_table is not None else {}),
        embeddings=str(emb.path),
        total_s=round(time.perf_counter() - t_start, 1),
    )
    build_report(run.path)
    log(f"[green]done[/green]: {run.file('decode.csv')}, {run.file('report.html')}")
    return run


def _references(
    cfg: ExperimentConfig, corpus: tuple[list[str], list[str], np.ndarray] | None
) -> tuple[dict[str, list[str]], list[str]] | None:
    """Human captions per stimulus and the caption metrics to compute (``None``: no caption metrics).

    References: ``--references``, else the corpus's own captions. An explicit ``caption_metrics`` that this machine
    cannot compute (no Java / pycocoevalcap) is an error later; the default computes what it can and warns.
    """
    inp, dec = cfg.evaluate.inputs, cfg.evaluate.decode
    metrics: list[str] = list(dec.caption_metrics)
    if "caption_metrics" not in dec.model_fields_set:
        from llmvem.text.caption_metrics import usable_metrics

        metrics, why = usable_metrics(metrics)
        if why is not None:
            warnings.warn(f"evaluate decode: caption metrics other than {metrics} skipped: {why}", stacklevel=2)
    if not metrics:
        return None
    if inp.references is not None:
        if corpus is None:
            raise ConfigError("evaluate decode: --references needs --captions (the corpus decoded captions come from)")
        return load_references(inp.references), metrics
    if corpus is None:
        return None
    refs: dict[str, list[str]] = {}
    for cid, text in zip(corpus[0], corpus[1], strict=True):
        refs.setdefault(cid, []).append(text)
    return refs, metrics


def _decoded_captions(
    cfg: ExperimentConfig,
    subject: str,
    ids_te: list[str],
    predicted: np.ndarray,
    corpus: tuple[list[str], list[str], np.ndarray],
    references: tuple[dict[str, list[str]], list[str]] | None,
    out: list[pd.DataFrame],
) -> dict[str, str]:
    """Decode one caption per test stimulus and, where references exist, append its caption-metric table to
    ``out`` (one row per metric: score, human ceiling, their ratio). Returns stimulus → decoded caption."""
    from llmvem.brain import decoded_captions
    from llmvem.text import embed_texts
    from llmvem.text.caption_metrics import implementation, score_with_ceiling

    dec = cfg.evaluate.decode
    if references is None or not any(references[0].get(i) for i in ids_te):
        return {}
    refs, metrics = references
    cap_ids, cap_texts, cap_emb = corpus
    texts = decoded_captions(predicted, cap_emb, cap_texts, cap_ids, ids_te, exclude_own=dec.exclude_own,
                             metric=dec.metric)  # fmt: skip
    decoded = dict(zip(ids_te, texts, strict=True))
    kw = embed_kwargs(cfg, make_store(cfg))
    table, _, _ = score_with_ceiling(decoded, refs, metrics, embed=lambda t: embed_texts(t, **kw))
    table.insert(0, "subject", subject)
    table["implementation"] = implementation()
    out.append(table)
    return decoded


def _caption_metrics_json(table: pd.DataFrame) -> dict[str, Any]:
    """``{subject: {metric: {score, human_ceiling, score_over_ceiling}}}`` of the caption-metric table."""
    out: dict[str, Any] = {}
    for row in table.to_dict("records"):
        out.setdefault(str(row["subject"]), {})[str(row["metric"])] = {
            k: (None if pd.isna(row[k]) else float(row[k])) for k in ("score", "human_ceiling", "score_over_ceiling")
        }
    return out
