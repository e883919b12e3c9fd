"""``llmvem evaluate captions`` end to end on the demo's simulated cortex, with summaries from a loopback server."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from llmvem.cli.app import app
from llmvem.data.files import save_brain

runner = CliRunner()
HOSTILE = "<script>alert('x')</script> a big red dog & <b>friends</b>"


@pytest.fixture(scope="module")
def demo_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    from llmvem.data.synthetic import generate_demo_set
    from llmvem.text import embed_texts

    root = tmp_path_factory.mktemp("vc")
    demo = generate_demo_set(root / "demo", n_images=144, n_voxels_per_roi=30, n_repeats=3, seed=0)
    ids = demo.brain.stimulus_ids
    caps = [demo.captions[i] for i in ids]
    np.save(root / "minilm.npy", embed_texts(caps, encoder="minilm", progress=False))
    (root / "minilm.ids.txt").write_text("\n".join(ids) + "\n")
    save_brain(demo.brain, root / "subj.npz")
    lines = [{"id": i, "text": c} for i, c in zip(ids, caps, strict=True)] + [{"id": "x", "text": HOSTILE}]
    (root / "corpus.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))
    return {"root": root, "features": root / "minilm.npy", "brain": root / "subj.npz", "corpus": root / "corpus.jsonl"}


def _args(f: dict[str, Path], out: Path, encoder: str = "minilm", corpus: bool = True) -> list[str]:
    args = ["evaluate", "captions", "-f", f"desc={f['features']}", "-b", str(f["brain"]), "--encoder", encoder]
    args += ["--captions", str(f["corpus"])] if corpus else []
    return [*args, "--top-k", "3", "--output-dir", str(out), "--no-progress"]


def test_roi_and_voxel_captions_with_loopback_summaries(demo_files: dict[str, Path], tmp_path: Path) -> None:
    from llmvem.describe.loopback import LoopbackChatServer, expected_text_reply
    from llmvem.describe.summarise import summary_prompt

    with LoopbackChatServer(lifetime_s=120) as srv:
        extra = ["--summary-model", "loopback", "--base-url", srv.url, "--cache-dir", str(tmp_path / "store")]
        res = runner.invoke(app, [*_args(demo_files, tmp_path / "runs"), *extra])
        assert res.exit_code == 0, res.output
        first = srv.requests
        again = runner.invoke(app, [*_args(demo_files, tmp_path / "runs2"), *extra])  # cached: no new request
        assert again.exit_code == 0, again.output
        assert srv.requests == first == 2  # one summary per ROI, then none
    run = next((tmp_path / "runs").iterdir())
    t = pd.read_csv(run / "roi_captions.csv", keep_default_na=False)
    assert set(t["roi"]) == {"early", "semantic"} and (t.groupby("roi").size() == 3).all()
    for roi, g in t.groupby("roi"):
        caps = list(g.sort_values("rank")["caption"])
        assert g.loc[g["rank"] == 1, "summary"].iloc[0] == expected_text_reply(summary_prompt(caps), 0), roi
    voxels = [json.loads(s) for s in (run / "voxel_captions.jsonl").read_text().splitlines()]
    assert len(voxels) == 60 and all(len(v["captions"]) == 3 for v in voxels)
    assert {v["roi"] for v in voxels} == {"early", "semantic"}
    html = (run / "report.html").read_text()
    assert "Captions of each ROI" in html and "summary of prompt" in html
    (m,) = json.loads((run / "metrics.json").read_text())["roi_captions"].values()  # one brain source
    assert set(m) == {"early", "semantic"} and m["semantic"]["summary"]


def test_hostile_corpus_text_stays_escaped(demo_files: dict[str, Path], tmp_path: Path) -> None:
    """Corpus captions that carry HTML are read out as text in the report, never as markup."""
    rows = [json.loads(s) for s in demo_files["corpus"].read_text().splitlines()]
    evil = [{"id": r["id"], "text": f"{r['text']} <script>alert('x')</script> & <b>bold</b>"} for r in rows]
    (tmp_path / "evil.jsonl").write_text("".join(json.dumps(r) + "\n" for r in evil))
    res = runner.invoke(app, _args({**demo_files, "corpus": tmp_path / "evil.jsonl"}, tmp_path / "runs"))
    assert res.exit_code == 0, res.output
    run = next((tmp_path / "runs").iterdir())
    assert pd.read_csv(run / "roi_captions.csv")["caption"].str.contains("<script>", regex=False).all()
    html = (run / "report.html").read_text()
    assert "<script>alert" not in html and "&lt;script&gt;alert" in html and "<b>bold" not in html


def test_bad_input(demo_files: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "runs"
    res = runner.invoke(app, _args(demo_files, out, encoder="glove"))
    assert res.exit_code == 2 and "same encoder" in res.output
    res = runner.invoke(app, _args(demo_files, out, corpus=False))
    assert res.exit_code == 2 and "no --captions" in res.output
    res = runner.invoke(app, [*_args(demo_files, out), "-f", str(demo_files["features"])])
    assert res.exit_code == 2 and "one -f" in res.output
    assert not out.exists()
