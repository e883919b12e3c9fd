"""The ``decode`` evaluation in a study of its own: decoding text embeddings from the stimuli's own brain data."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest


def test_decode_on_the_demo_brain_has_one_whole_data_row(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The demo set's simulated cortex (no brain sources: subject "") → its MiniLM caption embeddings, on the
    stimuli's train / test splits; the row equals a decoder fitted here on the same arrays."""
    from llmvem.brain import fit_decoder
    from llmvem.runner import run_study
    from llmvem.runner.study import parse_study

    tree = {
        "name": "decode-demo",
        "settings": {"describe": {"backend": "import", "model": "ground-truth", "prompt": "caption"},
                     "embed": {"encoder": "minilm"}, "progress": False},
        "stimuli": {"demo": {"kind": "demo", "n_images": 60, "n_voxels_per_roi": 20, "n_repeats": 2}},
        "targets": {"captions": {"kind": "text_embedding", "stimuli": "demo", "text": "described"},
                    "voxels": {"kind": "voxels", "stimuli": "demo"}},
        "evaluations": {"decode": {"kind": "decode", "against": "voxels", "representations": ["captions"]}},
    }  # fmt: skip
    from llmvem.runner import run as run_module

    states: list = []  # the run's state, kept to fit the decoder here on its arrays
    write = run_module._write

    def keep_state(state, study, timings):  # type: ignore[no-untyped-def]
        states.append(state)
        return write(state, study, timings)

    monkeypatch.setattr(run_module, "_write", keep_state)
    run = run_study(parse_study(tree, "test"), output_dir=tmp_path / "runs")
    table = pd.read_csv(run.path / "decode.csv", keep_default_na=False)
    assert len(table) == 1 and table.loc[0, "subject"] == "" and table.loc[0, "model"] == "captions"
    assert "splits" not in table.columns and not (run.path / "caption_metrics.csv").exists()
    state = states[0]
    src, brain = state.source("demo"), state.targets["voxels"].brain
    tr, te = src.split_indices("train"), src.split_indices("test")
    emb = state.targets["captions"].values
    keep = brain.check_finite()
    enc = state.cfg.evaluate.encoding
    direct = fit_decoder(brain.responses[tr][:, keep], emb[tr], brain.responses[te][:, keep], emb[te],
                         alphas=tuple(enc.alphas), cv=enc.cv, dtype=enc.ridge_dtype).scores()  # fmt: skip
    row = table.iloc[0]
    assert row["n_train"] == len(tr) and row["n_test"] == len(te)
    for k, v in direct.items():
        assert row[k] == pytest.approx(v, rel=1e-9), k
    whole = json.loads((run.path / "metrics.json").read_text())["results"]["decode"]["captions"]["all"]
    assert "subjects" not in whole and whole["top1"] == pytest.approx(direct["top1"])
    assert 0.5 < direct["identification_accuracy"] <= 1.0 and np.isfinite(direct["mean_r"])
