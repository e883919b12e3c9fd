"""Fine-tuning on the user's own image folder (the studies folder-classifier / folder-voxels, here from old
``dataset.name: folder`` configs through their translation): classification and voxel regression end to end on real
images (the 92-object set, in class subfolders, with their real LLM descriptions), every number recomputed from the
saved models and predictions; bad inputs stop the run with a clear error before any training."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

from llmvem.config import ExperimentConfig, load_config
from llmvem.data.splits import heldout_split
from llmvem.errors import ConfigError, DataError, IdMismatchError
from llmvem.pipeline.finetune_folder import run_finetune_folder
from llmvem.runner.legacy import LegacyConfigWarning, folder_task

pytestmark = pytest.mark.filterwarnings("ignore::llmvem.runner.legacy.LegacyConfigWarning")

PER_CLASS = 4  # 6 categories × 4 = 24 images


@pytest.fixture(scope="module")
def objects(data_dir: Path) -> Any:
    from llmvem.data.objects92 import load_objects92

    return load_objects92(data_dir, verify=False)


@pytest.fixture(scope="module")
def folder(objects: Any, data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """An ImageNet-style folder (images/<category>/image_NN.jpg, symlinks to the real files) and descriptions.jsonl
    holding the real descriptions of those images."""
    root = tmp_path_factory.mktemp("folder")
    chosen: dict[str, str] = {}
    for label in sorted(set(objects.stimuli.labels)):
        ids = [i for i, lab in zip(objects.stimuli.ids, objects.stimuli.labels, strict=True) if lab == label]
        for i in ids[:PER_CLASS]:
            chosen[i] = label.replace(" ", "_")
    for i, cls in chosen.items():
        (root / "images" / cls).mkdir(parents=True, exist_ok=True)
        (root / "images" / cls / f"{i}.jpg").symlink_to(data_dir / "objects92" / "images" / f"{i}.jpg")
    lines = [
        line
        for line in (data_dir / "objects92" / "descriptions.jsonl").read_text().splitlines()
        if Path(json.loads(line)["image"]).stem in chosen
    ]
    (root / "descriptions.jsonl").write_text("\n".join(lines) + "\n")
    return {"root": root, "images": root / "images", "descriptions": root / "descriptions.jsonl", "classes": chosen}


def _cfg(tmp_path: Path, images: Path, descriptions: Path | None, **over: Any) -> ExperimentConfig:
    base = {
        "name": "folder-test", "output_dir": str(tmp_path / "runs"), "progress": "false",
        "dataset.name": "folder", "dataset.images": str(images),
        "finetune.trainable_blocks": 0, "finetune.epochs": 2, "finetune.warmup_epochs": 0, "finetune.seeds": "[0, 1]",
        "finetune.batch_size": 8, "finetune.val_fraction": 0.2, "finetune.tensorboard": "false", "finetune.lr": 1e-3,
        "finetune.projection": "linear", "embed.encoder": "minilm",
    }  # fmt: skip
    if descriptions is not None:
        base["dataset.descriptions"] = str(descriptions)
    return load_config(overrides={**base, **over})


def _info(cfg: ExperimentConfig, until: str = "stimuli") -> dict[str, Any]:
    """``info`` of the translated study run up to ``until`` (its checks run, nothing trains)."""
    from llmvem.runner import run_study
    from llmvem.runner.legacy import study_from_config

    run = run_study(study_from_config(cfg, warn=False), until=until)
    info: dict[str, Any] = json.loads((run.path / "metrics.json").read_text())["info"]
    return info


def _heldout(run_path: Path, model: str = "aligned-seed0") -> list[str]:
    return list(np.load(run_path / "predictions" / f"{model}.npz")["ids"])


def _write_jsonl(path: Path, rows: list[dict[str, str]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


# ------------------------------------------------------------------------------------------------ end to end
def test_classification_aligned_vs_twin_end_to_end(folder: dict[str, Any], tmp_path: Path) -> None:
    from llmvem.align.finetune import features_from_run
    from llmvem.data.stimuli import StimulusSet

    with pytest.warns(LegacyConfigWarning, match="folder-classifier"):
        run = run_finetune_folder(_cfg(tmp_path, folder["images"], folder["descriptions"]))
    m = json.loads((run.path / "metrics.json").read_text())
    assert m["study"] == "folder-test" and m["info"]["models"]["aligned"]["task"] == "classifier"
    images = m["info"]["stimuli"]["images"]
    assert images["n_images"] == 24 and images["heldout_from"] == "seeded"
    cls, classes = m["results"]["classification"], sorted(set(folder["classes"].values()))
    assert m["info"]["targets"]["classes"] == {"classes": classes, "n_classes": 6}
    heldout = _heldout(run.path)
    # stratified: every class gives one of its 4 images to the held-out set
    assert sorted(folder["classes"][i] for i in heldout) == classes and images["n_test"] == 6
    assert images["n_train"] == 18

    for cond in ("aligned", "twin"):
        scores = cls[cond]["classes"]
        for metric in ("top1", "top5"):
            per_seed = [scores["seeds"][str(s)][metric] for s in (0, 1)]
            assert all(0.0 <= x <= 1.0 for x in per_seed)
            assert scores[metric] == pytest.approx(np.mean(per_seed))
        for seed in (0, 1):
            pred = np.load(run.path / "predictions" / f"{cond}-seed{seed}.npz")
            assert list(pred["ids"]) == heldout
            truth = np.asarray([classes.index(folder["classes"][i]) for i in heldout])
            np.testing.assert_array_equal(pred["targets"], truth)
            logits = pred["outputs"]
            assert logits.shape == (6, 6)
            assert scores["seeds"][str(seed)]["top1"] == pytest.approx(float((logits.argmax(1) == truth).mean()))
            top5 = np.argsort(-logits, axis=1)[:, :5]
            assert scores["seeds"][str(seed)]["top5"] == pytest.approx(float((top5 == truth[:, None]).any(1).mean()))
    for metric in ("top1", "top5"):
        p = m["results"][f"paired_{metric}"]["aligned - twin"]["classes"]
        diffs = [cls["aligned"]["classes"]["seeds"][str(s)][metric] - cls["twin"]["classes"]["seeds"][str(s)][metric]
                 for s in (0, 1)]  # fmt: skip
        assert [p["seeds"][str(s)]["diff"] for s in (0, 1)] == pytest.approx(diffs)
        assert p["diff_mean"] == pytest.approx(np.mean(diffs)) and p["ci95_low"] <= p["diff_mean"] <= p["ci95_high"]

    # the saved model, rebuilt from the run directory, gives the saved held-out logits on the images themselves
    paths = [folder["images"] / folder["classes"][i] / f"{i}.jpg" for i in heldout]
    feats = features_from_run(StimulusSet.from_paths(paths), run.path, "aligned-seed0")
    from safetensors.torch import load_file

    state = load_file(str(run.path / "models" / "aligned-seed0.safetensors"))
    logits = feats @ state["task.weight"].numpy().T + state["task.bias"].numpy()
    np.testing.assert_allclose(logits, np.load(run.path / "predictions" / "aligned-seed0.npz")["outputs"], atol=2e-3)
    assert "project.weight" in state
    assert not any(k.startswith("project.") for k in load_file(str(run.path / "models" / "twin-seed0.safetensors")))
    # the alignment is measured (image → its own description among the held-out ones), for the aligned model only
    retrieval = m["results"]["retrieval"]
    assert set(retrieval) == {"aligned"} and retrieval["aligned"]["descriptions"]["chance"] == pytest.approx(1 / 6)
    assert 0.0 <= retrieval["aligned"]["descriptions"]["top1"] <= 1.0

    table = pd.read_csv(run.path / "results.csv")
    assert set(table[table["evaluation"] == "classification"]["model"]) == {"aligned", "twin"}
    assert {"top1", "top5"} <= set(table["metric"]) and "retrieval" in set(table["evaluation"])
    wide = pd.read_csv(run.path / "classification.csv")
    assert list(wide["model"]) == ["aligned", "twin"] and wide["top1"].tolist() == pytest.approx(
        [cls[c]["classes"]["top1"] for c in ("aligned", "twin")])  # fmt: skip
    for name in ("report.html", "training.png", "config.yaml", "study.yaml"):
        assert (run.path / name).is_file(), name
    assert "top1" in (run.path / "report.html").read_text()
    hist = pd.read_csv(run.path / "train_twin_seed1.csv")
    assert list(hist["epoch"]) == [0, 1] and "val_accuracy" in hist.columns and "train_align" not in hist.columns


@pytest.fixture(scope="module")
def brain_npz(folder: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Synthetic voxels: a random linear map of the images' pretrained features + noise, 3 repeats, 2 ROIs of 12
    voxels, voxel 5 NaN for one image; and 4 extra stimuli the folder does not have."""
    from llmvem.align.cache import cached_activations
    from llmvem.data.brain import BrainData, ncsnr_from_repeats
    from llmvem.data.files import save_brain
    from llmvem.data.stimuli import StimulusSet
    from llmvem.store import ArtifactStore
    from llmvem.vision.trainable import split_backbone

    # the pretrained network's pooled features (below its trainable head; the same cached activations as the runs)
    stim = StimulusSet.from_paths(sorted(folder["images"].rglob("*.jpg")))
    ids = list(stim.ids)
    acts = cached_activations(ArtifactStore(), split_backbone("efficientnet_lite0", 0), stim, "cpu", False)
    x = acts.mean((2, 3)).astype(np.float64)
    x = (x - x.mean(0)) / (x.std(0) + 1e-6)
    rng = np.random.default_rng(0)
    signal = x @ rng.normal(size=(x.shape[1], 24)) / np.sqrt(x.shape[1])
    signal = np.vstack([signal, rng.normal(size=(4, 24))])  # 4 stimuli not in the folder
    trials = signal[:, None, :] + 0.7 * rng.normal(size=(len(signal), 3, 24))
    responses = trials.mean(1)
    responses[3, 5] = np.nan
    all_ids = [*ids, "extra_1", "extra_2", "extra_3", "extra_4"]
    rois = pd.DataFrame({"roi": ["V1"] * 12 + ["LOC"] * 12})
    brain = BrainData(responses, all_ids, rois, ncsnr=ncsnr_from_repeats(trials), n_repeats=np.full(len(all_ids), 3))
    path = save_brain(brain, tmp_path_factory.mktemp("brain") / "subj01.npz")
    return {"path": path, "ids": all_ids, "responses": responses}


def test_voxel_regression_aligned_vs_twin_end_to_end(
    folder: dict[str, Any], brain_npz: dict[str, Any], tmp_path: Path
) -> None:
    cfg = _cfg(tmp_path, folder["images"], folder["descriptions"], **{"dataset.brain": str(brain_npz["path"])})
    with pytest.warns(RuntimeWarning, match="1 of 24 voxels contain NaN/inf"):
        run = run_finetune_folder(cfg)
    m = json.loads((run.path / "metrics.json").read_text())
    info = m["info"]
    assert info["models"]["aligned"]["task"] == "voxels"  # auto: brain data given
    assert info["targets"]["voxels"] == {"n_voxels": 24, "n_masked": 1}
    assert info["stimuli"]["images"]["ignored_brain_stimuli"] == 4
    heldout = _heldout(run.path)
    image_ids = [p.stem for p in sorted(folder["images"].rglob("*.jpg"))]  # the stimulus order
    rows = [brain_npz["ids"].index(i) for i in image_ids if i not in heldout]
    voxel_r = np.load(run.path / "voxels_voxel_r.npz")
    valid = np.isfinite(brain_npz["responses"]).all(0)
    y = brain_npz["responses"][:, valid]
    mean, sd = y[rows].mean(0), y[rows].std(0)
    vox = m["results"]["voxels"]
    for cond in ("aligned", "twin"):
        for seed in (0, 1):
            pred = np.load(run.path / "predictions" / f"{cond}-seed{seed}.npz")
            held = [brain_npz["ids"].index(i) for i in pred["ids"]]
            assert list(pred["ids"]) == heldout and pred["outputs"].shape == (len(held), 23)
            np.testing.assert_allclose(pred["targets"], (y[held] - mean) / sd, rtol=1e-4, atol=1e-4)
            a = pred["outputs"] - pred["outputs"].mean(0)
            b = pred["targets"] - pred["targets"].mean(0)
            r = (a * b).sum(0) / np.sqrt((a**2).sum(0) * (b**2).sum(0))
            saved = voxel_r[f"{cond}-seed{seed}"]
            assert np.isnan(saved[5]) and np.isfinite(saved[valid]).all()
            np.testing.assert_allclose(saved[valid], r, atol=1e-5)
            mean_r = vox[cond]["voxels"]["seeds"][str(seed)]["mean_r"]
            assert mean_r == pytest.approx(float(r.mean()), abs=1e-6) and -1.0 <= mean_r <= 1.0
    diffs = [vox["aligned"]["voxels"]["seeds"][str(s)]["mean_r"] - vox["twin"]["voxels"]["seeds"][str(s)]["mean_r"]
             for s in (0, 1)]  # fmt: skip
    paired = m["results"]["paired_mean_r"]["aligned - twin"]["voxels"]
    assert [paired["seeds"][str(s)]["diff"] for s in (0, 1)] == pytest.approx(diffs)
    table = pd.read_csv(run.path / "voxels.csv")  # per model: the whole target, then each ROI
    assert list(zip(table["model"], table["target"], strict=True)) == [(c, t) for c in ("aligned", "twin")
                                                                       for t in ("voxels", "V1", "LOC")]  # fmt: skip
    rois = table[table["target"] != "voxels"]
    assert np.isfinite(rois["noise_ceiling_r"]).all() and (rois["noise_ceiling_r"] > 0).all()
    v1 = table[(table["model"] == "twin") & (table["target"] == "V1")].iloc[0]
    per_seed = [np.nanmean(voxel_r[f"twin-seed{s}"][:12]) for s in (0, 1)]
    assert v1["mean_r"] == pytest.approx(np.mean(per_seed)) and v1["n_voxels"] == 12
    assert set(vox["aligned"]) == {"voxels", "V1", "LOC"}
    assert (run.path / "report.html").is_file()


def test_voxels_pca_head_is_fit_on_training_voxels_only(tmp_path: Path) -> None:
    from llmvem.align.finetune import FinetuneData, finetune
    from llmvem.align.heads import PCAVoxelHead
    from llmvem.config import FinetuneConfig
    from llmvem.vision.trainable import split_backbone

    split = split_backbone("efficientnet_lite0", trainable_blocks=1)
    rng = np.random.default_rng(1)
    with torch.inference_mode():
        acts = split.bottom(torch.from_numpy(rng.normal(size=(20, 3, 64, 64)).astype(np.float32))).numpy()
    voxels = rng.normal(size=(20, 30)).astype(np.float32)
    voxels[16:] += 50.0  # held-out rows far away: a PCA that saw them would have another mean
    train, val = np.arange(16), np.arange(16, 20)
    cfg = FinetuneConfig(epochs=1, batch_size=8, warmup_epochs=0, pca_components=4, tensorboard=False)
    res = finetune(split, FinetuneData(acts, None, voxels), train, val, cfg, 0.0, "voxels_pca", 0, tmp_path / "p")
    ref = PCAVoxelHead(voxels[train], 4)
    np.testing.assert_allclose(res.state["task.mean"].numpy(), ref.mean, atol=1e-5)
    np.testing.assert_allclose(np.abs(res.state["task.components"].numpy()), np.abs(ref.components), atol=1e-5)
    assert "val_mean_r" in res.history[0]
    # classifier: integer targets, one logit per class, accuracy in the history
    classes = np.arange(20) % 3
    res = finetune(split, FinetuneData(acts, None, classes), train, val, cfg, 0.0, "classifier", 0, tmp_path / "c")
    assert res.state["task.weight"].shape == (3, split.feature_dim) and 0 <= res.history[0]["val_accuracy"] <= 1
    with pytest.raises(DataError, match="NaN"):
        FinetuneData(acts, None, np.where(voxels > 1, np.nan, voxels))


# ------------------------------------------------------------------------------------------------ bad input
def test_images_without_descriptions_fail_by_default_or_are_dropped(folder: dict[str, Any], tmp_path: Path) -> None:
    rows = [json.loads(x) for x in folder["descriptions"].read_text().splitlines()]
    by_class = {c: min(i for i, k in folder["classes"].items() if k == c) for c in set(folder["classes"].values())}
    missing = sorted(by_class.values())[:3]  # three images of three classes lose their text
    partial = _write_jsonl(tmp_path / "partial.jsonl", [r for r in rows if Path(r["image"]).stem not in missing])
    with pytest.raises(DataError, match=r"3 of 24 image\(s\) have no description") as err:
        run_finetune_folder(_cfg(tmp_path, folder["images"], partial))
    assert missing[0] in str(err.value) and "missing_descriptions: drop" in str(err.value)
    assert not (tmp_path / "runs").exists()  # nothing was started
    cfg = _cfg(tmp_path, folder["images"], partial, **{"dataset.missing_descriptions": "drop"})
    assert folder_task(cfg) == "classifier"
    counts = _info(cfg)["stimuli"]["images"]
    assert counts["dropped_no_description"] == 3 and counts["n_images"] == 21


def test_descriptions_of_unknown_images_are_ignored_and_counted(folder: dict[str, Any], tmp_path: Path) -> None:
    rows = [json.loads(x) for x in folder["descriptions"].read_text().splitlines()]
    extra = [{"image": f"holiday_{k}.jpg", "text": "a beach"} for k in range(4)]
    path = _write_jsonl(tmp_path / "more.jsonl", [{"image": r["image"], "text": r["text"]} for r in rows] + extra)
    from llmvem.text.multi import descriptions_of_images

    logged: list[str] = []
    table, kept, counts = descriptions_of_images(path, sorted(folder["classes"]), log=logged.append)
    assert counts == {"ignored_descriptions": 4, "dropped_no_description": 0} and kept == sorted(folder["classes"])
    assert set(table["image"]) == set(folder["classes"]) and any("4 description(s)" in x for x in logged)
    assert _info(_cfg(tmp_path, folder["images"], path))["stimuli"]["images"]["ignored_descriptions"] == 4


def test_a_class_with_fewer_than_two_images_is_rejected(folder: dict[str, Any], tmp_path: Path) -> None:
    images = tmp_path / "images"
    first_body = min(i for i, c in folder["classes"].items() if c == "animal_body")
    for i, cls in folder["classes"].items():
        if cls == "animal_body" and i != first_body:  # keep 1 animal body, all the others
            continue
        (images / cls).mkdir(parents=True, exist_ok=True)
        (images / cls / f"{i}.jpg").symlink_to(folder["images"] / cls / f"{i}.jpg")
    with pytest.raises(DataError, match=r"fewer than 2 images: \{'animal_body': 1\}"):
        run_finetune_folder(_cfg(tmp_path, images, folder["descriptions"]))
    assert not (tmp_path / "runs").exists()


def test_brain_ids_that_do_not_match_the_images_are_rejected(
    folder: dict[str, Any], brain_npz: dict[str, Any], tmp_path: Path
) -> None:
    from llmvem.data.files import load_brain, save_brain

    brain = load_brain(brain_npz["path"])
    brain.stimulus_ids = [f"stim{k:03d}" for k in range(brain.n_stimuli)]
    path = save_brain(brain, tmp_path / "renamed.npz")
    cfg = _cfg(tmp_path, folder["images"], folder["descriptions"], **{"dataset.brain": str(path)})
    with pytest.raises(IdMismatchError, match=r"24 of 24 image\(s\) have no response.*stim000"):
        run_finetune_folder(cfg)
    assert not (tmp_path / "runs").exists()


def test_layout_and_task_errors_name_the_fix(folder: dict[str, Any], tmp_path: Path) -> None:
    flat = tmp_path / "flat"
    flat.mkdir()
    for i, cls in list(folder["classes"].items())[:8]:
        (flat / f"{i}.jpg").symlink_to(folder["images"] / cls / f"{i}.jpg")
    with pytest.raises(ConfigError, match="one subfolder per class"):
        folder_task(_cfg(tmp_path, flat, folder["descriptions"], **{"finetune.task": "classifier"}))
    assert folder_task(_cfg(tmp_path, flat, folder["descriptions"])) == "none"  # auto: no labels → alignment only
    with pytest.raises(ConfigError, match="needs brain responses"):
        folder_task(_cfg(tmp_path, flat, folder["descriptions"], **{"finetune.task": "voxels"}))
    with pytest.raises(ConfigError, match=r"dataset\.descriptions is needed"):
        run_finetune_folder(_cfg(tmp_path, folder["images"], None))
    no_images = _cfg(tmp_path, folder["images"], folder["descriptions"])
    no_images.dataset.images = None
    with pytest.raises(ConfigError, match=r"needs dataset\.images"):
        run_finetune_folder(no_images)
    # alignment only: one model, no twin, no task scores
    from llmvem.runner.legacy import translate_config

    tree = translate_config(_cfg(tmp_path, flat, folder["descriptions"]))[0]
    assert list(tree["models"]) == ["aligned"] and tree["models"]["aligned"]["task"] == "none"
    assert list(tree["evaluations"]) == ["retrieval"] and "classes" not in tree["targets"]
    # a labels file overrides the subfolders
    labels = tmp_path / "labels.csv"
    labels.write_text("image,label\n" + "".join(f"{i}.jpg,{'face' if 'face' in c else 'other'}\n"
                                                for i, c in folder["classes"].items()))  # fmt: skip
    cfg = _cfg(tmp_path, folder["images"], folder["descriptions"],
               **{"dataset.labels": str(labels), "output_dir": str(tmp_path / "checked")})  # fmt: skip
    assert folder_task(cfg) == "classifier"
    assert _info(cfg, until="targets")["targets"]["classes"]["classes"] == ["face", "other"]
    # an image outside any class folder, and two images with one stem
    mixed = tmp_path / "mixed"
    (mixed / "a").mkdir(parents=True)
    (mixed / "b").mkdir()
    src = next(iter(folder["images"].rglob("*.jpg")))
    (mixed / "a" / "x.jpg").symlink_to(src)
    (mixed / "b" / "x.jpg").symlink_to(src)
    with pytest.raises(DataError, match="occur twice"):
        run_finetune_folder(_cfg(tmp_path, mixed, folder["descriptions"]))
    (mixed / "b" / "x.jpg").unlink()
    (mixed / "y.jpg").symlink_to(src)
    with pytest.raises(DataError, match="outside any class subfolder"):
        run_finetune_folder(_cfg(tmp_path, mixed, folder["descriptions"]))
    assert not (tmp_path / "runs").exists()  # every error came before a run directory was made


def test_heldout_split_is_seeded_and_stratified() -> None:
    classes = ["a"] * 10 + ["b"] * 4 + ["c"] * 2
    tr, va = heldout_split(16, 0.25, seed=3, classes=classes)
    _, va2 = heldout_split(16, 0.25, seed=3, classes=classes)
    np.testing.assert_array_equal(va, va2)
    assert sorted(classes[k] for k in va) == ["a", "a", "b", "c"] and len(tr) + len(va) == 16
    assert not set(tr) & set(va)


def test_cli_train_dispatches_to_the_folder_pipeline(folder: dict[str, Any], tmp_path: Path) -> None:
    from llmvem.cli.app import app

    cfg = tmp_path / "cfg.yaml"
    missing = tmp_path / "none.jsonl"
    cfg.write_text(f"dataset:\n  name: folder\n  images: {folder['images']}\n  descriptions: {missing}\n")
    res = CliRunner().invoke(app, ["train", str(cfg), "--output-dir", str(tmp_path / "runs")])
    assert res.exit_code == 2 and "descriptions file not found" in res.output


def test_the_example_config_is_valid() -> None:
    cfg = load_config(Path(__file__).resolve().parents[2] / "configs" / "folder-classify.yaml")
    assert cfg.dataset.name == "folder" and cfg.finetune.task == "classifier" and len(cfg.finetune.seeds) == 3


# ------------------------------------------------------------------------------------------------ held-out split
def _brain_with_splits(splits: dict[str, list[str]], n: int = 12) -> Any:
    from llmvem.data.brain import BrainData

    ids = [f"im{k:02d}" for k in range(n)]
    rois = pd.DataFrame({"roi": ["V1"] * 3})
    return BrainData(np.random.default_rng(0).normal(size=(n, 3)), ids, rois, splits=splits)


def test_brain_heldout_uses_the_brain_datas_own_test_split() -> None:
    from llmvem.data.splits import brain_heldout
    from llmvem.errors import ConfigError

    brain = _brain_with_splits({"test": ["im03", "im07", "im01"], "val": ["im10", "im11", "im09", "im08"]})
    train, held = brain_heldout(brain, "auto")  # type: ignore[misc]
    assert held.tolist() == [1, 3, 7] and train.tolist() == [0, 2, 4, 5, 6, 8, 9, 10, 11]
    assert brain_heldout(brain, "val")[1].tolist() == [8, 9, 10, 11]  # type: ignore[index]
    assert brain_heldout(brain, "seeded") is None
    assert brain_heldout(_brain_with_splits({}), "auto") is None  # no split: the caller draws a seeded one
    assert brain_heldout(_brain_with_splits({"test": ["im00", "im01"]}), "auto") is None  # too few to score
    with pytest.raises(ConfigError, match=r"no such split; it has \['test', 'val'\]"):
        brain_heldout(brain, "holdout")
    with pytest.raises(ConfigError, match="names 2 of the 12 images"):
        brain_heldout(_brain_with_splits({"test": ["im00", "im01"]}), "test")
    # reordered to the images, a split keeps only the images the folder has
    sub = brain.reorder(["im07", "im03", "im00", "im02", "im04", "im05", "im06", "im08"])
    assert sub.splits["test"] == ["im03", "im07"] and brain_heldout(sub, "auto") is None


def test_heldout_split_name_needs_a_voxel_task(folder: dict[str, Any], tmp_path: Path) -> None:
    from llmvem.errors import ConfigError

    cfg = _cfg(tmp_path, folder["images"], folder["descriptions"], **{"dataset.heldout": "test"})
    with pytest.raises(ConfigError, match="only the voxel tasks read"):
        run_finetune_folder(cfg)
    assert not (tmp_path / "runs").exists()


def test_voxel_run_holds_out_the_brain_datas_test_split(
    folder: dict[str, Any], brain_npz: dict[str, Any], tmp_path: Path
) -> None:
    from llmvem.data.files import load_brain, save_brain

    brain = load_brain(brain_npz["path"])
    test_ids = [brain_npz["ids"][k] for k in (2, 5, 11, 17, 20)] + ["extra_1"]  # one the folder lacks
    brain.splits = {"train": [i for i in brain.stimulus_ids if i not in test_ids], "test": test_ids}
    path = save_brain(brain, tmp_path / "with_split.npz")
    over = {"dataset.brain": str(path), "finetune.seeds": "[0]", "finetune.epochs": 1}
    with pytest.warns(RuntimeWarning, match="NaN/inf"):
        run = run_finetune_folder(_cfg(tmp_path, folder["images"], folder["descriptions"], **over))
    images = json.loads((run.path / "metrics.json").read_text())["info"]["stimuli"]["images"]
    assert images["heldout_from"] == "brain split 'test'" and images["n_train"] == 24 - 5
    assert sorted(_heldout(run.path)) == sorted(test_ids[:-1])


def test_old_tasks_translate_into_the_study_variants(folder: dict[str, Any], tmp_path: Path) -> None:
    """finetune.task picks the study and sets its models, targets and paired metrics (runner.legacy)."""
    from llmvem.runner.legacy import translate_config

    labels = tmp_path / "labels.csv"
    labels.write_text("image,label\n" + "".join(f"{i}.jpg,{c}|{'face' if 'face' in c else 'other'}\n"
                                                for i, c in folder["classes"].items()))  # fmt: skip
    over = {"dataset.labels": str(labels), "finetune.task": "multilabel", "output_dir": str(tmp_path / "ml")}
    cfg = _cfg(tmp_path, folder["images"], folder["descriptions"], **over)
    tree = translate_config(cfg)[0]
    assert {m["task"] for m in tree["models"].values()} == {"multilabel"} and tree["targets"]["classes"]["multilabel"]
    assert tree["evaluations"]["paired_label_accuracy"]["metric"] == "label_accuracy"
    assert "paired_top1" not in tree["evaluations"] and tree["stimuli"]["images"]["stratify"] is False
    info = _info(cfg, until="targets")
    assert info["targets"]["classes"]["n_classes"] == 8  # 6 categories + face / other
    assert info["stimuli"]["images"]["n_test"] == 5  # seeded, not stratified: round(0.2 · 24)
    pca = translate_config(_cfg(tmp_path, folder["images"], folder["descriptions"],
                                **{"dataset.brain": "b.npz", "finetune.task": "voxels_pca"}))[0]  # fmt: skip
    assert pca["name"] == "folder-test" and pca["stimuli"]["images"]["brain"] == "b.npz"
    assert {m["task"] for m in pca["models"].values()} == {"voxels_pca"} and "voxels" in pca["targets"]
    assert pca["stimuli"]["images"]["heldout"] == 0.2 and pca["seeds"] == [0, 1]
