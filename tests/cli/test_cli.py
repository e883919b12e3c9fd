"""The command line: help texts, fast start, flags → config, clear errors."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from llmvem.cli.app import app
from llmvem.store import ArtifactStore

runner = CliRunner()
COMMANDS = ["describe", "embed", "features", "train", "evaluate", "report", "compare", "demo", "datasets", "cache"]


def test_help_lists_the_pipeline_commands() -> None:
    res = runner.invoke(app, ["--help"])
    assert res.exit_code == 0
    for c in COMMANDS:
        assert c in res.output


@pytest.mark.parametrize("command", [c for c in COMMANDS if c != "cache"] + ["cache ls", "cache clean"])
def test_every_command_has_help_with_an_example(command: str) -> None:
    res = runner.invoke(app, [*command.split(), "--help"])
    assert res.exit_code == 0, res.output
    assert "Examples" in res.output and "llmvem " in res.output


def test_help_does_not_import_heavy_libraries() -> None:
    code = (
        "import sys, time; t=time.perf_counter(); from llmvem.cli.app import app; "
        "from typer.testing import CliRunner; r=CliRunner().invoke(app, ['demo', '--help']); "
        "assert r.exit_code == 0; "
        "heavy=[m for m in ('torch','transformers','sentence_transformers','matplotlib','sklearn') "
        "if m in sys.modules]; "
        "print(heavy, round(time.perf_counter()-t, 2))"
    )
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.startswith("[]"), out
    assert time.perf_counter() - t0 < 10


def test_unknown_config_key_is_one_clear_line(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("train:\n  epoch: 3\n")
    res = runner.invoke(app, ["train", str(cfg)])
    assert res.exit_code == 2
    assert "train.epoch: unknown key" in res.output and "Traceback" not in res.output


def test_bad_set_override() -> None:
    res = runner.invoke(app, ["demo", "--set", "train.lr"])
    assert res.exit_code == 2 and "key.path=value" in res.output


def test_missing_dataset_names_expected_files(tmp_path: Path) -> None:
    res = runner.invoke(
        app,
        [
            "demo",
            "--dataset",
            "objects92",
            "--data-dir",
            str(tmp_path),
            "--cache-dir",
            str(tmp_path / "c"),
            "--output-dir",
            str(tmp_path / "runs"),
        ],
    )
    assert res.exit_code == 2
    assert "objects92" in res.output and "Traceback" not in res.output


def test_cache_ls_and_clean(tmp_path: Path) -> None:
    store = ArtifactStore(tmp_path)
    store.put_arrays("image_features", {"backbone": "x", "n": 1}, {"v": np.zeros(3)})
    store.put_arrays("twin", {"n": 2}, {"v": np.zeros(3)})
    res = runner.invoke(app, ["cache", "ls", "--cache-dir", str(tmp_path)])
    assert res.exit_code == 0 and "image_features" in res.output and "2 entries" in res.output
    res = runner.invoke(app, ["cache", "clean", "--cache-dir", str(tmp_path)])
    assert res.exit_code == 2  # refuses to guess
    res = runner.invoke(app, ["cache", "clean", "--kind", "twin", "--cache-dir", str(tmp_path)])
    assert res.exit_code == 0 and "removed 1 entry" in res.output
    assert [e.kind for e in store.entries()] == ["image_features"]


def test_describe_then_embed_cli(data_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "desc.jsonl"
    res = runner.invoke(
        app,
        [
            "describe",
            str(data_dir / "objects92" / "images"),
            "--backend",
            "import",
            "--source",
            str(data_dir / "objects92" / "descriptions.jsonl"),
            "--model",
            "mllm",
            "-o",
            str(out),
            "--cache-dir",
            str(tmp_path / "c"),
            "--no-progress",
        ],
    )
    assert res.exit_code == 0, res.output
    assert len(out.read_text().splitlines()) == 92
    emb = tmp_path / "emb.npy"
    res = runner.invoke(app, ["embed", str(out), "-o", str(emb), "--cache-dir", str(tmp_path / "c"), "--no-progress"])
    assert res.exit_code == 0, res.output
    x = np.load(emb)
    assert x.shape == (92, 384) and np.allclose(np.linalg.norm(x, axis=1), 1, atol=1e-4)
    assert emb.with_suffix(".ids.txt").read_text().split()[0] == "image_01"


def test_describe_import_without_source_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "imgs").mkdir()
    res = runner.invoke(app, ["describe", str(tmp_path / "imgs"), "--backend", "import"])
    assert res.exit_code == 2 and "--source" in res.output


@pytest.mark.parametrize(
    "command",
    ["demo", "train", "evaluate", "evaluate encoding", "evaluate rsa", "evaluate decode", "evaluate captions",
     "describe", "embed", "features"],
)  # fmt: skip
def test_every_run_flag_is_a_config_key(command: str) -> None:
    """Each option of a command that configures a run is generated from a config key (COMMAND_FLAGS)."""
    import typer.main

    from llmvem.cli.app import COMMAND_FLAGS
    from llmvem.config import config_keys

    group, _, sub = command.partition(" ")
    click_cmd = typer.main.get_command(app).commands[group]  # type: ignore[attr-defined]
    if group in ("describe", "evaluate"):  # groups: `llmvem describe IMAGES` runs their `run` subcommand
        click_cmd = click_cmd.commands[sub or "run"]
    # --out names the command's output file and --dry-run only reports: neither is a setting of the run
    not_config = {"--config", "--set", "--help", "--out", "--dry-run"}
    for param in click_cmd.params:
        if param.param_type_name != "option":
            continue
        names = set(param.opts)
        if names & not_config:
            continue
        flag = "/".join(param.opts + param.secondary_opts) if param.secondary_opts else param.opts[0]
        assert flag in COMMAND_FLAGS[command], f"{command}: option {flag} has no key"
        assert COMMAND_FLAGS[command][flag] in config_keys()


def test_embed_clean_strips_the_preamble_before_embedding(tmp_path: Path) -> None:
    import json

    from llmvem.text import embed_texts

    src = tmp_path / "gemma.jsonl"
    raw = "Here's a description of the image:\n\nA brown dog sleeps on a red sofa."
    src.write_text(
        json.dumps({"image": "img1", "text": raw}) + "\n" + json.dumps({"image": "img2", "text": "A bus."}) + "\n"
    )
    outs = {}
    for name, extra in (("raw", []), ("clean", ["--clean", "preamble"])):
        out = tmp_path / f"{name}.npy"
        res = runner.invoke(app, ["embed", str(src), "--encoder", "glove", "-o", str(out), "--no-progress", *extra])
        assert res.exit_code == 0, res.output
        outs[name] = np.load(out)
    want = embed_texts(["A brown dog sleeps on a red sofa.", "A bus."], encoder="glove", progress=False)
    np.testing.assert_allclose(outs["clean"], want, rtol=1e-5, atol=1e-6)
    assert not np.allclose(outs["raw"][0], want[0], atol=1e-3)  # the lead-in changed the raw embedding
    np.testing.assert_allclose(outs["raw"][1], want[1], rtol=1e-5, atol=1e-6)


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="needs a machine without a GPU")
def test_gpu_config_without_a_gpu_fails_before_making_a_run_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    gpu_cfg = Path(__file__).resolve().parents[2] / "configs" / "nsd-objects92-gpu.yaml"
    monkeypatch.chdir(tmp_path)
    res = runner.invoke(app, ["train", str(gpu_cfg), "--data-dir", str(tmp_path)])
    assert res.exit_code != 0 and "CUDA is not available" in res.output and "--device cpu" in res.output
    assert "Traceback" not in res.output
    assert not (tmp_path / "runs").exists()
