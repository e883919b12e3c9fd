"""``llmvem evaluate encoding|rsa --layer-sweep`` with brain sources in the public layouts (tests/public_layouts.py,
decision 0010): an NSD root (``nsd:ROOT?subject=1&rois=streams``, betas of three sessions, the shared images as the
test split) and an Algonauts 2023 subject folder (``algonauts:SUBJ?roi_classes=streams``, its test split from the
later release). Three layers of canonical-id features: pure noise, half the planted signal, the whole planted signal
(NSD: the per-image value of ``write_nsd_volume``; Algonauts: ``algonauts_signal``); any mis-pairing of feature rows
and brain rows would lose the signal, so the planted layer must be chosen and score high on the test images."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from llmvem.cli.app import app
from public_layouts import algonauts_signal, write_algonauts_subject, write_nsd_design, write_nsd_volume

runner = CliRunner()
LAYERS = ("noise", "half", "full")


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("sweep_layouts")
    design = write_nsd_design(root / "nsd")
    write_nsd_volume(root / "nsd", design)
    alg = write_algonauts_subject(root / "alg" / "subj01", n_train=120, n_test=30, classes=("streams",))
    nsd_value = np.random.default_rng(1).standard_normal(73_001)  # write_nsd_volume's planted value per 73k id
    ids = sorted(set(design.subjectim[0].tolist()) | {int(c) + 1 for c in (*alg.train_cond, *alg.test_cond)})
    (root / "f.ids.txt").write_text("".join(f"nsd-{k:05d}\n" for k in ids))  # shared by f.<layer>.npy
    planted = np.stack([np.r_[nsd_value[k], algonauts_signal(k)] for k in ids])
    rng = np.random.default_rng(5)
    for name, w in zip(LAYERS, (0.0, 0.5, 1.0), strict=True):
        x = w * planted + (1.2 - w) * rng.standard_normal(planted.shape)
        np.save(root / f"f.{name}.npy", np.hstack([x, rng.standard_normal((len(ids), 3))]).astype(np.float32))
    return {"root": root, "nsd": root / "nsd", "alg": alg.root, "n_test_alg": len(alg.test_cond)}  # type: ignore[dict-item]


def _sweep(command: str, world: dict, brain: str, out: Path) -> Path:
    args = [a for name in LAYERS for a in ("-f", f"{name}={world['root'] / f'f.{name}.npy'}")]
    cv = ["--cv", "gcv"] if command == "encoding" else []
    res = runner.invoke(app, ["evaluate", command, *args, "-b", brain, "--layer-sweep", "--no-progress",
                              "--output-dir", str(out), *cv])  # fmt: skip
    assert res.exit_code == 0, res.output
    (run,) = [p for p in out.iterdir() if p.is_dir()]
    return run


def _info(run: Path) -> dict:
    return json.loads((run / "metrics.json").read_text())["info"]["evaluations"]["layer_sweep"]


@pytest.mark.parametrize(
    ("kind", "n_test"), [("nsd", 40), ("alg", "n_test_alg")], ids=["nsd-root", "algonauts-subject"]
)
def test_encoding_sweep_on_public_layouts_chooses_the_planted_layer(
    world: dict, tmp_path: Path, kind: str, n_test: int | str
) -> None:
    brain = f"nsd:{world['nsd']}?subject=1&rois=streams" if kind == "nsd" else f"algonauts:{world['alg']}"
    run = _sweep("encoding", world, brain + ("" if kind == "nsd" else "?roi_classes=streams"), tmp_path)
    curve = pd.read_csv(run / "layer_sweep.csv")
    chosen = curve[curve["chosen"]]
    assert set(chosen["layer"]) == {"full"} and len(chosen) == curve["roi"].nunique()
    assert (chosen["test_score"] > 0.8).all() and (curve[curve["layer"] == "noise"]["test_score"] < 0.3).all()
    (split,) = _info(run)["splits"].values()
    expected_test = n_test if isinstance(n_test, int) else world[n_test]
    assert split["split"] == "brain" and split["n_test"] == expected_test  # the brain's own test split
    # the sweep's test scores are evaluate encoding's own held-out mean_r of each layer
    enc = pd.read_csv(run / "encoding.csv")
    for _, row in curve.iterrows():
        hit = enc[(enc["roi"] == row["roi"]) & (enc["model"] == row["layer"])]
        np.testing.assert_allclose(row["test_score"], hit["mean_r"].item(), rtol=1e-9)


def test_rsa_sweep_on_the_algonauts_subject_chooses_on_all_training_images(world: dict, tmp_path: Path) -> None:
    run = _sweep("rsa", world, f"algonauts:{world['alg']}?roi_classes=streams", tmp_path)
    curve = pd.read_csv(run / "layer_sweep.csv")
    chosen = curve[curve["chosen"]]
    assert set(chosen["layer"]) == {"full"} and (chosen["test_score"] > 0.1).all()
    info = _info(run)
    assert info["validation_fraction"] is None
    for split in info["splits"].values():  # the subject's own 120 / 30: every training image chooses
        assert (split["n_fit"], split["n_val"], split["n_test"]) == (0, 120, world["n_test_alg"])
    assert "chosen on the training images — the RDMs over all the training images" in (run / "report.html").read_text()


def test_rsa_sweep_on_the_nsd_root_uses_the_shared_images_as_test(world: dict, tmp_path: Path) -> None:
    run = _sweep("rsa", world, f"nsd:{world['nsd']}?subject=1&rois=streams", tmp_path)
    info = _info(run)
    assert {k: (v["n_fit"], v["n_val"], v["n_test"]) for k, v in info["splits"].items()} == {
        "early": (0, 710, 40), "ventral": (0, 710, 40)}  # fmt: skip
    assert info["chosen"]["early"] == "full"
