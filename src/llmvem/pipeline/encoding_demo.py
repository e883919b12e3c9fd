"""The built-in demo: a generated stimulus set with a simulated visual cortex, end to end.

describe (ground-truth captions through the ``import`` describer) → embed (MiniLM) → image features
(EfficientNet-Lite0) → baseline and language-aligned twins → voxelwise ridge from each representation → encoding
accuracy per ROI with noise ceilings → table, plots, HTML report.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from llmvem.config import ExperimentConfig
from llmvem.pipeline.common import (
    Log,
    cached_twin,
    console_log,
    embed_kwargs,
    feature_kwargs,
    make_store,
    print_table,
    ridge_from_config,
)
from llmvem.runs import RunDir, records_outcome, seed_everything
from llmvem.store import atomic_write_text


def _encoding_rows(
    name: str, feats: np.ndarray, brain: Any, train_idx: np.ndarray, test_idx: np.ndarray, cfg: ExperimentConfig
) -> tuple[list[dict[str, Any]], np.ndarray]:
    """Fit a per-voxel-α ridge on the training stimuli; score held-out Pearson r per voxel and per ROI."""
    from llmvem.brain import pearson_r
    from llmvem.brain.encoding import encoding_rows

    y = brain.responses
    model = ridge_from_config(cfg).fit(feats[train_idx], y[train_idx])
    r = pearson_r(y[test_idx], model.predict(feats[test_idx]))
    rows = encoding_rows(name, r, brain)
    return rows, r


@records_outcome
def run_encoding_demo(
    cfg: ExperimentConfig, run_dir: Path | None = None, log: Log | None = None, until: str = "evaluate"
) -> RunDir:
    """Run the demo described in the module docstring; returns the run directory (tables, plots, report).

    With ``until="train"`` it stops after training the twins (their final losses go to ``metrics.json``).
    """
    from llmvem.data.synthetic import generate_demo_set
    from llmvem.describe import describe_stimuli
    from llmvem.describe.from_config import build_describer, generation_params
    from llmvem.text import embed_texts
    from llmvem.vision import extract_features

    log = log or console_log(cfg.progress)
    t_start = time.perf_counter()
    seed_everything(cfg.seed)
    store = make_store(cfg)
    run = RunDir(cfg, run_dir)
    log(f"[bold]llmvem demo[/bold] → run directory [cyan]{run.path}[/cyan] (artifact store {store.root})")
    timings: dict[str, float] = {}

    def lap(stage: str, t0: float) -> None:
        timings[stage] = round(time.perf_counter() - t0, 2)

    # 1. stimuli and simulated cortex
    t0 = time.perf_counter()
    d = cfg.dataset
    set_dir = store.root / "demo_sets" / f"n{d.n_images}-v{d.n_voxels_per_roi}-r{d.n_repeats}-s{cfg.seed}"
    demo = generate_demo_set(
        set_dir, n_images=d.n_images, n_voxels_per_roi=d.n_voxels_per_roi, n_repeats=d.n_repeats, seed=cfg.seed
    )
    brain = demo.brain
    lap("stimuli", t0)
    log(
        f"1/6 stimuli: {len(demo.stimuli)} generated images, ROIs {brain.rois} × {d.n_voxels_per_roi} voxels, "
        f"{d.n_repeats} repeats ({set_dir})"
    )

    # 2. describe
    t0 = time.perf_counter()
    # the generator's ground-truth captions by default; any describer backend (a served VLM ...) works the same way
    dcfg = cfg.describe
    if dcfg.backend == "import" and dcfg.source is None:
        dcfg = dcfg.model_copy(update={"source": set_dir / "captions.jsonl"})
    describer = build_describer(dcfg, cfg.device)
    descriptions = describe_stimuli(
        demo.stimuli,
        describer,
        prompt=dcfg.prompt,
        params=generation_params(dcfg, cfg.seed),
        n_samples=dcfg.n_samples,
        store=store,
        progress=cfg.progress,
        concurrency=dcfg.concurrency,
    )
    texts = descriptions.texts_for(demo.stimuli.ids)
    descriptions.to_frame().to_json(run.file("descriptions.jsonl"), orient="records", lines=True)
    lap("describe", t0)
    log(
        f"2/6 describe: {len(descriptions)} descriptions via '{cfg.describe.backend}' ({cfg.describe.model}), "
        f'e.g. "{texts[0]}"'
    )

    # 3. embed
    t0 = time.perf_counter()
    text_emb = embed_texts(texts, **embed_kwargs(cfg, store))
    lap("embed", t0)
    log(f"3/6 embed: {text_emb.shape[0]} × {text_emb.shape[1]} {cfg.embed.encoder} embeddings")

    # 4. image features
    t0 = time.perf_counter()
    fm = extract_features(demo.stimuli, **feature_kwargs(cfg, store))
    feats = fm.values
    lap("features", t0)
    log(f"4/6 features: {feats.shape[0]} × {feats.shape[1]} {cfg.features.backbone} features")

    # 5. twins
    t0 = time.perf_counter()
    train_idx = brain.split_indices("train")
    test_idx = brain.split_indices("test")
    common: dict[str, Any] = dict(cfg=cfg.train, seed=cfg.seed, device=cfg.device, progress=cfg.progress)
    task = brain.responses[train_idx] if cfg.train.task == "voxels" else None
    baseline = cached_twin(store, feats[train_idx], task, None, lambda_align=0.0, label="baseline twin", **common)
    aligned = cached_twin(
        store,
        feats[train_idx],
        task,
        text_emb[train_idx],
        lambda_align=cfg.train.lambda_align,
        label="aligned twin",
        **common,
    )
    lap("train", t0)
    log(
        f"5/6 train: baseline (λ=0) and aligned (λ={cfg.train.lambda_align}, {cfg.train.loss}) twins, "
        f"{cfg.train.epochs} epochs on {len(train_idx)} training images"
    )
    run.log_metrics(
        train={
            "baseline_final": baseline.history[-1] if baseline.history else None,
            "aligned_final": aligned.history[-1] if aligned.history else None,
        }
    )
    if until == "train":
        run.log_metrics(timings_s=timings, total_s=round(time.perf_counter() - t_start, 1))
        log(f"[green]trained[/green]; twins are in the artifact store, metrics in {run.file('metrics.json')}")
        return run

    # 6. voxelwise encoding
    t0 = time.perf_counter()
    bb = cfg.features.backbone
    reps = {
        f"{bb} features": feats,
        "baseline twin (λ=0)": baseline.embed(feats),
        f"aligned twin (λ={cfg.train.lambda_align:g})": aligned.embed(feats),
        f"{cfg.embed.encoder} caption embedding": text_emb,
    }
    rows: list[dict[str, Any]] = []
    r_by_model: dict[str, np.ndarray] = {}
    for name, x in reps.items():
        rr, r = _encoding_rows(name, x, brain, train_idx, test_idx, cfg)
        rows.extend(rr)
        r_by_model[name] = r
    table = pd.DataFrame(rows)
    table.to_csv(run.file("encoding.csv"), index=False)
    lap("encoding", t0)
    log(f"6/6 encoding: ridge (per-voxel α) on {len(train_idx)} train / {len(test_idx)} test images")

    # which words do the voxels and ROIs "say"? (the captions' visual words, as PIF features, through ridge)
    t0 = time.perf_counter()
    from llmvem.visualwords.readout import description_brain_words

    vw = description_brain_words(texts, demo.stimuli.ids, brain.responses, list(brain.voxels["roi"].astype(str)),
                                 train_idx, test_idx, k=cfg.words.top_k, encoder=ridge_from_config(cfg))  # fmt: skip
    atomic_write_text(run.file("visual_words.json"), json.dumps(vw, indent=1))
    lap("visual_words", t0)
    log("  visual words: " + "; ".join(f"{roi}: {', '.join(v['words'][:5])}" for roi, v in vw["rois"].items()))

    # outputs
    from llmvem.report import build_report, format_encoding_table, plot_encoding, plot_r_histograms

    plot_encoding(table, run.file("encoding.png"))
    plot_r_histograms(r_by_model, run.file("r_histograms.png"))
    metrics: dict[str, Any] = {
        "encoding": {
            f"{r['model']} | {r['roi']}": {"mean_r": r["mean_r"], "mean_score": r["mean_score"]} for r in rows
        },
        "n_train": len(train_idx),
        "n_test": len(test_idx),
        "timings_s": timings,
    }
    base_name, al_name = list(reps)[1], list(reps)[2]
    for roi in brain.rois:
        b = table[(table.model == base_name) & (table.roi == roi)]["mean_r"].item()
        a = table[(table.model == al_name) & (table.roi == roi)]["mean_r"].item()
        metrics[f"aligned_minus_baseline_r_{roi}"] = a - b
    metrics["total_s"] = round(time.perf_counter() - t_start, 1)
    run.log_metrics(**metrics)
    build_report(run.path)
    print_table(format_encoding_table(table))
    log(
        f"[green]done[/green] in {metrics['total_s']} s: {run.file('encoding.csv')}, {run.file('encoding.png')}, "
        f"{run.file('report.html')}"
    )
    return run
