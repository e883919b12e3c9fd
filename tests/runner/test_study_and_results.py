"""The runner's study files, registries, result table and old-config translation (no models run here)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import yaml
from scipy import stats

from llmvem.config import load_config
from llmvem.errors import ConfigError
from llmvem.results import ResultTable, from_nested, read_table, seed_means, to_nested, wide_table
from llmvem.runner import EVALUATIONS, list_studies, load_study
from llmvem.runner.legacy import study_from_config, study_overrides, translate_config
from llmvem.runner.run import check_study
from llmvem.runner.state import RunState


def test_every_shipped_study_parses_and_names_known_kinds() -> None:
    assert {"demo", "objects92", "doerig-controls"} <= set(list_studies())
    for name in list_studies():
        study = load_study(name)
        check_study(study)  # every kind registered, every parameter valid
        assert study.evaluations and study.stimuli


def test_bad_studies_name_the_key_and_what_is_allowed(tmp_path) -> None:
    with pytest.raises(ConfigError, match=r"unknown study 'nope'; built-in studies: .*demo"):
        load_study("nope")
    with pytest.raises(ConfigError, match=r"models\.aligned\.lamda_align: unknown key; allowed keys of .*lambda_align"):
        check_study(load_study("demo", {"models.aligned.lamda_align": 1}))
    with pytest.raises(ConfigError, match=r"evaluations\.encoding\.kind: unknown evaluation 'encode'; known: .*rsa"):
        check_study(load_study("demo", {"evaluations.encoding.kind": "encode"}))
    with pytest.raises(ConfigError, match=r"settings\.dataset is not a study setting"):
        load_study("demo", {"dataset.n_images": 96})  # an old key: the CLI and the wrappers translate it
    bad = tmp_path / "s.yaml"
    bad.write_text("name: x\nstimuli: {a: {kind: demo}}\nevaluations: {}\nmodel: {}\n")
    with pytest.raises(ConfigError, match=r"model: Extra inputs|model: unknown key"):
        load_study(bad)


def test_overrides_reach_study_keys_and_settings() -> None:
    study = load_study("demo", {"stimuli.demo.n_images": "96", "train.epochs": "15"}, literal={"device": "cpu #2"})
    assert study.stimuli["demo"].params()["n_images"] == 96
    assert study.settings["train"]["epochs"] == 15 and study.settings["device"] == "cpu #2"


def test_result_table_round_trips_through_metrics_json_and_csv(tmp_path) -> None:
    t = ResultTable()
    for seed, v in ((0, 0.2), (1, 0.4)):
        t.add("rsa", "aligned", "it", {"mean": v}, seed=seed)
        t.add("rsa", "aligned", "it", {"score": v + 0.1}, seed=seed, subject="s1")
    t.add("rsa", "text", "it", {"mean": 0.3, "sem": None})
    t.add("rsa", "text", "it", {"score": 0.35}, subject="s1")
    frame = pd.concat([t.frame(), seed_means(t.frame())], ignore_index=True)
    nested = to_nested(frame)
    assert nested["rsa"]["aligned"]["it"]["mean"] == pytest.approx(0.3)  # the mean over seeds
    assert nested["rsa"]["aligned"]["it"]["seeds"] == {"0": {"mean": 0.2}, "1": {"mean": 0.4}}
    assert nested["rsa"]["aligned"]["it"]["subjects"]["s1"]["score"] == pytest.approx(0.4)
    assert nested["rsa"]["text"]["it"] == {"mean": 0.3, "sem": None, "subjects": {"s1": {"score": 0.35}}}
    back = from_nested(nested)
    assert len(back) == 7 and set(back["seed"]) == {"", "0", "1"}  # per-seed per-subject rows stay in the CSV only
    frame.to_csv(tmp_path / "results.csv", index=False)
    pd.testing.assert_frame_equal(read_table(tmp_path / "results.csv"), frame)
    wide = wide_table(frame, "rsa")
    assert list(wide["model"]) == ["aligned", "text"] and list(wide.columns) == ["model", "target", "mean", "sem"]
    assert list(wide_table(frame, "rsa", subjects=True)["score"]) == pytest.approx([0.4, 0.35])


def _state(table: ResultTable) -> RunState:
    return RunState(cfg=None, store=None, run=None, log=print, seeds=[0, 1], results=table)  # type: ignore[arg-type]


def test_paired_evaluation_matches_a_paired_t_test_over_subjects() -> None:
    rng = np.random.default_rng(0)
    a, b = rng.normal(0.3, 0.05, (2, 6)), rng.normal(0.2, 0.05, (6,))
    t = ResultTable()
    for s in range(6):
        for seed in (0, 1):
            t.add("rsa", "aligned", "it", {"score": a[seed, s]}, seed=seed, subject=f"s{s}")
        t.add("rsa", "text", "it", {"score": b[s]}, subject=f"s{s}")
    state = _state(t)
    kind = EVALUATIONS.get("paired")
    kind.build(kind.parse({"of": "rsa", "reference": "text"}, "evaluations.p"), state, "p")
    rows = state.results.frame()
    got = rows[(rows["evaluation"] == "p") & (rows["seed"] == "")].set_index("metric")["value"]
    assert got["diff_mean"] == pytest.approx((a - b).mean())
    assert got["p_paired_t_subjects"] == pytest.approx(stats.ttest_rel(a.mean(0), b).pvalue)
    assert got["n_seeds"] == 2 and got["n_subjects"] == 6 and got["ci95_low"] < got["diff_mean"] < got["ci95_high"]
    per_seed = rows[(rows["evaluation"] == "p") & (rows["metric"] == "diff")]["value"]
    assert list(per_seed) == pytest.approx(list((a - b).mean(1)))
    with pytest.raises(ConfigError, match=r"\['nope'\] not scored by 'rsa'"):
        kind.build(kind.parse({"of": "rsa", "pairs": [["nope", "text"]]}, "evaluations.q"), state, "q")


def test_old_demo_config_becomes_the_demo_study_with_its_keys_moved() -> None:
    cfg = load_config(overrides={"dataset.n_images": 96, "train.epochs": 15, "name": "mine"})
    tree, text = translate_config(cfg)
    assert tree["stimuli"]["demo"]["n_images"] == 96 and tree["settings"]["train"]["epochs"] == 15
    assert tree["name"] == "mine" and "dataset" not in tree["settings"]
    assert yaml.safe_load(text) == tree  # the warning's YAML is the study that runs
    with pytest.warns(FutureWarning, match="save this as a study file"):
        assert study_from_config(cfg).stimuli["demo"].params()["n_images"] == 96
    obj = translate_config(load_config(overrides={"dataset.name": "objects92", "evaluate.rsa.align_images": 100,
                                                  "evaluate.rsa.targets": "[cichy_it]"}))[0]  # fmt: skip
    assert obj["name"] == "objects92" and obj["stimuli"]["nsd"]["n_images"] == 100
    assert obj["targets"]["brain"]["sets"] == ["cichy_it"]
    assert set(obj["settings"]["evaluate"]["rsa"]) == {"metric", "method"}  # the moved keys left the settings


def test_old_visual_words_config_becomes_the_words_study() -> None:
    """dataset.name: nsd_objects92 with finetune.loss: visual_words: the study nsd-objects92-words, the old config's
    finetune section whole (its λ, not the study file's), its keys moved as for nsd-objects92."""
    cfg = load_config(overrides={"dataset.name": "nsd_objects92", "finetune.loss": "visual_words",
                                 "finetune.n_images": 40, "finetune.seeds": "[0]", "finetune.bow_weighting": "tf",
                                 "finetune.aligned_task": "none", "words.n_shuffles": 50})  # fmt: skip
    tree, text = translate_config(cfg)
    assert yaml.safe_load(text) == tree
    assert tree["name"] == "nsd_objects92" and tree["seeds"] == [0] and tree["stimuli"]["nsd"]["n_images"] == 40
    ft = tree["settings"]["finetune"]
    assert ft["loss"] == "visual_words" and ft["bow_weighting"] == "tf" and ft["lambda_align"] == 1.0
    assert "seeds" not in ft and "n_images" not in ft and tree["settings"]["words"] == {"n_shuffles": 50}
    assert tree["models"]["aligned"]["task"] == "none" and tree["models"]["aligned"]["text"] == "nsd_words"
    assert tree["evaluations"]["words"]["kind"] == "word_readout"
    with pytest.warns(FutureWarning, match=r"into the study 'nsd-objects92-words' \(llmvem/studies/nsd-objects92"):
        study_from_config(cfg)


def test_old_configs_without_a_study_say_what_to_do() -> None:
    with pytest.raises(ConfigError, match=r"'nsd_shared1000' is a dataset, not a study; studies: .*doerig-controls"):
        translate_config(load_config(overrides={"dataset.name": "nsd_shared1000"}))
    with pytest.raises(ConfigError, match=r"dataset\.name=folder needs dataset\.images"):
        translate_config(load_config(overrides={"dataset.name": "folder"}))
    assert study_overrides("demo", {"dataset.n_images": "96"}, {"seed": 1}) == (
        {"stimuli.demo.n_images": "96"}, {"seed": 1})  # fmt: skip
    with pytest.raises(ConfigError, match=r"dataset\.n_images does not apply to the study 'objects92'"):
        study_overrides("objects92", {}, {"dataset.n_images": 96})


def test_demo_command_names_the_studies_it_knows() -> None:
    from typer.testing import CliRunner

    from llmvem.cli.app import app

    res = CliRunner().invoke(app, ["demo", "nope"])
    assert res.exit_code == 2 and "unknown study 'nope'; built-in studies:" in res.output
    assert "doerig-controls" in res.output and "Traceback" not in res.output
    res = CliRunner().invoke(app, ["demo", "objects92", "--n-images", "50"])
    assert res.exit_code == 2 and "dataset.n_images does not apply to the study 'objects92'" in res.output


def test_every_shipped_old_config_translates_or_keeps_its_hand_written_run() -> None:
    from pathlib import Path

    from llmvem.runner.legacy import NOT_PORTED
    from llmvem.runner.study import parse_study

    configs = sorted((Path(__file__).resolve().parents[2] / "configs").glob("*.yaml"))
    assert configs
    for path in configs:
        cfg = load_config(path)
        if cfg.dataset.name in NOT_PORTED:
            continue
        text = translate_config(cfg)[1]
        check_study(parse_study(yaml.safe_load(text), str(path)))  # the printed YAML is a valid study
