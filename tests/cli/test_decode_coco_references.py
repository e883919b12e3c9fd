"""``evaluate decode`` scored against COCO captions as NSD users hold them: ``captions_train2017.json`` /
``captions_val2017.json`` (COCO 2017 annotation files: ``images[].id``, ``annotations[].image_id / caption``) and
NSD's ``nsd_stim_info_merged.csv`` (all 73,000 rows, unnamed first column, ``cocoId``, ``cocoSplit``, ``nsdId``
0-based; tests/public_layouts.py). Each NSD image's references are its own COCO captions, so a mapping one id off
(``nsdId`` read as 1-based) gives other images' captions and different scores."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from llmvem.cli.app import app
from llmvem.data.brain import BrainData
from llmvem.data.files import load_references, save_brain, save_matrix
from llmvem.data.nsd_ids import nsd_id
from llmvem.errors import DataError
from public_layouts import write_coco_captions, write_nsd_stim_info

runner = CliRunner()


@pytest.fixture(scope="module")
def coco(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """60 NSD images (templated scenes; brain linear in their GloVe embedding), each with two COCO captions, split
    between the train2017 and val2017 files as nsd_stim_info_merged.csv says; a corpus and an equivalent
    references.jsonl keyed by NSD id."""
    from llmvem.text import embed_texts

    root = tmp_path_factory.mktemp("coco")
    rng = np.random.default_rng(3)
    colours, things, places = ["red", "blue", "green", "yellow", "black"], ["dog", "car", "house", "tree"], \
        ["beach", "street", "field"]  # fmt: skip
    caps = [f"a {c} {t} on the {p}" for c in colours for t in things for p in places]
    ks = sorted(int(k) for k in rng.choice(np.arange(2, 73_001), len(caps), replace=False))  # 1-based 73k ids
    ids = [nsd_id(k) for k in ks]
    coco_ids = [int(c) for c in rng.choice(np.arange(1, 581_930), len(caps), replace=False)]
    splits = ["val2017" if j % 4 == 0 else "train2017" for j in range(len(caps))]
    pairs = list(zip(coco_ids, caps, strict=True))
    refs = {cid: [c, c.replace("a ", "one ", 1).replace(" on the ", " by the ")] for cid, c in pairs}
    for sp in ("train2017", "val2017"):
        write_coco_captions(root / f"captions_{sp}.json",
                            {cid: refs[cid] for cid, s in zip(coco_ids, splits, strict=True) if s == sp})  # fmt: skip
    stim = write_nsd_stim_info(root / "nsddata/experiments/nsd/nsd_stim_info_merged.csv",
                               {k: (cid, sp) for k, cid, sp in zip(ks, coco_ids, splits, strict=True)})  # fmt: skip
    emb = embed_texts(caps, encoder="glove", progress=False)
    y = emb @ rng.standard_normal((emb.shape[1], 300)) + 0.3 * rng.standard_normal((len(ids), 300))
    save_brain(BrainData(y, ids, pd.DataFrame({"roi": ["v"] * 300}), name="subj01"), root / "subj01.npz")
    save_matrix(root / "emb.npy", emb.astype(np.float32), ids, "embeddings")
    corpus = [json.dumps({"id": i, "text": c}) for i, c in zip(ids, caps, strict=True)]
    (root / "corpus.jsonl").write_text("\n".join(corpus) + "\n")
    by_id = [json.dumps({"id": i, "text": t}) for i, cid in zip(ids, coco_ids, strict=True) for t in refs[cid]]
    (root / "refs.jsonl").write_text("\n".join(by_id) + "\n")
    return {"root": root, "stim": stim, "ids": ids, "ks": ks, "coco_ids": coco_ids, "refs": refs, "splits": splits}


def _files(coco: dict, *splits: str) -> list[Path]:
    return [coco["root"] / f"captions_{sp}.json" for sp in splits]


def test_coco_files_map_to_nsd_ids_through_the_stim_info(coco: dict) -> None:
    refs = load_references(_files(coco, "train2017", "val2017"), coco["stim"])
    for i, cid in zip(coco["ids"], coco["coco_ids"], strict=True):
        assert refs[i] == coco["refs"][cid]  # nsdId k (0-based) is nsd-(k+1): its own captions
    assert refs.complete and not any(str(c).startswith("an unrelated") for v in refs.values() for c in v)
    with pytest.raises(DataError, match=r"nsd_stim_info_merged\.csv"):
        load_references(_files(coco, "train2017"))  # COCO ids without the map
    shifted = pd.read_csv(coco["stim"], index_col=0)
    shifted["nsdId"] += 1  # a 1-based column
    shifted.to_csv(coco["root"] / "one_based.csv")
    with pytest.raises(DataError, match="0-based 73k index"):
        load_references(_files(coco, "train2017"), coco["root"] / "one_based.csv")
    shifted.iloc[:500].to_csv(coco["root"] / "one_based_subset.csv")  # no 73,000 in it: caught by the row column
    with pytest.raises(DataError, match=r"row 0 has nsdId 1 \(nsdId = row \+ 1 in every row"):
        load_references(_files(coco, "train2017"), coco["root"] / "one_based_subset.csv")


def _decode(coco: dict, out: Path, *extra: str) -> tuple[int, str]:
    res = runner.invoke(app, ["evaluate", "decode", "-b", str(coco["root"] / "subj01.npz"), "-e",
                              str(coco["root"] / "emb.npy"), "--captions", str(coco["root"] / "corpus.jsonl"),
                              "--encoder", "glove", "--caption-metric", "bleu", "--caption-metric", "rouge_l",
                              "--output-dir", str(out), "--no-progress", *extra])  # fmt: skip
    return res.exit_code, res.output


def test_decode_scores_against_coco_files_as_against_the_same_captions_by_id(coco: dict, tmp_path: Path) -> None:
    code, output = _decode(coco, tmp_path / "coco", *(a for f in _files(coco, "train2017", "val2017")
                                                      for a in ("--references", str(f))),
                           "--nsd-stim-info", str(coco["stim"]))  # fmt: skip
    assert code == 0, output
    code, output = _decode(coco, tmp_path / "jsonl", "--references", str(coco["root"] / "refs.jsonl"))
    assert code == 0, output
    (a,), (b,) = (list((tmp_path / d).glob("evaluate-decode-*")) for d in ("coco", "jsonl"))
    from_coco, from_ids = (pd.read_csv(r / "caption_metrics.csv") for r in (a, b))
    assert (from_coco["references"] == "leave-one-out").all() and (from_coco["n_images"] == 12).all()
    pd.testing.assert_frame_equal(from_coco, from_ids)


def test_a_missing_coco_split_and_a_missing_map_are_one_line_errors(coco: dict, tmp_path: Path) -> None:
    code, output = _decode(coco, tmp_path / "a", "--references", str(_files(coco, "train2017")[0]),
                           "--nsd-stim-info", str(coco["stim"]))  # fmt: skip
    text = " ".join(output.split())
    assert code == 2 and "have no COCO captions" in text and "captions_val2017.json holds it" in text, output
    code, output = _decode(coco, tmp_path / "b", "--references", str(_files(coco, "train2017")[0]))
    assert code == 2 and "--nsd-stim-info" in " ".join(output.split()), output
    assert "Traceback" not in output
