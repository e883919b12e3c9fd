"""torch.distributed helpers: rank/world discovery and an all-gather that passes gradients back.

Under ``torchrun`` every rank computes the alignment loss on the embeddings gathered from all ranks, so each sample
sees the whole global batch as negatives (as GPT4Image and CLIP do). The gradient of the gathered copy is summed
over ranks and handed to the owner; with DDP's gradient averaging this gives exactly the single-process gradient of
the global-batch loss.
"""

from __future__ import annotations

from typing import Any


def dist_info() -> tuple[int, int]:
    """``(rank, world_size)``; ``(0, 1)`` when torch.distributed is not initialised."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def gather_with_grad(x: Any) -> Any:
    """Concatenate ``x`` (B, D) from every rank in rank order → (world·B, D), differentiable.

    Backward: the incoming gradient of the whole gathered tensor is all-reduced (summed) and each rank keeps its own
    slice — only ``all_gather`` and ``all_reduce`` are used, which every backend (gloo included) supports.
    """
    import torch
    import torch.distributed as dist

    rank, world = dist_info()
    if world == 1:
        return x

    class _Gather(torch.autograd.Function):
        @staticmethod
        def forward(ctx: Any, t: torch.Tensor) -> torch.Tensor:
            parts = [torch.empty_like(t) for _ in range(world)]
            dist.all_gather(parts, t.contiguous())
            ctx.n = t.shape[0]
            return torch.cat(parts)

        @staticmethod
        def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
            grad = grad.contiguous().clone()
            dist.all_reduce(grad, op=dist.ReduceOp.SUM)
            return grad[rank * ctx.n : (rank + 1) * ctx.n]

    return _Gather.apply(x)
