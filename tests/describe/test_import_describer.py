"""Describe stage with the import backend: provenance, resumability, id checks, real data."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from llmvem.data.stimuli import StimulusSet
from llmvem.describe import DESCRIBERS, DescribeFailuresError, describe_stimuli, resolve_prompt
from llmvem.describe.imported import ImportDescriber, read_text_table
from llmvem.errors import DataError, IdMismatchError
from llmvem.store import ArtifactStore


def _captions(tmp_path: Path, ids: list[str], name: str = "caps.jsonl") -> Path:
    p = tmp_path / name
    p.write_text("".join(json.dumps({"image": f"{i}.png", "text": f"caption of {i}"}) + "\n" for i in ids))
    return p


def test_import_describes_in_stimulus_order_with_provenance(tmp_path: Path, image_folder: Callable[..., Path]) -> None:
    stim = StimulusSet.from_folder(image_folder())
    src = _captions(tmp_path, list(reversed(stim.ids)))
    store = ArtifactStore(tmp_path / "store")
    desc = describe_stimuli(stim, DESCRIBERS.get("import")(source=src, model="gt"), store=store, progress=False)
    assert desc.texts_for(stim.ids) == [f"caption of {i}" for i in stim.ids]
    df = desc.to_frame()
    assert {"image", "model", "prompt", "text"} <= set(df.columns)
    assert (df["model"] == "gt").all() and (df["backend"] == "import").all()
    assert df["prompt"].iloc[0] == resolve_prompt("caption")
    assert list(df["image_hash"]) == stim.content_hashes


def test_rerun_skips_finished_and_changed_source_is_not_reused(
    tmp_path: Path, image_folder: Callable[..., Path]
) -> None:
    stim = StimulusSet.from_folder(image_folder())
    src = _captions(tmp_path, stim.ids)
    store = ArtifactStore(tmp_path / "store")
    describe_stimuli(stim, ImportDescriber(src, model="gt"), store=store, progress=False)
    logs = list((store.root / "descriptions").glob("*.jsonl"))
    assert len(logs) == 1 and len(logs[0].read_text().splitlines()) == len(stim)
    describe_stimuli(stim, ImportDescriber(src, model="gt"), store=store, progress=False)
    assert len(logs[0].read_text().splitlines()) == len(stim)  # nothing duplicated
    src.write_text("".join(json.dumps({"image": i, "text": f"new {i}"}) + "\n" for i in stim.ids))
    desc = describe_stimuli(stim, ImportDescriber(src, model="gt"), store=store, progress=False)
    assert desc.texts_for(stim.ids)[0] == f"new {stim.ids[0]}"  # a changed source is a new job, never stale


def test_missing_ids_are_named(tmp_path: Path, image_folder: Callable[..., Path]) -> None:
    stim = StimulusSet.from_folder(image_folder())
    src = _captions(tmp_path, stim.ids[:2])
    with pytest.raises(IdMismatchError, match=stim.ids[2]):
        describe_stimuli(stim, ImportDescriber(src), store=ArtifactStore(tmp_path / "s"), progress=False)


def test_bad_files(tmp_path: Path) -> None:
    p = tmp_path / "bad.jsonl"
    p.write_text('{"image": "a", "text": "x"}\n{"image": \n')
    with pytest.raises(DataError, match="line 2"):
        read_text_table(p)
    q = tmp_path / "cols.csv"
    q.write_text("name,caption\na,b\n")
    with pytest.raises(DataError, match="needs an image column"):
        read_text_table(q)
    with pytest.raises(DataError, match="not found"):
        read_text_table(tmp_path / "none.jsonl")


def test_empty_text_is_a_recorded_failure(tmp_path: Path, image_folder: Callable[..., Path]) -> None:
    stim = StimulusSet.from_folder(image_folder(2))
    with pytest.raises(DescribeFailuresError, match="empty text") as info:
        describe_stimuli(
            stim,
            ImportDescriber({stim.ids[0]: "a", stim.ids[1]: "  "}),
            store=ArtifactStore(tmp_path / "s"),
            progress=False,
        )
    assert [d.image for d in info.value.descriptions.records] == [stim.ids[0]]
    assert [f.image for f in info.value.failures] == [stim.ids[1]]


def test_class_conditioned_prompt_needs_labels() -> None:
    assert "dog" in resolve_prompt("class_conditioned", "dog")
    with pytest.raises(DataError, match="label"):
        resolve_prompt("class_conditioned")
    assert resolve_prompt("What is here?") == "What is here?"


def test_import_real_objects92_descriptions(data_dir: Path, tmp_path: Path) -> None:
    stim = StimulusSet.from_folder(data_dir / "objects92" / "images")
    src = data_dir / "objects92" / "descriptions.jsonl"
    desc = describe_stimuli(stim, ImportDescriber(src, model="mllm"), store=ArtifactStore(tmp_path), progress=False)
    texts = desc.texts_for(stim.ids)
    assert len(texts) == 92 and all(40 <= len(t.split()) <= 90 for t in texts)
    assert "hand" in texts[0].lower()
