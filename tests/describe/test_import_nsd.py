"""Importing existing texts: the six VLMs' NSD shared1000 descriptions and the special-100 captions from the real
data directory, COCO captions JSON, round-tripping through the store and ``describe export``."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from llmvem.data.nsd_ids import canonical_id, canonical_ids
from llmvem.data.stimuli import StimulusSet
from llmvem.describe import describe_stimuli, export_descriptions, read_records
from llmvem.describe.imported import ImportDescriber
from llmvem.errors import ConfigError
from llmvem.store import ArtifactStore


def _nsd_stimuli(data_dir: Path) -> StimulusSet:
    """The 1,000 images under NSD's canonical ids (as `llmvem describe` names them); the sources name the files."""
    paths = sorted((data_dir / "nsd_shared1000" / "images").glob("shared*_nsd*.jpg"))
    ids = canonical_ids([p.stem for p in paths])
    return StimulusSet.from_paths(paths, ids=ids, name="nsd_shared1000", verify=False)


def test_six_vlm_descriptions_round_trip_through_export(data_dir: Path, tmp_path: Path) -> None:
    root = data_dir / "nsd_shared1000" / "descriptions"
    prompt_texts = json.loads((root / "prompts.json").read_text())["prompts"]
    stim = _nsd_stimuli(data_dir)
    store = ArtifactStore(tmp_path / "store")
    expected: dict[tuple[str, str, str], str] = {}
    n_missing = 0
    files = sorted(root.glob("*.jsonl"))
    assert len(files) == 6
    for f in files:
        for line in f.read_text(encoding="utf-8").splitlines():
            r = json.loads(line)
            expected[(canonical_id(Path(r["image"]).stem), f.stem, prompt_texts[r["prompt"]])] = r["text"]
        desc = describe_stimuli(
            stim,
            ImportDescriber(f, model=f.stem),
            prompt=list(prompt_texts),
            store=store,
            progress=False,
            raise_on_failure=False,
        )
        n_missing += len(desc.failures)  # a (image, prompt) pair the source lacks is a recorded failure
        assert all("no text for prompt" in x.reason for x in desc.failures)
        assert {d.prompt_name for d in desc.records} == set(prompt_texts)
    assert len(expected) == 23_998 and n_missing == 2
    out = tmp_path / "nsd.parquet"
    assert export_descriptions(out, store, images=data_dir / "nsd_shared1000" / "images") == 23_998
    rows = read_records(out)
    got = {(r["image"], r["model"], r["prompt"]): r["text"] for r in rows}
    assert got == expected  # every text, exactly, under its image, model and prompt text
    assert {r["backend"] for r in rows} == {"import"} and all(r["params"] == {} for r in rows)
    one = tmp_path / "one.jsonl"
    assert export_descriptions(one, store, model=files[0].stem, prompt="mood_emotions") == 1000
    assert all(got[(r["image"], r["model"], r["prompt"])] == r["text"] for r in read_records(one))
    again = describe_stimuli(
        stim,
        ImportDescriber(files[0], model=files[0].stem),
        prompt=list(prompt_texts),
        store=store,
        progress=False,
        raise_on_failure=False,
    )
    assert len(again) == 4000  # resumed from the store, nothing duplicated


def test_special100_coco_and_gpt4_captions(data_dir: Path, tmp_path: Path) -> None:
    src = data_dir / "nsd_shared1000" / "special100_captions.json"
    stim = _nsd_stimuli(data_dir)
    ids = canonical_ids([Path(r["image"]).stem for r in json.loads(src.read_text())])
    sub = stim.subset(ids)
    store = ArtifactStore(tmp_path / "s")
    with pytest.raises(ConfigError, match="several models"):
        ImportDescriber(src)
    coco = describe_stimuli(sub, ImportDescriber(src, model="coco"), n_samples=5, store=store, progress=False)
    assert len(coco) == 500 and {d.sample for d in coco.records} == set(range(5))
    gpt4 = describe_stimuli(sub, ImportDescriber(src, model="gpt4"), store=store, progress=False)
    assert len(gpt4) == 100 and gpt4.records[0].text.startswith("The image shows")
    with pytest.raises(Exception, match="no sample 1"):
        describe_stimuli(sub, ImportDescriber(src, model="gpt4"), n_samples=2, store=store, progress=False)


def test_coco_captions_json_and_csv(tmp_path: Path) -> None:
    d = tmp_path / "imgs"
    d.mkdir()
    for i in range(3):
        Image.fromarray(np.full((8, 8, 3), i * 40, np.uint8)).save(d / f"COCO_val2014_{i:012d}.jpg")
    coco = {
        "images": [{"id": 10 + i, "file_name": f"COCO_val2014_{i:012d}.jpg"} for i in range(3)],
        "annotations": [
            {"image_id": 10 + i, "id": k, "caption": f"caption {k} of {i}"} for i in range(3) for k in range(2)
        ],
    }
    src = tmp_path / "captions_val2014.json"
    src.write_text(json.dumps(coco))
    stim = StimulusSet.from_folder(d)
    desc = describe_stimuli(
        stim, ImportDescriber(src, model="coco"), n_samples=2, store=ArtifactStore(tmp_path / "s"), progress=False
    )
    assert [d.text for d in desc.records] == [f"caption {k} of {i}" for i in range(3) for k in range(2)]
    csv = tmp_path / "t.csv"
    csv.write_text("file,text,prompt\n" + "".join(f"{i}.jpg,text of image {i},p\n" for i in stim.ids))
    got = describe_stimuli(
        stim, ImportDescriber(csv), prompt="anything", store=ArtifactStore(tmp_path / "s"), progress=False
    )
    assert [r.prompt for r in got.records] == ["p"] * 3  # a source with one prompt records that prompt
