"""``llmvem evaluate captions``: captions for every voxel and ROI of the user's brain data (BrainSCUBA).

Per brain source: a per-voxel-α ridge from one text-embedding feature matrix (``-f``: the stimuli's caption or
description embeddings, or CLIP embeddings) to the voxels, fitted on the ``train`` split and scored on ``test``
(the same splits as ``evaluate encoding``); each voxel's weight direction, and each ROI's r-weighted mean direction,
projected onto a caption corpus embedded by the same encoder (:mod:`llmvem.brain.voxel_captions`) and read out as
its nearest captions; optionally one sentence per ROI written by a served model (:mod:`llmvem.describe.summarise`).

Writes ``roi_captions.csv`` (subject, roi, rank, caption, score, n_voxels, held-out mean r; ``summary`` when asked),
``voxel_captions.jsonl`` (one line per voxel: subject, voxel index, roi, r, captions, scores), ``metrics.json`` and
``report.html`` with the ROI table.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from llmvem.config import ExperimentConfig
from llmvem.data.brain import BrainData
from llmvem.data.brain_select import load_brain_sources, with_splits
from llmvem.data.files import load_captions, load_matrix
from llmvem.data.stimuli import align_ids
from llmvem.errors import ConfigError, DataError
from llmvem.pipeline.common import Log, console_log, embed_kwargs, make_store, ridge_from_config
from llmvem.runs import RunDir, records_outcome, seed_everything
from llmvem.store import atomic_write_text


def _corpus(cfg: ExperimentConfig, dims: int) -> tuple[list[str], np.ndarray]:
    """The caption corpus's texts and their (c, d) embeddings by ``embed.encoder``; d must equal the features'."""
    from llmvem.text import embed_texts

    if cfg.evaluate.inputs.captions is None:
        raise ConfigError("evaluate captions: no --captions (the caption corpus the voxels are read out in)")
    _, texts = load_captions(cfg.evaluate.inputs.captions)
    emb = embed_texts(texts, **embed_kwargs(cfg, make_store(cfg)))
    if emb.shape[1] != dims:
        raise DataError(
            f"evaluate captions: the corpus embedded by {cfg.embed.encoder!r} has {emb.shape[1]} dims but the "
            f"features have {dims}; the features must be embeddings by the same encoder (--encoder)"
        )
    return texts, emb


def _fit(cfg: ExperimentConfig, brain: BrainData, x: Any, ids: list[str]) -> tuple[Any, np.ndarray]:
    """The ridge from features to voxels on the train split and its held-out r per voxel (NaN where invalid)."""
    from llmvem.brain.metrics import pearson_r

    tr, te = brain.split_indices("train"), brain.split_indices("test")
    x_tr = x[align_ids([brain.stimulus_ids[i] for i in tr], ids, f"{brain.name} train", "features")]
    x_te = x[align_ids([brain.stimulus_ids[i] for i in te], ids, f"{brain.name} test", "features")]
    model = ridge_from_config(cfg).fit(x_tr, brain.responses[tr])
    r = np.asarray(pearson_r(brain.responses[te], model.predict(x_te)), dtype=np.float64)
    r[~model.valid_targets_] = np.nan
    return model, r


def _voxel_lines(subject: str, rois: list[str], r: np.ndarray, vc: Any) -> str:
    return "".join(
        json.dumps({"subject": subject, "voxel": v, "roi": rois[v], "r": None if not np.isfinite(r[v]) else
                    round(float(r[v]), 4), "captions": vc.captions[v],
                    "scores": [round(float(s), 4) for s in vc.scores[v]]}) + "\n"
        for v in range(len(rois))
    )  # fmt: skip


def _summaries(cfg: ExperimentConfig, table: pd.DataFrame, log: Log) -> pd.DataFrame:
    """Add a ``summary`` column: one sentence per (subject, ROI) by ``voxel_captions.summary_model``."""
    from llmvem.describe.openai_compat import OpenAICompatibleDescriber
    from llmvem.describe.summarise import SUMMARY_TEMPLATE, summarise_groups

    vc, d = cfg.evaluate.voxel_captions, cfg.describe
    if vc.summary_model is None:
        return table
    writer = OpenAICompatibleDescriber(vc.summary_model, base_url=d.base_url, api_key_env=d.api_key_env,
                                       revision=d.revision, timeout_s=d.timeout_s, max_retries=d.max_retries,
                                       retry_base_s=d.retry_base_s)  # fmt: skip
    groups = {f"{s} | {roi}": list(g.sort_values("rank")["caption"]) for (s, roi), g in
              table[table["caption"] != ""].groupby(["subject", "roi"], sort=False)}  # fmt: skip
    params = {"temperature": d.temperature, "max_tokens": d.max_tokens, "seed": cfg.seed, "top_p": d.top_p}
    try:
        res = summarise_groups(groups, writer, params=params, template=vc.summary_prompt or SUMMARY_TEMPLATE,
                               store=make_store(cfg))  # fmt: skip
    finally:
        writer.close()
    for name, why in res.failures.items():
        log(f"  [yellow]summary of {name} failed: {why}")
    log(f"  summaries: {len(res.texts)} of {len(groups)} ({res.requested} requested, the rest cached)")
    keys = table["subject"].astype(str) + " | " + table["roi"].astype(str)
    return table.assign(
        summary=[res.texts.get(k, "") if rank == 1 else "" for k, rank in zip(keys, table["rank"], strict=True)]
    )


@records_outcome
def run_evaluate_captions(cfg: ExperimentConfig, run_dir: Path | None = None, log: Log | None = None) -> RunDir:
    """Voxel and ROI captions of every brain source (see the module docstring)."""
    from llmvem.brain.voxel_captions import caption_rois, caption_voxels

    log = log or console_log(cfg.progress)
    t_start = time.perf_counter()
    seed_everything(cfg.seed)
    inp, vcfg = cfg.evaluate.inputs, cfg.evaluate.voxel_captions
    if len(inp.features) != 1 or not inp.brain:
        raise ConfigError("evaluate captions: pass one -f (text-embedding features of the stimuli) and -b (brain)")
    feats = load_matrix(inp.features[0])
    sources = load_brain_sources(inp.brain, subject=inp.subject, rois=inp.rois)
    brains = [with_splits(b, cfg.evaluate.encoding.test_fraction, cfg.seed) for b in sources]
    for brain, _ in brains:
        align_ids(brain.stimulus_ids, feats.ids, f"brain {brain.name!r}", f"features {feats.name!r}")
    texts, corpus = _corpus(cfg, feats.values.shape[1])
    run = RunDir(cfg, run_dir)
    log(f"[bold]evaluate captions[/bold]: {feats.name} × {len(brains)} brain source(s), {len(texts)} captions")
    tables, lines = [], []
    for brain, _ in brains:
        model, r = _fit(cfg, brain, feats.values, feats.ids)
        rois = [str(x) for x in brain.voxels["roi"]]
        vc = caption_voxels(model.coef_, corpus, texts, k=vcfg.top_k, temperature=vcfg.temperature)
        lines.append(_voxel_lines(brain.name, rois, r, vc))
        t = caption_rois(model.coef_, rois, corpus, texts, r=r, k=vcfg.top_k, temperature=vcfg.temperature)
        mean_r = pd.Series(r).groupby(np.asarray(rois)).mean()
        t.insert(0, "subject", brain.name)
        t["mean_r"] = t["roi"].map(mean_r).astype(float)
        tables.append(t)
        for roi, g in t[t["rank"] == 1].groupby("roi", sort=False):
            log(f"  {brain.name} {roi}: {g['caption'].iloc[0]!r}")
    table = _summaries(cfg, pd.concat(tables, ignore_index=True), log)
    table.to_csv(run.file("roi_captions.csv"), index=False)
    atomic_write_text(run.file("voxel_captions.jsonl"), "".join(lines))
    top = table[table["rank"] == 1]
    run.log_metrics(
        roi_captions={s: {str(row["roi"]): {"caption": row["caption"], "score": row["score"], "mean_r": row["mean_r"],
                                            **({"summary": row["summary"]} if "summary" in row else {})}
                          for _, row in g.iterrows()} for s, g in top.groupby("subject", sort=False)},
        features=str(feats.path), corpus_size=len(texts), total_s=round(time.perf_counter() - t_start, 1),
    )  # fmt: skip
    from llmvem.report import build_report

    build_report(run.path)
    log(f"[green]done[/green]: {run.file('roi_captions.csv')}, {run.file('report.html')}")
    return run
