"""Evaluations: voxelwise encoding, RSA with noise ceilings, paired comparisons of two representations, the
visual words of voxels and ROIs. Each adds rows to the study's result table; ``write`` derives its files."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import numpy as np
from pydantic import Field

from llmvem.errors import ConfigError
from llmvem.runner.parts import EVALUATIONS, Params, part
from llmvem.runner.state import BrainTarget, Representation, RunState

if TYPE_CHECKING:
    import pandas as pd

    from llmvem.data.brain import BrainData


class ScoreParams(Params):
    against: str = Field(description="the brain target (voxels for encoding, rdms for rsa)")
    representations: list[str] = Field(min_length=1, description="models and targets to score, in table order")


def _each(
    state: RunState, p: ScoreParams, stimuli: str, where: str
) -> Iterator[tuple[str, int | None, Representation]]:
    """(name, seed, representation) of every representation to score, checked to be of the target's stimuli."""
    for name in p.representations:
        for seed, rep in state.representation(name).items():
            if rep.stimuli != stimuli:
                raise ConfigError(f"{where}: {name!r} represents stimuli {rep.stimuli!r}, {p.against!r} is of "
                                  f"{stimuli!r}")  # fmt: skip
            yield name, seed, rep


def _label(state: RunState, name: str) -> str:
    """How an id mismatch names a representation: ``features 'x' (its file)`` for a feature file."""
    path = state.info.get("models", {}).get(name, {}).get("path")
    return f"features {name!r}" + (f" ({path})" if path else "")


#: (brain, train rows, test rows, subject) of one brain scored; subject "" for the stimuli's own brain data
View = tuple["BrainData", np.ndarray, np.ndarray, str]


def _views(state: RunState, target: BrainTarget, where: str) -> list[View]:
    """The brains an encoding scores: each brain source of the target on its own splits (a subject each), or the
    target's brain data on its stimuli's ``train`` / ``test`` splits."""
    if target.sources:
        return [(b, b.split_indices("train"), b.split_indices("test"), b.name) for b in target.sources]
    if target.brain is None:
        raise ConfigError(f"{where}.against: the target holds no voxel responses")
    src = state.source(target.stimuli)
    return [(target.brain, src.split_indices("train"), src.split_indices("test"), "")]


def _paired_rows(state: RunState, p: ScoreParams, target: BrainTarget, brain: Any, where: str) -> list[Any]:
    """(name, seed, values) of every representation with its rows in ``brain``'s stimulus order (paired by id:
    an id it lacks is an error before anything is fitted)."""
    ids = state.source(target.stimuli).ids
    return [(rep, seed, r.values[r.rows(list(brain.stimulus_ids), ids, f"brain {brain.name!r}", _label(state, rep))])
            for rep, seed, r in _each(state, p, target.stimuli, where)]  # fmt: skip


def _write_encoding(frame: pd.DataFrame, state: RunState, name: str, p: ScoreParams) -> None:
    """``<name>.csv`` (one row per model × ROI; over brain sources: their mean, ``n_subjects``, ``sem_r``),
    ``<name>_subjects.csv`` (per brain source, when there are sources) and ``<name>.png``."""
    from llmvem.report import format_encoding_table, plot_encoding
    from llmvem.results import wide_table
    from llmvem.runner.settings import print_table

    table = _with_bound(wide_table(frame, name, target_name="roi"), "r_over_ceiling", "encoding")
    table = table.astype({k: int for k in ("n_voxels", "n_subjects") if k in table})
    table.to_csv(state.run.file(f"{name}.csv"), index=False)
    subjects = wide_table(frame, name, target_name="roi", subjects=True)
    if not subjects.empty:
        subjects = subjects[["subject", *(c for c in subjects if c != "subject")]]
        subjects = _with_bound(_subject_major(subjects), "r_over_ceiling", "encoding")
        subjects.astype({"n_voxels": int}).to_csv(state.run.file(f"{name}_subjects.csv"), index=False)
    plot_encoding(table, state.run.file(f"{name}.png"))
    print_table(format_encoding_table(table))


def _subject_major(table: pd.DataFrame) -> pd.DataFrame:
    """Rows grouped by subject (in order of appearance), the order within a subject kept."""
    order = {s: k for k, s in enumerate(dict.fromkeys(table["subject"]))}
    return table.sort_values("subject", key=lambda s: s.map(order), kind="stable").reset_index(drop=True)


def _with_bound(table: pd.DataFrame, column: str, kind: str) -> pd.DataFrame:
    """``table`` with the text column ``ceiling_bound`` (what ``column`` is divided by) before ``column``."""
    from llmvem.brain.encoding import ENCODING_CEILING_BOUND
    from llmvem.brain.rsa import RSA_CEILING_BOUND

    if column in table:
        bound = ENCODING_CEILING_BOUND if kind == "encoding" else RSA_CEILING_BOUND
        table = table.copy()
        table.insert(list(table.columns).index(column), "ceiling_bound", bound)
    return table


class EncodingParams(ScoreParams):
    permutations: int = Field(0, ge=0, description="permutations of the held-out rows per voxel: p-values and the "
                              "FDR-significant fraction per ROI (0: none)")  # fmt: skip
    maps: bool = Field(False, description="per-voxel r, score, α (and p) as images in each brain's space under "
                       "maps/<brain>/<model>/ (drawn unless settings.evaluate.encoding.draw_maps is off)")  # fmt: skip


#: the encoding metrics averaged over brain sources, in the order of encoding.csv
_SUBJECT_MEANS = ("n_voxels", "mean_r", "median_r", "noise_ceiling_r", "mean_score", "r_over_ceiling",
                  "frac_significant")  # fmt: skip


@part(EVALUATIONS, "encoding", EncodingParams, write=_write_encoding)
def encoding(p: EncodingParams, state: RunState, name: str) -> None:
    """Voxelwise ridge (per-voxel α, settings.evaluate.encoding) from each representation, fit on the ``train``
    split, held-out Pearson r per voxel (:func:`llmvem.brain.heldout.heldout_r`, with ``permutations`` p-values) →
    rows per ROI (:func:`llmvem.brain.encoding.encoding_rows`). Brain sources are scored one by one (rows per
    subject) and averaged; per-voxel r goes to ``<name>_voxel_r.npz``, optionally maps in each brain's space."""
    from llmvem.brain.encoding import encoding_rows
    from llmvem.brain.heldout import heldout_r
    from llmvem.runner.settings import ridge_from_config

    target, where = state.brain_target(p.against), f"evaluations.{name}"
    inputs = [(view, _paired_rows(state, p, target, view[0], where)) for view in _views(state, target, where)]
    state.log(f"evaluation {name}: {len(p.representations)} representation(s) × {len(inputs)} brain(s) → "
              f"{state.run.path}")  # fmt: skip
    per_voxel: dict[str, list[np.ndarray]] = {}
    subject_rows: list[dict[str, Any]] = []
    for (brain, tr, te, subject), reps in inputs:
        for rep, seed, x in reps:
            label = rep if seed is None else f"{rep} (seed {seed})"
            model = ridge_from_config(state.cfg).fit(x[tr], brain.responses[tr])
            r, p_values = heldout_r(model, x[te], brain.responses[te], p.permutations, state.cfg.seed,
                                    f"{rep} on {brain.name}")  # fmt: skip
            per_voxel.setdefault(label, []).append(r)
            if p.maps:
                _encoding_maps(state, name, brain, rep, r, model, p_values)
            for row in encoding_rows(rep, r, brain, p_values):
                metrics = {k: v for k, v in row.items() if k not in ("model", "roi", "ceiling_bound")}
                state.results.add(name, rep, row["roi"], metrics, seed=seed, subject=subject)
                subject_rows.append({"rep": rep, "seed": "" if seed is None else str(seed), **row})
            if subject:
                state.log(f"  {rep} on {brain.name}: {len(tr)} train / {len(te)} test, median r {np.nanmedian(r):.3f}")
    if inputs[0][0][3]:  # brain sources: their mean is the aggregate
        _subject_means(state, name, subject_rows, len(inputs))
    else:
        state.note("evaluations", name, {"n_train": len(inputs[0][0][1]), "n_test": len(inputs[0][0][2])})
    _encoding_arrays(state, name, per_voxel, [v[0].name for v, _ in inputs] if inputs[0][0][3] else None)


def _subject_means(state: RunState, name: str, rows: list[dict[str, Any]], n_brains: int) -> None:
    """The aggregate rows over brain sources: the mean of every metric per model × ROI, ``n_subjects`` and the SEM
    of ``mean_r`` over subjects (NaN for one)."""
    import pandas as pd

    per = pd.DataFrame(rows)
    cols = [c for c in _SUBJECT_MEANS if c in per.columns]
    grouped = per.groupby(["rep", "seed", "roi"], sort=False)
    means = grouped[cols].mean()
    sizes, sems = grouped.size(), grouped["mean_r"].sem()
    for (rep, seed, roi), m in means.iterrows():
        values = {"n_subjects": int(sizes[(rep, seed, roi)]), **m.to_dict(), "n_voxels": round(m["n_voxels"]),
                  "sem_r": sems[(rep, seed, roi)] if n_brains > 1 else float("nan")}  # fmt: skip
        state.results.add(name, str(rep), str(roi), values, seed=str(seed))


def _encoding_maps(state: RunState, name: str, brain: Any, rep: str, r: np.ndarray, model: Any, p_values: Any) -> None:
    """Per-voxel r, score, α, p of one fit as images in ``brain``'s space (``maps/<brain>/<rep>/``), listed in
    ``info.evaluations.<name>.maps``."""
    from pathlib import Path

    from llmvem.data.brain_maps import safe_name
    from llmvem.report.map_files import encoding_map_values, save_maps

    folder = Path("maps") / safe_name(brain.name) / safe_name(rep)
    files = save_maps(state.run.path, brain, encoding_map_values(r, brain, model, p_values), folder,
                      state.cfg.evaluate.encoding.draw_maps, what=f"evaluations.{name}")  # fmt: skip
    maps = state.info.setdefault("evaluations", {}).setdefault(name, {}).setdefault("maps", {})
    if files:
        maps[f"{rep} | {brain.name}"] = files


def _encoding_arrays(
    state: RunState, name: str, per_voxel: dict[str, list[np.ndarray]], brains: list[str] | None
) -> None:
    """``<name>_voxel_r.npz`` (per-voxel r by ``model`` or, over brain sources, ``model__brain``) and
    ``<name>_r_histograms.png`` (each model's r over every brain)."""
    from llmvem.report import plot_r_histograms

    arrays = {f"{label}__{b}" if brains else label: r for label, rs in per_voxel.items()
              for b, r in zip(brains or [""], rs, strict=True)}  # fmt: skip
    np.savez_compressed(state.run.file(f"{name}_voxel_r.npz"), **arrays)  # type: ignore[arg-type]
    plot_r_histograms({k: np.concatenate(v) for k, v in per_voxel.items()}, state.run.file(f"{name}_r_histograms.png"))


def _write_rsa(frame: pd.DataFrame, state: RunState, name: str, p: ScoreParams) -> None:
    """``<name>.csv`` (one row per representation × RDM set), ``<name>_subjects.csv``, ``<name>.png`` and
    ``<name>_rdms.png`` (the representations' and the sets' mean RDMs, when they have one size)."""
    from llmvem.brain import compute_rdm
    from llmvem.report import format_rsa_table, plot_rdms, plot_rsa
    from llmvem.results import wide_table
    from llmvem.runner.settings import print_table

    table = wide_table(frame, name).astype({"n_subjects": int}).assign(method=state.cfg.evaluate.rsa.method)
    table = _with_bound(table, "mean_over_ceiling", "rsa")
    subjects = wide_table(frame, name, subjects=True)
    table.to_csv(state.run.file(f"{name}.csv"), index=False)
    subjects.to_csv(state.run.file(f"{name}_subjects.csv"), index=False)
    plot_rsa(table, state.run.file(f"{name}.png"), subjects=subjects)
    target = state.brain_target(p.against)
    shown = {rep: next(iter(state.representation(rep).values())).values for rep in p.representations}
    rdms = {k: compute_rdm(v, metric=state.cfg.evaluate.rsa.metric) for k, v in shown.items()}
    rdms.update({t: r.mean() for t, r in target.rdms.items()})
    if len({v.shape for v in rdms.values()}) == 1:
        plot_rdms(rdms, state.run.file(f"{name}_rdms.png"))
    print_table(format_rsa_table(table))


class RSAParams(ScoreParams):
    bootstrap: bool = Field(False, description="a 95 % interval of the mean by resampling subjects (ci95_low, "
                            "ci95_high; RDM sets of ≥ 3 subjects)")  # fmt: skip


@part(EVALUATIONS, "rsa", RSAParams, write=_write_rsa)
def rsa(p: RSAParams, state: RunState, name: str) -> None:
    """Each representation's RDM (settings.evaluate.rsa.metric) against every subject's RDM of each RDM set
    (settings.evaluate.rsa.method): the per-subject scores, their mean and SEM, the leave-one-subject-out noise
    ceiling and mean / upper ceiling (:func:`llmvem.brain.rsa_scores`), optionally a subject bootstrap interval.
    A representation with its own ids (a feature file) is paired with each set's stimuli by id."""
    from llmvem.brain import compute_rdm, rsa_scores

    target = state.brain_target(p.against)
    if not target.rdms:
        raise ConfigError(f"evaluations.{name}.against: {p.against!r} holds no RDM sets")
    rc, ids = state.cfg.evaluate.rsa, state.source(target.stimuli).ids
    reps = list(_each(state, p, target.stimuli, f"evaluations.{name}"))
    rows = {
        (rep, seed, s): r.rows(list(rset.stimulus_ids), ids, f"target {s!r}", _label(state, rep))
        for rep, seed, r in reps
        for s, rset in target.rdms.items()
    }  # fmt: skip  (paired before scoring)
    for rep, seed, r in reps:
        for set_name, rset in target.rdms.items():
            rdm = compute_rdm(r.values[rows[(rep, seed, set_name)]], metric=rc.metric)
            res = rsa_scores(rdm, rset.rdms, method=rc.method)
            values: dict[str, float | None] = {
                "n_subjects": rset.n_subjects, "mean": res.mean, "sem": res.sem, "noise_lower": res.noise_lower,
                "noise_upper": res.noise_upper, "n_stimuli": rset.n_stimuli,
                "mean_over_ceiling": res.mean_over_ceiling}  # fmt: skip
            if p.bootstrap:
                values.update(_bootstrap(rdm, rset, rc.method, state.cfg.seed))
            state.results.add(name, rep, set_name, values, seed=seed)
            for subject, score in zip(rset.subjects, res.scores, strict=True):
                state.results.add(name, rep, set_name, {"score": score}, seed=seed, subject=str(subject))
    state.log(f"evaluation {name}: {len(p.representations)} representation(s) × {len(target.rdms)} RDM set(s) "
              f"({rc.method}, {rc.metric} distance), leave-one-subject-out noise ceilings")  # fmt: skip


def _bootstrap(rdm: np.ndarray, rset: Any, method: str, seed: int) -> dict[str, float | None]:
    """``ci95_low`` / ``ci95_high`` of the mean over subjects by resampling them (None for < 3 subjects)."""
    from llmvem.brain import bootstrap_rsa

    if rset.n_subjects < 3:
        return {"ci95_low": None, "ci95_high": None}
    ci = bootstrap_rsa(rdm, rset.rdms, method, over="subjects", seed=seed)
    return {"ci95_low": ci.low, "ci95_high": ci.high}


class PairedParams(Params):
    of: str = Field(description="the evaluation whose scores are compared (run before this one)")
    pairs: list[tuple[str, str]] = Field(default_factory=list, description="[a, b] pairs: a − b")
    reference: str | None = Field(None, description="compare every other representation of `of` with this one")
    metric: str = Field("mean", description="the aggregate metric compared (mean for rsa, mean_r for encoding)")
    subject_metric: str = Field("score", description="the per-subject metric of the paired t-test")


def _scores(frame: pd.DataFrame, model: str, target: str, p: PairedParams) -> np.ndarray:
    """(seeds, subjects) scores of ``model`` on ``target``: per subject when the table has them, else (seeds, 1)."""
    rows = frame[(frame["model"] == model) & (frame["target"] == target) & (frame["seed"] != "mean")]
    per_subject = rows[(rows["subject"] != "") & (rows["metric"] == p.subject_metric)]
    if not per_subject.empty:
        return per_subject.pivot_table(index="seed", columns="subject", values="value", sort=False).to_numpy()
    whole = rows[(rows["subject"] == "") & (rows["metric"] == p.metric)]
    return whole.set_index("seed")["value"].to_numpy()[:, None]


def _pairs(p: PairedParams, models: list[str], name: str) -> list[tuple[str, str]]:
    pairs = list(p.pairs)
    if p.reference is not None:
        pairs += [(m, p.reference) for m in models if m != p.reference]
    if not pairs:
        raise ConfigError(f"evaluations.{name}: give pairs or a reference")
    unknown = sorted({m for pair in pairs for m in pair if m not in models})
    if unknown:
        raise ConfigError(f"evaluations.{name}: {unknown} not scored by {p.of!r}; it scored {models}")
    return pairs


@part(EVALUATIONS, "paired", PairedParams)
def paired(p: PairedParams, state: RunState, name: str) -> None:
    """``a − b`` for each pair and target of evaluation ``of``: the mean difference, its 95 % CI over seeds and the
    paired t-test over subjects (:func:`llmvem.brain.paired.paired_difference`); an unseeded side is repeated over
    the other's seeds."""
    from llmvem.brain.paired import paired_difference

    frame = state.results.frame()
    frame = frame[frame["evaluation"] == p.of]
    if frame.empty:
        raise ConfigError(f"evaluations.{name}.of: no rows of evaluation {p.of!r} (it must run before {name!r})")
    for a, b in _pairs(p, list(dict.fromkeys(frame["model"])), name):
        for target in dict.fromkeys(frame["target"]):
            sa, sb = _scores(frame, a, target, p), _scores(frame, b, target, p)
            if sa.size == 0 or sb.size == 0 or sa.shape[1] != sb.shape[1]:
                continue
            n = max(len(sa), len(sb))
            d = paired_difference(np.resize(sa, (n, sa.shape[1])), np.resize(sb, (n, sb.shape[1])))
            lo, hi = d.pop("ci95")
            per_seed, ratio = d.pop("per_seed"), d.pop("ratio_aligned_over_twin")
            state.results.add(name, f"{a} - {b}", target, {**d, "ci95_low": lo, "ci95_high": hi, "ratio": ratio,
                              "n_seeds": n, "n_subjects": sa.shape[1]})  # fmt: skip
            if n > 1:
                for k, v in enumerate(per_seed):
                    state.results.add(name, f"{a} - {b}", target, {"diff": v}, seed=k)


class WordsParams(Params):
    texts: str = Field(description="a text target (its texts are read)")
    against: str = Field(description="a voxels target")


@part(EVALUATIONS, "visual_words", WordsParams)
def visual_words(p: WordsParams, state: RunState, name: str) -> None:
    """The words voxels and ROIs "say": the descriptions' bags of words as PIF features, ridge to the voxels on
    the ``train`` split (:func:`llmvem.visualwords.readout.description_brain_words`) → ``visual_words.json``."""
    from llmvem.runner.settings import ridge_from_config
    from llmvem.store import atomic_write_text
    from llmvem.visualwords.readout import description_brain_words

    texts = state.targets.get(p.texts)
    brain = state.brain_target(p.against)
    if not isinstance(texts, Representation) or not texts.texts or brain.brain is None:
        raise ConfigError(f"evaluations.{name}: texts must be a text target and against a voxels target")
    src = state.source(brain.stimuli)
    vw = description_brain_words(texts.texts, src.ids, brain.brain.responses,
                                 list(brain.brain.voxels["roi"].astype(str)), src.split_indices("train"),
                                 src.split_indices("test"), k=state.cfg.words.top_k,
                                 encoder=ridge_from_config(state.cfg))  # fmt: skip
    atomic_write_text(state.run.file("visual_words.json"), json.dumps(vw, indent=1))
    state.log("  visual words: " + "; ".join(f"{roi}: {', '.join(v['words'][:5])}" for roi, v in vw["rois"].items()))
