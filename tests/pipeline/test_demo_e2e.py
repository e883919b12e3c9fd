"""End to end: the built-in demo and the objects92 RSA study, through the Python API and the CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from llmvem.cli.app import app
from llmvem.config import load_config
from llmvem.pipeline import run_encoding_demo, run_objects92_rsa
from llmvem.store import ArtifactStore

runner = CliRunner()


def _small(tmp_path: Path, **extra: object) -> dict[str, object]:
    return {
        "cache_dir": str(tmp_path / "cache"),
        "output_dir": str(tmp_path / "runs"),
        "progress": False,
        "dataset.n_images": 96,
        "dataset.n_voxels_per_roi": 40,
        "train.epochs": 15,
        **extra,
    }


def test_encoding_demo_small_end_to_end(tmp_path: Path) -> None:
    cfg = load_config(overrides=_small(tmp_path))
    run = run_encoding_demo(cfg)
    for name in (
        "config.yaml",
        "environment.json",
        "metrics.json",
        "encoding.csv",
        "encoding.png",
        "report.html",
        "descriptions.jsonl",
    ):
        assert (run.path / name).is_file(), name
    resolved = yaml.safe_load((run.path / "config.yaml").read_text())
    study = yaml.safe_load((run.path / "study.yaml").read_text())
    assert study["stimuli"]["demo"]["n_images"] == 96 and resolved["train"]["epochs"] == 15
    assert "dataset" not in resolved  # the study's stimuli say which images
    env = json.loads((run.path / "environment.json").read_text())
    assert env["seeds"]["seed"] == 0 and env["packages"]["llmvem"]
    table = pd.read_csv(run.path / "encoding.csv")
    assert set(table["roi"]) == {"early", "semantic"} and len(table) == 8
    assert table["mean_r"].between(-1, 1).all() and table["noise_ceiling_r"].between(0, 1).all()
    sem = table[table.roi == "semantic"].set_index("model")["mean_r"]
    assert sem.max() > 0.3  # the simulated semantic ROI is predictable from these representations
    metrics = json.loads((run.path / "metrics.json").read_text())
    assert metrics["schema"] == 2 and metrics["study"] == "demo" and "timings_s" in metrics
    diff = metrics["results"]["aligned_vs_baseline"]["aligned - baseline"]
    enc = metrics["results"]["encoding"]
    for roi in ("early", "semantic"):
        assert diff[roi]["diff_mean"] == pytest.approx(enc["aligned"][roi]["mean_r"] - enc["baseline"][roi]["mean_r"])
    html = (run.path / "report.html").read_text()
    assert "data:image/png;base64," in html and "semantic" in html

    # a second run with the same inputs reuses every artifact and gives identical numbers
    kinds_before = {e.key for e in ArtifactStore(tmp_path / "cache").entries()}
    twins_before = {p.parent: p.read_text() for p in (tmp_path / "cache" / "runs").glob("*/done.json")}
    run2 = run_encoding_demo(cfg)
    assert {e.key for e in ArtifactStore(tmp_path / "cache").entries()} == kinds_before
    assert {p.parent: p.read_text() for p in (tmp_path / "cache" / "runs").glob("*/done.json")} == twins_before
    pd.testing.assert_frame_equal(pd.read_csv(run2.path / "encoding.csv"), table)
    # changing a training setting trains new twins (never a stale one); the twins' cache: their run directories
    run_encoding_demo(load_config(overrides=_small(tmp_path, **{"train.lambda_align": 0.5})), until="train")
    twins = list((tmp_path / "cache" / "runs").glob("*/done.json"))
    assert len(twins_before) == 2 and len(twins) == 3  # baseline reused (λ does not enter it), aligned λ=1 and 0.5


def test_demo_cli_rejects_descriptions_with_missing_ids(tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"image": "demo_0001.png", "text": "a red dog"}) + "\n")
    args = ["demo", "--no-progress", "--set", f"describe.source={bad}"]
    for k, v in _small(tmp_path).items():
        if k != "progress":
            args += ["--set", f"{k}={v}"]
    res = runner.invoke(app, args)
    assert res.exit_code == 2, res.output
    assert "have no text" in res.output and "demo_0002" in res.output and "Traceback" not in res.output


def test_objects92_rsa_small(data_dir: Path, tmp_path: Path) -> None:
    cfg = load_config(
        overrides={
            "data_dir": str(data_dir),
            "cache_dir": str(tmp_path / "cache"),
            "output_dir": str(tmp_path / "runs"),
            "progress": False,
            "dataset.name": "objects92",
            "evaluate.rsa.align_images": 100,
        }
    )
    run = run_objects92_rsa(cfg)
    table = pd.read_csv(run.path / "rsa.csv")
    assert set(table["target"]) == {"cichy_it", "cichy_evc", "kriegeskorte_hit"} and len(table) == 9
    it = table[table.target == "cichy_it"]
    assert it["n_subjects"].eq(15).all()
    assert np.allclose(it["noise_lower"], 0.45, atol=0.02) and np.allclose(it["noise_upper"], 0.54, atol=0.02)
    assert (table["sem"] > 0).all() and (table["mean"] < table["noise_upper"]).all()
    per_subject = pd.read_csv(run.path / "rsa_subjects.csv")
    assert len(per_subject) == 3 * (15 + 15 + 4)
    for name in ("rsa.png", "rsa_rdms.png", "report.html", "metrics.json", "results.csv", "study.yaml"):
        assert (run.path / name).is_file()


@pytest.mark.slow
def test_llmvem_demo_main_job_cli(tmp_path: Path) -> None:
    """The README's main job exactly as a user runs it (defaults, fresh store), within its 5-minute budget."""
    env = {**os.environ, "LLMVEM_CACHE": str(tmp_path / "cache")}
    proc = subprocess.run(
        [sys.executable, "-m", "llmvem", "demo", "--output-dir", str(tmp_path / "runs")],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "semantic" in proc.stdout and "early" in proc.stdout
    [run] = list((tmp_path / "runs").iterdir())
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["total_s"] < 300


def test_train_command_stops_after_training(data_dir: Path, tmp_path: Path) -> None:
    cfg_file = tmp_path / "obj.yaml"
    cfg_file.write_text(
        yaml.safe_dump(
            {
                "dataset": {"name": "objects92"},
                "data_dir": str(data_dir),
                "cache_dir": str(tmp_path / "c"),
                "output_dir": str(tmp_path / "runs"),
                "evaluate": {"rsa": {"align_images": 60}},
            }
        )
    )
    res = runner.invoke(app, ["train", str(cfg_file), "--no-progress"])
    assert res.exit_code == 0, res.output
    [run] = list((tmp_path / "runs").iterdir())
    metrics = json.loads((run / "metrics.json").read_text())
    fit = metrics["info"]["models"]["image_to_text"]
    assert fit["n_images"] == 60 and 0 < fit["train_row_r"] <= 1
    assert not (run / "rsa.csv").exists()


def test_nsd_objects92_experiment_small(data_dir: Path, tmp_path: Path) -> None:
    from llmvem.pipeline import run_nsd_objects92

    cfg = load_config(
        Path(__file__).resolve().parents[2] / "configs" / "nsd-objects92.yaml",
        overrides={
            "data_dir": str(data_dir),
            "cache_dir": str(tmp_path / "cache"),
            "output_dir": str(tmp_path / "r"),
            "progress": False,
            "finetune.n_images": 48,
            "finetune.seeds": "[0, 1]",
            "finetune.epochs": 2,
            "finetune.trainable_blocks": 1,
            "finetune.batch_size": 16,
        },
    )
    from llmvem.results import read_table
    from llmvem.runner.legacy import LegacyConfigWarning

    with pytest.warns(LegacyConfigWarning, match="nsd-objects92"):  # the old config runs as the study
        run = run_nsd_objects92(cfg)
    metrics = json.loads((run.path / "metrics.json").read_text())
    rsa = metrics["results"]["rsa"]
    for rep in ("aligned", "twin", "pretrained", "descriptions"):
        for brain_set in ("cichy_it", "cichy_evc", "kriegeskorte_hit"):
            v = rsa[rep][brain_set]
            assert -1 <= v["mean"] <= 1 and v["sem"] > 0
    # the pretrained network and the descriptions reproduce the objects92 reference numbers of the issue
    assert rsa["pretrained"]["cichy_it"]["mean"] == pytest.approx(0.087, abs=0.005)
    assert rsa["descriptions"]["kriegeskorte_hit"]["mean"] == pytest.approx(0.290, abs=0.005)
    paired = metrics["results"]["aligned_vs_twin"]["aligned - twin"]
    assert set(paired["cichy_it"]["seeds"]) == {"0", "1"}
    # every score behind the means, per seed and subject, in the result table
    table = read_table(run.path / "results.csv")
    scores = table[(table["evaluation"] == "rsa") & (table["metric"] == "score") & (table["subject"] != "")]
    it = scores[(scores["target"] == "cichy_it") & (scores["model"] == "aligned") & (scores["seed"] != "mean")]
    assert sorted(it["seed"].unique()) == ["0", "1"] and len(it) == 2 * 15
    assert it["value"].mean() == pytest.approx(rsa["aligned"]["cichy_it"]["mean"], abs=1e-9)
    pre = scores[(scores["target"] == "kriegeskorte_hit") & (scores["model"] == "pretrained")]
    assert len(pre) == 4 and (pre["seed"] == "").all()
    # the networks' last layers: the aligned projection (text space) and the twin's HED logits
    assert {"aligned_head", "twin_head"} <= set(rsa)
    heads = metrics["results"]["heads"]["aligned_head - twin_head"]
    assert set(heads["kriegeskorte_hit"]["seeds"]) == {"0", "1"}
    # vs the untouched network: its RSA repeated for every seed
    vp = metrics["results"]["vs_pretrained"]["aligned - pretrained"]["cichy_it"]
    a_it, p_it = rsa["aligned"]["cichy_it"]["mean"], rsa["pretrained"]["cichy_it"]["mean"]
    assert vp["diff_mean"] == pytest.approx(a_it - p_it, abs=1e-9)
    assert "aligned_head - pretrained" in metrics["results"]["vs_pretrained"]
    assert metrics["info"]["stimuli"]["nsd"]["n_undescribed"] == 0  # all six describers cover the first 48 images
    assert set(metrics["results"]["hed"]) == {"aligned", "twin"}
    assert len(list((run.path / "models").glob("*.safetensors"))) == 4
    # re-running reuses the finished training (checkpoints in the store) and gives the same numbers
    with pytest.warns(LegacyConfigWarning):
        run2 = run_nsd_objects92(cfg)
    assert json.loads((run2.path / "metrics.json").read_text())["results"]["rsa"] == rsa
    # a trained model's features for any folder of images, through the CLI
    images = data_dir / "objects92" / "images"
    common = ["--cache-dir", str(tmp_path / "cache"), "--no-progress"]
    res = runner.invoke(
        app,
        [
            "features",
            str(images),
            "--model",
            str(run.path),
            "--weights",
            "aligned-seed1",
            "-o",
            str(tmp_path / "aligned.npy"),
            *common,
        ],
    )
    assert res.exit_code == 0, res.output
    res = runner.invoke(app, ["features", str(images), "-o", str(tmp_path / "pre.npy"), *common])
    assert res.exit_code == 0, res.output
    aligned, pre = np.load(tmp_path / "aligned.npy"), np.load(tmp_path / "pre.npy")
    assert aligned.shape == pre.shape == (92, 1280) and not np.allclose(aligned, pre, atol=1e-3)
    assert (tmp_path / "aligned.ids.txt").read_text().split()[:2] == ["image_01", "image_02"]
    res = runner.invoke(app, ["features", str(images), "--model", str(run.path), "--weights", "nope", *common])
    assert res.exit_code == 2 and "available: ['aligned-seed0'" in res.output
    # the aligned model's projection into the text space (its last layer), from the same weights
    res = runner.invoke(app, ["features", str(images), "--model", str(run.path), "--weights", "aligned-seed1",
                              "--head", "project", "-o", str(tmp_path / "proj.npy"), *common])  # fmt: skip
    assert res.exit_code == 0, res.output
    from safetensors.numpy import load_file

    from llmvem.align.finetune import head_outputs

    state = load_file(str(run.path / "models" / "aligned-seed1.safetensors"))
    expected = head_outputs(state, "project", aligned, "mlp_bn")
    np.testing.assert_allclose(np.load(tmp_path / "proj.npy"), expected, atol=1e-4)
    assert expected.shape == (92, 384)
    res = runner.invoke(app, ["features", str(images), "--model", str(run.path), "--weights", "twin-seed0",
                              "--head", "project", *common])  # fmt: skip
    assert res.exit_code == 2 and "no 'project' head" in res.output
