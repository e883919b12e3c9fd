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
from llmvem.runner.state import Representation, RunState

if TYPE_CHECKING:
    import pandas as pd


class ScoreParams(Params):
    against: str = Field(description="the brain target (voxels for encoding, rdms for rsa)")
    representations: list[str] = Field(min_length=1, description="models and targets to score, in table order")


def _each(state: RunState, p: ScoreParams, stimuli: str, where: str) -> Iterator[tuple[str, int | None, Any]]:
    """(name, seed, values) of every representation to score, checked to be of the target's stimuli."""
    for name in p.representations:
        for seed, rep in state.representation(name).items():
            if rep.stimuli != stimuli:
                raise ConfigError(f"{where}: {name!r} represents stimuli {rep.stimuli!r}, {p.against!r} is of "
                                  f"{stimuli!r}")  # fmt: skip
            yield name, seed, rep.values


def _write_encoding(frame: pd.DataFrame, state: RunState, name: str, p: ScoreParams) -> None:
    from llmvem.report import format_encoding_table, plot_encoding
    from llmvem.results import wide_table
    from llmvem.runner.settings import print_table

    table = wide_table(frame, name, target_name="roi")
    table = table.astype({"n_voxels": int}) if "n_voxels" in table else table
    table.to_csv(state.run.file(f"{name}.csv"), index=False)
    plot_encoding(table, state.run.file(f"{name}.png"))
    print_table(format_encoding_table(table))


@part(EVALUATIONS, "encoding", ScoreParams, write=_write_encoding)
def encoding(p: ScoreParams, state: RunState, name: str) -> None:
    """Voxelwise ridge (per-voxel α, settings.evaluate.encoding) from each representation, fit on the stimuli's
    ``train`` split, held-out Pearson r per voxel → rows per ROI (:func:`llmvem.brain.encoding.encoding_rows`)."""
    from llmvem.brain import pearson_r
    from llmvem.brain.encoding import encoding_rows
    from llmvem.report import plot_r_histograms
    from llmvem.runner.settings import ridge_from_config

    target = state.brain_target(p.against)
    if target.brain is None:
        raise ConfigError(f"evaluations.{name}.against: {p.against!r} holds no voxel responses")
    src, y = state.source(target.stimuli), target.brain.responses
    train, test = src.split_indices("train"), src.split_indices("test")
    per_voxel: dict[str, np.ndarray] = {}
    for rep, seed, x in _each(state, p, target.stimuli, f"evaluations.{name}"):
        model = ridge_from_config(state.cfg).fit(x[train], y[train])
        r = pearson_r(y[test], model.predict(x[test]))
        per_voxel[rep if seed is None else f"{rep} (seed {seed})"] = r
        for row in encoding_rows(rep, r, target.brain):
            metrics = {k: v for k, v in row.items() if k not in ("model", "roi", "ceiling_bound")}
            state.results.add(name, rep, row["roi"], metrics, seed=seed)
    state.note("evaluations", name, {"n_train": len(train), "n_test": len(test)})
    plot_r_histograms(per_voxel, state.run.file(f"{name}_r_histograms.png"))
    state.log(f"evaluation {name}: ridge on {len(train)} train / {len(test)} test images, {len(per_voxel)} "
              "representation(s)")  # fmt: skip


def _write_rsa(frame: pd.DataFrame, state: RunState, name: str, p: ScoreParams) -> None:
    from llmvem.report import format_rsa_table, plot_rdms, plot_rsa
    from llmvem.results import wide_table
    from llmvem.runner.settings import print_table

    table = wide_table(frame, name).astype({"n_subjects": int}).assign(method=state.cfg.evaluate.rsa.method)
    subjects = wide_table(frame, name, subjects=True)
    table.to_csv(state.run.file(f"{name}.csv"), index=False)
    subjects.to_csv(state.run.file(f"{name}_subjects.csv"), index=False)
    plot_rsa(table, state.run.file(f"{name}.png"), subjects=subjects)
    target = state.brain_target(p.against)
    shown = {rep: next(iter(state.representation(rep).values())).values for rep in p.representations}
    from llmvem.brain import compute_rdm

    rdms = {k: compute_rdm(v, metric=state.cfg.evaluate.rsa.metric) for k, v in shown.items()}
    plot_rdms({**rdms, **{t: r.mean() for t, r in target.rdms.items()}}, state.run.file(f"{name}_rdms.png"))
    print_table(format_rsa_table(table))


@part(EVALUATIONS, "rsa", ScoreParams, write=_write_rsa)
def rsa(p: ScoreParams, state: RunState, name: str) -> None:
    """Each representation's RDM (settings.evaluate.rsa.metric) against every subject's RDM of each RDM set
    (settings.evaluate.rsa.method): the per-subject scores, their mean and SEM and the leave-one-subject-out noise
    ceiling (:func:`llmvem.brain.rsa_scores`)."""
    from llmvem.brain import compute_rdm, rsa_scores

    target = state.brain_target(p.against)
    if not target.rdms:
        raise ConfigError(f"evaluations.{name}.against: {p.against!r} holds no RDM sets")
    rc = state.cfg.evaluate.rsa
    for rep, seed, x in _each(state, p, target.stimuli, f"evaluations.{name}"):
        rdm = compute_rdm(x, metric=rc.metric)
        for set_name, rset in target.rdms.items():
            res = rsa_scores(rdm, rset.rdms, method=rc.method)
            state.results.add(name, rep, set_name, {"n_subjects": rset.n_subjects, "mean": res.mean, "sem": res.sem,
                              "noise_lower": res.noise_lower, "noise_upper": res.noise_upper}, seed=seed)  # fmt: skip
            for subject, score in zip(rset.subjects, res.scores, strict=True):
                state.results.add(name, rep, set_name, {"score": score}, seed=seed, subject=str(subject))
    state.log(f"evaluation {name}: {len(p.representations)} representation(s) × {len(target.rdms)} RDM set(s) "
              f"({rc.method}, {rc.metric} distance), leave-one-subject-out noise ceilings")  # fmt: skip


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
