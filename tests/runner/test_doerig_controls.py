"""Issue 14 item 7: a new study as configuration only. ``llmvem/studies/doerig-controls.yaml`` (Doerig et al.'s
control comparison on objects92) is run on the real data and its one result table checked."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from llmvem.results import read_table
from llmvem.runner import load_study, run_study

REPS = ["descriptions", "all_words", "nouns", "verbs", "adjectives", "scrambled", "category_strings", "multi_hot",
        "image_features"]  # fmt: skip
SUBJECTS = {"cichy_it": 15, "cichy_evc": 15, "kriegeskorte_hit": 4}


def test_the_study_is_a_yaml_file_of_registered_kinds() -> None:
    from llmvem.runner.study import STUDIES_DIR

    assert (STUDIES_DIR / "doerig-controls.yaml").is_file()
    study = load_study("doerig-controls")
    assert study.evaluations["rsa"].params()["representations"] == REPS


def test_doerig_controls_on_objects92(data_dir: Path, tmp_path: Path) -> None:
    run = run_study("doerig-controls", overrides={"progress": False}, data_dir=data_dir, output_dir=tmp_path)
    table = read_table(run.path / "results.csv")
    assert set(table["evaluation"]) == {"rsa", "vs_descriptions"}
    rsa = table[table["evaluation"] == "rsa"]
    whole = rsa[rsa["subject"] == ""].pivot_table(index=["model", "target"], columns="metric", values="value")
    assert len(whole) == len(REPS) * 3 and whole["sem"].gt(0).all()
    for target, n in SUBJECTS.items():
        assert whole.xs(target, level="target")["n_subjects"].eq(n).all()
        ceiling = whole.xs(target, level="target")[["noise_lower", "noise_upper"]].drop_duplicates()
        assert len(ceiling) == 1 and 0 < ceiling["noise_lower"].item() < ceiling["noise_upper"].item() <= 1
    # every mean is the mean of the per-subject scores behind it
    subjects = rsa[rsa["subject"] != ""]
    assert len(subjects) == len(REPS) * sum(SUBJECTS.values())
    per = subjects.groupby(["model", "target"])["value"].mean()
    np.testing.assert_allclose(per.loc[whole.index], whole["mean"], atol=1e-12)
    # the controls are different representations: no two of them give the same IT scores
    it = subjects[subjects["target"] == "cichy_it"].pivot_table(index="subject", columns="model", values="value")
    assert np.unique(np.round(it.to_numpy().T, 10), axis=0).shape[0] == len(REPS)
    # category structure is in IT far more than in the early visual cortex (every label control, every text one)
    for rep in ("category_strings", "multi_hot", "descriptions"):
        assert whole.loc[(rep, "cichy_it"), "mean"] > whole.loc[(rep, "cichy_evc"), "mean"] + 0.1
    # paired tests: every control vs the descriptions, recomputed from the per-subject scores
    paired = table[(table["evaluation"] == "vs_descriptions") & (table["seed"] == "")]
    assert set(paired["model"]) == {f"{r} - descriptions" for r in REPS[1:]}
    for rep in REPS[1:]:
        for target in SUBJECTS:
            got = paired[(paired["model"] == f"{rep} - descriptions") & (paired["target"] == target)]
            got = got.set_index("metric")["value"]
            a, b = it_scores(subjects, rep, target), it_scores(subjects, "descriptions", target)
            assert got["diff_mean"] == pytest.approx((a - b).mean(), abs=1e-12)
            assert got["p_paired_t_subjects"] == pytest.approx(stats.ttest_rel(a, b).pvalue, rel=1e-9)
    metrics = json.loads((run.path / "metrics.json").read_text())
    assert metrics["schema"] == 2 and metrics["info"]["evaluations"]["vs_descriptions"]["kind"] == "paired"
    assert len(metrics["results"]["rsa"]["nouns"]["cichy_it"]["subjects"]) == 15
    for name in ("rsa.csv", "rsa_subjects.csv", "rsa.png", "rsa_rdms.png", "report.html", "study.yaml"):
        assert (run.path / name).is_file(), name


def it_scores(subjects, model: str, target: str) -> np.ndarray:  # type: ignore[no-untyped-def]
    rows = subjects[(subjects["model"] == model) & (subjects["target"] == target)].sort_values("subject")
    return rows["value"].to_numpy()
