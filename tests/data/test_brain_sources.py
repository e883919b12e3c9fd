"""Brain sources: ``KIND:PATH?key=value&...`` strings and config mappings → loader keyword arguments, typed from the
loader's signature; NSD subject lists expand to one source per subject; bad input is one clear error."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from llmvem.config import load_config
from llmvem.data.brain import BrainData, BrainSpace
from llmvem.data.brain_sources import BrainSource, loader_params, parse_brain_source, parse_brain_sources
from llmvem.data.files import load_brain, save_brain
from llmvem.errors import ConfigError, DataError


def test_nsd_source_with_options_typed_from_the_signature() -> None:
    (src,) = parse_brain_source("nsd:/data/nsd?subject=2&space=fsaverage&rois=streams,nsdgeneral&sessions=1-3,7"
                                "&zscore=false&min_repeats=2&roi_threshold=0.5&ncsnr=shipped")  # fmt: skip
    assert src.kind == "nsd" and src.path == Path("/data/nsd")
    assert src.options == {"subject": 2, "space": "fsaverage", "rois": ["streams", "nsdgeneral"],
                           "sessions": [1, 2, 3, 7], "zscore": False, "min_repeats": 2, "roi_threshold": 0.5,
                           "ncsnr": "shipped"}  # fmt: skip
    assert parse_brain_source("nsd:/d?roi_threshold=none&sessions=null")[0].options["roi_threshold"] is None


@pytest.mark.parametrize(
    ("subject", "expected"),
    [("1-8", list(range(1, 9))), ("1,2,5", [1, 2, 5]), ("1-2,7", [1, 2, 7]), ("3", [3])],
)
def test_subject_lists_expand_to_one_source_each(subject: str, expected: list[int]) -> None:
    sources = parse_brain_source(f"nsd:/data/nsd?subject={subject}&space=fsaverage")
    assert [s.options["subject"] for s in sources] == expected
    assert all(s.options["space"] == "fsaverage" for s in sources)
    assert sources[-1].text == f"nsd:/data/nsd?subject={expected[-1]}&space=fsaverage"  # re-parses to itself
    assert parse_brain_source(sources[-1].text) == [sources[-1]]


def test_algonauts_source_and_mapping() -> None:
    (src,) = parse_brain_source("algonauts:/a/subj01?hemispheres=lh&roi_classes=streams,floc-faces")
    assert src.kind == "algonauts"
    assert src.options == {"hemispheres": ["lh"], "roi_classes": ["streams", "floc-faces"]}
    mapped = parse_brain_source(
        {"kind": "nsd", "path": "/data/nsd", "subject": [1, 2], "space": "fsaverage", "rois": ["streams"]}
    )
    assert [s.options for s in mapped] == [{"subject": k, "space": "fsaverage", "rois": ["streams"]} for k in (1, 2)]
    assert parse_brain_source({"kind": "nsd", "path": "/d", "rois": "streams,nsdgeneral"})[0].options["rois"] == [
        "streams",
        "nsdgeneral",
    ]


def test_keys_are_the_loaders_keyword_arguments() -> None:
    import inspect

    from llmvem.data.algonauts import load_algonauts2023
    from llmvem.data.nsd import load_nsd

    assert list(loader_params("nsd")) == list(inspect.signature(load_nsd).parameters)[1:]
    assert list(loader_params("algonauts")) == list(inspect.signature(load_algonauts2023).parameters)[1:]
    assert loader_params("npz") == {}


def _npz(tmp_path: Path, space: BrainSpace | None = None) -> Path:
    voxels = pd.DataFrame({"roi": ["a", "b"], "index": [0, 3]})
    brain = BrainData(np.arange(6.0).reshape(3, 2), ["x", "y", "z"], voxels, name="saved", space=space)
    return save_brain(brain, tmp_path / "b.npz")


def test_plain_paths_are_detected_as_today(tmp_path: Path) -> None:
    path = _npz(tmp_path)
    (src,) = parse_brain_source(str(path))
    assert (src.kind, src.options, src.text) == ("npz", {}, str(path))
    assert load_brain(path).name == "saved" and load_brain(f"npz:{path}").name == "saved"
    (nsd,) = parse_brain_source(str(tmp_path / "missing"))
    assert nsd.kind == "auto"  # detected when loaded: the error names the path
    with pytest.raises(DataError, match="not found"):
        nsd.load()
    (tmp_path / "root" / "nsddata").mkdir(parents=True)
    root = tmp_path / "root"
    assert parse_brain_source(str(root))[0].options == {"subject": 1}
    assert parse_brain_source(str(root), subject=4)[0].options == {"subject": 4}  # the old --subject
    assert parse_brain_source(f"{root}?subject=3&space=func1mm")[0].kind == "nsd"  # plain path with options
    with pytest.raises(DataError, match="but --subject"):
        parse_brain_source(f"nsd:{root}?subject=3", subject=4)
    (as_path,) = parse_brain_source(Path(f"nsd:{root}?subject=2"))  # a Path-typed config key (dataset.brain)
    assert (as_path.kind, as_path.options) == ("nsd", {"subject": 2})
    with pytest.raises(DataError, match="names 2 subjects"):
        load_brain(f"nsd:{root}?subject=1,2")


def test_subject_flag_without_an_nsd_source_warns(tmp_path: Path) -> None:
    with pytest.warns(UserWarning, match="applies to NSD roots only"):
        parse_brain_sources([str(_npz(tmp_path))], subject=2)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("hcp:/data/hcp", "unknown kind 'hcp'; choose from nsd, algonauts, npz"),
        ("nsd:/data/nsd?subject", "'subject' is not key=value"),
        ("nsd:/data/nsd?", "nothing after '\\?'"),
        ("nsd:/data/nsd?subject=2&subject=3", "key 'subject' given twice"),
        ("nsd:/data/nsd?subject=9", "subject 9 is not an NSD subject \\(1–8\\)"),
        ("nsd:/data/nsd?subject=0-2", "subject 0 is not an NSD subject"),
        ("nsd:/data/nsd?subject=2,2", "names a subject twice"),
        ("nsd:/data/nsd?subject=x", "subject='x' is not an integer"),
        ("nsd:/data/nsd?sessions=5-2", "range '5-2' runs backwards"),
        ("nsd:/data/nsd?rois=a,,b", "empty list item"),
        ("nsd:/data/nsd?min_repeats=three", "min_repeats='three'"),
        ("nsd:/data/nsd?zscore=maybe", "zscore='maybe'"),
        ("nsd:/data/nsd?subjects=2", "unknown key 'subjects' for nsd; valid keys: subject, space, sessions, rois"),
        ("algonauts:/a/subj01?subject=1", "unknown key 'subject' for algonauts; valid keys: roi_classes, hemispheres"),
        ("npz:/b.npz?space=x", "npz sources take no options"),
        ("nsd:?subject=1", "no path"),
        ({"kind": "nsd"}, "needs a 'path'"),
        ({"kind": "hcp", "path": "/d"}, "unknown kind 'hcp'"),
        ({"path": "/nowhere", "subject": 2}, "brain data /nowhere: not found"),
    ],
)
def test_bad_sources_are_one_clear_error(spec: str | dict, message: str) -> None:
    with pytest.raises(DataError, match=message):
        parse_brain_source(spec)


def test_config_accepts_strings_and_mappings_and_names_the_bad_key(tmp_path: Path) -> None:
    cfg_path = tmp_path / "c.yaml"
    cfg_path.write_text(
        "evaluate:\n  inputs:\n    brain:\n      - nsd:/data/nsd?subject=1-2&rois=streams\n"
        "      - {kind: nsd, path: /data/nsd, subject: [3, 4], space: fsaverage, rois: [streams]}\n"
    )
    cfg = load_config(cfg_path)
    sources = parse_brain_sources(cfg.evaluate.inputs.brain)
    assert [s.options["subject"] for s in sources] == [1, 2, 3, 4]
    assert sources[2] == BrainSource(
        "nsd", Path("/data/nsd"), {"subject": 3, "space": "fsaverage", "rois": ["streams"]}, sources[2].text
    )
    cfg_path.write_text("evaluate:\n  inputs:\n    brain:\n      - /x.npz\n      - {kind: nsd, path: /d, rios: [a]}\n")
    with pytest.raises(ConfigError, match=r"evaluate\.inputs\.brain\.1: brain source .*unknown key 'rios'"):
        load_config(cfg_path)
    with pytest.raises(ConfigError, match=r"evaluate\.inputs\.subject"):
        load_config(overrides={"evaluate.inputs.subject": "9"})
