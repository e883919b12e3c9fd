"""SyncBatchNorm conversion for DDP on GPUs (the conversion itself; running it needs CUDA and several ranks)."""

from __future__ import annotations

import pytest
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


@pytest.mark.skipif(not torch.cuda.is_available(), reason="SyncBatchNorm runs on CUDA only")
def test_sync_batchnorm_trains_on_a_one_rank_nccl_group() -> None:
    """On one rank the global batch is the local one: the converted network must train exactly as plain BatchNorm."""
    import socket

    import torch.distributed as dist

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    dist.init_process_group("nccl", init_method=f"tcp://127.0.0.1:{port}", rank=0, world_size=1)
    try:
        plain, synced = _model().cuda(), nn.Module()
        synced.net = _model().cuda()
        assert sync_batchnorm(synced, "cuda") == 1
        x = torch.randn(8, 3, 3, 3, device="cuda")  # conv 3×3 → 1×1 maps, 4 features
        outs, grads = [], []
        for m in (plain, synced.net):
            m.train()
            out = m(x)
            out.square().sum().backward()
            outs.append(out.detach())
            grads.append(m[0].weight.grad.detach())
        torch.testing.assert_close(outs[0], outs[1], rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(grads[0], grads[1], rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(plain[1].running_mean, synced.net[1].running_mean)
    finally:
        dist.destroy_process_group()
