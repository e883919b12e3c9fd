"""Does aligning a vision network with LLM descriptions make it more brain-like?

Fine-tune EfficientNet-Lite0 on the NSD shared images: the *aligned* model with ``task + λ · alignment`` to the
MiniLM embeddings of their VLM descriptions, its *twin* identically but on the task alone (HED category labels,
λ = 0), over several seeds. Then compare, by RSA on the 92-object set against Cichy IT/EVC (15 subjects) and
Kriegeskorte hIT (4 subjects): the aligned network, its twin, the untouched pretrained network, and the MiniLM
embeddings of the 92 images' own descriptions. Paired differences (aligned − twin) come with confidence intervals
and paired tests; HED-label accuracy on held-out NSD images is reported for both.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from llmvem.align.metrics import label_metrics
from llmvem.config import ExperimentConfig
from llmvem.data.splits import heldout_split
from llmvem.pipeline.common import (
    Log,
    cached_activations,
    console_log,
    description_targets,
    embed_kwargs,
    make_store,
    print_table,
)
from llmvem.runs import RunDir, records_outcome, seed_everything
from llmvem.store import atomic_write_text
from llmvem.visualwords.heldout import VisualWordsSetup

#: the seed of the NSD images' held-out split (one split for every condition and seed)
NSD_SPLIT_SEED = 12345
#: names used in metrics.json for our RDM sets
BRAIN_SETS = {"cichy_it": "cichy_IT", "cichy_evc": "cichy_EVC", "kriegeskorte_hit": "kriegeskorte_hIT"}


def _paired(a: np.ndarray, t: np.ndarray) -> dict[str, Any]:
    """Aligned − twin from per-(seed, subject) RSA scores ``a``, ``t`` (n_seeds, n_subjects):
    :func:`llmvem.brain.paired.paired_difference`."""
    from llmvem.brain.paired import paired_difference

    return paired_difference(a, t)


def run_nsd_objects92(
    cfg: ExperimentConfig, run_dir: Path | None = None, log: Log | None = None, until: str = "evaluate"
) -> RunDir:
    """The ``nsd-objects92`` study from an old config (``dataset.name: nsd_objects92``) through the runner
    (:func:`llmvem.pipeline.encoding_demo.run_legacy`: a warning shows the study YAML to use instead); the
    visual-words variant (``finetune.loss: visual_words``) still runs by hand (:func:`run_nsd_objects92_words`)."""
    if cfg.finetune.loss == "visual_words":
        return run_nsd_objects92_words(cfg, run_dir, log, until)
    from llmvem.pipeline.encoding_demo import run_legacy

    return run_legacy(cfg, run_dir, log, until)


@records_outcome
def run_nsd_objects92_words(
    cfg: ExperimentConfig, run_dir: Path | None = None, log: Log | None = None, until: str = "evaluate"
) -> RunDir:
    """Run the experiment of the module docstring (the hand-written study; the runner's ``nsd-objects92`` study
    does the same without visual words); returns the run directory.

    ``metrics.json`` holds ``{"rsa": {REPRESENTATION: {BRAIN_SET: {"mean", "se"}}}}`` for representations
    ``aligned``, ``twin``, ``pretrained``, ``descriptions`` and brain sets ``cichy_IT``, ``cichy_EVC``,
    ``kriegeskorte_hIT``, plus ``paired`` (aligned − twin) and ``hed`` (held-out label accuracy); ``rsa_subjects.csv``
    holds every score behind them (model, target, seed, subject, score). The networks'
    last layers are scored too: ``aligned_head`` (the projection into the text space) and ``twin_head`` (HED
    logits), compared in ``paired_heads``; ``paired_pretrained`` compares ``aligned`` and ``aligned_head`` with the
    untouched network (the λ = 0 twin of the alignment-only variant, which has no task to train on).
    """
    from safetensors.torch import save_file

    from llmvem.align.finetune import FinetuneData, TrainedNetwork, finetune, finetune_spec
    from llmvem.brain import compute_rdm, rsa_scores
    from llmvem.data.datasets import load_dataset
    from llmvem.data.hed import hed_labels
    from llmvem.text import embed_texts
    from llmvem.vision.trainable import split_from_config
    from llmvem.visualwords.pif import pif_features

    log = log or console_log(cfg.progress)
    t_start = time.perf_counter()
    seed_everything(cfg.seed)
    store = make_store(cfg)
    ft, rsa_cfg = cfg.finetune, cfg.evaluate.rsa
    nsd = load_dataset("nsd_shared1000", cfg.data_dir)
    obj = load_dataset("objects92", cfg.data_dir)
    run = RunDir(cfg, run_dir)
    log(f"[bold]nsd → objects92[/bold]: run directory [cyan]{run.path}[/cyan]")

    # every image described by each source (describer × prompt); several sources: the mean of their embeddings
    source_texts = nsd.description_sets(rsa_cfg.align_model, rsa_cfg.align_prompt)[1]
    described = list(source_texts)
    n_undescribed = len(set(nsd.stimuli.ids[: ft.n_images]) - set(described))
    if n_undescribed:  # the policy here is drop-and-report: the NSD set is fixed, its two gaps are known
        log(f"  note: {n_undescribed} of the first {ft.n_images} NSD images lack a description and are left out")
    ids = described[: ft.n_images]
    emb_kw = embed_kwargs(cfg, store)
    train_idx, val_idx = heldout_split(len(ids), ft.val_fraction, NSD_SPLIT_SEED)  # shared by every condition
    words: VisualWordsSetup | None = None
    if ft.loss == "visual_words":  # targets: the descriptions' bag of words over a vocabulary (VW-LMM)
        texts = ["\n\n".join(source_texts[i]) for i in ids]  # every source's text, as description_targets joins them
        source_what = f"{rsa_cfg.align_model}/{rsa_cfg.align_prompt}"
        words = VisualWordsSetup.create(ft.vocabulary, ft.bow_weighting, [texts[k] for k in train_idx])
        text = words.bow.transform(texts, ids)
        text_what = f"{text.shape[1]}-token {ft.vocabulary} bag of words ({ft.bow_weighting})"
    else:
        _, text, texts, source_what = description_targets(nsd, rsa_cfg.align_model, rsa_cfg.align_prompt, emb_kw, ids)
        text_what = f"{text.shape[1]}-d {cfg.embed.encoder}"
    labels, vocab = hed_labels(list(nsd.hed.loc[ids, "HED_short"]))
    split = split_from_config(ft, device=cfg.device)
    acts = cached_activations(store, split, nsd.stimuli.subset(ids), cfg.device, cfg.progress)
    acts_obj = cached_activations(store, split, obj.stimuli, cfg.device, cfg.progress)
    data = FinetuneData(acts, text, labels)
    log(
        f"1/4 data: {len(ids)} NSD images ({len(train_idx)} train / {len(val_idx)} held out), "
        f"{source_what} descriptions → {text_what}, "
        f"{len(vocab)} HED labels; top {split.identity['trainable_blocks']} block(s) of {ft.backbone} train"
    )

    # a twin (λ = 0) never sees the text nor the alignment settings: it is shared by every loss and target
    # (the run's key, `finetune_spec`, leaves them out)
    conditions = {"aligned": (ft.lambda_align, ft.aligned_task), "twin": (0.0, "multilabel")}
    feats: dict[str, list[np.ndarray]] = {c: [] for c in conditions}
    # each network's last layer too: the aligned model's projection into the text space (Doerig et al. compare
    # their LLM-trained networks' final layer), the twin's HED logits
    heads: dict[str, list[np.ndarray]] = {"aligned_head": [], "twin_head": []}
    hed_rows = []
    histories: dict[str, pd.DataFrame] = {}
    (run.path / "models").mkdir(exist_ok=True)
    for seed in ft.seeds:
        for cond, (lam, task) in conditions.items():
            ckpt_dir = finetune_spec(split, data, train_idx, val_idx, ft, lam, task, seed).checkpoint_dir(store.root)
            res = finetune(split, data, train_idx, val_idx, ft, lam, task, seed, ckpt_dir=ckpt_dir, device=cfg.device,
                           progress=cfg.progress, label=f"{cond} seed {seed}")  # fmt: skip
            save_file(
                {k: v.contiguous() for k, v in res.state.items()},
                str(run.path / "models" / f"{cond}-seed{seed}.safetensors"),
            )
            histories[f"{cond} seed {seed}"] = pd.DataFrame(res.history)
            histories[f"{cond} seed {seed}"].to_csv(run.path / f"train_{cond}_seed{seed}.csv", index=False)
            net = TrainedNetwork(split, res.state, cfg.device)
            feats[cond].append(net.features(acts_obj))
            if cond == "aligned" and ft.loss != "visual_words":  # visual words: PIF below
                heads["aligned_head"].append(net.head("project", feats[cond][-1]))
            elif cond == "twin":
                heads["twin_head"].append(net.head("task", feats[cond][-1]))
            val_feats = net.features(acts[val_idx])
            if task != "none":
                logits = net.head("task", val_feats)
                hed_rows.append({"condition": cond, "seed": seed, **label_metrics(logits, labels[val_idx])})
            if words is not None and lam > 0:
                words.add_seed(seed, net.head("project", val_feats), net.head("project", feats[cond][-1]))
        log(f"2/4 seed {seed}: aligned (λ={ft.lambda_align}, task {ft.aligned_task}) and twin (λ=0, HED) trained")
    if all(len(h) for h in histories.values()):
        from llmvem.report import plot_training_curves

        plot_training_curves(histories, run.file("training.png"), title="Fine-tuning: aligned vs twin")
    if until == "train":
        run.log_metrics(hed=hed_rows, total_s=round(time.perf_counter() - t_start, 1))
        log(f"[green]trained[/green]: weights in {run.path / 'models'}")
        return run

    reps: dict[str, list[np.ndarray]] = {
        **feats,
        "pretrained": [TrainedNetwork(split, None, cfg.device).features(acts_obj)],
        "descriptions": [embed_texts([obj.descriptions[i] for i in obj.stimuli.ids], **emb_kw)],
        **{name: xs for name, xs in heads.items() if xs},
    }
    if words is not None and words.obj_logits:  # PIF: each image as softmax(vocab head) @ token embeddings
        reps["aligned_pif"] = [pif_features(x, words.vocab.embeddings) for x in words.obj_logits]
        obj_bow = words.bow.transform([obj.descriptions[i] for i in obj.stimuli.ids], obj.stimuli.ids)
        reps["descriptions_pif"] = [pif_features(obj_bow, words.vocab.embeddings, probabilities=True)]
    rows, per_subject, subject_rows = [], {}, []
    rsa_json: dict[str, dict[str, dict[str, float]]] = {}
    for target, name in BRAIN_SETS.items():
        rset = obj.rdms[target].reorder(obj.stimuli.ids)
        for rep, xs in reps.items():
            scores = np.stack([rsa_scores(compute_rdm(x, rsa_cfg.metric), rset.rdms, rsa_cfg.method).scores
                               for x in xs])  # (n_seeds, n_subjects)  # fmt: skip
            per_subject[(rep, target)] = scores
            seeds = [None] if rep in ("pretrained", "descriptions", "descriptions_pif") else list(ft.seeds)
            subject_rows += [{"model": rep, "target": target, "seed": seeds[i], "subject": subj_name,
                              "score": float(scores[i, j])}
                             for i in range(len(xs)) for j, subj_name in enumerate(rset.subjects)]  # fmt: skip
            subj = scores.mean(0)
            res0 = rsa_scores(compute_rdm(xs[0], rsa_cfg.metric), rset.rdms, rsa_cfg.method)
            se = float(subj.std(ddof=1) / np.sqrt(len(subj))) if len(subj) > 1 else float("nan")
            rsa_json.setdefault(rep, {})[name] = {"mean": float(subj.mean()), "se": se}
            rows.append({"model": rep, "target": target, "n_subjects": rset.n_subjects, "mean": float(subj.mean()),
                         "sem": se, "noise_lower": res0.noise_lower, "noise_upper": res0.noise_upper,
                         "method": rsa_cfg.method})  # fmt: skip
    table = pd.DataFrame(rows)
    table.to_csv(run.file("rsa.csv"), index=False)
    pd.DataFrame(subject_rows).to_csv(run.file("rsa_subjects.csv"), index=False)  # for the user's own statistics
    log(f"3/4 RSA: {len(reps)} representations × {len(BRAIN_SETS)} brain RDM sets ({rsa_cfg.method})")

    paired = {name: _paired(per_subject[("aligned", t)], per_subject[("twin", t)]) for t, name in BRAIN_SETS.items()}
    paired_heads = {}
    if "aligned_head" in reps and "twin_head" in reps:
        for t, name in BRAIN_SETS.items():
            paired_heads[name] = _paired(per_subject[("aligned_head", t)], per_subject[("twin_head", t)])
    # alignment only: the literal λ = 0 twin (no task, no alignment) is the untouched pretrained network
    vs_pretrained: dict[str, dict[str, Any]] = {}
    for rep in ("aligned", "aligned_head"):
        if rep in reps:
            for t, name in BRAIN_SETS.items():
                a = per_subject[(rep, t)]
                p0 = np.repeat(per_subject[("pretrained", t)], len(a), axis=0)
                vs_pretrained.setdefault(rep, {})[name] = _paired(a, p0)
    hed: dict[str, Any] = {}
    if hed_rows:
        hdf = pd.DataFrame(hed_rows)
        hdf.to_csv(run.file("hed.csv"), index=False)
        hed = {c: {k: float(g[k].mean()) for k in ("label_accuracy", "mean_average_precision")}
               for c, g in hdf.groupby("condition")}  # fmt: skip
    if words is not None and words.val_logits:
        vw = words.readout(
            [texts[k] for k in val_idx], [Path(nsd.stimuli.paths[nsd.stimuli.index(ids[k])]).name for k in val_idx],
            [p.name for p in obj.stimuli.paths], [obj.descriptions[i] for i in obj.stimuli.ids],
            np.asarray(text[train_idx], dtype=np.float64).mean(0), cfg.words.top_k, cfg.words.n_shuffles,
        )  # fmt: skip
        atomic_write_text(run.file("visual_words.json"), json.dumps(vw, indent=1))
        from llmvem.visualwords.run import PIECES_FILE

        atomic_write_text(run.file(PIECES_FILE), json.dumps(words.multi_piece_words()))  # for `llmvem words`
        run.log_metrics(visual_words={k: vw[k] for k in ("precision", "prior_precision", "objects92_precision")})
        m = vw["precision"]["mean"]
        log(
            f"  visual words: held-out precision@{cfg.words.top_k} {m['precision']:.3f} vs shuffled descriptions "
            f"{m['shuffled_mean']:.3f} (prior only {vw['prior_precision']:.3f}), {len(words.val_logits)} seed(s)"
        )
    run.log_metrics(
        rsa=rsa_json,
        paired=paired,
        paired_heads=paired_heads,
        paired_pretrained=vs_pretrained,
        hed=hed,
        seeds=list(ft.seeds),
        hed_vocabulary=vocab,
        n_train=len(train_idx),
        n_undescribed=n_undescribed,
        n_val=len(val_idx),
        total_s=round(time.perf_counter() - t_start, 1),
    )

    from llmvem.report import build_report, format_rsa_table, plot_rsa

    plot_rsa(table, run.file("rsa.png"), subjects=pd.DataFrame(subject_rows))
    build_report(run.path)
    print_table(format_rsa_table(table))
    for what, pairs in (("aligned − twin", paired), ("aligned head − twin head", paired_heads)):
        for name, p in pairs.items():
            log(
                f"  {what}, {name}: {p['diff_mean']:+.3f} [95% CI {p['ci95'][0]:+.3f}, {p['ci95'][1]:+.3f}] over "
                f"{len(ft.seeds)} seed(s); paired t over subjects p = {p['p_paired_t_subjects']:.3g}"
            )
    log(
        f"4/4 [green]done[/green] in {time.perf_counter() - t_start:.0f} s: {run.file('metrics.json')}, "
        f"{run.file('report.html')}"
    )
    return run
