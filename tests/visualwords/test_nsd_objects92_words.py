"""The NSD → objects92 study with visual words (``nsd-objects92-words``: a vocabulary head, PIF features, held-out
precision@k), on the real data (small)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest


def test_visual_words_study_small(data_dir: Path, tmp_path: Path) -> None:
    from llmvem.runner import run_study

    over = {"progress": False, "stimuli.nsd.n_images": 40, "seeds": "[0]",
            "finetune.epochs": 1, "finetune.trainable_blocks": 1, "finetune.batch_size": 16,
            "finetune.bow_weighting": "tf", "words.n_shuffles": 50}  # fmt: skip
    run = run_study(
        "nsd-objects92-words",
        overrides=over,
        data_dir=data_dir,
        cache_dir=tmp_path / "cache",
        output_dir=tmp_path / "r",
    )
    metrics = json.loads((run.path / "metrics.json").read_text())
    rsa = metrics["results"]["rsa"]
    for rep in ("aligned", "twin", "aligned_pif", "descriptions_pif"):
        assert set(rsa[rep]) == {"cichy_it", "cichy_evc", "kriegeskorte_hit"}
    # the descriptions' own visual words as PIF features (MiniLM token embeddings): a text-only representation
    assert rsa["descriptions_pif"]["cichy_it"]["mean"] == pytest.approx(0.241, abs=0.005)
    vw = json.loads((run.path / "visual_words.json").read_text())
    assert vw["vocabulary"] == "minilm" and vw["vocabulary_size"] == 30522 and vw["k"] == 10
    assert vw["n_heldout"] == 6 and set(vw["precision"]) == {"seed0", "mean"}
    p = vw["precision"]["seed0"]
    assert 0 <= p["shuffled_mean"] <= 1 and 0 <= p["precision"] <= 1 and p["n_shuffles"] == 50
    assert set(vw["objects92_precision"]) == {"seed0", "mean"} and vw["objects92_precision"]["seed0"]["n_images"] == 92
    assert len(vw["images"]) == 92 and all(len(w) == 10 for w in vw["images"].values())
    assert "image_01.jpg" in vw["images"] and vw["heldout"][0]["image"].endswith(".jpg")
    words_rows = metrics["results"]["words"]  # the readout's numbers are rows of the result table too
    assert words_rows["aligned"]["nsd"]["precision"] == p["precision"]
    assert words_rows["aligned"]["nsd"]["seeds"]["0"]["shuffled_mean"] == p["shuffled_mean"]
    assert words_rows["aligned"]["objects92"]["precision"] == vw["objects92_precision"]["seed0"]["precision"]
    assert words_rows["prior"]["nsd"]["precision"] == vw["prior_precision"]
    assert set(pd.read_csv(run.path / "rsa.csv")["model"]) >= {"aligned_pif", "descriptions_pif"}
    assert (run.path / "training.png").stat().st_size > 5000  # training curves of aligned and twin
    page = (run.path / "report.html").read_text()
    assert "Visual words: agreement with descriptions" in page and "Visual words per image" in page
    # the training words of several tokens, for `llmvem words` to read them as words; the readout uses them too
    pieces = json.loads((run.path / "visual_words_pieces.json").read_text())
    assert pieces and all(len(ids) > 1 for ids in pieces.values())
    from llmvem.align.words import words_from_run
    from llmvem.data.stimuli import StimulusSet

    stim = StimulusSet.from_folder(data_dir / "objects92" / "images").subset(["image_01", "image_02"])
    words = words_from_run(stim, run.path, "aligned-seed0", k=10, batch_size=8)
    assert words == {f: vw["images"][f] for f in ("image_01.jpg", "image_02.jpg")}
