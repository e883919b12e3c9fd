"""The "Visual words" section of a report, from a run's ``visual_words.json``.

Keys read (each optional): ``precision`` (per seed and ``mean``: precision@k, shuffled baseline, ratio, p),
``prior_words`` / ``prior_precision``, ``heldout`` (image, words, in_description), ``images`` (image → words),
``rois`` (ROI → words, n_voxels), ``voxels`` (voxel, roi, r, words), ``source`` (what the visual words come from).
"""

from __future__ import annotations

from typing import Any

from llmvem.report.section import Section


def visual_words_sections(vw: dict[str, Any]) -> list[Section]:
    """Report sections for the contents of ``visual_words.json``."""
    import pandas as pd

    k = vw.get("k", 10)
    head = (
        f"Visual words (VW-LMM): distributions over the {vw.get('vocabulary_size', '?')}-token "
        f"{vw.get('vocabulary', '?')} vocabulary; top {k} readable words (no stop words, subword pieces or special "
        "tokens)."
    )
    text = [head] + ([str(vw["source"])] if vw.get("source") else [])
    sections: list[Section] = []
    if "precision" in vw:
        cols = ("precision", "shuffled_mean", "shuffled_sd", "ratio", "p_value")
        rows = [{"model": name, **{c: v.get(c) for c in cols}} for name, v in vw["precision"].items()]
        if "prior_precision" in vw:
            rows.append({"model": "training prior (same words for every image)", "precision": vw["prior_precision"]})
        for name, v in vw.get("objects92_precision", {}).items():
            rows.append({"model": f"92 objects: {name}", **{c: v.get(c) for c in cols}})
        if "objects92_prior_precision" in vw:
            rows.append({"model": "92 objects: training prior", "precision": vw["objects92_prior_precision"]})
        text.append(
            f"precision@{k} on {vw.get('n_heldout', '?')} held-out images: share of an image's top {k} words that are "
            "content words of its own description; shuffled_mean / shuffled_sd: the same words scored against "
            "randomly permuted descriptions (p: share of permutations at least as high). '92 objects' rows: the same "
            "on the 92-object images and their own descriptions (never trained on)."
        )
        sections.append(Section("Visual words: agreement with descriptions", text, table=pd.DataFrame(rows)))
        text = []
    if vw.get("heldout"):
        df = pd.DataFrame(
            [
                {
                    "image": h["image"],
                    "visual words": ", ".join(h["words"]),
                    "in its description": ", ".join(h.get("in_description", [])),
                }
                for h in vw["heldout"]
            ]
        )
        sections.append(Section("Visual words of held-out images", text, table=df))
        text = []
    if vw.get("images"):
        df = pd.DataFrame([{"image": i, "visual words": ", ".join(w)} for i, w in vw["images"].items()])
        sections.append(Section("Visual words per image", text, table=df))
        text = []
    if vw.get("rois"):
        df = pd.DataFrame([{"roi": roi, "voxels averaged": v.get("n_voxels"), "visual words": ", ".join(v["words"])}
                           for roi, v in vw["rois"].items()])  # fmt: skip
        text.append(
            "ROI / voxel words: a ridge encoding model on PIF features (visual-word distribution @ token embeddings) "
            "gives each voxel weights w; its words are the tokens t with the largest e_t · w (the response per unit "
            "of probability on t). ROI: the mean of its voxels' unit-length weights (voxels with held-out r > 0)."
        )
        sections.append(Section("Visual words per ROI", text, table=df))
        text = []
    if vw.get("voxels"):
        df = pd.DataFrame([{"voxel": v["voxel"], "roi": v["roi"], "held-out r": v.get("r"),
                            "visual words": ", ".join(v["words"])} for v in vw["voxels"]])  # fmt: skip
        sections.append(Section("Visual words per voxel (best predicted)", text, table=df))
    return sections
