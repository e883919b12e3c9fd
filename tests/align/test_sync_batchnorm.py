"""SyncBatchNorm conversion for DDP on GPUs (the conversion itself; running it needs CUDA and several ranks)."""

from __future__ import annotations

import torch
from torch import nn

from llmvem.align.finetune import sync_batchnorm, unkeyed_settings
from llmvem.config import FinetuneConfig


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.Linear(4, 2))


def test_sync_batchnorm_converts_on_cuda_only() -> None:
    model = _model()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    assert sync_batchnorm(model, "cpu") == 0 and isinstance(model[1], nn.BatchNorm2d)
    assert sync_batchnorm(model, "cuda:0", enabled=False) == 0 and isinstance(model[1], nn.BatchNorm2d)
    wrapper = nn.Module()
    wrapper.net = model  # converted in place below the top module, as finetune's model is
    assert sync_batchnorm(wrapper, "cuda") == 1
    assert isinstance(wrapper.net[1], nn.SyncBatchNorm)
    after = wrapper.net.state_dict()
    assert after.keys() == before.keys()  # checkpoints load into the unconverted network
    assert all(torch.equal(after[k], before[k]) for k in before)


def test_sync_batchnorm_is_not_keyed() -> None:
    assert "sync_batchnorm" in unkeyed_settings(FinetuneConfig())
    assert "sync_batchnorm" in unkeyed_settings(FinetuneConfig(sync_batchnorm=False))
