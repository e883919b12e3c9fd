"""`TrainedNetwork`: features, heads and loading from a run directory equal the trained model's own forward pass
(what `pooled_features`, the folder study's model outputs and `features_from_run` each computed before)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import yaml
from PIL import Image
from safetensors.torch import save_file

from llmvem.align.finetune import build_model, features_from_run, head_outputs, pooled_features
from llmvem.align.heads import PCAVoxelHead
from llmvem.align.network import TrainedNetwork, rebuild_head
from llmvem.config import ExperimentConfig, FinetuneConfig
from llmvem.data.stimuli import StimulusSet
from llmvem.errors import DataError
from llmvem.vision.trainable import split_backbone, split_from_config


def _trained(split: Any, cfg: FinetuneConfig, task: str, acts: np.ndarray, pca: Any = None) -> dict[str, Any]:
    """A model's state after its weights and BatchNorm statistics moved away from the initial ones."""
    torch.manual_seed(0)
    model = build_model(split, cfg, text_dim=6, n_labels=5, task=task, pca=pca)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
        model.train()
        model(torch.from_numpy(acts) * 2 + 0.5)
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _forward(split: Any, cfg: FinetuneConfig, task: str, state: dict[str, Any], acts: np.ndarray, pca: Any = None):  # type: ignore[no-untyped-def]
    model = build_model(split, cfg, text_dim=6, n_labels=5, task=task, pca=pca)
    model.load_state_dict(state)
    with torch.inference_mode():
        return {k: v.numpy() for k, v in model.eval()(torch.from_numpy(acts)).items()}


@pytest.fixture(scope="module")
def split() -> Any:
    return split_backbone("timm:test_resnet", trainable_blocks=1)


@pytest.fixture(scope="module")
def acts(split: Any) -> np.ndarray:
    x = torch.from_numpy(np.random.default_rng(0).normal(size=(10, 3, 32, 32)).astype(np.float32))
    with torch.inference_mode():
        return split.bottom(x).numpy()


@pytest.mark.parametrize(("projection", "task"), [("mlp_bn", "multilabel"), ("linear", "voxels_pca"),
                                                  ("mlp", "classifier")])  # fmt: skip
def test_features_and_heads_equal_the_model(split: Any, acts: np.ndarray, projection: str, task: str) -> None:
    cfg = FinetuneConfig(projection=projection)
    rng = np.random.default_rng(1)
    pca = PCAVoxelHead(rng.normal(size=(12, 5)), 3) if task == "voxels_pca" else None
    state = _trained(split, cfg, task, acts, pca)
    want = _forward(split, cfg, task, state, acts, pca)
    before = {k: v.clone() for k, v in split.top.state_dict().items()}
    net = TrainedNetwork(split, state)
    outs = net.outputs(acts, batch_size=4)
    assert set(outs) == {"features", "projection", "task"}
    for k in outs:
        np.testing.assert_allclose(outs[k], want[k], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(net.features(acts), want["features"], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(net.head("project", want["features"]), want["projection"], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(net.head("task", want["features"]), want["task"], rtol=1e-5, atol=1e-5)
    # the old entry points are wrappers over it
    result = type("R", (), {"state": state})()
    np.testing.assert_array_equal(pooled_features(result, split, acts), net.features(acts))  # type: ignore[arg-type]
    np.testing.assert_array_equal(head_outputs(state, "task", want["features"]), net.head("task", want["features"]))
    for k, v in split.top.state_dict().items():  # the split stays pretrained
        assert torch.equal(v, before[k])


def test_pretrained_and_missing_heads(split: Any, acts: np.ndarray) -> None:
    with torch.inference_mode():
        want = split.top(torch.from_numpy(acts)).numpy()
    net = TrainedNetwork(split)
    np.testing.assert_allclose(net.features(acts), want, rtol=1e-6, atol=1e-6)
    assert set(net.outputs(acts)) == {"features"}
    with pytest.raises(DataError, match="no 'project' head"):
        net.head("project", want)
    with pytest.raises(DataError, match="no 'task' head"):
        rebuild_head({"top.x": torch.zeros(1)}, "task")


def test_from_run_features_of_images(split: Any, tmp_path: Path) -> None:
    ft = {"backbone": "timm:test_resnet", "trainable_blocks": 1}
    exp = ExperimentConfig.model_validate({"finetune": ft})
    built = split_from_config(exp.finetune)
    rng = np.random.default_rng(2)
    paths = []
    for i in range(3):
        p = tmp_path / f"im{i}.png"
        Image.fromarray(rng.integers(0, 255, (40, 40, 3), dtype=np.uint8)).save(p)
        paths.append(p)
    stim = StimulusSet.from_paths(paths)
    x = torch.stack([built.backbone.preprocess(stim.load(i)) for i in range(3)])
    with torch.inference_mode():
        acts = built.bottom(x).numpy()
    state = _trained(built, exp.finetune, "multilabel", acts)
    run = tmp_path / "run"
    (run / "models").mkdir(parents=True)
    (run / "config.yaml").write_text(yaml.safe_dump(exp.model_dump(mode="json")))
    save_file({k: v.contiguous() for k, v in state.items()}, str(run / "models" / "aligned-seed0.safetensors"))
    net = TrainedNetwork.from_run(run, "aligned-seed0")
    want = _forward(built, exp.finetune, "multilabel", state, acts)
    np.testing.assert_allclose(net.image_features(stim, batch_size=2), want["features"], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(features_from_run(stim, run, head="project"), want["projection"], rtol=1e-4, atol=1e-5)
    with pytest.raises(DataError, match="available: \\['aligned-seed0'\\]"):
        TrainedNetwork.from_run(run, "twin-seed0")


def test_from_run_names_a_damaged_run_folder(tmp_path: Path) -> None:
    """A broken config.yaml or a model file that is not safetensors: one llmvem error naming the file."""
    from llmvem.align.network import TrainedNetwork
    from llmvem.config import dump_config, load_config
    from llmvem.errors import ConfigError, DataError

    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "aligned-seed0.safetensors").write_bytes(b"not safetensors")
    (tmp_path / "config.yaml").write_text("{{{: bad\n")
    with pytest.raises(ConfigError, match=r"config\.yaml is not valid YAML"):
        TrainedNetwork.from_run(tmp_path)
    (tmp_path / "config.yaml").write_text(dump_config(load_config()))
    with pytest.raises(DataError, match=r"aligned-seed0\.safetensors is damaged"):
        TrainedNetwork.from_run(tmp_path)
