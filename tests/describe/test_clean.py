"""Cleaning boilerplate off descriptions: the steps, and the real Gemma 3 descriptions of the NSD shared1000 images
imported, cleaned and exported (the store keeps the raw texts; cleaned records carry them)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from llmvem.cli.app import app
from llmvem.data.stimuli import StimulusSet
from llmvem.describe import describe_stimuli, export_descriptions, read_records
from llmvem.describe.clean import clean_steps, clean_text, strip_closing, strip_preamble
from llmvem.describe.imported import ImportDescriber, read_text_table
from llmvem.errors import ConfigError
from llmvem.store import ArtifactStore


@pytest.mark.parametrize(
    ("raw", "clean"),
    [
        ("Here's a description of the image:\n\nA red bus.", "A red bus."),
        ("Here’s a detailed description of the image, focusing on colour:\nA red bus.", "A red bus."),
        ("Here is a description of the market scene, broken down into layers:\n\nIn front ...", "In front ..."),
        ("Sure! Here's a breakdown of the foreground and background: The bus ...", "The bus ..."),
        ("Okay, here is a short caption:\n\nA bus.", "A bus."),
        ("**Here's a description of the image:**\n\nA bus.", "A bus."),
    ],
)
def test_preamble_lead_ins_are_removed(raw: str, clean: str) -> None:
    assert strip_preamble(raw) == clean


@pytest.mark.parametrize(
    "text",
    [
        "Here is the beach: sand and sea under a blue sky.",  # no description announced: content
        "Here's a description of the image:",  # nothing after it: keep rather than empty
        "The bus is red. Here's a description of the rest: a street.",  # not a lead-in
        "Here's a description of the image\n\nA red bus.",  # no colon: not recognisably boilerplate
        "A dog.\n\nThe image is calm.",
    ],
)
def test_text_without_a_lead_in_is_unchanged(text: str) -> None:
    assert strip_preamble(text) == text and strip_closing(text) == text


def test_closing_offer_and_step_names() -> None:
    raw = "A red bus.\n\nIf you’re interested, I can analyze another image!"
    assert strip_closing(raw) == "A red bus."
    assert clean_text("Here's a description of the image:\n\n" + raw, ["preamble", "closing"]) == "A red bus."
    assert clean_steps("preamble") == ["preamble"] and clean_steps(None) == []
    with pytest.raises(ConfigError, match="known: closing, preamble"):
        clean_steps(["preambel"])


def test_gemma_descriptions_cleaned_through_the_import_backend(data_dir: Path, tmp_path: Path) -> None:
    root = data_dir / "nsd_shared1000" / "descriptions"
    src = root / "gemma3_12b.jsonl"
    prompts = list(json.loads((root / "prompts.json").read_text())["prompts"])
    raw = {(Path(r["image"]).stem, r["prompt"]): r["text"] for r in map(json.loads, src.read_text().splitlines())}
    paths = sorted((data_dir / "nsd_shared1000" / "images").glob("shared*_nsd*.jpg"))
    stim = StimulusSet.from_paths(paths, verify=False)
    store = ArtifactStore(tmp_path / "store")
    desc = describe_stimuli(
        stim, ImportDescriber(src, model="gemma3_12b"), prompt=prompts, store=store, progress=False, clean="preamble"
    )
    assert len(desc) == 4000
    changed = [d for d in desc.records if d.text != d.raw_text]
    assert len(changed) == 3004  # of 4000: every "Here's a description ...:" lead-in, nothing else
    for d in desc.records:
        assert d.raw_text == raw[(d.image, d.prompt_name)] and d.clean == ["preamble"]
        assert d.text and not d.text.startswith(("Here", "\n", " ")) and d.raw_text.endswith(d.text)
    log = next((store.root / "descriptions").glob("*.jsonl"))
    n_lines = len(log.read_text().splitlines())
    again = ImportDescriber(src, model="gemma3_12b")
    plain = describe_stimuli(stim, again, prompt=prompts, store=store, progress=False)
    assert [d.text for d in plain.records] == [d.raw_text for d in desc.records]  # the store holds the raw texts
    assert all(d.raw_text is None and d.clean == [] for d in plain.records)
    assert len(log.read_text().splitlines()) == n_lines  # cleaning is no part of any key: nothing re-imported
    out = tmp_path / "clean.parquet"
    assert export_descriptions(out, store, clean=["preamble"], prompt="general_description") == 1000
    rows = read_records(out)
    assert all(r["clean"] == ["preamble"] and r["raw_text"] == raw[(r["image"], r["prompt_name"])] for r in rows)
    assert sum(r["text"] != r["raw_text"] for r in rows) == sum(
        strip_preamble(raw[(i, "general_description")]) != raw[(i, "general_description")] for i in stim.ids
    )
    # the other Gemma sizes lose their lead-ins as often; the Qwen and Mistral texts have none
    counts = {}
    for f in sorted(root.glob("*.jsonl")):
        texts = read_text_table(f)["text"]
        counts[f.stem] = sum(strip_preamble(t) != t for t in texts)
    assert counts == {
        "gemma3_12b": 3004, "gemma3_27b": 3676, "gemma3_4b": 3885,
        "mistral-small3.2_24b": 0, "qwen2.5vl_32b": 0, "qwen2.5vl_7b": 0,
    }  # fmt: skip


def test_cli_clean_flag_on_describe_and_export(data_dir: Path, tmp_path: Path) -> None:
    imgs = tmp_path / "imgs"
    imgs.mkdir()
    for p in sorted((data_dir / "nsd_shared1000" / "images").glob("shared*_nsd*.jpg"))[:4]:
        shutil.copy(p, imgs / p.name)
    src = data_dir / "nsd_shared1000" / "descriptions" / "gemma3_27b.jsonl"
    base = ["describe", str(imgs), "--backend", "import", "--source", str(src), "--model", "gemma3_27b",
            "--prompt", "general_description", "--cache-dir", str(tmp_path / "c"), "--no-progress"]  # fmt: skip
    runner = CliRunner()
    res = runner.invoke(app, [*base, "--clean", "preamble", "-o", str(tmp_path / "d.jsonl")])
    assert res.exit_code == 0, res.output
    rows = read_records(tmp_path / "d.jsonl")
    assert len(rows) == 4 and all(r["clean"] == ["preamble"] for r in rows)
    assert all(r["raw_text"].startswith("Here") and not r["text"].startswith("Here") for r in rows)
    res = runner.invoke(app, [*base, "-o", str(tmp_path / "raw.jsonl")])
    assert res.exit_code == 0, res.output
    assert [r["text"] for r in read_records(tmp_path / "raw.jsonl")] == [r["raw_text"] for r in rows]
    assert "raw_text" not in read_records(tmp_path / "raw.jsonl")[0]
    res = runner.invoke(app, ["describe", "export", str(tmp_path / "e.jsonl"), "--cache-dir", str(tmp_path / "c"),
                              "--clean", "preamble"])  # fmt: skip
    assert res.exit_code == 0, res.output
    assert sorted(r["text"] for r in read_records(tmp_path / "e.jsonl")) == sorted(r["text"] for r in rows)
    res = runner.invoke(app, [*base, "--clean", "boilerplate"])
    assert res.exit_code == 2 and "unknown cleaning step" in res.output
