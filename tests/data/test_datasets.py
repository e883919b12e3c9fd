"""The dataset catalogue: lookup, status, and the message when files are missing."""

from __future__ import annotations

from pathlib import Path

import pytest

import llmvem.data as data
from llmvem.data.datasets import DATASETS, check_dataset, dataset_status, load_dataset
from llmvem.errors import DatasetNotFoundError, RegistryError


def test_registry_names_and_specs() -> None:
    assert DATASETS.names() == ["nsd_shared1000", "objects92"]
    for name in DATASETS:
        spec = DATASETS.get(name)
        assert spec.name == name and spec.description and spec.required_files and spec.sources
    with pytest.raises(RegistryError, match="known: nsd_shared1000, objects92"):
        load_dataset("imagenet", ".")


def test_package_exports() -> None:
    for name in ("StimulusSet", "BrainData", "RDMSet", "load_dataset", "DATASETS", "resolve_data_dir"):
        assert hasattr(data, name)
    assert callable(data.load_objects92) and callable(data.load_nsd_shared1000)


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("objects92", ["cichy2014/fmri_IT_RDMs.npz", "92_brainRDMs.mat", "descriptions.jsonl", "(found 0 of 92)"]),
        ("nsd_shared1000", ["shared1000_HED.tsv", "prompts.json", "special100_captions.json", "(found 0 of 1000)"]),
    ],
)
def test_missing_dataset_message(tmp_path: Path, name: str, expected: list[str]) -> None:
    with pytest.raises(DatasetNotFoundError) as info:
        load_dataset(name, tmp_path)
    msg = str(info.value)
    assert str(tmp_path / name) in msg
    for part in expected:
        assert part in msg
    assert "public sources" in msg
    for src in DATASETS.get(name).sources:
        assert src in msg


def test_missing_dataset_direct_loader(tmp_path: Path) -> None:
    with pytest.raises(DatasetNotFoundError, match=r"kriegeskorte2008/92_behavRDMs\.mat"):
        data.load_objects92(tmp_path)
    with pytest.raises(DatasetNotFoundError, match=r"shared1000_HED\.tsv"):
        data.load_nsd_shared1000(tmp_path)


def test_partly_present(tmp_path: Path) -> None:
    root = tmp_path / "objects92"
    (root / "images").mkdir(parents=True)
    (root / "descriptions.jsonl").write_text("")
    missing = check_dataset("objects92", tmp_path)
    assert "descriptions.jsonl" not in missing
    assert "cichy2014/fmri_EVC_RDMs.npz" in missing
    assert any("found 0 of 92" in m for m in missing)


def test_no_data_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("LLMVEM_DATA", raising=False)
    with pytest.raises(DatasetNotFoundError, match="LLMVEM_DATA"):
        load_dataset("objects92")
    with pytest.raises(DatasetNotFoundError, match="does not exist"):
        dataset_status(tmp_path / "nope")


def test_status_empty_dir(tmp_path: Path) -> None:
    rows = dataset_status(tmp_path)
    assert [r["name"] for r in rows] == ["nsd_shared1000", "objects92"]
    assert not any(r["present"] for r in rows)
    assert all(r["missing"] and r["description"] for r in rows)


@pytest.mark.data
def test_status_real(data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    rows = dataset_status(data_dir)
    assert all(r["present"] and r["missing"] == [] for r in rows), rows
    assert check_dataset("objects92", data_dir) == []
    monkeypatch.setenv("LLMVEM_DATA", str(data_dir))
    obj = load_dataset("objects92")
    assert len(obj.stimuli) == 92 and obj.rdms["cichy_it"].n_subjects == 15
