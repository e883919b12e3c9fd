"""``llmvem evaluate encoding | rsa | decode``: score the user's own feature files against brain data.

Inputs come from ``cfg.evaluate.inputs`` (file formats in :mod:`llmvem.data.files`); every run writes a run
directory with tables (CSV), per-voxel arrays, plots, ``metrics.json`` and ``report.html``.

``encoding`` and ``rsa`` are studies of the experiment runner (:mod:`llmvem.runner`), built here from the config
(:func:`encoding_study`, :func:`rsa_study`) out of the same kinds the YAML studies use: a ``files`` stimulus source,
one ``feature_file`` model per ``--features`` matrix, a ``brain_files`` target (the ``--brain`` sources, ``--roi``,
``--rdms``) and the ``encoding`` / ``partition`` / ``rsa`` / ``searchlight`` evaluations
(:mod:`llmvem.runner.kinds.files`, :mod:`llmvem.runner.kinds.evaluations`). Their ``metrics.json`` is the runner's
schema 2 (:mod:`llmvem.results`; decision 0013).

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
  with ceiling bands, RDM images; with ``--searchlight`` a volumetric searchlight map per volume brain source.
- ``--layer-sweep`` (encoding and rsa): the feature matrices are the layers of one model, in depth order; a
  ``layer_sweep`` evaluation (:mod:`llmvem.runner.kinds.sweeps`) chooses the best layer per ROI / RDM set on a
  seeded validation split of the training images, never the test images: ``layer_sweep.csv``,
  ``layer_sweep_subjects.csv``, ``layer_sweep.png`` and a report section (decision 0017).
- decode: brain → embedding ridge per brain source; identification accuracy among the test stimuli and, with a
  caption corpus, nearest-caption retrieval.
"""

from __future__ import annotations

import json
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from llmvem.config import ExperimentConfig
from llmvem.data.brain import BrainData
from llmvem.data.brain_select import load_brain_sources, with_splits
from llmvem.data.files import load_captions, load_matrix, load_references, split_spec
from llmvem.data.stimuli import align_ids
from llmvem.errors import ConfigError, DataError
from llmvem.pipeline.common import Log, console_log, embed_kwargs, make_store
from llmvem.runs import RunDir, records_outcome, seed_everything
from llmvem.store import atomic_write_text

__all__ = ["encoding_study", "rsa_study", "run_evaluate_decode", "run_evaluate_encoding", "run_evaluate_rsa",
           "with_splits"]  # fmt: skip


def _need(values: list[Any], flag: str, what: str) -> None:
    if not values:
        raise ConfigError(f"evaluate: no {what} given; pass {flag} (config key evaluate.inputs.{flag.lstrip('-')})")


def _brains(cfg: ExperimentConfig) -> list[BrainData]:
    """Every brain source of ``evaluate.inputs.brain`` loaded, ``--roi`` applied, names unique
    (:func:`llmvem.data.brain_select.load_brain_sources`)."""
    inp = cfg.evaluate.inputs
    return load_brain_sources(inp.brain, subject=inp.subject, rois=inp.rois)


# --------------------------------------------------------------------------- the studies
def _feature_models(specs: list[str], distinct: bool) -> dict[str, dict[str, Any]]:
    """One ``feature_file`` model per ``--features`` spec, named by its ``name=`` or file stem (a repeated name gets
    ``-2``, ``-3`` …, or is an error when the names must be ``distinct``: the spaces of a partition)."""
    names = [split_spec(s)[0] or Path(split_spec(s)[1]).expanduser().stem for s in specs]
    if distinct and len(set(names)) != len(names):
        raise DataError(f"evaluate: feature names {names} repeat; a partition or a layer sweep needs one name per "
                        "matrix: -f vision=v.npy -f language=d.npy, -f layer1=f.layer1.npy …")  # fmt: skip
    out: dict[str, dict[str, Any]] = {}
    for name, spec in zip(names, specs, strict=True):
        key, k = name, 2
        while key in out:
            key, k = f"{name}-{k}", k + 1
        out[key] = {"kind": "feature_file", "stimuli": "files", "path": spec}
    return out


def _file_study(cfg: ExperimentConfig, target: dict[str, Any], models: dict[str, Any], evaluations: dict[str, Any]):
    """The study of a file evaluation: the config as its settings, the ``files`` stimuli, the brain target."""
    import yaml

    from llmvem.config import dump_config
    from llmvem.runner.study import parse_study

    settings = yaml.safe_load(dump_config(cfg))  # credentials of describe.base_url left out
    settings.pop("dataset", None)
    tree = {"name": cfg.name, "description": f"llmvem {cfg.name.replace('-', ' ')} on files", "settings": settings,
            "stimuli": {"files": {"kind": "files"}}, "targets": {"brain": {"kind": "brain_files", "stimuli": "files",
            **target}}, "models": models, "evaluations": evaluations}  # fmt: skip
    return parse_study(tree, f"evaluate {cfg.name}")


def _brain_params(cfg: ExperimentConfig) -> dict[str, Any]:
    inp = cfg.evaluate.inputs.model_dump(mode="json")
    return {"brain": inp["brain"], "subject": inp["subject"], "rois": inp["rois"]}


def encoding_study(cfg: ExperimentConfig) -> Any:
    """``evaluate encoding`` as a study: every ``--features`` matrix × every ``--brain`` source (own splits or a
    seeded hold-out), ``encoding`` (permutations, maps) and, with ``--partition``, ``partition`` (run first: its
    checks come before the run directory is made)."""
    inp, enc = cfg.evaluate.inputs, cfg.evaluate.encoding
    _need(inp.features, "--features", "feature matrices")
    _need(inp.brain, "--brain", "brain data")
    models = _feature_models(inp.features, distinct=enc.partition or enc.layer_sweep)
    reps = {"against": "brain", "representations": list(models)}
    evaluations: dict[str, Any] = {"partition": {"kind": "partition", **reps}} if enc.partition else {}
    evaluations["encoding"] = {"kind": "encoding", **reps, "permutations": enc.permutations, "maps": True}
    if enc.layer_sweep:  # the test scores are the encoding's own (no second fit)
        evaluations["layer_sweep"] = {"kind": "layer_sweep", **reps, "score": "encoding", "of": "encoding"}
    return _file_study(cfg, {**_brain_params(cfg), "hold_out": True}, models, evaluations)


def rsa_study(cfg: ExperimentConfig) -> Any:
    """``evaluate rsa`` as a study: every ``--features`` matrix × every ``--rdms`` set and, with ``--brain``, the
    ROI RDM sets of the sources (the subjects); ``rsa`` with a subject bootstrap and, with ``--searchlight``,
    ``searchlight`` on each volume source."""
    inp = cfg.evaluate.inputs
    _need(inp.features, "--features", "feature matrices")
    if not inp.rdms and not inp.brain:
        raise ConfigError("evaluate rsa: no targets; pass --rdms (DATASET:TARGET or a file) and/or --brain sources")
    models = _feature_models(inp.features, distinct=cfg.evaluate.rsa.layer_sweep)
    reps = {"against": "brain", "representations": list(models)}
    evaluations: dict[str, Any] = {"rsa": {"kind": "rsa", **reps, "bootstrap": True}}
    if cfg.evaluate.rsa.layer_sweep:
        evaluations["layer_sweep"] = {"kind": "layer_sweep", **reps, "score": "rsa"}
    if cfg.evaluate.rsa.searchlight and inp.brain:
        evaluations["searchlight"] = {"kind": "searchlight", **reps}
    target = {**_brain_params(cfg), "rdms": list(inp.rdms), "roi_rdms": bool(inp.brain)}
    return _file_study(cfg, target, models, evaluations)


def run_evaluate_encoding(cfg: ExperimentConfig, run_dir: Path | None = None, log: Log | None = None) -> RunDir:
    """Voxelwise encoding of every feature matrix on every brain source (see the module docstring)."""
    from llmvem.runner import run_study

    return run_study(encoding_study(cfg), run_dir=run_dir, log=log)


def run_evaluate_rsa(cfg: ExperimentConfig, run_dir: Path | None = None, log: Log | None = None) -> RunDir:
    """RSA of every feature matrix against every target RDM set (see the module docstring)."""
    from llmvem.runner import run_study

    return run_study(rsa_study(cfg), run_dir=run_dir, log=log)


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
