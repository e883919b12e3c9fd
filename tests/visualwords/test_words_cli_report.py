"""``llmvem words``, ``llmvem features --pif`` and the report's visual-words sections."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from llmvem.cli.app import app
from llmvem.config import dump_config, load_config
from llmvem.visualwords import Vocabulary, load_vocabulary

runner = CliRunner()


@pytest.fixture(scope="module")
def minilm() -> Vocabulary:
    return load_vocabulary("minilm")


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("imgs")
    rng = np.random.default_rng(0)
    for name in ("b_cat.png", "a_dog.jpg", "c_bus.png"):
        Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(folder / name)
    return folder


def _run_dir(root: Path, minilm: Vocabulary, loss: str = "visual_words") -> Path:
    """A run directory as ``llmvem train`` writes it, whose vocabulary head always says dog > sofa > red."""
    from safetensors.torch import save_file

    from llmvem.align.finetune import build_model
    from llmvem.vision.trainable import split_backbone

    cfg = load_config(overrides={"dataset.name": "nsd_objects92", "finetune.trainable_blocks": 1,
                                 "finetune.loss": loss, "finetune.vocab_head_init": "random"})  # fmt: skip
    run = root / f"run-{loss}"
    (run / "models").mkdir(parents=True)
    (run / "config.yaml").write_text(dump_config(cfg))
    split = split_backbone("efficientnet_lite0", trainable_blocks=1)
    model = build_model(split, cfg.finetune, minilm.size if loss == "visual_words" else 384, 3, "multilabel")
    state = {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}
    if loss == "visual_words":
        state["project.weight"] = torch.zeros_like(state["project.weight"])
        bias = torch.full_like(state["project.bias"], -20.0)
        tid = minilm.tokenizer.convert_tokens_to_ids
        for score, tok in ((9.0, "the"), (8.0, "dog"), (7.0, "##board"), (6.0, "sofa"), (5.0, "red")):
            bias[tid(tok)] = score
        state["project.bias"] = bias
    save_file(state, str(run / "models" / "aligned-seed0.safetensors"))
    save_file(
        {k: v for k, v in state.items() if not k.startswith("project.")}, str(run / "models" / "twin-seed0.safetensors")
    )
    return run


def test_words_command_writes_json(images: Path, minilm: Vocabulary, tmp_path: Path) -> None:
    run = _run_dir(tmp_path, minilm)
    out = tmp_path / "out" / "words.json"
    res = runner.invoke(app, ["words", str(images), "--model", str(run), "--top", "3", "--out", str(out),
                              "--no-progress"])  # fmt: skip
    assert res.exit_code == 0, res.output
    words = json.loads(out.read_text())
    assert words == {name: ["dog", "sofa", "red"] for name in ("a_dog.jpg", "b_cat.png", "c_bus.png")}
    assert list(words) == ["a_dog.jpg", "b_cat.png", "c_bus.png"] and "3 words for each of 3 images" in res.output
    # PIF features: the visual-word distribution times the token embeddings
    npy = tmp_path / "pif.npy"
    res = runner.invoke(app, ["features", str(images), "--model", str(run), "--pif", "-o", str(npy), "--no-progress"])
    assert res.exit_code == 0, res.output
    pif = np.load(npy)
    bias = np.full(minilm.size, -20.0)
    tid = minilm.tokenizer.convert_tokens_to_ids
    for score, tok in ((9.0, "the"), (8.0, "dog"), (7.0, "##board"), (6.0, "sofa"), (5.0, "red")):
        bias[tid(tok)] = score
    p = np.exp(bias - bias.max())
    want = (p / p.sum()) @ minilm.embeddings
    assert pif.shape == (3, 384)
    np.testing.assert_allclose(pif, np.repeat(want[None], 3, 0), rtol=1e-4, atol=1e-5)


def test_words_command_errors(images: Path, minilm: Vocabulary, tmp_path: Path) -> None:
    run = _run_dir(tmp_path, minilm)
    res = runner.invoke(app, ["words", str(images), "--model", str(run), "--weights", "twin-seed0"])
    assert res.exit_code == 2 and "no vocabulary head" in res.output and "Traceback" not in res.output
    res = runner.invoke(app, ["words", str(images), "--model", str(run), "--weights", "aligned-seed7"])
    assert res.exit_code == 2 and "aligned-seed0" in res.output
    res = runner.invoke(app, ["words", str(images)])
    assert res.exit_code == 2 and "--model" in res.output
    res = runner.invoke(app, ["features", str(images), "--pif"])
    assert res.exit_code == 2 and "--pif needs --model" in res.output
    other = _run_dir(tmp_path, minilm, loss="infonce")
    res = runner.invoke(app, ["words", str(images), "--model", str(other)])
    assert res.exit_code == 2 and "finetune.loss='infonce'" in res.output and "visual_words" in res.output


def test_words_flags_are_config_keys() -> None:
    import typer.main

    from llmvem.cli.app import COMMAND_FLAGS, flag_key
    from llmvem.config import config_keys

    cmd = typer.main.get_command(app).commands["words"]  # type: ignore[attr-defined]
    for param in cmd.params:
        if param.param_type_name != "option" or set(param.opts) & {"--config", "--set", "--help", "--out"}:
            continue
        flag = "/".join(param.opts + param.secondary_opts) if param.secondary_opts else param.opts[0]
        assert flag in COMMAND_FLAGS["words"], flag
        assert flag_key(flag, "words") in config_keys(), flag
    assert flag_key("--top", "words") == "words.top_k"
    res = runner.invoke(app, ["words", "--help"])
    assert res.exit_code == 0 and "Examples" in res.output


def test_report_shows_visual_words(tmp_path: Path) -> None:
    from llmvem.report import build_report

    vw = {
        "vocabulary": "minilm", "vocabulary_size": 30522, "k": 3, "n_heldout": 2,
        "precision": {"seed0": {"precision": 0.5, "shuffled_mean": 0.2, "shuffled_sd": 0.05, "ratio": 2.5,
                                "p_value": 0.001}},
        "prior_precision": 0.25,
        "objects92_precision": {"mean": {"precision": 0.41, "shuffled_mean": 0.3, "ratio": 1.37, "p_value": 0.01}},
        "heldout": [{"image": "x.jpg", "words": ["dog", "sofa", "red"], "in_description": ["dog"]}],
        "images": {"image_01.jpg": ["face", "woman", "hair"]},
        "rois": {"semantic": {"words": ["cat", "horse"], "n_voxels": 12}},
        "voxels": [{"voxel": 3, "roi": "early", "r": 0.5, "words": ["noisy", "texture"]}],
    }  # fmt: skip
    (tmp_path / "visual_words.json").write_text(json.dumps(vw))
    page = build_report(tmp_path).read_text()
    for text in ("Visual words: agreement with descriptions", "training prior", "face, woman, hair", "92 objects: mean",
                 "Visual words per ROI", "cat, horse", "noisy, texture", "dog, sofa, red"):  # fmt: skip
        assert text in page, text


def test_words_from_a_broken_run_directory(images: Path, tmp_path: Path) -> None:
    """A run's config.yaml goes through the one config reader, and a damaged model file is named (both were
    tracebacks: UnicodeDecodeError, SafetensorError)."""
    run = tmp_path / "run"
    (run / "models").mkdir(parents=True)
    (run / "config.yaml").write_bytes(b"finetune:\n  loss: visual_words\nname: caf\xe9\n")
    args = ["words", str(images), "--model", str(run), "--out", str(tmp_path / "w.json"), "--no-progress"]
    res = runner.invoke(app, args)
    assert res.exit_code == 2 and "is not UTF-8 text" in res.output, res.output
    cfg = load_config(overrides={"finetune.loss": "visual_words"})
    (run / "config.yaml").write_text(dump_config(cfg))
    (run / "models" / "aligned-seed0.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{garbage")
    res = runner.invoke(app, args)
    assert res.exit_code == 2, res.output
    assert " ".join(res.output.split()).startswith(f"error: model file {run / 'models' / 'aligned-seed0.safetensors'}")
    assert not (tmp_path / "w.json").exists()
