"""``llmvem evaluate encoding | rsa | decode``: score the user's own feature files against brain data.

Inputs come from ``cfg.evaluate.inputs`` (file formats in :mod:`llmvem.data.files`); every run writes a run
directory with tables (CSV), per-voxel arrays, plots, ``metrics.json`` and ``report.html``.

All three are studies of the experiment runner (:mod:`llmvem.runner`), built here from the config
(:func:`encoding_study`, :func:`rsa_study`, :func:`decode_study`) out of the same kinds the YAML studies use: a
``files`` stimulus source, one ``feature_file`` model per ``--features`` matrix (``--embeddings`` for decode), a
``brain_files`` target (the ``--brain`` sources, ``--roi``, ``--rdms``) and the ``encoding`` / ``partition`` /
``rsa`` / ``searchlight`` / ``decode`` evaluations (:mod:`llmvem.runner.kinds.files`,
:mod:`llmvem.runner.kinds.evaluations`, :mod:`llmvem.runner.kinds.decoding`). Their ``metrics.json`` is the
runner's schema 2 (:mod:`llmvem.results`; decision 0013).

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
  caption corpus, nearest-caption retrieval (``retrieved_captions.jsonl``) and the decoded captions' caption metrics
  against human captions with their human ceiling (``caption_metrics.csv``); ``decode.csv`` (one row per brain
  source), ``decode.png``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from llmvem.config import ExperimentConfig
from llmvem.data.brain_select import with_splits
from llmvem.data.files import split_spec
from llmvem.errors import ConfigError, DataError
from llmvem.pipeline.common import Log
from llmvem.runs import RunDir

__all__ = ["decode_study", "encoding_study", "rsa_study", "run_evaluate_decode", "run_evaluate_encoding",
           "run_evaluate_rsa", "with_splits"]  # fmt: skip


def _need(values: list[Any], flag: str, what: str) -> None:
    if not values:
        raise ConfigError(f"evaluate: no {what} given; pass {flag} (config key evaluate.inputs.{flag.lstrip('-')})")


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


def decode_study(cfg: ExperimentConfig) -> Any:
    """``evaluate decode`` as a study: the ``--embeddings`` matrix (model ``embeddings``) decoded from every
    ``--brain`` source (own splits or a seeded hold-out) by the ``decode`` evaluation, with the ``--captions``
    corpus, ``--references`` and ``--caption-metric`` (given: exactly those; not given: those this machine can
    compute)."""
    inp, dec = cfg.evaluate.inputs, cfg.evaluate.decode
    _need(inp.brain, "--brain", "brain data")
    if not inp.embeddings:
        raise ConfigError("evaluate decode: no --embeddings (the stimuli's text embeddings, .npy + .ids.txt)")
    models = {"embeddings": {"kind": "feature_file", "stimuli": "files", "path": str(inp.embeddings)}}
    evaluation: dict[str, Any] = {"kind": "decode", "against": "brain", "representations": ["embeddings"]}
    evaluation.update({k: str(v) for k, v in (("captions", inp.captions), ("nsd_stim_info", inp.nsd_stim_info))
                       if v is not None})  # fmt: skip
    if inp.references is not None:
        refs = inp.references if isinstance(inp.references, list) else [inp.references]
        evaluation["references"] = [str(r) for r in refs] if len(refs) != 1 else str(refs[0])
    if "caption_metrics" in dec.model_fields_set:
        evaluation["caption_metrics"] = list(dec.caption_metrics)
    return _file_study(cfg, {**_brain_params(cfg), "hold_out": True}, models, {"decode": evaluation})


def run_evaluate_encoding(cfg: ExperimentConfig, run_dir: Path | None = None, log: Log | None = None) -> RunDir:
    """Voxelwise encoding of every feature matrix on every brain source (see the module docstring)."""
    from llmvem.runner import run_study

    return run_study(encoding_study(cfg), run_dir=run_dir, log=log)


def run_evaluate_rsa(cfg: ExperimentConfig, run_dir: Path | None = None, log: Log | None = None) -> RunDir:
    """RSA of every feature matrix against every target RDM set (see the module docstring)."""
    from llmvem.runner import run_study

    return run_study(rsa_study(cfg), run_dir=run_dir, log=log)


def run_evaluate_decode(cfg: ExperimentConfig, run_dir: Path | None = None, log: Log | None = None) -> RunDir:
    """Brain → embedding decoding on every brain source (see the module docstring)."""
    from llmvem.runner import run_study

    return run_study(decode_study(cfg), run_dir=run_dir, log=log)
