"""``llmvem evaluate encoding|rsa --layer-sweep`` from the CLI: the planted best layer per ROI / RDM target is
chosen, the files it writes, layers named ``f.<layer>.npy`` sharing ``f.ids.txt``, and bad input stopped before a
run directory exists."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from llmvem.brain.rsa import compute_rdm
from llmvem.cli.app import app
from llmvem.data.brain import BrainData
from llmvem.data.files import save_brain

runner = CliRunner()
N, D, V = 240, 8, 12  # images, dims per layer, voxels per ROI
LAYERS = ["stem", "block1", "block2", "block3", "head"]


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """``f.<layer>.npy`` for 5 layers sharing ``f.ids.txt`` (layer k: its latent + 0.6 of the previous one's); a
    brain whose ROI 'early' is driven by block1 and 'late' by block3; an RDM file of 3 subjects made from block2."""
    rng = np.random.default_rng(2)
    root = tmp_path_factory.mktemp("sweep")
    z = [rng.standard_normal((N, D)) for _ in LAYERS]
    ids = [f"img{k:03d}" for k in range(N)]
    (root / "f.ids.txt").write_text("\n".join(ids) + "\n")
    out: dict[str, Path] = {"root": root}
    for k, name in enumerate(LAYERS):
        out[name] = root / f"f.{name}.npy"
        np.save(out[name], (z[k] + (0.6 * z[k - 1] if k else 0.0)).astype(np.float32))

    def roi(latent: np.ndarray) -> np.ndarray:
        return latent @ rng.standard_normal((D, V)) / np.sqrt(D) + 0.8 * rng.standard_normal((N, V))

    np.save(root / "z3.npy", z[3])  # the latent that drives 'late' (block3 is it + 0.6 of block2's)
    out["z3"] = root / "z3.npy"
    y = np.concatenate([roi(z[1]), roi(z[3])], axis=1)
    brain = BrainData(y, ids, pd.DataFrame({"roi": np.repeat(["early", "late"], V)}), name="sim")
    out["brain"] = save_brain(brain, root / "sim.npz")
    block2 = np.load(out["block2"])
    rdms = np.stack([compute_rdm(block2 + 0.7 * rng.standard_normal((N, D))) for _ in range(3)])
    out["rdms"] = root / "it.npz"
    np.savez(out["rdms"], rdms=rdms, stimulus_ids=np.array(ids), subjects=np.array(["s1", "s2", "s3"]))
    return out


def _layer_args(files: dict[str, Path], layers: list[str] = LAYERS) -> list[str]:
    return [a for name in layers for a in ("-f", f"{name}={files[name]}")]


def _invoke(command: str, args: list[str], out: Path) -> tuple[int, str]:
    res = runner.invoke(app, ["evaluate", command, *args, "--output-dir", str(out), "--no-progress"])
    return res.exit_code, res.output


def _run(command: str, args: list[str], out: Path) -> Path:
    code, output = _invoke(command, args, out)
    assert code == 0, output
    (run,) = [p for p in out.iterdir() if p.is_dir()]
    return run


def test_encoding_layer_sweep_chooses_the_planted_layers(files: dict[str, Path], tmp_path: Path) -> None:
    run = _run("encoding", ["-b", str(files["brain"]), *_layer_args(files), "--layer-sweep", "--cv", "gcv"],
               tmp_path / "runs")  # fmt: skip
    curve = pd.read_csv(run / "layer_sweep.csv")
    assert list(curve.columns[:4]) == ["kind", "roi", "layer", "layer_index"] and (curve["kind"] == "encoding").all()
    assert len(curve) == 2 * len(LAYERS) and curve["layer"].tolist()[: len(LAYERS)] == LAYERS  # depth order kept
    chosen = curve[curve["chosen"]].set_index("roi")["layer"].to_dict()
    assert chosen == {"early": "block1", "late": "block3"}
    subjects = pd.read_csv(run / "layer_sweep_subjects.csv")
    assert (subjects["subject"] == "sim").all() and len(subjects) == len(curve)
    # the test score of every layer is evaluate encoding's own held-out score of that layer (fitted on all training)
    enc = pd.read_csv(run / "encoding.csv").set_index(["model", "roi"])["mean_r"]
    for _, row in curve.iterrows():
        assert row["test_score"] == pytest.approx(enc[(row["layer"], row["roi"])], abs=1e-6)
    metrics = json.loads((run / "metrics.json").read_text())
    info = metrics["info"]["evaluations"]["layer_sweep"]
    assert info["kind"] == "layer_sweep" and info["score"] == "encoding" and info["layers"] == LAYERS
    assert info["validation_fraction"] == 0.2 and info["chosen"] == {"early": "block1", "late": "block3"}
    assert info["splits"]["sim"] == {"n_fit": 154, "n_val": 38, "n_test": 48, "split": "brain"}
    late = metrics["results"]["layer_sweep"]["block3"]["late"]
    assert late["chosen"] == 1.0 and late["test_score"] == pytest.approx(enc[("block3", "late")], abs=1e-6)
    assert late["subjects"]["sim"]["val_score"] == pytest.approx(late["val_score"])  # one subject: its curve
    table = pd.read_csv(run / "results.csv")
    assert set(table.loc[table["evaluation"] == "layer_sweep", "metric"]) >= {"val_score", "test_score", "chosen"}
    assert (run / "layer_sweep.png").stat().st_size > 5000
    html = (run / "report.html").read_text()
    assert "Layer sweep" in html and "chosen on a validation split of the training images" in html
    assert "never on the test images" in html


def test_rsa_layer_sweep_on_an_rdm_file_and_a_validation_fraction(files: dict[str, Path], tmp_path: Path) -> None:
    run = _run("rsa", ["--rdms", f"it={files['rdms']}", *_layer_args(files), "--layer-sweep",
                       "--sweep-validation-fraction", "0.3"], tmp_path / "runs")  # fmt: skip
    curve = pd.read_csv(run / "layer_sweep.csv")
    assert (curve["kind"] == "rsa").all() and (curve["target"] == "it").all()
    assert curve.loc[curve["chosen"], "layer"].tolist() == ["block2"]
    assert curve.loc[curve["chosen"], "n_chosen"].item() == 3  # every subject's own choice too
    subjects = pd.read_csv(run / "layer_sweep_subjects.csv")
    assert sorted(subjects["subject"].unique()) == ["s1", "s2", "s3"] and len(subjects) == 3 * len(LAYERS)
    info = json.loads((run / "metrics.json").read_text())["info"]["evaluations"]["layer_sweep"]
    # the seeded 20 % hold-out of the target's 240 stimuli: 192 training images, 30 % of them the validation ones
    assert info["splits"]["it"] == {"n_fit": 134, "n_val": 58, "n_test": 48,
                                    "split": "a seeded 0.2 hold-out of its stimuli"}  # fmt: skip
    assert info["chosen"] == {"it": "block2"} and curve.loc[curve["chosen"], "test_score"].item() > 0.3
    assert "rsa.csv" in {p.name for p in run.iterdir()}  # the RSA of every layer on all images still runs
    html = (run / "report.html").read_text()
    assert "Layer sweep" in html and "RSA fits nothing" in html


def test_rsa_layer_sweep_on_brain_rois_uses_the_encoding_hold_out(files: dict[str, Path], tmp_path: Path) -> None:
    """Brain sources as subjects: their ROI RDMs are the targets, split by the first brain's (seeded) hold-out."""
    brain = str(files["brain"])
    run = _run("rsa", ["-b", brain, "-b", brain, *_layer_args(files), "--layer-sweep"], tmp_path / "runs")
    curve = pd.read_csv(run / "layer_sweep.csv")
    chosen = curve[curve["chosen"]].set_index("target")["layer"].to_dict()
    assert chosen == {"early": "block1", "late": "block3"}
    splits = json.loads((run / "metrics.json").read_text())["info"]["evaluations"]["layer_sweep"]["splits"]
    assert splits["early"]["n_test"] == 48  # evaluate encoding's 20 % hold-out of the brain's 240
    assert splits["early"]["split"] == "brain 'sim''s seeded hold-out"


def test_layer_sweep_bad_input_exits_2_without_a_run(files: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "runs"
    brain = ["-b", str(files["brain"])]
    ids = (files["root"] / "f.ids.txt").read_text().split()
    short = files["root"] / "short.npy"
    np.save(short, np.load(files["stem"])[:200])
    (files["root"] / "short.ids.txt").write_text("\n".join(ids[:200]) + "\n")
    other = files["root"] / "other.npy"
    np.save(other, np.load(files["stem"]))
    (files["root"] / "other.ids.txt").write_text("\n".join([*ids[:-1], "elsewhere"]) + "\n")
    two = _layer_args(files, ["stem", "block1"])
    cases = [
        ("encoding", [*brain, *two[:2], "--layer-sweep"], "a layer sweep needs ≥ 2 layers of one model"),
        ("encoding", [*brain, *two, "-f", f"short={short}", "--layer-sweep"],
         "layer 'short' has 200 rows, layer 'stem' 240"),
        ("rsa", ["--rdms", str(files["rdms"]), *two, "-f", f"other={other}", "--layer-sweep"],
         "layer 'other' lacks 1 of the stimuli of layer 'stem'"),
        ("encoding", [*brain, *two, "--layer-sweep", "--sweep-validation-fraction", "0.02"],
         "the layer choice needs ≥ 10"),
        ("encoding", [*brain, *two, "--layer-sweep", "--cv", "80", "--sweep-validation-fraction", "0.5"],
         "ridge cv=80 needs ≥ 160"),
        ("encoding", [*brain, "-f", f"a={files['stem']}", "-f", f"a={files['head']}", "--layer-sweep"],
         "feature names ['a', 'a'] repeat"),
        ("rsa", ["--rdms", str(files["rdms"]), *two, "--layer-sweep", "--sweep-validation-fraction", "1.5"],
         "sweep_validation_fraction"),
    ]  # fmt: skip
    for command, args, message in cases:
        code, output = _invoke(command, args, out)
        assert code == 2, (args, output)
        assert message in output, (args, output)
        assert len(output.strip().splitlines()) <= 2, output  # one line (config errors: a header and the key)
    assert not out.exists() or not any(out.iterdir())  # nothing written


def test_layers_share_the_extractions_id_file(files: dict[str, Path], tmp_path: Path) -> None:
    """``-f f.block1.npy`` (no NAME=, no f.block1.ids.txt): named by its stem, ids from ``f.ids.txt``."""
    from llmvem.data.files import ids_file, load_matrix

    m = load_matrix(str(files["block1"]))
    assert m.name == "f.block1" and m.ids[0] == "img000" and len(m.ids) == N
    assert ids_file(files["root"] / "f.blocks.3.npy") == files["root"] / "f.ids.txt"  # dotted layer names
    own = files["root"] / "g.x.npy"
    (files["root"] / "g.x.ids.txt").write_text("a\n")
    assert ids_file(own) == files["root"] / "g.x.ids.txt"  # its own id file wins


def test_a_layer_best_on_the_test_images_is_not_chosen(files: dict[str, Path], tmp_path: Path) -> None:
    """A 'cheat' layer: the latent driving 'late' on the fitting and test images, noise on the validation images.
    It has the best test score of every layer for 'late', and is not chosen: the validation images choose."""
    from llmvem.brain.layer_sweep import validation_split
    from llmvem.data.brain_select import with_splits
    from llmvem.data.files import load_brain

    brain, _ = with_splits(load_brain(files["brain"]), 0.2, 0)  # evaluate encoding's hold-out (seed 0)
    _, val = validation_split(brain.split_indices("train"), 0.2, 0)
    cheat = np.load(files["z3"]).astype(np.float32)
    cheat[val] = np.random.default_rng(5).standard_normal((len(val), D))
    np.save(files["root"] / "f.cheat.npy", cheat)
    args = [*_layer_args(files), "-f", f"cheat={files['root'] / 'f.cheat.npy'}"]
    run = _run("encoding", ["-b", str(files["brain"]), *args, "--layer-sweep", "--cv", "gcv"], tmp_path / "runs")
    late = pd.read_csv(run / "layer_sweep.csv").query("roi == 'late'").set_index("layer")
    assert late["test_score"].idxmax() == "cheat"  # best on the test images …
    assert late.loc["cheat", "test_score"] > late.loc["block3", "test_score"] + 0.02
    assert late.loc["cheat", "val_score"] < 0.15 and not late.loc["cheat", "chosen"]  # … not on the validation ones
    assert late["chosen"].idxmax() == "block3"


def test_sweep_test_scores_from_the_encoding_equal_a_refit(files: dict[str, Path], tmp_path: Path) -> None:
    """A study with two sweeps of the same layers: one reads evaluate encoding's held-out mean_r (``of``), one fits
    every layer itself; same curve, same choice."""
    from llmvem.config import load_config
    from llmvem.pipeline.evaluate_files import encoding_study
    from llmvem.runner import run_study
    from llmvem.runner.study import parse_study

    inputs = {"brain": [str(files["brain"])], "features": [f"{n}={files[n]}" for n in LAYERS]}
    cfg = load_config(literal={"name": "sweep", "evaluate": {"inputs": inputs, "encoding": {"layer_sweep": True}}})
    tree = encoding_study(cfg).model_dump(exclude_none=True)
    tree["evaluations"]["refit"] = {"kind": "layer_sweep", "against": "brain", "representations": LAYERS,
                                    "score": "encoding"}  # fmt: skip
    run = run_study(parse_study(tree, "test"), run_dir=tmp_path / "run", log=lambda *a, **k: None)
    a, b = (pd.read_csv(run.path / f"{n}.csv") for n in ("layer_sweep", "refit"))
    pd.testing.assert_frame_equal(a.drop(columns="test_score"), b.drop(columns="test_score"))
    np.testing.assert_allclose(a["test_score"], b["test_score"], rtol=1e-9)


@pytest.mark.slow
def test_layer_sweep_on_objects92_lite0_blocks(data_dir: Path, tmp_path: Path) -> None:
    """End to end on real data: ``llmvem features --layers`` writes EfficientNet-Lite0 blocks as ``f.<layer>.npy``
    + one ``f.ids.txt``, and ``evaluate rsa --layer-sweep`` chooses a block per Cichy RDM set on all 74 training
    images (18 test; decision 0017 addendum). About 1–2 min on 2 CPU cores (the extraction dominates)."""
    blocks = ["_blocks.1", "_blocks.5", "_blocks.9", "_blocks.13", "_blocks.15"]
    out = tmp_path / "lite0.npy"
    res = runner.invoke(app, ["features", str(data_dir / "objects92" / "images"), "--layers", ",".join(blocks),
                              "-o", str(out), "--no-progress"])  # fmt: skip
    assert res.exit_code == 0, res.output
    args = [a for b in blocks for a in ("-f", str(tmp_path / f"lite0.{b}.npy"))]  # named by stem, ids shared
    run = _run("rsa", [*args, "--rdms", "objects92:cichy_it", "--rdms", "objects92:cichy_evc", "--layer-sweep",
                       "--data-dir", str(data_dir)], tmp_path / "runs")  # fmt: skip
    curve = pd.read_csv(run / "layer_sweep.csv")
    assert len(curve) == 2 * len(blocks) and curve.groupby("target")["chosen"].sum().tolist() == [1, 1]
    assert set(curve["layer"]) == {f"lite0.{b}" for b in blocks} and (curve["n_subjects"] == 15).all()
    info = json.loads((run / "metrics.json").read_text())["info"]["evaluations"]["layer_sweep"]
    assert {k: (v["n_fit"], v["n_val"], v["n_test"]) for k, v in info["splits"].items()} == {
        "cichy_it": (0, 74, 18), "cichy_evc": (0, 74, 18)}  # fmt: skip
    assert np.isfinite(curve[["val_score", "test_score"]].to_numpy()).all()
    # the choice is the validation maximum (of the mean over subjects), whatever the test curve says
    for _, g in curve.groupby("target"):
        assert g.loc[g["chosen"], "val_score"].item() == g["val_score"].max()
