"""RSA on the real 92-object set: image features, description embeddings and a language-aligned image
representation against human IT / EVC RDMs, per subject with leave-one-subject-out noise ceilings.

The language-aligned representation is, for a start, a linear map (ridge, per-dimension α) from image features into
the text-embedding space, learned on the NSD shared images and their MLLM descriptions, then applied to the 92
object images — no objects92 data is used to learn it.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pandas as pd

from llmvem.config import ExperimentConfig
from llmvem.pipeline.common import (
    Log,
    console_log,
    description_targets,
    embed_kwargs,
    feature_kwargs,
    make_store,
    ridge_from_config,
)
from llmvem.runs import RunDir, records_outcome, seed_everything


@records_outcome
def run_objects92_rsa(
    cfg: ExperimentConfig, run_dir: Path | None = None, log: Log | None = None, until: str = "evaluate"
) -> RunDir:
    """Run the objects92 RSA study; returns the run directory (``rsa.csv``, ``rsa.png``, ``rdms.png``, report).

    With ``until="train"`` it stops after learning the image→text map (its fit quality goes to ``metrics.json``).
    """
    from llmvem.brain import compute_rdm, rsa_scores
    from llmvem.data.datasets import load_dataset
    from llmvem.text import embed_texts
    from llmvem.vision import extract_features

    log = log or console_log(cfg.progress)
    t_start = time.perf_counter()
    seed_everything(cfg.seed)
    store = make_store(cfg)
    rsa_cfg = cfg.evaluate.rsa

    obj = load_dataset("objects92", cfg.data_dir)
    nsd = load_dataset("nsd_shared1000", cfg.data_dir)
    ids = obj.stimuli.ids
    missing_targets = [t for t in rsa_cfg.targets if t not in obj.rdms]
    if missing_targets:
        from llmvem.errors import ConfigError

        raise ConfigError(f"evaluate.rsa.targets: unknown RDM set(s) {missing_targets}; available: {sorted(obj.rdms)}")
    run = RunDir(cfg, run_dir)
    log(f"[bold]llmvem demo --dataset objects92[/bold] → run directory [cyan]{run.path}[/cyan]")
    log(
        f"1/5 data: objects92 ({len(ids)} images, RDM sets {', '.join(rsa_cfg.targets)}), "
        f"NSD shared images for the image→text map ({rsa_cfg.align_images} of {len(nsd.stimuli)})"
    )

    emb_kw = embed_kwargs(cfg, store)
    feat_kw = feature_kwargs(cfg, store)

    obj_texts = [obj.descriptions[i] for i in ids]
    obj_text = embed_texts(obj_texts, **emb_kw)
    obj_img = extract_features(obj.stimuli, **feat_kw).values
    log(
        f"2/5 objects92: {obj_img.shape[1]}-d {cfg.features.backbone} features, {obj_text.shape[1]}-d "
        f"{cfg.embed.encoder} description embeddings"
    )

    # every image described by each source (describer × prompt); several sources: the mean of their embeddings
    described = list(nsd.description_sets(rsa_cfg.align_model, rsa_cfg.align_prompt)[1])
    if len(described) < len(nsd.stimuli):
        log(
            f"    note: {len(nsd.stimuli) - len(described)} NSD image(s) lack a {rsa_cfg.align_model}/"
            f"{rsa_cfg.align_prompt} description and are left out of the image→text map"
        )
    nsd_ids = described[: rsa_cfg.align_images]
    nsd_stim = nsd.stimuli.subset(nsd_ids)
    _, nsd_text, _, source_what = description_targets(nsd, rsa_cfg.align_model, rsa_cfg.align_prompt, emb_kw, nsd_ids)
    nsd_img = extract_features(nsd_stim, **feat_kw).values
    mapper = ridge_from_config(cfg).fit(nsd_img, nsd_text)
    aligned = mapper.predict(obj_img)
    log(
        f"3/5 image→text map: ridge on {len(nsd_ids)} NSD images × {source_what} descriptions; applied to the 92 "
        "objects"
    )
    from llmvem.brain import pearson_r_rows

    fit_r = float(np.nanmean(pearson_r_rows(nsd_text, mapper.predict(nsd_img))))
    run.log_metrics(
        image_to_text_map={
            "n_images": len(nsd_ids),
            "train_row_r": fit_r,
            "median_alpha": float(np.nanmedian(mapper.best_alphas_)),
        }
    )
    if until == "train":
        log(
            f"[green]trained[/green] the image→text map (in-sample row r {fit_r:.3f}); "
            f"metrics in {run.file('metrics.json')}"
        )
        return run

    reps = {
        f"{cfg.features.backbone} image features": obj_img,
        f"{cfg.embed.encoder} description embedding": obj_text,
        "language-aligned image features (image→text map)": aligned,
    }
    model_rdms = {name: compute_rdm(x, metric=rsa_cfg.metric) for name, x in reps.items()}
    rows = []
    for target in rsa_cfg.targets:
        rset = obj.rdms[target].reorder(ids)
        for name, rdm in model_rdms.items():
            res = rsa_scores(rdm, rset.rdms, method=rsa_cfg.method)
            rows.append(
                {
                    "model": name,
                    "target": target,
                    "n_subjects": rset.n_subjects,
                    "mean": res.mean,
                    "sem": res.sem,
                    "noise_lower": res.noise_lower,
                    "noise_upper": res.noise_upper,
                    "method": rsa_cfg.method,
                }
            )
            pd.DataFrame({"subject": rset.subjects, "score": res.scores}).assign(model=name, target=target).to_csv(
                run.file("rsa_per_subject.csv"),
                mode="a",
                index=False,
                header=not run.file("rsa_per_subject.csv").exists(),
            )
    table = pd.DataFrame(rows)
    table.to_csv(run.file("rsa.csv"), index=False)
    log(
        f"4/5 RSA: {len(model_rdms)} model RDMs × {len(rsa_cfg.targets)} targets ({rsa_cfg.method}, "
        f"{rsa_cfg.metric} distance), leave-one-subject-out noise ceilings"
    )

    from llmvem.report import build_report, format_rsa_table, plot_rdms, plot_rsa

    plot_rsa(table, run.file("rsa.png"))
    shown = {**{k: v for k, v in model_rdms.items()}, **{t: obj.rdms[t].reorder(ids).mean() for t in rsa_cfg.targets}}
    plot_rdms(shown, run.file("rdms.png"))
    run.log_metrics(
        rsa={
            f"{r['model']} | {r['target']}": {
                "mean": r["mean"],
                "sem": r["sem"],
                "noise_lower": r["noise_lower"],
                "noise_upper": r["noise_upper"],
            }
            for r in rows
        },
        total_s=round(time.perf_counter() - t_start, 1),
    )
    build_report(run.path)
    from llmvem.pipeline.common import print_table

    print_table(format_rsa_table(table))
    log(
        f"5/5 [green]done[/green] in {time.perf_counter() - t_start:.1f} s: {run.file('rsa.csv')}, "
        f"{run.file('rsa.png')}, {run.file('report.html')}"
    )
    return run
