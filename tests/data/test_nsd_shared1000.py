"""The NSD shared1000 loader on the real files, and its id checks on a small fake copy."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import pytest

from llmvem.data.nsd_shared1000 import NSDShared1000, load_nsd_shared1000
from llmvem.errors import DataError, IdMismatchError

pytestmark = pytest.mark.data

MODELS = ["gemma3_12b", "gemma3_27b", "gemma3_4b", "mistral-small3.2_24b", "qwen2.5vl_32b", "qwen2.5vl_7b"]
PROMPTS = ["general_description", "foreground_background", "entities_interactions", "mood_emotions"]
#: the two (model, prompt, image) triples the released description files lack
KNOWN_GAPS = {
    ("qwen2.5vl_32b", "general_description", "shared0430_nsd31937"),
    ("qwen2.5vl_7b", "foreground_background", "shared0347_nsd26352"),
}


@pytest.fixture(scope="module")
def nsd(data_dir: Path) -> NSDShared1000:
    return load_nsd_shared1000(data_dir)


def test_stimuli_and_nsd_ids(nsd: NSDShared1000) -> None:
    assert len(nsd.stimuli) == 1000
    assert nsd.stimuli.ids[0] == "shared0001_nsd02951" and nsd.stimuli.ids[-1] == "shared1000_nsd72949"
    assert nsd.nsd_ids[0] == 2951 and len(nsd.nsd_ids) == 1000
    assert all(int(s[6:10]) == k + 1 for k, s in enumerate(nsd.stimuli.ids))
    assert nsd.stimuli.load(0).size == (425, 425)


def test_prompts_and_models(nsd: NSDShared1000) -> None:
    assert nsd.models == MODELS
    assert sorted(nsd.prompts) == sorted(PROMPTS)
    assert all(t.startswith(("Describe", "Identify")) for t in nsd.prompts.values())


def test_descriptions_counts(nsd: NSDShared1000) -> None:
    df = nsd.descriptions
    assert list(df.columns) == ["image", "model", "prompt", "text"]
    assert len(df) == 6 * 4 * 1000 - len(KNOWN_GAPS)
    counts = df.groupby(["model", "prompt"]).size()
    assert len(counts) == 24 and set(counts) == {999, 1000}
    assert set(df["image"]) == set(nsd.stimuli.ids)
    gaps = nsd.missing_descriptions()
    assert set(map(tuple, gaps[["model", "prompt", "image"]].to_numpy())) == KNOWN_GAPS


def test_descriptions_for(nsd: NSDShared1000) -> None:
    d = nsd.descriptions_for("gemma3_12b", "general_description")
    assert list(d) == nsd.stimuli.ids
    assert "carrot" in d["shared0001_nsd02951"].lower()
    assert len(nsd.descriptions_for("qwen2.5vl_32b", "general_description")) == 999
    with pytest.raises(DataError, match="available models: gemma3_12b"):
        nsd.descriptions_for("gpt5", "general_description")
    with pytest.raises(DataError, match=r"available prompts: .*mood_emotions"):
        nsd.descriptions_for("gemma3_12b", "haiku")


def test_hed(nsd: NSDShared1000) -> None:
    assert list(nsd.hed.index) == nsd.stimuli.ids  # same order, matched by stem (.png in the file)
    assert nsd.hed["File_Name"].str.endswith(".png").all()
    assert (nsd.hed["nsd_id"].to_numpy() == [n - 1 for n in nsd.nsd_ids]).all()
    assert "Ingestible-object" in nsd.hed.loc["shared0001_nsd02951", "HED_short"]


def test_special100(nsd: NSDShared1000) -> None:
    sp = nsd.special100
    assert len(sp) == 100 and sp["image"].is_unique
    assert set(sp["image"]) <= set(nsd.stimuli.ids)
    assert sp["coco_captions"].map(len).eq(5).all()
    assert sp["gpt4_caption"].str.len().gt(20).all()


def test_load_time(data_dir: Path) -> None:
    t0 = time.perf_counter()
    load_nsd_shared1000(data_dir)
    assert time.perf_counter() - t0 < 10  # measured ~1 s (image verification dominates)


# ------------------------------------------------------------------------------------------ id checks
@pytest.fixture
def small_copy(data_dir: Path, tmp_path: Path) -> Path:
    """A copy of the dataset's metadata with symlinks to the images (nothing real is modified)."""
    src, dst = data_dir / "nsd_shared1000", tmp_path / "nsd_shared1000"
    (dst / "images").mkdir(parents=True)
    for p in (src / "images").iterdir():
        (dst / "images" / p.name).symlink_to(p)
    shutil.copytree(src / "descriptions", dst / "descriptions")
    for name in ("shared1000_HED.tsv", "special100_captions.json"):
        shutil.copy(src / name, dst / name)
    return dst


def test_unknown_special100_id_raises(small_copy: Path) -> None:
    path = small_copy / "special100_captions.json"
    recs = json.loads(path.read_text())
    recs[0]["image"] = "shared9999_nsd99999.jpg"
    path.write_text(json.dumps(recs))
    with pytest.raises(IdMismatchError, match="shared9999_nsd99999"):
        load_nsd_shared1000(small_copy.parent, verify=False)


def test_unknown_hed_id_raises(small_copy: Path) -> None:
    path = small_copy / "shared1000_HED.tsv"
    path.write_text(path.read_text().replace("shared0001_nsd02951.png", "shared0001_nsd00000.png", 1))
    with pytest.raises(IdMismatchError, match="shared0001_nsd00000"):
        load_nsd_shared1000(small_copy.parent, verify=False)


def test_unknown_description_id_raises(small_copy: Path) -> None:
    path = small_copy / "descriptions" / "gemma3_4b.jsonl"
    lines = path.read_text().splitlines()
    lines[0] = lines[0].replace("shared0001_nsd02951", "shared0001_nsd77777")
    path.write_text("\n".join(lines) + "\n")
    nsd = load_nsd_shared1000(small_copy.parent, verify=False)  # descriptions are read on first use
    nsd.descriptions_for("gemma3_12b", "general_description")
    with pytest.raises(IdMismatchError, match="shared0001_nsd77777"):
        nsd.descriptions_for("gemma3_4b", "general_description")
