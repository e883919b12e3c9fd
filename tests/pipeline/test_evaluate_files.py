"""``llmvem evaluate encoding | rsa | decode`` on files: numbers checked against direct computation, bad input."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from llmvem.cli.app import app
from llmvem.data.brain import BrainData
from llmvem.data.files import load_brain, load_matrix, load_rdms, save_brain

runner = CliRunner()


def _save_matrix(path: Path, values: np.ndarray, ids: list[str]) -> Path:
    np.save(path, values.astype(np.float32))
    path.with_suffix(".ids.txt").write_text("\n".join(ids) + "\n")
    return path


@pytest.fixture()
def encoding_files(tmp_path: Path) -> dict[str, Path]:
    """80 stimuli; ROI 'good' = linear in the 'good' features + noise, ROI 'noise' pure noise, one NaN voxel."""
    rng = np.random.default_rng(0)
    n, p = 80, 12
    x = rng.standard_normal((n, p))
    ids = [f"img{k:03d}" for k in range(n)]
    y = np.concatenate([x @ rng.standard_normal((p, 30)) + rng.standard_normal((n, 30)),
                        rng.standard_normal((n, 20))], axis=1)  # fmt: skip
    y[:, 5] = np.nan
    brain = BrainData(y, ids, pd.DataFrame({"roi": ["good"] * 30 + ["noise"] * 20, "hemi": ["lh"] * 50}),
                      ncsnr=np.full(50, 1.0), n_repeats=np.full(n, 3), name="subjA")  # fmt: skip
    return {
        "brain": save_brain(brain, tmp_path / "subjA.npz"),
        "good": _save_matrix(tmp_path / "good.npy", x, ids),
        "rand": _save_matrix(tmp_path / "rand.npy", rng.standard_normal((n, p)), ids),
    }


def _only_run(out: Path) -> Path:
    runs = [p for p in out.iterdir() if p.is_dir()]
    assert len(runs) == 1, runs
    return runs[0]


def test_brain_npz_round_trip(encoding_files: dict[str, Path]) -> None:
    b = load_brain(encoding_files["brain"])
    assert b.name == "subjA" and b.responses.shape == (80, 50) and b.rois == ["good", "noise"]
    assert list(b.voxels["hemi"].unique()) == ["lh"]
    assert b.noise_ceiling is not None and np.allclose(b.noise_ceiling, 1 / (1 + 1 / 3))  # ncsnr 1, 3 repeats
    assert np.isnan(b.responses[:, 5]).all() and np.isfinite(b.responses[:, 6]).all()


def test_evaluate_encoding_separates_signal_from_noise(encoding_files: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "runs"
    res = runner.invoke(app, ["evaluate", "encoding", "-f", f"signal={encoding_files['good']}",
                              "-f", str(encoding_files["rand"]), "-b", str(encoding_files["brain"]),
                              "--permutations", "200", "--output-dir", str(out), "--no-progress"])  # fmt: skip
    assert res.exit_code == 0, res.output
    run = _only_run(out)
    assert run.name.startswith("evaluate-encoding-")
    table = pd.read_csv(run / "encoding.csv").set_index(["model", "roi"])
    assert table.loc[("signal", "good"), "mean_r"] > 0.8
    assert abs(table.loc[("rand", "good"), "mean_r"]) < 0.3
    assert table.loc[("signal", "good"), "frac_significant"] > 0.9
    assert table.loc[("signal", "noise"), "frac_significant"] < 0.2
    assert table.loc[("signal", "good"), "n_voxels"] == 30
    # normalised by the voxels' ceiling in r units: ncsnr 1 and 3 repeats give NC = 0.75 everywhere
    good = table.loc[("signal", "good")]
    assert good["r_over_ceiling"] == pytest.approx(good["mean_r"] / np.sqrt(0.75))
    assert good["noise_ceiling_r"] == pytest.approx(np.sqrt(0.75)) and good["ceiling_bound"] == "noise_ceiling_r"
    # the per-voxel r equals a direct fit on the same random split
    from llmvem.brain import RidgeEncoder, pearson_r
    from llmvem.pipeline.evaluate_files import with_splits

    brain, own = with_splits(load_brain(encoding_files["brain"]), 0.2, seed=0)
    assert not own and len(brain.splits["test"]) == 16
    tr, te = brain.split_indices("train"), brain.split_indices("test")
    x = load_matrix(encoding_files["good"]).values
    model = RidgeEncoder(alphas=tuple(10.0**k for k in range(-2, 7)), cv="loo").fit(x[tr], brain.responses[tr])
    r = pearson_r(brain.responses[te], model.predict(x[te]))
    stored = np.load(run / "encoding_voxel_r.npz")["signal__subjA"]
    assert np.isnan(stored[5])
    np.testing.assert_allclose(stored[6:30], r[6:30], atol=1e-5)
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["info"]["targets"]["brain"]["subjects"]["subjA"] == {"n_train": 64, "n_test": 16, "splits": "random"}
    for png in ("encoding.png", "encoding_r_histograms.png"):
        assert (run / png).stat().st_size > 5000
    assert "Encoding" in (run / "report.html").read_text()


def test_evaluate_encoding_with_fractional_ridge(encoding_files: dict[str, Path], tmp_path: Path) -> None:
    """--cv frac: the per-voxel r of a direct RidgeEncoder(cv="frac") fit on the same split."""
    out = tmp_path / "runs"
    res = runner.invoke(app, ["evaluate", "encoding", "-f", f"signal={encoding_files['good']}", "--cv", "frac",
                              "-b", str(encoding_files["brain"]), "--output-dir", str(out),
                              "--no-progress"])  # fmt: skip
    assert res.exit_code == 0, res.output
    run = _only_run(out)
    from llmvem.brain import RidgeEncoder, pearson_r
    from llmvem.pipeline.evaluate_files import with_splits

    brain, _ = with_splits(load_brain(encoding_files["brain"]), 0.2, seed=0)
    tr, te = brain.split_indices("train"), brain.split_indices("test")
    x = load_matrix(encoding_files["good"]).values
    with pytest.warns(RuntimeWarning, match="1 of 50 targets"):
        model = RidgeEncoder(cv="frac").fit(x[tr], brain.responses[tr])
    r = pearson_r(brain.responses[te], model.predict(x[te]))
    np.testing.assert_allclose(np.load(run / "encoding_voxel_r.npz")["signal__subjA"][6:], r[6:], atol=1e-5)
    assert pd.read_csv(run / "encoding.csv").set_index("roi").loc["good", "mean_r"] > 0.8


def test_evaluate_rsa_on_objects92_matches_direct_rsa(data_dir: Path, tmp_path: Path) -> None:
    from llmvem.brain import compute_rdm, rsa_scores
    from llmvem.data.datasets import load_dataset

    obj = load_dataset("objects92", data_dir)
    # continuous features (binary ones tie, and float rounding then decides Spearman ranks)
    noise = 0.3 * np.random.default_rng(1).standard_normal((92, 12))
    cats = (obj.categories.loc[obj.stimuli.ids].to_numpy() + noise).astype(np.float32)
    order = np.random.default_rng(0).permutation(92)  # the file's row order need not be the target's
    feats = _save_matrix(tmp_path / "cats.npy", cats[order], [obj.stimuli.ids[k] for k in order])
    out = tmp_path / "runs"
    res = runner.invoke(app, ["evaluate", "rsa", "-f", str(feats), "--rdms", "objects92:cichy_it",
                              "--rdms", "hit=objects92:kriegeskorte_hit", "--data-dir", str(data_dir),
                              "--output-dir", str(out), "--no-progress"])  # fmt: skip
    assert res.exit_code == 0, res.output
    run = _only_run(out)
    table = pd.read_csv(run / "rsa.csv").set_index("target")
    direct = rsa_scores(compute_rdm(cats), obj.rdms["cichy_it"].rdms, "spearman")
    assert table.loc["cichy_it", "mean"] == pytest.approx(direct.mean, abs=1e-9)
    assert table.loc["cichy_it", "noise_lower"] == pytest.approx(direct.noise_lower, abs=1e-9)
    assert table.loc["cichy_it", "mean_over_ceiling"] == pytest.approx(direct.mean / direct.noise_upper)
    assert (table["ceiling_bound"] == "noise_upper").all()
    assert table.loc["cichy_it", "ci95_low"] < direct.mean < table.loc["cichy_it", "ci95_high"]
    assert table.loc["hit", "n_subjects"] == 4
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["results"]["rsa"]["cats"]["cichy_it"]["mean"] == pytest.approx(direct.mean)
    assert (run / "rsa.png").is_file() and (run / "rsa_rdms.png").is_file()


def test_evaluate_rsa_on_brain_rois(encoding_files: dict[str, Path], tmp_path: Path) -> None:
    """Several brain sources act as subjects of ROI RDMs."""
    src = load_brain(encoding_files["brain"])
    rng = np.random.default_rng(3)
    paths = []
    for k in range(3):
        noisy = src.responses + 0.3 * rng.standard_normal(src.responses.shape)
        b = BrainData(noisy, src.stimulus_ids, src.voxels, name=f"s{k}")
        paths.append(save_brain(b, tmp_path / f"s{k}.npz"))
    out = tmp_path / "runs"
    args = ["evaluate", "rsa", "-f", str(encoding_files["good"]), "-f", str(encoding_files["rand"]),
            "--roi", "good", "--output-dir", str(out), "--no-progress"]  # fmt: skip
    for p in paths:
        args += ["-b", str(p)]
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    table = pd.read_csv(_only_run(out) / "rsa.csv").set_index("model")
    assert list(table["target"].unique()) == ["good"] and (table["n_subjects"] == 3).all()
    assert table.loc["good", "mean"] > 0.5 > abs(table.loc["rand", "mean"])


def test_evaluate_decode_identifies_and_retrieves(tmp_path: Path) -> None:
    ids, caps = _decode_set(tmp_path)
    corpus = tmp_path / "corpus.jsonl"
    out = tmp_path / "runs"
    res = runner.invoke(app, ["evaluate", "decode", "-b", str(tmp_path / "subjD.npz"), "-e", str(tmp_path / "emb.npy"),
                              "--captions", str(corpus), "--encoder", "glove", "--top-k", "3",
                              "--output-dir", str(out), "--no-progress"])  # fmt: skip
    assert res.exit_code == 0, res.output
    run = _only_run(out)
    table = pd.read_csv(run / "decode.csv")
    assert list(table.columns) == ["subject", "model", "n_train", "n_test", "splits", "identification_accuracy", "top1",
                                   "top1_chance", "mean_r", "retrieval_top3"]  # fmt: skip
    row = table.iloc[0]
    assert row["n_test"] == 12 and row["identification_accuracy"] > 0.8 and row["top1"] > row["top1_chance"]
    assert row["retrieval_top3"] >= 0.5 and row["splits"] == "random" and row["model"] == "embeddings"
    # decode.csv derives from the one result table, as metrics.json (schema 2) does
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["schema"] == 2 and metrics["info"]["evaluations"]["decode"]["kind"] == "decode"
    whole = metrics["results"]["decode"]["embeddings"]["all"]
    assert whole["subjects"]["subjD"]["top1"] == pytest.approx(row["top1"]) and whole["n_subjects"] == 1
    assert whole["identification_accuracy"] == pytest.approx(row["identification_accuracy"])
    lines = [json.loads(s) for s in (run / "retrieved_captions.jsonl").read_text().splitlines()]
    assert len(lines) == 12 and all(len(x["captions"]) == 3 for x in lines)
    assert (run / "decode.png").is_file() and "Decoding" in (run / "report.html").read_text()
    # caption metrics by default: the decoded caption (never the stimulus's own) against its own caption
    own = dict(zip(ids, caps, strict=True))
    assert all(x["decoded"] != own[x["stimulus"]] for x in lines)
    if shutil.which("java") is not None:
        cap = pd.read_csv(run / "caption_metrics.csv")
        assert {"bleu_1", "bleu_4", "meteor", "rouge_l", "cider_d", "embedding"} <= set(cap["metric"])
        assert cap["human_ceiling"].isna().all() and (cap["references"] == "all").all()  # one reference each
        assert "Decoded captions against human captions" in (run / "report.html").read_text()


def _decode_set(tmp_path: Path) -> tuple[list[str], list[str]]:
    """60 templated scenes (brain linear in their GloVe embedding) and a second, reworded caption of each."""
    from llmvem.text import embed_texts

    colours = ["red", "blue", "green", "yellow", "black"]
    things, places = ["dog", "car", "house", "tree"], ["beach", "street", "field"]
    caps = [f"a {c} {t} on the {p}" for c in colours for t in things for p in places]
    ids = [f"s{k:02d}" for k in range(len(caps))]
    emb = embed_texts(caps, encoder="glove", progress=False)
    rng = np.random.default_rng(1)
    y = emb @ rng.standard_normal((emb.shape[1], 300)) + 0.3 * rng.standard_normal((len(ids), 300))
    save_brain(BrainData(y, ids, pd.DataFrame({"roi": ["v"] * 300}), name="subjD"), tmp_path / "subjD.npz")
    _save_matrix(tmp_path / "emb.npy", emb, ids)
    pairs = list(zip(ids, caps, strict=True))
    (tmp_path / "corpus.jsonl").write_text("".join(json.dumps({"id": i, "text": c}) + "\n" for i, c in pairs))
    reworded = {i: c.replace("a ", "one ", 1).replace(" on the ", " by the ") for i, c in pairs}
    refs = [{"image": i, "text": t} for i, c in pairs for t in (c, reworded[i])]
    (tmp_path / "refs.jsonl").write_text("".join(json.dumps(r) + "\n" for r in refs))
    return ids, caps


@pytest.mark.skipif(shutil.which("java") is None, reason="caption metrics need Java")
def test_evaluate_decode_caption_metrics_with_human_ceiling(tmp_path: Path) -> None:
    _decode_set(tmp_path)
    out = tmp_path / "runs"
    res = runner.invoke(app, ["evaluate", "decode", "-b", str(tmp_path / "subjD.npz"), "-e", str(tmp_path / "emb.npy"),
                              "--captions", str(tmp_path / "corpus.jsonl"), "--encoder", "glove",
                              "--references", str(tmp_path / "refs.jsonl"), "--caption-metric", "bleu",
                              "--caption-metric", "rouge_l", "--output-dir", str(out), "--no-progress"])  # fmt: skip
    assert res.exit_code == 0, res.output
    run = _only_run(out)
    cap = pd.read_csv(run / "caption_metrics.csv").set_index("metric")
    assert list(cap.index) == ["bleu_1", "bleu_2", "bleu_3", "bleu_4", "rouge_l"]
    assert (cap["references"] == "leave-one-out").all() and (cap["n_images"] == 12).all()
    # a reworded pair shares 4 of 6 PTB tokens (ROUGE-L 2/3); decoded captions are templated scenes one or two
    # words away from the stimulus's
    assert cap.loc["rouge_l", "human_ceiling"] == pytest.approx(2 / 3, abs=1e-6)
    assert 0.3 < cap.loc["rouge_l", "score"] <= 1.0
    assert cap.loc["rouge_l", "score_over_ceiling"] == pytest.approx(
        cap.loc["rouge_l", "score"] / cap.loc["rouge_l", "human_ceiling"]
    )
    metrics = json.loads((run / "metrics.json").read_text())
    m = metrics["results"]["decode"]["embeddings"]["rouge_l"]["subjects"]["subjD"]
    assert m["score"] == pytest.approx(cap.loc["rouge_l", "score"])
    assert m["human_ceiling"] == pytest.approx(cap.loc["rouge_l", "human_ceiling"])
    assert metrics["info"]["evaluations"]["decode"]["caption_references"] == {"subjD": "leave-one-out"}


def test_evaluate_decode_caption_metric_errors(tmp_path: Path) -> None:
    _decode_set(tmp_path)
    base = ["evaluate", "decode", "-b", str(tmp_path / "subjD.npz"), "-e", str(tmp_path / "emb.npy"),
            "--encoder", "glove", "--output-dir", str(tmp_path / "runs"), "--no-progress"]  # fmt: skip
    res = runner.invoke(app, [*base, "--references", str(tmp_path / "refs.jsonl")])
    assert res.exit_code == 2 and "--references needs --captions" in res.output
    res = runner.invoke(app, [*base, "--captions", str(tmp_path / "corpus.jsonl"), "--caption-metric", "spice"])
    assert res.exit_code == 2 and "caption_metrics" in res.output and "rouge_l" in res.output
    res = runner.invoke(app, [*base, "--captions", str(tmp_path / "corpus.jsonl"), "--references",
                              str(tmp_path / "refs.txt")])  # fmt: skip
    assert res.exit_code == 2 and "no stimulus ids" in res.output


# --------------------------------------------------------------------------- bad input
def test_missing_feature_ids_are_named_and_no_run_is_left(encoding_files: dict[str, Path], tmp_path: Path) -> None:
    x = np.load(encoding_files["good"])[:70]
    ids = encoding_files["good"].with_suffix(".ids.txt").read_text().split()[:70]
    short = _save_matrix(tmp_path / "short.npy", x, ids)
    out = tmp_path / "runs"
    res = runner.invoke(app, ["evaluate", "encoding", "-f", str(short), "-b", str(encoding_files["brain"]),
                              "--output-dir", str(out)])  # fmt: skip
    assert res.exit_code == 2
    assert "10 of 80" in res.output and "img070" in res.output
    assert not out.exists() or not any(out.iterdir())


def test_bad_files_give_clear_errors(encoding_files: dict[str, Path], tmp_path: Path) -> None:
    from llmvem.errors import DataError

    nan = np.load(encoding_files["good"])
    nan[3, 2] = np.nan
    _save_matrix(tmp_path / "nan.npy", nan, [f"img{k:03d}" for k in range(80)])
    with pytest.raises(DataError, match=r"1 row\(s\) hold NaN/inf, e.g. stimulus 'img003'"):
        load_matrix(tmp_path / "nan.npy")
    np.save(tmp_path / "noids.npy", nan)
    with pytest.raises(DataError, match="no stimulus id file"):
        load_matrix(tmp_path / "noids.npy")
    (tmp_path / "three.npy").write_bytes(b"")
    np.save(tmp_path / "three.npy", np.zeros((2, 2, 2)))
    (tmp_path / "three.ids.txt").write_text("a\nb\n")
    with pytest.raises(DataError, match="2-D"):
        load_matrix(tmp_path / "three.npy")
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(DataError, match="cannot read"):
        load_brain(tmp_path / "junk.npz")
    with pytest.raises(DataError, match="Algonauts"):
        load_brain(tmp_path)
    with pytest.raises(DataError, match="not found"):
        load_rdms(str(tmp_path / "nope.npz"))
    res = runner.invoke(app, ["evaluate", "encoding", "-b", str(encoding_files["brain"])])
    assert res.exit_code == 2 and "--features" in res.output


def test_rdm_file_formats(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    a = rng.random((6, 6))
    rdm = a + a.T
    np.fill_diagonal(rdm, 0)
    np.save(tmp_path / "r.npy", rdm)
    (tmp_path / "r.ids.txt").write_text("\n".join("abcdef") + "\n")
    name, rset = load_rdms(f"mine={tmp_path / 'r.npy'}")
    assert name == "mine" and rset.rdms.shape == (1, 6, 6) and rset.stimulus_ids == list("abcdef")
    np.savez(tmp_path / "s.npz", rdms=np.stack([rdm, rdm]), stimulus_ids=np.array(list("abcdef")))
    name, rset = load_rdms(str(tmp_path / "s.npz"))
    assert name == "s" and rset.n_subjects == 2


@pytest.mark.data
@pytest.mark.skipif(shutil.which("java") is None, reason="caption metrics need Java")
def test_evaluate_decode_on_special100_with_coco_references(data_dir: Path, tmp_path: Path) -> None:
    """The 100 special NSD images: MiniLM embeddings of their first COCO caption, a simulated brain linear in them,
    the 500 COCO captions as corpus and special100_captions.json as references (NSD file names → canonical ids)."""
    from llmvem.data.files import load_references
    from llmvem.text import embed_texts

    refs_file = data_dir / "nsd_shared1000" / "special100_captions.json"
    refs = load_references(refs_file)
    ids = sorted(refs)
    assert len(ids) == 100 and all(i.startswith("nsd-") and len(refs[i]) == 5 for i in ids)
    emb = embed_texts([refs[i][0] for i in ids], encoder="minilm", progress=False)
    rng = np.random.default_rng(0)
    y = emb @ rng.standard_normal((emb.shape[1], 400)) + 0.5 * rng.standard_normal((len(ids), 400))
    save_brain(BrainData(y, ids, pd.DataFrame({"roi": ["v"] * 400}), name="subjS"), tmp_path / "subjS.npz")
    _save_matrix(tmp_path / "emb.npy", emb, ids)
    corpus = [{"id": i, "text": t} for i in ids for t in refs[i]]
    (tmp_path / "coco.jsonl").write_text("".join(json.dumps(r) + "\n" for r in corpus))
    out = tmp_path / "runs"
    res = runner.invoke(app, ["evaluate", "decode", "-b", str(tmp_path / "subjS.npz"), "-e", str(tmp_path / "emb.npy"),
                              "--captions", str(tmp_path / "coco.jsonl"), "--encoder", "minilm",
                              "--references", str(refs_file), "--caption-metric", "bleu", "--caption-metric",
                              "rouge_l", "--caption-metric", "embedding", "--output-dir", str(out),
                              "--no-progress"])  # fmt: skip
    assert res.exit_code == 0, res.output
    cap = pd.read_csv(_only_run(out) / "caption_metrics.csv").set_index("metric")
    assert (cap["n_images"] == 20).all() and (cap["references"] == "leave-one-out").all()
    # another image's caption, chosen from the decoded embedding, is worse than a human's but far from nothing
    for m in ("bleu_1", "rouge_l", "embedding"):
        assert 0.1 < cap.loc[m, "score"] < cap.loc[m, "human_ceiling"], m
