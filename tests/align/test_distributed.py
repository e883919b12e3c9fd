"""Multi-process training (torch.distributed, gloo on CPU): gathered negatives and DDP fine-tuning."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.multiprocessing as mp

from llmvem.align.finetune import FinetuneData, finetune
from llmvem.align.losses import infonce
from llmvem.config import FinetuneConfig
from llmvem.vision.trainable import split_from_config


def _worker(rank: int, world: int, tmp: str) -> None:
    import torch.distributed as dist

    from llmvem.align.distributed import gather_with_grad
    from llmvem.align.finetune import FinetuneData, finetune
    from llmvem.config import FinetuneConfig
    from llmvem.vision.trainable import split_backbone

    dist.init_process_group("gloo", init_method=f"file://{tmp}/rendezvous", rank=rank, world_size=world)
    try:
        # 1. gradient of the global-batch InfoNCE through gather_with_grad (+ DDP-style averaging)
        g = torch.Generator().manual_seed(0)
        x, text = torch.randn(8, 6, generator=g), torch.randn(8, 4, generator=g)
        torch.manual_seed(1)
        lin = torch.nn.Linear(6, 4)
        idx = torch.arange(8)
        local = idx[rank::world]
        gathered = torch.cat([idx[r::world] for r in range(world)])
        loss = infonce(gather_with_grad(lin(x[local])), text[gathered], temperature=0.2)
        loss.backward()
        grad = lin.weight.grad.clone()
        dist.all_reduce(grad)
        grad /= world
        torch.save({"loss": loss.detach(), "grad": grad}, f"{tmp}/grad{rank}.pt")

        # 2. DDP fine-tuning: identical weights on every rank, one checkpoint writer
        split = split_backbone("efficientnet_lite0", trainable_blocks=1)
        rng = np.random.default_rng(0)
        acts = rng.normal(size=(16, *split_bottom_shape(split))).astype(np.float32)
        data = FinetuneData(acts, rng.normal(size=(16, 8)).astype(np.float32), (rng.random((16, 3)) < 0.5) * 1.0)
        cfg = FinetuneConfig(epochs=2, batch_size=8, warmup_epochs=0, projection="mlp", seeds=[0])
        res = finetune(split, data, np.arange(12), np.arange(12, 16), cfg, 1.0, "multilabel", 0, Path(tmp) / "ckpt")
        torch.save(res.state, f"{tmp}/state{rank}.pt")
    finally:
        dist.destroy_process_group()


def split_bottom_shape(split: object) -> tuple[int, int, int]:
    with torch.inference_mode():
        return tuple(split.bottom(torch.zeros(1, 3, 224, 224)).shape[1:])  # type: ignore[attr-defined,return-value]


def test_gathered_infonce_and_ddp_finetuning(tmp_path: Path) -> None:
    mp.spawn(_worker, args=(2, str(tmp_path)), nprocs=2, join=True)
    # single-process reference on the same global batch
    g = torch.Generator().manual_seed(0)
    x, text = torch.randn(8, 6, generator=g), torch.randn(8, 4, generator=g)
    torch.manual_seed(1)
    lin = torch.nn.Linear(6, 4)
    order = torch.cat([torch.arange(8)[r::2] for r in range(2)])
    ref = infonce(lin(x[order]), text[order], temperature=0.2)
    ref.backward()
    for rank in range(2):
        out = torch.load(tmp_path / f"grad{rank}.pt")
        torch.testing.assert_close(out["loss"], ref.detach())
        torch.testing.assert_close(out["grad"], lin.weight.grad)
    s0, s1 = torch.load(tmp_path / "state0.pt"), torch.load(tmp_path / "state1.pt")
    assert s0.keys() == s1.keys()
    for k in s0:
        torch.testing.assert_close(s0[k], s1[k])
    ckpts = sorted(p.name for p in (tmp_path / "ckpt").glob("epoch-*"))
    assert ckpts and (tmp_path / "ckpt" / "done.json").is_file()


# A ViT has LayerNorm only (no BatchNorm, whose batch statistics would differ per rank) and no dropout, and the
# projection head is an MLP without BatchNorm: every sample's forward pass is its own, so two ranks on half-batches
# can reproduce the single-process run on the whole batches. `qkv_bias: False`: a key bias has an exactly zero
# gradient (softmax ignores it), which AdamW turns from float noise into ±lr steps that differ between the runs.
WHOLE_VIT: dict[str, object] = {
    "backbone": "timm:test_vit",
    "model_kwargs": {"img_size": 32, "patch_size": 8, "depth": 2, "qkv_bias": False},
    "trainable_blocks": None,
    "augment": "crop_flip",
    "mixup_alpha": 0.4,
    "cutmix_alpha": 1.0,
    "projection": "mlp",
    "epochs": 2,
    "batch_size": 8,
    "warmup_epochs": 0,
    "lr": 1e-3,
    "tensorboard": False,
}


def _whole_network_data() -> FinetuneData:
    rng = np.random.default_rng(3)
    x = rng.normal(size=(20, 3, 32, 32)).astype(np.float32)  # preprocessed images
    return FinetuneData(x, rng.normal(size=(20, 8)).astype(np.float32), (rng.random((20, 4)) < 0.4) * 1.0)


def _train_whole_network(ckpt_dir: Path) -> dict[str, torch.Tensor]:
    cfg = FinetuneConfig.model_validate(WHOLE_VIT)
    split = split_from_config(cfg)  # seeded random initialisation: the same network in every process
    res = finetune(split, _whole_network_data(), np.arange(16), np.arange(16, 20), cfg, 1.0, "multilabel", 0, ckpt_dir)
    return res.state


def _whole_network_worker(rank: int, world: int, tmp: str) -> None:
    import torch.distributed as dist

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{tmp}/rendezvous", rank=rank, world_size=world)
    try:
        torch.save(_train_whole_network(Path(tmp) / "ckpt"), f"{tmp}/state{rank}.pt")
    finally:
        dist.destroy_process_group()


def test_ddp_whole_network_with_augmentation_and_mixing_equals_one_process(tmp_path: Path) -> None:
    """Two gloo ranks train a whole ViT (timm ``model_kwargs`` from the config) with crop/flip augmentation, mixup
    and CutMix: each rank crops and mixes its half of every global batch alike (parameters drawn for the global
    batch, partners' pixels loaded from the other half), so the result equals one process on the same batches
    (allclose: only float summation order differs). Exact agreement needs a model without BatchNorm (hence the ViT
    and the ``mlp`` projection): BatchNorm would normalise each rank's half-batch by its own statistics."""
    mp.spawn(_whole_network_worker, args=(2, str(tmp_path)), nprocs=2, join=True)
    s0, s1 = torch.load(tmp_path / "state0.pt"), torch.load(tmp_path / "state1.pt")
    assert s0.keys() == s1.keys()
    for k in s0:  # DDP keeps the ranks identical
        torch.testing.assert_close(s0[k], s1[k], rtol=0, atol=0)
    ref = _train_whole_network(tmp_path / "single")
    assert ref.keys() == s0.keys()
    for k in ref:  # measured: at most ~1e-6 apart
        torch.testing.assert_close(s0[k], ref[k], rtol=1e-4, atol=1e-5)
    pretrained = split_from_config(FinetuneConfig.model_validate(WHOLE_VIT)).top.state_dict()
    assert all(not torch.equal(ref[f"top.{k}"], v) for k, v in pretrained.items() if k.endswith("weight"))
