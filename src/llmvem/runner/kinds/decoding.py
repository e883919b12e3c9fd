"""Decoding as an evaluation: brain → representation ridge per brain, identification among the held-out stimuli
and, with a caption corpus, caption retrieval, decoded captions and their caption metrics against human captions.

The analysis is the brain stage's (:func:`llmvem.brain.fit_decoder`, :class:`llmvem.brain.CaptionCorpus`) and the
text stage's (:func:`llmvem.text.caption_metrics.score_with_ceiling`); this kind pairs the rows, calls them and puts
their numbers in the result table.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import numpy as np
from pydantic import Field

from llmvem.config import CaptionMetric
from llmvem.errors import ConfigError, DataError
from llmvem.runner.kinds.evaluations import ScoreParams, _paired_rows, _subject_major, _views
from llmvem.runner.parts import EVALUATIONS, part
from llmvem.runner.state import RunState

if TYPE_CHECKING:
    import pandas as pd

    from llmvem.brain import CaptionCorpus

#: the target of the decoding rows: every voxel of the brain (after the target's ROI selection)
DECODED_FROM = "all"


class DecodeParams(ScoreParams):
    captions: str | None = Field(None, description="a caption corpus (.jsonl / .csv / .tsv rows of id and text, or "
                                 ".txt; llmvem.data.files.load_captions) embedded with settings.embed: retrieval of "
                                 "each test stimulus's own captions among the settings.evaluate.decode.top_k nearest "
                                 "(retrieved_captions.jsonl) and a decoded caption per stimulus")  # fmt: skip
    references: str | list[str] | None = Field(None, description="human captions per stimulus the decoded captions "
                                               "are scored against (llmvem.data.files.load_references; several "
                                               "files merged; default: the corpus's captions of each stimulus); "
                                               "needs captions")  # fmt: skip
    nsd_stim_info: str | None = Field(None, description="NSD's nsd_stim_info_merged.csv: maps the COCO image ids "
                                      "of COCO caption references to NSD ids")  # fmt: skip
    caption_metrics: list[CaptionMetric] | None = Field(
        None, description="caption metrics of the decoded captions ([] none); default: those of "
        "settings.evaluate.decode that this machine can compute (a warning names the others)")  # fmt: skip


def _corpus(p: DecodeParams, state: RunState, n_dims: set[int], where: str) -> CaptionCorpus | None:
    """The caption corpus of ``p.captions`` embedded by settings.embed (its dims must be the representations')."""
    from llmvem.brain import CaptionCorpus
    from llmvem.data.files import load_captions
    from llmvem.runner.settings import embed_kwargs
    from llmvem.text import embed_texts

    if p.references is not None and p.captions is None:
        raise ConfigError(f"{where}: references need captions (--references needs --captions: the corpus decoded "
                          "captions come from)")  # fmt: skip
    if p.captions is None:
        return None
    ids, texts = load_captions(p.captions)
    emb = embed_texts(texts, **embed_kwargs(state.cfg, state.store))
    if {emb.shape[1]} != n_dims:
        raise DataError(f"decode: caption corpus embedded by {state.cfg.embed.encoder!r} has {emb.shape[1]} dims but "
                        f"the decoded representations have {sorted(n_dims)}; embed both with the same encoder "
                        "(--encoder)")  # fmt: skip
    return CaptionCorpus(ids, texts, emb)


def _references(p: DecodeParams, state: RunState, corpus: CaptionCorpus | None) -> Any:
    """(stimulus → human captions, the caption metrics to compute), or ``None`` for no caption metrics. An explicit
    metric this machine cannot compute (no Java / pycocoevalcap) is an error when scored; the default computes what
    it can and warns."""
    import warnings

    from llmvem.data.files import load_references

    metrics: list[str] = list(state.cfg.evaluate.decode.caption_metrics if p.caption_metrics is None
                              else p.caption_metrics)  # fmt: skip
    if p.caption_metrics is None:
        from llmvem.text.caption_metrics import usable_metrics

        metrics, why = usable_metrics(metrics)
        if why is not None:
            warnings.warn(f"evaluate decode: caption metrics other than {metrics} skipped: {why}", stacklevel=3)
    if not metrics or corpus is None:
        return None
    if p.references is None:
        return corpus.references(), metrics
    return load_references(p.references, p.nsd_stim_info), metrics


def _write_decode(frame: pd.DataFrame, state: RunState, name: str, p: DecodeParams) -> None:
    """``<name>.csv`` (one row per brain source × representation: sizes, splits, scores), ``<name>.png`` and, with
    caption metrics, ``caption_metrics.csv`` (one row per brain source × representation × metric column)."""
    from llmvem.report import plot_decoding
    from llmvem.results import wide_table

    rows = frame[frame["target"] == DECODED_FROM]
    table = _per_subject(wide_table(rows, name, subjects=True), wide_table(rows, name)).drop(columns="target")
    table = table.astype({c: int for c in ("n_train", "n_test")})
    splits = state.info.get("targets", {}).get(p.against, {}).get("subjects", {})
    if splits:
        table.insert(list(table.columns).index("n_test") + 1, "splits",
                     [splits.get(s, {}).get("splits", "") for s in table["subject"]])  # fmt: skip
    table.to_csv(state.run.file(f"{name}.csv"), index=False)
    several = table["model"].nunique() > 1
    shown = table.assign(subject=[f"{s} ({m})" if several else s for s, m in zip(table["subject"], table["model"],
                                                                               strict=True)])  # fmt: skip
    plot_decoding(shown, state.run.file(f"{name}.png"))
    captions = frame[frame["target"] != DECODED_FROM]
    if not captions.empty:
        cap = _per_subject(wide_table(captions, name, subjects=True), wide_table(captions, name))
        info = state.info.get("evaluations", {}).get(name, {})
        refs = info.get("caption_references", {})
        cap = cap.rename(columns={"target": "metric"}).astype({"n_images": int}).assign(
            references=[refs.get(s or m, "") for s, m in zip(cap["subject"], cap["model"], strict=True)],
            implementation=info.get("caption_implementation", ""))  # fmt: skip
        cap.to_csv(state.run.file("caption_metrics.csv"), index=False)


def _per_subject(subjects: pd.DataFrame, whole: pd.DataFrame) -> pd.DataFrame:
    """The per-subject rows (subject first, grouped by subject), or the whole-data rows (subject ``""``) when the
    brain was the stimuli's own (no brain sources)."""
    table = subjects if not subjects.empty else whole.assign(subject="")
    return _subject_major(table[["subject", *(c for c in table if c != "subject")]])


@part(EVALUATIONS, "decode", DecodeParams, write=_write_decode)
def decode(p: DecodeParams, state: RunState, name: str) -> None:
    """Per brain and representation, a ridge from the brain's finite voxels to the representation (per-voxel data
    → one α for all dims, settings.evaluate.encoding's alphas, cv, dtype) fitted on ``train``, scored on ``test``
    (:meth:`llmvem.brain.DecodingResult.scores`: identification accuracy, top-1, mean r); with ``captions`` the
    retrieval accuracy at k (``retrieval_top<k>``), ``retrieved_captions.jsonl`` and caption metrics of the decoded
    captions (targets ``bleu_1`` … ``embedding``: score, human ceiling, their ratio). Rows per brain source
    (subject) and their mean; the ``target`` of the decoding rows is ``all``. Inputs are checked before the run
    directory is made."""
    target, where = state.brain_target(p.against), f"evaluations.{name}"
    inputs = [(view, _paired_rows(state, p, target, view[0], where)) for view in _views(state, target, where)]
    corpus = _corpus(p, state, {x.shape[1] for _, reps in inputs for _, _, x in reps}, where)
    references = _references(p, state, corpus)
    state.log(f"evaluation {name}: {', '.join(p.representations)} decoded from {len(inputs)} brain(s) → "
              f"{state.run.path}")  # fmt: skip
    retrieved: list[dict[str, Any]] = []
    for view, reps in inputs:
        for rep, seed, x in reps:
            retrieved += _decode_one(state, name, view, rep, seed, x, corpus, references)
    if inputs[0][0][3]:  # brain sources: their mean is the aggregate
        from llmvem.results import subject_means

        state.results.extend(subject_means(state.results.frame(), name))
    if retrieved:
        from llmvem.store import atomic_write_text

        text = "".join(json.dumps(r) + "\n" for r in retrieved)
        atomic_write_text(state.run.file("retrieved_captions.jsonl"), text)


def _decode_one(
    state: RunState, name: str, view: Any, rep: str, seed: int | None, x: np.ndarray, corpus: Any, references: Any
) -> list[dict[str, Any]]:
    """One decoder (one brain × representation): its rows; returns its lines of ``retrieved_captions.jsonl``."""
    from llmvem.brain import fit_decoder

    brain, tr, te, subject = view
    enc, dec = state.cfg.evaluate.encoding, state.cfg.evaluate.decode
    keep = brain.check_finite()
    if not keep.all():
        state.log(f"  [yellow]{brain.name}: {int((~keep).sum())} voxel(s) with NaN/inf or constant responses left out")
    y = brain.responses[:, keep]
    res = fit_decoder(y[tr], x[tr], y[te], x[te], alphas=tuple(enc.alphas), cv=enc.cv, dtype=enc.ridge_dtype)
    values: dict[str, Any] = {"n_train": len(tr), "n_test": len(te), **res.scores()}
    ids_te = [str(brain.stimulus_ids[i]) for i in te]
    lines: list[dict[str, Any]] = []
    if corpus is not None:
        ret = corpus.retrieve(res.predicted, k=dec.top_k, metric=dec.metric)
        hits = corpus.own_in_top_k(ret, ids_te)
        if hits is not None:
            values[f"retrieval_top{dec.top_k}"] = hits
        decoded = _caption_metrics(state, name, (rep, seed, subject), ids_te, res.predicted, corpus, references)
        for sid, texts, scores in zip(ids_te, ret.texts, ret.scores, strict=True):
            lines.append({"subject": brain.name, "model": rep, "stimulus": sid, "captions": texts,
                          "scores": [round(float(s), 4) for s in scores],
                          **({"decoded": decoded[sid]} if decoded else {})})  # fmt: skip
    state.results.add(name, rep, DECODED_FROM, values, seed=seed, subject=subject)
    ident = res.identification
    state.log(f"  {rep} from {brain.name}: identification {ident.accuracy:.3f} (chance 0.5), top-1 {ident.top1:.3f}")
    return lines


def _caption_metrics(
    state: RunState, name: str, row: tuple[str, int | None, str], ids_te: list[str], predicted: np.ndarray,
    corpus: CaptionCorpus, references: Any,
) -> dict[str, str]:  # fmt: skip
    """Decode one caption per test stimulus and, where references exist, add its caption metrics to the table (one
    target per metric column: score, human ceiling, their ratio, n_images; how many references each was scored
    against and the implementation go to ``info.evaluations.<name>``). Returns stimulus → decoded caption."""
    from llmvem.data.files import References
    from llmvem.runner.settings import embed_kwargs
    from llmvem.text import embed_texts
    from llmvem.text.caption_metrics import implementation, score_with_ceiling

    if references is not None and isinstance(references[0], References):  # given: none, or a gap of COCO, stops
        references[0].check_covers(ids_te, f"evaluations.{name}.references (test stimuli of {row[2] or row[0]})")
    if references is None or not any(references[0].get(i) for i in ids_te):
        return {}
    refs, metrics = references
    dec = state.cfg.evaluate.decode
    decoded = dict(zip(ids_te, corpus.decoded(predicted, ids_te, exclude_own=dec.exclude_own, metric=dec.metric),
                       strict=True))  # fmt: skip
    kw = embed_kwargs(state.cfg, state.store)
    table, _, _ = score_with_ceiling(decoded, refs, metrics, embed=lambda t: embed_texts(t, **kw))
    rep, seed, subject = row
    for r in table.to_dict("records"):
        values = {k: r[k] for k in ("score", "human_ceiling", "score_over_ceiling", "n_images")}
        state.results.add(name, rep, str(r["metric"]), values, seed=seed, subject=subject)
    info = state.info.setdefault("evaluations", {}).setdefault(name, {})
    info.setdefault("caption_references", {})[subject or rep] = str(table["references"].iloc[0])
    info["caption_implementation"] = implementation()
    return decoded
