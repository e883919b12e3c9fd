"""Fine-tune a vision network on your own images (``dataset.name: folder``): GPT4Image-style classification or
LLM-VEM-style voxel regression, each language-aligned model against its unaligned twin.

Inputs (``dataset``):

- ``images``: a folder of images, ImageNet-style (one subfolder per class; the subfolder name is the class) or flat.
  An image's id is its file stem, so stems must be unique across the folder.
- ``descriptions``: JSONL / CSV / TSV / JSON of image + text (read by
  :func:`llmvem.describe.imported.read_text_table`; the image column is a file name or stem). Several texts of one
  image are embedded and averaged; ``embed.select_model`` / ``embed.select_prompt`` pick rows by model / prompt.
  Images without a text stop the run (``missing_descriptions: fail``) or are left out (``drop``); texts of unknown
  images are ignored (both counted).
- ``labels``: optional CSV / TSV / JSONL of image, label overriding the subfolders (``multilabel``: labels joined by
  ``|``).
- ``brain``: brain data for the voxel tasks (:func:`llmvem.data.files.load_brain`), its stimulus ids the image stems.
  Voxels with NaN/inf or constant responses are masked (a counted warning), as ``llmvem evaluate encoding`` does.

Models (``finetune``): the *aligned* model minimises task + λ · alignment (``finetune.loss``) to the text embedding
of its own image's descriptions; its *twin* the task alone (λ = 0) with the same seed, data, held-out split and
schedule; both for every seed of ``finetune.seeds``. ``finetune.task``: ``classifier`` (cross-entropy over classes),
``multilabel`` (BCE), ``voxels`` (MSE to the responses standardised on the training images), ``voxels_pca`` (the
same through ``pca_components`` PCA components of the training voxels) or ``none`` (alignment only: no twin);
``auto`` picks voxels with brain data, else classifier with labels, else none. The held-out split
(``finetune.val_fraction``, seeded by ``seed``; stratified by class for the classifier; for the voxel tasks the brain
data's own ``test`` split where it has one, see ``dataset.heldout``) is shared by every model.

Outputs in the run directory: ``metrics.json`` (``task``, ``data`` counts, then per task ``classification`` /
``multilabel`` / ``voxels`` and ``retrieval``: ``{MODEL: {METRIC: {"seed<k>": x, "mean": x}}, "paired": {METRIC:
{"diff_mean", "ci95", "per_seed"}}}`` with aligned − twin over seeds), ``split.json`` (train / held-out ids),
``models/<aligned|twin>-seed<k>.safetensors``, ``predictions/<model>-seed<k>.npz`` (held-out ``ids``, ``outputs``,
``targets``), ``scores.csv`` + ``scores.png``, for voxel tasks ``encoding.csv`` (per ROI, noise ceilings) and
``voxel_r.npz``, ``training.png`` and ``report.html``.
"""

from __future__ import annotations

import json
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from llmvem.align.metrics import retrieval_top1, task_scores, voxel_r
from llmvem.config import ExperimentConfig
from llmvem.data.brain import BrainData
from llmvem.data.splits import heldout_split
from llmvem.data.stimuli import IMAGE_SUFFIXES, StimulusSet
from llmvem.errors import ConfigError, DataError, IdMismatchError
from llmvem.pipeline.common import Log, ci95, console_log, embed_kwargs, make_store
from llmvem.runs import RunDir, records_outcome, seed_everything
from llmvem.store import atomic_write_text

#: tasks whose targets are class labels, and those whose targets are voxel responses
LABEL_TASKS = ("classifier", "multilabel")
VOXEL_TASKS = ("voxels", "voxels_pca")
#: the headline metric of each task (scores.png, the log)
HEADLINE = {"classifier": "top1", "multilabel": "label_accuracy", "voxels": "mean_r", "voxels_pca": "mean_r",
            "none": "top1"}  # fmt: skip
#: the metrics.json section of each task
SECTION = {"classifier": "classification", "multilabel": "multilabel", "voxels": "voxels", "voxels_pca": "voxels"}


@dataclass
class FolderImages:
    """The images of a folder with their labels and descriptions, after every input check.

    Attributes:
        stimuli: the images (ids = file stems), in path order.
        label_sets: per image its labels (one for a class folder or a plain label file), or ``None`` (no labels).
        texts: the description rows of the kept images (columns ``image``, ``text`` …), or ``None``.
        counts: what was left out, for the log and ``metrics.json`` (``dropped_no_description``,
            ``ignored_descriptions``, ``ignored_labels``).
    """

    stimuli: StimulusSet
    label_sets: list[list[str]] | None
    texts: pd.DataFrame | None
    counts: dict[str, int] = field(default_factory=dict)


def _list_images(folder: Path) -> tuple[list[Path], list[str | None]]:
    """Image files under ``folder`` (sorted) and each one's class folder (``None`` for files at the top)."""
    if not folder.is_dir():
        raise DataError(f"dataset.images: image folder not found: {folder}")
    paths = sorted(
        p
        for p in folder.rglob("*")
        if p.is_file()
        and p.suffix.lower() in IMAGE_SUFFIXES
        and not any(part.startswith(".") for part in p.relative_to(folder).parts)
    )
    if not paths:
        raise DataError(f"no images ({', '.join(IMAGE_SUFFIXES)}) found in {folder} or its subfolders")
    classes = [p.relative_to(folder).parts[0] if len(p.relative_to(folder).parts) > 1 else None for p in paths]
    seen: dict[str, Path] = {}
    dup = []
    for p in paths:
        if p.stem in seen:
            dup.append(f"{seen[p.stem].relative_to(folder)} and {p.relative_to(folder)}")
        seen[p.stem] = p
    if dup:
        raise DataError(
            f"{len(dup)} image file name(s) occur twice in {folder} (an image's id is its file stem, which matches it "
            f"to its description and brain response): {dup[:5]}; rename them so every stem is unique"
        )
    return paths, classes


def resolve_task(cfg: ExperimentConfig, has_labels: bool) -> str:
    """The task actually trained: ``finetune.task``, or for ``auto`` voxels (brain data), classifier (labels), none."""
    task = cfg.finetune.task
    ds = cfg.dataset
    if task == "auto":
        task = "voxels" if ds.brain is not None else "classifier" if has_labels else "none"
    if task in LABEL_TASKS and not has_labels:
        raise ConfigError(
            f"finetune.task={task!r} needs class labels: put the images in one subfolder per class "
            f"({ds.images}/<class>/<image>.jpg) or give dataset.labels (CSV of image,label)"
        )
    if task in VOXEL_TASKS and ds.brain is None:
        raise ConfigError(f"finetune.task={task!r} needs brain responses: set dataset.brain (see llmvem.data.files)")
    if cfg.dataset.heldout not in ("auto", "seeded") and task not in VOXEL_TASKS:
        raise ConfigError(
            f"dataset.heldout={cfg.dataset.heldout!r} names a split of the brain data, which only the voxel tasks "
            f"read (this run's task: {task!r}); use auto or seeded"
        )
    return task


def load_folder_images(cfg: ExperimentConfig, log: Log | None = None) -> tuple[FolderImages, str]:
    """Read and check the images, labels and descriptions of ``cfg.dataset``; return them and the resolved task.

    Raises:
        ConfigError: no image folder, no descriptions for an aligned model, a task without its labels / brain data,
            ``finetune.loss: visual_words`` or ``embed.aggregate: all`` (not available here).
        DataError: unreadable or duplicate-named images, images without descriptions (``missing_descriptions:
            fail``), images without labels, a class with fewer than 2 images, fewer than 2 classes.
    """
    from llmvem.describe.imported import read_text_table
    from llmvem.describe.run import read_labels
    from llmvem.text.multi import select_texts

    log = log or (lambda msg: None)
    ds, ft = cfg.dataset, cfg.finetune
    if ds.images is None:
        raise ConfigError("dataset.name=folder needs dataset.images: the folder of your images")
    if ft.loss == "visual_words":
        raise ConfigError("finetune.loss=visual_words is not available for dataset.name=folder; use infonce, cosine …")
    if cfg.embed.aggregate != "mean":
        raise ConfigError("dataset.name=folder trains on one text embedding per image: set embed.aggregate: mean")
    folder = Path(ds.images).expanduser()
    paths, folder_classes = _list_images(folder)
    ids = [p.stem for p in paths]
    counts: dict[str, int] = {}

    label_sets: list[list[str]] | None = None
    if ds.labels is not None:
        table = read_labels(ds.labels)
        counts["ignored_labels"] = len(set(table) - set(ids))
        missing = [i for i in ids if i not in table]
        if missing:
            raise DataError(f"{len(missing)} of {len(ids)} image(s) have no label in {ds.labels}: {missing[:10]}")
        label_sets = [[s.strip() for s in table[i].split("|") if s.strip()] for i in ids]
    elif any(c is not None for c in folder_classes):
        loose = [p.name for p, c in zip(paths, folder_classes, strict=True) if c is None]
        if loose:
            raise DataError(
                f"{len(loose)} image(s) lie directly in {folder}, outside any class subfolder ({loose[:5]}): move "
                "them into their class's subfolder, or give dataset.labels"
            )
        label_sets = [[str(c)] for c in folder_classes]
    task = resolve_task(cfg, label_sets is not None)
    if task == "none" and ft.lambda_align == 0:
        raise ConfigError("finetune.task=none with finetune.lambda_align=0: nothing to train")
    if task == "classifier" and label_sets is not None:
        many = [i for i, s in zip(ids, label_sets, strict=True) if len(s) != 1]
        if many:
            raise DataError(f"task 'classifier' needs exactly one label per image; {len(many)} have not: {many[:5]}")

    texts = None
    if ds.descriptions is not None:
        df = select_texts(read_text_table(ds.descriptions), model=cfg.embed.select_model,
                          prompt=cfg.embed.select_prompt)  # fmt: skip
        described = set(df["image"])
        counts["ignored_descriptions"] = int((~df["image"].isin(set(ids))).sum())
        if counts["ignored_descriptions"]:
            log(f"  {counts['ignored_descriptions']} description(s) name images not in {folder}: ignored")
        missing = [i for i in ids if i not in described]
        counts["dropped_no_description"] = 0
        if missing and ds.missing_descriptions == "fail":
            raise DataError(
                f"{len(missing)} of {len(ids)} image(s) have no description in {ds.descriptions}: {missing[:10]}"
                + (" ..." if len(missing) > 10 else "")
                + "; describe them (llmvem describe), or set dataset.missing_descriptions: drop to leave them out"
            )
        if missing:
            keep = [k for k, i in enumerate(ids) if i in described]
            counts["dropped_no_description"] = len(missing)
            log(f"  {len(missing)} image(s) without a description left out (dataset.missing_descriptions: drop)")
            paths, ids = [paths[k] for k in keep], [ids[k] for k in keep]
            label_sets = [label_sets[k] for k in keep] if label_sets is not None else None
        texts = df[df["image"].isin(set(ids))].reset_index(drop=True)
    elif ft.lambda_align > 0:
        raise ConfigError(
            "dataset.descriptions is needed: the aligned model is trained towards the text embedding of each image's "
            "description (a JSONL/CSV of image,text; `llmvem describe` writes one), or set finetune.lambda_align: 0"
        )
    if len(ids) < 6:
        raise DataError(f"{len(ids)} usable image(s) in {folder}: too few to train and hold out (need ≥ 6)")
    if task == "classifier" and label_sets is not None:
        sizes = pd.Series([s[0] for s in label_sets]).value_counts()
        if len(sizes) < 2:
            raise DataError(f"task 'classifier' needs ≥ 2 classes; {folder} has {list(sizes.index)}")
        small = {str(k): int(v) for k, v in sizes.items() if v < 2}
        if small:
            raise DataError(
                f"class(es) with fewer than 2 images: {small}; every class needs ≥ 2 (one to train on, one held "
                "out): add images or remove the class"
            )
    single = [c[0] if len(c) == 1 else "|".join(c) for c in label_sets] if label_sets is not None else None
    stimuli = StimulusSet.from_paths(paths, ids=ids, name=folder.name, labels=single)  # raises on unreadable files
    return FolderImages(stimuli, label_sets, texts, counts), task


@dataclass
class VoxelTargets:
    """Voxel responses of the images, standardised on the training rows.

    Attributes:
        brain: the brain data reordered to the images (every voxel, masked ones included).
        valid: (v,) bool, the voxels trained on (finite and not constant).
        targets: (n, v_valid) float32 z-scores (training-row mean and sd).
        mean, sd: (v_valid,) the training rows' mean and standard deviation of the raw responses.
    """

    brain: BrainData
    valid: np.ndarray
    targets: np.ndarray
    mean: np.ndarray
    sd: np.ndarray


def load_folder_brain(cfg: ExperimentConfig, ids: list[str]) -> tuple[BrainData, int]:
    """``dataset.brain`` reordered to the images ``ids`` (its splits keep only those images).

    Returns:
        the brain data, and the number of its stimuli that are not among the images (ignored).
    Raises:
        IdMismatchError: images without a response (the message shows ids of both sides).
    """
    from llmvem.data.files import load_brain

    assert cfg.dataset.brain is not None
    src = cfg.dataset.brain
    brain = load_brain(src, subject=cfg.evaluate.inputs.subject)
    have = set(brain.stimulus_ids)
    missing = [i for i in ids if i not in have]
    if missing:
        raise IdMismatchError(
            f"brain data {src}: {len(missing)} of {len(ids)} image(s) have no response, e.g. {missing[:5]}; its "
            f"stimulus ids look like {brain.stimulus_ids[:5]}: they must be the images' file stems"
        )
    return brain.reorder(ids), len(have - set(ids))


def brain_heldout(brain: BrainData, heldout: str, min_val: int = 3) -> tuple[np.ndarray, np.ndarray] | None:
    """(train, held-out) row indices from a split of ``brain`` (already reordered to the images), or None.

    ``heldout`` is ``auto`` (the split ``test`` if it names ≥ ``min_val`` images and leaves ≥ 4 to train on, else
    None: the caller draws a seeded split), ``seeded`` (None) or a split name, which must exist and be usable.
    Raises:
        ConfigError: a named split that the brain data lacks, or one too small or too large to hold out.
    """
    if heldout == "seeded":
        return None
    name = "test" if heldout == "auto" else heldout
    if name not in brain.splits:
        if heldout == "auto":
            return None
        raise ConfigError(
            f"dataset.heldout={heldout!r}: the brain data has no such split; it has {sorted(brain.splits)}"
        )
    val_idx = brain.split_indices(name)
    n = len(brain.stimulus_ids)
    if not min_val <= len(val_idx) <= n - 4:
        if heldout == "auto":
            return None
        raise ConfigError(
            f"dataset.heldout={heldout!r}: the split names {len(val_idx)} of the {n} images; hold out ≥ {min_val} "
            "and leave ≥ 4 to train on"
        )
    val_idx = np.sort(val_idx.astype(np.int64))
    return np.setdiff1d(np.arange(n), val_idx), val_idx


def voxel_targets(
    cfg: ExperimentConfig, brain: BrainData, train_idx: np.ndarray, log: Log | None = None
) -> VoxelTargets:
    """Mask the NaN/constant voxels of ``brain`` (rows: the images; counted warning) and standardise the rest on
    the training rows ``train_idx``.

    Raises:
        DataError: no usable voxel.
    """
    src = cfg.dataset.brain
    valid = brain.check_finite()
    n_bad = int((~valid).sum())
    if not valid.any():
        raise DataError(f"brain data {src}: all {brain.n_voxels} voxels hold NaN/inf or are constant over the images")
    if n_bad:
        msg = (
            f"brain data {src}: {n_bad} of {brain.n_voxels} voxels contain NaN/inf or are constant and are left out "
            "of training and scoring (their r is NaN)"
        )
        warnings.warn(msg, RuntimeWarning, stacklevel=2)
        if log is not None:
            log(f"  [yellow]{msg}[/yellow]")
    y = np.asarray(brain.responses[:, valid], dtype=np.float64)
    mean, sd = y[train_idx].mean(0), y[train_idx].std(0)
    sd = np.where(sd > 0, sd, 1.0)
    z = ((y - mean) / sd).astype(np.float32)
    return VoxelTargets(brain, valid, z, mean, sd)


def _summarise(rows: list[dict[str, Any]], conditions: list[str]) -> dict[str, Any]:
    """``{MODEL: {METRIC: {"seed<k>": x, "mean": x}}, "paired": {METRIC: {diff_mean, ci95, per_seed}}}`` from
    rows (model, metric, seed, value); ``paired`` (aligned − twin, 95 % CI over seeds) when both models are there."""
    df = pd.DataFrame(rows)
    out: dict[str, Any] = {}
    for cond in conditions:
        sub = df[df["model"] == cond]
        out[cond] = {m: {**{f"seed{int(s)}": float(v) for s, v in zip(g["seed"], g["value"], strict=True)},
                         "mean": float(g["value"].mean())}
                     for m, g in sub.groupby("metric", sort=False)}  # fmt: skip
    if "aligned" in conditions and "twin" in conditions:
        paired = {}
        for metric, g in df.groupby("metric", sort=False):
            a = g[g["model"] == "aligned"].set_index("seed")["value"]
            t = g[g["model"] == "twin"].set_index("seed")["value"]
            seeds = [s for s in a.index if s in t.index]
            if not seeds:
                continue
            diff = np.asarray([a[s] - t[s] for s in seeds], dtype=np.float64)
            m, lo, hi = ci95(diff)
            paired[str(metric)] = {"diff_mean": m, "ci95": [lo, hi], "per_seed": diff.tolist()}
        out["paired"] = paired
    return out


@records_outcome
def run_finetune_folder(
    cfg: ExperimentConfig, run_dir: Path | None = None, log: Log | None = None, until: str = "evaluate"
) -> RunDir:
    """Run the experiment of the module docstring on ``cfg.dataset.images``; returns the run directory.

    Every input is checked before any training (see :func:`load_folder_images`, :func:`voxel_targets`).
    ``until="train"`` stops after training (models, histories, training curves); ``"evaluate"`` (re)uses the
    trained models from the artifact store and scores them on the held-out images.
    """
    from safetensors.torch import save_file

    from llmvem.align.finetune import FinetuneData, TrainedNetwork, finetune, finetune_spec
    from llmvem.pipeline.common import cached_activations
    from llmvem.text.multi import embed_per_image
    from llmvem.vision.trainable import split_from_config

    log = log or console_log(cfg.progress)
    t_start = time.perf_counter()
    seed_everything(cfg.seed)
    ft = cfg.finetune
    images, task = load_folder_images(cfg, log)
    stim, ids = images.stimuli, list(images.stimuli.ids)
    n = len(ids)

    # ---- targets and the held-out split (checked before anything is trained)
    classes: list[str] = []
    targets: np.ndarray | None = None
    vox: VoxelTargets | None = None
    counts = dict(images.counts)
    heldout_from = "seeded"
    if task == "classifier":
        assert images.label_sets is not None
        names = [s[0] for s in images.label_sets]
        classes = sorted(set(names))
        targets = np.asarray([classes.index(c) for c in names], dtype=np.int64)
        train_idx, val_idx = heldout_split(n, ft.val_fraction, cfg.seed, names)
    elif task == "multilabel":
        assert images.label_sets is not None
        classes = sorted({c for s in images.label_sets for c in s})
        targets = np.zeros((n, len(classes)), dtype=np.float32)
        for k, s in enumerate(images.label_sets):
            targets[k, [classes.index(c) for c in s]] = 1.0
        train_idx, val_idx = heldout_split(n, ft.val_fraction, cfg.seed)
    elif task in VOXEL_TASKS:  # held out: the brain data's own test split where it has one (dataset.heldout)
        brain, counts["ignored_brain_stimuli"] = load_folder_brain(cfg, ids)
        own = brain_heldout(brain, cfg.dataset.heldout)
        if own is not None:
            heldout_from = f"brain split {'test' if cfg.dataset.heldout == 'auto' else cfg.dataset.heldout!r}"
        train_idx, val_idx = own if own is not None else heldout_split(n, ft.val_fraction, cfg.seed, min_val=3)
        vox = voxel_targets(cfg, brain, train_idx, log)
        counts["masked_voxels"] = int((~vox.valid).sum())
        targets = vox.targets
    else:
        train_idx, val_idx = heldout_split(n, ft.val_fraction, cfg.seed)
    if len(train_idx) < 4:
        raise DataError(f"{len(train_idx)} training image(s) after holding out {len(val_idx)}: need ≥ 4")
    if cfg.dataset.brain is not None and task not in VOXEL_TASKS:
        log(f"  dataset.brain is not used by task {task!r}")

    store = make_store(cfg)
    run = RunDir(cfg, run_dir)
    log(f"[bold]fine-tune on {Path(str(cfg.dataset.images)).name}[/bold] ({task}): run directory {run.path}")
    atomic_write_text(run.file("split.json"), json.dumps(
        {"train": [ids[k] for k in train_idx], "heldout": [ids[k] for k in val_idx], "seed": cfg.seed,
         "val_fraction": ft.val_fraction, "heldout_from": heldout_from, "classes": classes}, indent=1))  # fmt: skip

    text = None
    if images.texts is not None:
        emb = embed_per_image(images.texts, ids=ids, aggregate="mean", **embed_kwargs(cfg, store))
        text = emb.values
    split = split_from_config(ft, device=cfg.device)
    acts = cached_activations(store, split, stim, cfg.device, cfg.progress)
    data = FinetuneData(acts, text, targets, n_classes=len(classes) if task == "classifier" else None)
    n_targets = targets.shape[1] if targets is not None and targets.ndim == 2 else 0
    what = {"classifier": f"{len(classes)} classes", "multilabel": f"{len(classes)} labels",
            "none": "no task (alignment only)"}.get(task, f"{n_targets} voxels")  # fmt: skip
    log(
        f"1/4 data: {n} images ({len(train_idx)} train / {len(val_idx)} held out, {heldout_from}), {what}, "
        + (f"{text.shape[1]}-d {cfg.embed.encoder} description embeddings; " if text is not None else "")
        + f"top {split.identity['trainable_blocks']} block(s) of {ft.backbone} train"
    )

    conditions: dict[str, float] = {"aligned": ft.lambda_align}
    if task != "none":
        conditions["twin"] = 0.0
    (run.path / "models").mkdir(exist_ok=True)
    (run.path / "predictions").mkdir(exist_ok=True)
    histories: dict[str, pd.DataFrame] = {}
    results: dict[tuple[str, int], Any] = {}
    for seed in ft.seeds:
        for cond, lam in conditions.items():
            ckpt_dir = finetune_spec(split, data, train_idx, val_idx, ft, lam, task, seed).checkpoint_dir(store.root)
            res = finetune(split, data, train_idx, val_idx, ft, lam, task, seed, ckpt_dir=ckpt_dir, device=cfg.device,
                           progress=cfg.progress, label=f"{cond} seed {seed}")  # fmt: skip
            save_file({k: v.contiguous() for k, v in res.state.items()},
                      str(run.path / "models" / f"{cond}-seed{seed}.safetensors"))  # fmt: skip
            histories[f"{cond} seed {seed}"] = pd.DataFrame(res.history)
            histories[f"{cond} seed {seed}"].to_csv(run.file(f"train_{cond}_seed{seed}.csv"), index=False)
            results[(cond, seed)] = res
        log(f"2/4 seed {seed}: " + " and ".join(f"{c} (λ={lam:g})" for c, lam in conditions.items()) + " trained")
    if all(len(h) for h in histories.values()):
        from llmvem.report import plot_training_curves

        plot_training_curves(histories, run.file("training.png"), title=f"Fine-tuning ({task}): aligned vs twin")
    base_metrics = {"task": task, "n_images": n, "n_train": len(train_idx), "n_val": len(val_idx),
                    "seeds": list(ft.seeds), "lambda_align": ft.lambda_align, "data": counts}  # fmt: skip
    if until == "train":
        run.log_metrics(**base_metrics, total_s=round(time.perf_counter() - t_start, 1))
        log(f"[green]trained[/green]: weights in {run.path / 'models'}")
        return run

    # ---- held-out evaluation
    rows: list[dict[str, Any]] = []
    retrieval: list[dict[str, Any]] = []
    voxel_rs: dict[str, np.ndarray] = {}
    enc_rows: list[dict[str, Any]] = []
    val_ids = [ids[k] for k in val_idx]
    for (cond, seed), res in results.items():
        outs = TrainedNetwork(split, res.state, cfg.device).outputs(acts[val_idx])
        pred: dict[str, Any] = {"ids": np.asarray(val_ids, dtype=str)}
        if task != "none":
            assert targets is not None
            y_val = targets[val_idx]
            pred.update(outputs=outs["task"], targets=y_val)
            for metric, value in task_scores(task, outs["task"], y_val).items():
                rows.append({"model": cond, "metric": metric, "seed": seed, "value": value})
            if vox is not None:
                r = np.full(vox.brain.n_voxels, np.nan)
                r[vox.valid] = voxel_r(outs["task"], y_val)
                voxel_rs[f"{cond}-seed{seed}"] = r
                enc_rows += [{**row, "seed": seed} for row in encoding_rows_for(cond, r, vox.brain)]
        if "projection" in outs and text is not None:
            pred["projection"] = outs["projection"]
            retrieval.append({"model": cond, "metric": "top1", "seed": seed,
                              "value": retrieval_top1(outs["projection"], text[val_idx])})  # fmt: skip
        np.savez_compressed(run.path / "predictions" / f"{cond}-seed{seed}.npz", **pred)
    metrics: dict[str, Any] = dict(base_metrics)
    if rows:
        section = _summarise(rows, list(conditions))
        if task in LABEL_TASKS:
            section = {"classes": classes, "n_classes": len(classes), **section}
        metrics[SECTION[task]] = section
    if retrieval:
        metrics["retrieval"] = {**_summarise(retrieval, ["aligned"]), "chance": 1.0 / len(val_idx)}
    scores = pd.DataFrame(rows + [{**r, "metric": f"retrieval_{r['metric']}"} for r in retrieval])
    scores.to_csv(run.file("scores.csv"), index=False)
    if vox is not None:
        np.savez_compressed(run.file("voxel_r.npz"), **voxel_rs)  # type: ignore[arg-type]
        per_seed = pd.DataFrame(enc_rows)
        value_cols = ["n_voxels", "mean_r", "median_r", "noise_ceiling_r", "mean_score"]
        grouped = per_seed.groupby(["model", "roi"], sort=False)
        table = grouped[value_cols].mean().reset_index()
        table["n_voxels"] = table["n_voxels"].round().astype(int)
        table["n_seeds"] = grouped.size().to_numpy()
        table["sem_r"] = grouped["mean_r"].sem().to_numpy()
        table.to_csv(run.file("encoding.csv"), index=False)
        metrics["voxels"]["rois"] = {
            m: {str(r["roi"]): {k: r[k] for k in ("mean_r", "noise_ceiling_r", "mean_score")} for _, r in g.iterrows()}
            for m, g in table.groupby("model", sort=False)
        }
        metrics["voxels"].update(n_voxels=vox.brain.n_voxels, n_masked=int((~vox.valid).sum()))
    metrics["total_s"] = round(time.perf_counter() - t_start, 1)
    run.log_metrics(**metrics)
    log(f"3/4 evaluated {len(results)} model(s) on {len(val_idx)} held-out images")

    from llmvem.report import build_report, plot_seed_bars

    if len(scores):
        label = {"classifier": "held-out accuracy", "multilabel": "held-out label accuracy",
                 "none": "held-out image → description top-1"}.get(task, "held-out Pearson r")  # fmt: skip
        shown = scores if task == "none" else scores[~scores["metric"].str.startswith("retrieval_")]
        plot_seed_bars(shown, run.file("scores.png"), ylabel=label,
                       title=f"Aligned vs twin ({task}, {len(ft.seeds)} seed(s))")  # fmt: skip
    build_report(run.path, title=f"llmvem fine-tune on your images ({task}): {run.path.name}")
    head = HEADLINE[task]
    for cond in conditions:
        sec = metrics.get(SECTION.get(task, "retrieval"), {})
        if cond in sec and head in sec[cond]:
            log(f"  {cond}: held-out {head} {sec[cond][head]['mean']:.3f} (mean of {len(ft.seeds)} seed(s))")
    paired = metrics.get(SECTION.get(task, ""), {}).get("paired", {}).get(head)
    if paired:
        lo, hi = paired["ci95"]
        log(f"  aligned − twin, {head}: {paired['diff_mean']:+.3f} [95% CI {lo:+.3f}, {hi:+.3f}]")
    log(f"4/4 [green]done[/green] in {time.perf_counter() - t_start:.0f} s: {run.file('metrics.json')}, "
        f"{run.file('report.html')}")  # fmt: skip
    return run


def encoding_rows_for(model: str, r: np.ndarray, brain: BrainData) -> list[dict[str, Any]]:
    """:func:`llmvem.brain.encoding.encoding_rows` of per-voxel held-out ``r`` (v,) (NaN for masked voxels)."""
    from llmvem.brain.encoding import encoding_rows

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a ROI of masked voxels only: mean of nothing
        return encoding_rows(model, r, brain)
