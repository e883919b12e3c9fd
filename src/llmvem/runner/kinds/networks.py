"""Fine-tuned networks (the one trainer, :func:`llmvem.align.finetune.finetune`): trained on one stimulus source's
``train`` split and validated on its ``test`` split, answering pooled features and heads on any source; the
untouched network; HED labels as a target; held-out scores of a network's task head.

The split network (``settings.finetune``: backbone, trainable blocks …) is built once per run and the frozen
bottom's activations of each source once (cached in the store, :func:`llmvem.align.cache.cached_activations`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from pydantic import Field

from llmvem.errors import ConfigError
from llmvem.runner.parts import EVALUATIONS, MODELS, TARGETS, Params, part
from llmvem.runner.state import BrainTarget, Representation, RunState

Task = Literal["multilabel", "classifier", "voxels", "voxels_pca", "none"]


@dataclass
class Network(Representation):
    """A trained network's pooled features on a source (``values``, as any representation), with the network
    itself (a :class:`~llmvem.align.network.TrainedNetwork`), the task it trained and the source it trained on."""

    network: Any = None
    task: str = "none"
    trained_on: str = ""


def _split(state: RunState) -> Any:
    """The run's split network (``settings.finetune``), built once."""
    from llmvem.vision.trainable import split_from_config

    if "finetune_split" not in state.cache:
        state.cache["finetune_split"] = split_from_config(state.cfg.finetune, device=state.cfg.device)
    return state.cache["finetune_split"]


def activations(state: RunState, stimuli: str) -> Any:
    """The frozen bottom's activations (or 8-bit pixels) of a source's images, once per run (and in the store)."""
    from llmvem.align.cache import cached_activations

    key = f"activations:{stimuli}"
    if key not in state.cache:
        src = state.source(stimuli).stimuli
        state.cache[key] = cached_activations(state.store, _split(state), src, state.cfg.device, state.cfg.progress)
    return state.cache[key]


def _values(state: RunState, name: str, where: str) -> np.ndarray:
    """An unseeded target's rows: a representation's values or a brain target's voxel responses."""
    target = state.targets.get(name)
    if isinstance(target, Representation):
        return target.values
    if isinstance(target, BrainTarget) and target.brain is not None:
        return np.asarray(target.brain.responses)
    raise ConfigError(f"{where}: no target {name!r} with values (text, labels or voxels); targets: "
                      f"{sorted(state.targets)}")  # fmt: skip


class FinetunedParams(Params):
    stimuli: str = Field(description="the source it trains on (its train split; its test split validates)")
    text: str | None = Field(None, description="a text target of those images: the alignment target")
    targets: str | None = Field(None, description="the task's targets (labels, voxels) of those images")
    task: Task = Field("multilabel", description="the task head's loss (none: alignment only)")
    lambda_align: float | None = Field(None, ge=0, description="alignment weight (default settings.finetune's)")
    apply_to: str | None = Field(None, description="the source whose pooled features it represents (default stimuli)")


def _save(state: RunState, name: str, seed: int, result: Any) -> None:
    """``models/<name>-seed<k>.safetensors`` (``llmvem features --model RUN``), ``train_<name>_seed<k>.csv`` and
    ``training.png`` redrawn from every history of the run."""
    import pandas as pd
    from safetensors.torch import save_file

    from llmvem.report import plot_training_curves

    (state.run.path / "models").mkdir(exist_ok=True)
    save_file({k: v.contiguous() for k, v in result.state.items()},
              str(state.run.path / "models" / f"{name}-seed{seed}.safetensors"))  # fmt: skip
    pd.DataFrame(result.history).to_csv(state.run.file(f"train_{name}_seed{seed}.csv"), index=False)
    histories = {p.stem[len("train_") :].replace("_seed", " seed "): pd.read_csv(p)
                 for p in sorted(state.run.path.glob("train_*_seed*.csv"))}  # fmt: skip
    if all(len(h) for h in histories.values()):
        plot_training_curves(histories, state.run.file("training.png"), title="Fine-tuning: aligned vs twin")


@part(MODELS, "finetuned", FinetunedParams, seeded=True)
def finetuned(p: FinetunedParams, state: RunState, name: str, seed: int) -> Network:
    """A network fine-tuned (task + λ · alignment, ``settings.finetune``) on the ``train`` images of ``stimuli``,
    cached in the store under its :class:`~llmvem.align.spec.TrainSpec` key; λ = 0 is the twin. Represents the
    pooled features (n, D) of ``apply_to``'s images."""
    from llmvem.align.finetune import FinetuneData, TrainedNetwork, finetune, finetune_spec

    cfg, where = state.cfg, f"models.{name}"
    src = state.source(p.stimuli)
    train, val = src.split_indices("train"), src.split_indices("test")
    lam = cfg.finetune.lambda_align if p.lambda_align is None else p.lambda_align
    text = np.asarray(_values(state, p.text, f"{where}.text"), dtype=np.float32) if p.text and lam > 0 else None
    targets = _values(state, p.targets, f"{where}.targets") if p.targets and p.task != "none" else None
    data = FinetuneData(activations(state, p.stimuli), text, targets)
    split = _split(state)
    ckpt_dir = finetune_spec(split, data, train, val, cfg.finetune, lam, p.task, seed).checkpoint_dir(state.store.root)
    res = finetune(split, data, train, val, cfg.finetune, lam, p.task, seed, ckpt_dir=ckpt_dir, device=cfg.device,
                   progress=cfg.progress, label=f"{name} seed {seed}")  # fmt: skip
    _save(state, name, seed, res)
    net = TrainedNetwork(split, res.state, cfg.device)
    apply = p.apply_to or p.stimuli
    state.note("models", name, {"lambda_align": lam, "task": p.task, "n_train": len(train), "n_val": len(val)})
    state.note("models", name, {"best_epoch": res.best_epoch, "final": res.history[-1] if res.history else None},
               seed)  # fmt: skip
    state.log(f"model {name} (seed {seed}): fine-tuned on {len(train)} {p.stimuli} images (λ={lam:g}, task "
              f"{p.task}), {len(val)} held out; represents {apply}")  # fmt: skip
    return Network(apply, net.features(activations(state, apply)), network=net, task=p.task, trained_on=p.stimuli)


class HeadParams(Params):
    of: str = Field(description="a fine-tuned model (run before this one)")
    head: Literal["project", "task"] = Field(description="project: the projection into the text space; task")


def network_of(state: RunState, name: str, seed: int | None, where: str) -> Network:
    """The fine-tuned model ``name`` of ``seed`` (a :class:`Network`; anything else is an error naming ``where``)."""
    reps = state.representation(name)
    rep = reps.get(seed)
    if not isinstance(rep, Network):
        raise ConfigError(f"{where}: {name!r} is not a fine-tuned model of this seed (kind finetuned)")
    return rep


@part(MODELS, "head", HeadParams, seeded=True)
def head(p: HeadParams, state: RunState, name: str, seed: int) -> Representation:
    """A fine-tuned network's last layer: its head ``head`` (n, K) on the pooled features it represents."""
    rep = network_of(state, p.of, seed, f"models.{name}.of")
    return Representation(rep.stimuli, rep.network.head(p.head, rep.values))


class UntrainedParams(Params):
    stimuli: str


@part(MODELS, "untrained_network", UntrainedParams)
def untrained_network(p: UntrainedParams, state: RunState, name: str) -> Representation:
    """The untouched network of the fine-tunes (``settings.finetune.backbone``): its pooled features (n, D)."""
    from llmvem.align.network import TrainedNetwork

    values = TrainedNetwork(_split(state), None, state.cfg.device).features(activations(state, p.stimuli))
    return Representation(p.stimuli, values)


class LabelParams(Params):
    stimuli: str


@part(TARGETS, "hed_labels", LabelParams)
def hed_labels(p: LabelParams, state: RunState, name: str) -> Representation:
    """Multi-hot HED category labels (n, L) of a source with HED annotations (the NSD shared images): the tags
    in 3–90 % of its images, most frequent first (:func:`llmvem.data.hed.hed_labels`)."""
    from llmvem.data.hed import hed_labels as labels_of

    src = state.source(p.stimuli)
    if "hed" not in src.extra:
        raise ConfigError(f"targets.{name}: stimuli {p.stimuli!r} have no HED annotations (nsd_shared1000 has)")
    values, vocabulary = labels_of(src.extra["hed"])
    state.note("targets", name, {"vocabulary": vocabulary})
    state.log(f"target {name}: {len(vocabulary)} HED labels of {len(values)} images")
    return Representation(p.stimuli, values)


class HeldoutParams(Params):
    models: list[str] = Field(min_length=1, description="fine-tuned models whose task head is scored")
    targets: str = Field(description="the task's targets (the ones they trained on)")
    split: str = Field("test", description="the split of the training source scored")
    predictions: bool = Field(False, description="write predictions/<model>-seed<k>.npz (held-out ids, task "
                              "outputs, targets, projections)")  # fmt: skip


def _heldout_outputs(state: RunState, rep: Network, split: str) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """The held-out rows of the source ``rep`` trained on, and its network's heads on them (``task``,
    ``projection``: those it has)."""
    net = rep.network
    idx = state.source(rep.trained_on).split_indices(split)
    features = net.features(activations(state, rep.trained_on)[idx])
    heads = {"task": "task", "projection": "project"}
    return idx, {k: net.head(h, features) for k, h in heads.items() if net.has_head(h)}


def _voxel_rows(state: RunState, name: str, model: str, seed: Any, target: Any, outputs: np.ndarray,
                y: np.ndarray) -> np.ndarray:  # fmt: skip
    """Per-voxel held-out r (v,) of a voxel head (NaN for the masked voxels) and its rows per ROI
    (:func:`llmvem.brain.encoding.encoding_rows`)."""
    import warnings

    from llmvem.align.metrics import voxel_r
    from llmvem.brain.encoding import encoding_rows

    r = np.full(target.brain.n_voxels, np.nan)
    r[target.valid] = voxel_r(outputs, y)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a ROI of masked voxels only: mean of nothing
        rows = encoding_rows(model, r, target.brain)
    for row in rows:
        metrics = {k: v for k, v in row.items() if k not in ("model", "roi", "ceiling_bound")}
        state.results.add(name, model, row["roi"], metrics, seed=seed)
    return r


def _write_heldout(frame: Any, state: RunState, name: str, p: HeldoutParams) -> None:
    """``<name>.csv``: one row per model × target (the whole targets, and each ROI of voxel targets), the mean
    over seeds of every score."""
    from llmvem.results import wide_table

    wide_table(frame, name).to_csv(state.run.file(f"{name}.csv"), index=False)


@part(EVALUATIONS, "heldout_task", HeldoutParams, write=_write_heldout)
def heldout_task(p: HeldoutParams, state: RunState, name: str) -> None:
    """Each model's task head on the held-out images of the source it trained on, scored against ``targets``
    (:func:`llmvem.align.metrics.task_scores`; multilabel: label accuracy and mAP,
    :func:`~llmvem.align.metrics.label_metrics`). Models without a task (alignment only) are left out. Voxel
    targets (kind ``zscored_voxels``) add rows per ROI and ``<name>_voxel_r.npz`` (per-voxel r by
    ``<model>-seed<k>``, NaN for masked voxels)."""
    from llmvem.align.metrics import label_metrics, task_scores

    y = _values(state, p.targets, f"evaluations.{name}.targets")
    target, voxel_rs = state.targets[p.targets], {}
    for model in p.models:
        for seed in state.representation(model):
            rep = network_of(state, model, seed, f"evaluations.{name}.models")
            if rep.task == "none":
                continue
            idx, outs = _heldout_outputs(state, rep, p.split)
            logits = outs["task"]
            scores = label_metrics(logits, y[idx]) if rep.task == "multilabel" else task_scores(rep.task, logits,
                                                                                                y[idx])  # fmt: skip
            state.results.add(name, model, p.targets, scores, seed=seed)
            if rep.task in ("voxels", "voxels_pca") and hasattr(target, "valid"):
                voxel_rs[f"{model}-seed{seed}"] = _voxel_rows(state, name, model, seed, target, logits, y[idx])
            if p.predictions:
                _predictions(state, rep, f"{model}-seed{seed}", idx, outs, y[idx])
    if voxel_rs:
        np.savez_compressed(state.run.file(f"{name}_voxel_r.npz"), **voxel_rs)  # type: ignore[arg-type]
    state.log(f"evaluation {name}: task heads of {', '.join(p.models)} on the {p.split!r} images")


def _predictions(state: RunState, rep: Network, label: str, idx: np.ndarray, outs: dict[str, np.ndarray],
                 y: np.ndarray) -> None:  # fmt: skip
    """``predictions/<label>.npz``: the held-out ``ids``, task ``outputs``, ``targets`` and ``projection``."""
    ids = state.source(rep.trained_on).ids
    pred = {"ids": np.asarray([ids[k] for k in idx], dtype=str), "outputs": outs["task"], "targets": y}
    if "projection" in outs:
        pred["projection"] = outs["projection"]
    (state.run.path / "predictions").mkdir(exist_ok=True)
    np.savez_compressed(state.run.path / "predictions" / f"{label}.npz", **pred)  # type: ignore[arg-type]


class RetrievalParams(Params):
    models: list[str] = Field(min_length=1, description="fine-tuned models whose projection head is scored")
    text: str = Field(description="the text target they were aligned to")
    split: str = Field("test", description="the split of the training source scored")


@part(EVALUATIONS, "retrieval", RetrievalParams)
def retrieval(p: RetrievalParams, state: RunState, name: str) -> None:
    """Image → own-description retrieval of each model's projection head on the held-out images of the source it
    trained on: ``top1`` (its own text is the nearest of the held-out texts by cosine,
    :func:`llmvem.align.metrics.retrieval_top1`) and ``chance`` (1 / n held out). Models without a projection
    (twins) are left out."""
    from llmvem.align.metrics import retrieval_top1

    text = np.asarray(_values(state, p.text, f"evaluations.{name}.text"), dtype=np.float32)
    for model in p.models:
        for seed in state.representation(model):
            rep = network_of(state, model, seed, f"evaluations.{name}.models")
            if not rep.network.has_head("project"):
                continue
            idx, outs = _heldout_outputs(state, rep, p.split)
            state.results.add(name, model, p.text, {"top1": retrieval_top1(outs["projection"], text[idx]),
                                                    "chance": 1.0 / len(idx)}, seed=seed)  # fmt: skip
    state.log(f"evaluation {name}: image → own-description retrieval of {', '.join(p.models)} ({p.split!r} images)")
